package oidc

import (
	"errors"
	"fmt"
	"net/mail"
	"strings"
)

// AllowList says which identities are organisers. Its entries:
//
//	alice@example.org       a verified email address, at any provider
//	login:alice             a GitHub login
//	login:gitlab:alice      a login at the provider named gitlab
//	group:organisers        a group at an OpenID Connect issuer (KindOIDC)
//	group:gitlab:org/team   a group at the provider named gitlab
//
// A group or login name that contains ":" needs its provider
// (group:oidc:a:b). Emails and logins match without regard to case,
// groups exactly as the provider sends them. Only verified email
// addresses count.
type AllowList struct {
	entries []allowEntry
}

type allowEntry struct {
	what     string // "email", "login" or "group"
	provider string // "" for any provider of the default kind
	value    string
}

// ParseAllowList reads entries (as above; empty ones are skipped)
// against the configured providers: a login or group naming no
// configured provider, or one no provider can vouch for, is refused
// with a *FieldError for "organisers".
func ParseAllowList(entries []string, providers []Config) (AllowList, error) {
	var a AllowList
	var errs []error
	bad := func(e, format string, args ...any) {
		errs = append(errs, &FieldError{Field: "organisers", Msg: fmt.Sprintf("%q: ", e) + fmt.Sprintf(format, args...)})
	}
	hasKind := func(k Kind) bool {
		for _, p := range providers {
			if p.Kind == k {
				return true
			}
		}
		return false
	}
	byName := func(n string) (Config, bool) {
		for _, p := range providers {
			if p.Name == n {
				return p, true
			}
		}
		return Config{}, false
	}
	for _, raw := range entries {
		e := strings.TrimSpace(raw)
		if e == "" {
			continue
		}
		if len(providers) == 0 {
			bad(e, "no identity provider is configured to vouch for it")
			continue
		}
		what, rest, qualified := strings.Cut(e, ":")
		if !qualified || (what != "login" && what != "group") {
			addr, err := mail.ParseAddress(e)
			if err != nil || addr.Address != e || addr.Name != "" {
				bad(e, "neither an email address nor login:NAME or group:NAME")
				continue
			}
			a.entries = append(a.entries, allowEntry{what: "email", value: e})
			continue
		}
		ent := allowEntry{what: what, value: rest}
		if prov, name, ok := strings.Cut(rest, ":"); ok {
			c, found := byName(prov)
			switch {
			case !found:
				bad(e, "names no configured provider %q", prov)
				continue
			case c.Kind == KindGitHub && what == "group":
				bad(e, "github gives no groups")
				continue
			case c.Kind == KindLinkedIn:
				bad(e, "linkedin gives no %ss", what)
				continue
			}
			ent.provider, ent.value = prov, name
		} else if what == "login" && !hasKind(KindGitHub) {
			bad(e, "login:NAME is a GitHub login and no github provider is configured (login:PROVIDER:NAME for another)")
			continue
		} else if what == "group" && !hasKind(KindOIDC) {
			bad(e, "group:NAME is a group of the OpenID Connect issuer and none is configured (group:PROVIDER:NAME for another)")
			continue
		}
		if ent.value == "" {
			bad(e, "empty %s", what)
			continue
		}
		a.entries = append(a.entries, ent)
	}
	if err := errors.Join(errs...); err != nil {
		return AllowList{}, err
	}
	return a, nil
}

// OrganisersFromEnv reads AUTH_ORGANISERS, comma-separated entries of an
// AllowList, against the configured providers. Errors name
// AUTH_ORGANISERS.
func OrganisersFromEnv(getenv func(string) string, providers []Config) (AllowList, error) {
	a, err := ParseAllowList(strings.Split(getenv("AUTH_ORGANISERS"), ","), providers)
	if err != nil {
		var fe *FieldError
		for _, e := range unjoin(err) {
			if errors.As(e, &fe) {
				fe.Field = "AUTH_ORGANISERS"
			}
		}
	}
	return a, err
}

// unjoin returns the errors joined in err, or err alone.
func unjoin(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}

// Empty reports whether the list lets nobody in.
func (a AllowList) Empty() bool { return len(a.entries) == 0 }

// Organiser reports whether id is on the list: its verified email, its
// GitHub login (or its login at the named provider), or one of its
// groups at an OpenID Connect issuer (or at the named provider).
func (a AllowList) Organiser(id Identity) bool {
	if id.Subject == "" || id.Provider == "" {
		return false
	}
	email, err := id.VerifiedEmail()
	for _, e := range a.entries {
		if e.what == "email" {
			if err == nil && strings.EqualFold(email, e.value) {
				return true
			}
			continue
		}
		if e.provider != "" && e.provider != id.Provider {
			continue
		}
		switch e.what {
		case "login":
			if (e.provider != "" || id.Kind == KindGitHub) && id.Login != "" && strings.EqualFold(id.Login, e.value) {
				return true
			}
		case "group":
			if e.provider != "" || id.Kind == KindOIDC {
				for _, g := range id.Groups {
					if g == e.value {
						return true
					}
				}
			}
		}
	}
	return false
}

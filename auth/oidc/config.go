package oidc

import (
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/thon-dev/thon/internal/httpurl"
)

// Kind is the protocol and the quirks of an identity provider.
type Kind string

// The kinds of provider.
const (
	// KindGitHub is GitHub's OAuth2 (not OpenID Connect): the identity
	// comes from its user API.
	KindGitHub Kind = "github"
	// KindGitLab is GitLab's OpenID Connect (gitlab.com by default).
	KindGitLab Kind = "gitlab"
	// KindLinkedIn is LinkedIn's OpenID Connect ("Sign In with LinkedIn
	// using OpenID Connect").
	KindLinkedIn Kind = "linkedin"
	// KindOIDC is any OpenID Connect issuer found by discovery: Keycloak,
	// Authentik, Dex, Zitadel, a self-hosted GitLab...
	KindOIDC Kind = "oidc"
)

// Default endpoints.
const (
	GitLabIssuer   = "https://gitlab.com"
	LinkedInIssuer = "https://www.linkedin.com/oauth"
	GitHubURL      = "https://github.com"     // authorize and token endpoints
	GitHubAPIURL   = "https://api.github.com" // /user, /user/emails
)

// CallbackPath is the path of a provider's callback on thon's sites: the
// redirect URL to register at the provider is
// https://<host>/api/auth/callback/<name>.
func CallbackPath(name string) string { return "/api/auth/callback/" + name }

// Config configures one identity provider. The JSON names are the ones
// FieldError reports.
type Config struct {
	// Name is the provider's name in thon's URLs
	// (/api/auth/login/<name>, /api/auth/callback/<name>): lowercase
	// letters, digits and dashes, at most 32.
	Name string `json:"name"`
	Kind Kind   `json:"kind"`
	// DisplayName labels the login button; it defaults to "GitHub",
	// "GitLab", "LinkedIn", or Name for an OIDC issuer.
	DisplayName  string `json:"display_name,omitempty"`
	ClientID     string `json:"client_id"`
	ClientSecret string `json:"client_secret"`
	// Issuer is the OpenID Connect issuer URL, exactly as the provider's
	// discovery document states it. Required for KindOIDC; GitLab and
	// LinkedIn default to their public issuers. Not for GitHub.
	Issuer string `json:"issuer,omitempty"`
	// Scopes requested; by default "openid profile email" (OIDC kinds) or
	// "read:user user:email" (GitHub).
	Scopes []string `json:"scopes,omitempty"`
	// GroupsClaim names the ID token or userinfo claim that lists the
	// user's groups (Keycloak's and Authentik's "groups"); none by
	// default, "groups_direct" for GitLab. Not for GitHub.
	GroupsClaim string `json:"groups_claim,omitempty"`
	// GitHubURL and GitHubAPIURL are GitHub's web and API bases
	// (defaults GitHubURL, GitHubAPIURL; https://HOST and
	// https://HOST/api/v3 for GitHub Enterprise Server). GitHub only.
	GitHubURL    string `json:"github_url,omitempty"`
	GitHubAPIURL string `json:"github_api_url,omitempty"`
}

var nameRE = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,30}[a-z0-9])?$`)

// withDefaults returns c with the defaults of its kind filled in.
func (c Config) withDefaults() Config {
	if len(c.Scopes) == 0 {
		if c.Kind == KindGitHub {
			c.Scopes = []string{"read:user", "user:email"}
		} else {
			c.Scopes = []string{"openid", "profile", "email"}
		}
	}
	switch c.Kind {
	case KindGitHub:
		c.DisplayName = cmpOr(c.DisplayName, "GitHub")
		c.GitHubURL = cmpOr(c.GitHubURL, GitHubURL)
		c.GitHubAPIURL = cmpOr(c.GitHubAPIURL, GitHubAPIURL)
	case KindGitLab:
		c.DisplayName = cmpOr(c.DisplayName, "GitLab")
		c.Issuer = cmpOr(c.Issuer, GitLabIssuer)
		c.GroupsClaim = cmpOr(c.GroupsClaim, "groups_direct")
	case KindLinkedIn:
		c.DisplayName = cmpOr(c.DisplayName, "LinkedIn")
		c.Issuer = cmpOr(c.Issuer, LinkedInIssuer)
	default:
		c.DisplayName = cmpOr(c.DisplayName, c.Name)
	}
	return c
}

func cmpOr(v, def string) string {
	if v == "" {
		return def
	}
	return v
}

// Validate checks c (with its kind's defaults) and reports every fault
// as a *FieldError naming the Config field.
func (c Config) Validate() error {
	return c.withDefaults().check(func(f string) string { return f })
}

// ValidateAll validates each config and that no two share a name.
func ValidateAll(configs []Config) error {
	var errs []error
	seen := map[string]bool{}
	for i, c := range configs {
		field := func(f string) string { return fmt.Sprintf("providers[%d].%s", i, f) }
		if err := c.withDefaults().check(field); err != nil {
			errs = append(errs, err)
		}
		if seen[c.Name] {
			errs = append(errs, &FieldError{Field: field("name"), Msg: fmt.Sprintf("%q names two providers", c.Name)})
		}
		seen[c.Name] = true
	}
	return errors.Join(errs...)
}

// urlRules are the rules for every URL a provider's secrets or identities
// pass through.
var urlRules = httpurl.Rules{NoQuery: true, NoUserInfo: true, HTTPSOrLoopback: true}

// check validates c, whose defaults are filled in; field maps a Config
// field's JSON name to the name the user knows (an environment variable).
func (c Config) check(field func(string) string) error {
	var errs []error
	bad := func(f, format string, args ...any) {
		errs = append(errs, &FieldError{Field: field(f), Msg: fmt.Sprintf(format, args...)})
	}
	if !nameRE.MatchString(c.Name) {
		bad("name", "%q is not a provider name (lowercase letters, digits and inner dashes, at most 32)", c.Name)
	}
	oidcKind := true
	switch c.Kind {
	case KindGitLab, KindLinkedIn, KindOIDC:
	case KindGitHub:
		oidcKind = false
	default:
		bad("kind", "%q is not one of github, gitlab, linkedin, oidc", c.Kind)
		return errors.Join(errs...)
	}
	if strings.TrimSpace(c.ClientID) == "" {
		bad("client_id", "required")
	}
	if c.ClientSecret == "" {
		bad("client_secret", "required")
	}
	for _, s := range c.Scopes {
		if s == "" || strings.ContainsAny(s, " \t\r\n\"\\") {
			bad("scopes", "%q is not a scope", s)
		}
	}
	if oidcKind {
		if !slices.Contains(c.Scopes, "openid") {
			bad("scopes", "must include openid")
		}
		if c.Issuer == "" {
			bad("issuer", "required")
		} else if err := httpurl.Check(c.Issuer, urlRules); err != nil {
			bad("issuer", "%s", err)
		}
		if c.GitHubURL != "" {
			bad("github_url", "only for a github provider")
		}
		if c.GitHubAPIURL != "" {
			bad("github_api_url", "only for a github provider")
		}
		return errors.Join(errs...)
	}
	if !slices.Contains(c.Scopes, "user:email") && !slices.Contains(c.Scopes, "user") {
		bad("scopes", "must include user:email (thon reads the verified email)")
	}
	if c.Issuer != "" {
		bad("issuer", "github is OAuth2, not OpenID Connect: set github_url and github_api_url instead")
	}
	if c.GroupsClaim != "" {
		bad("groups_claim", "github has no groups claim")
	}
	for f, v := range map[string]string{"github_url": c.GitHubURL, "github_api_url": c.GitHubAPIURL} {
		if err := httpurl.Check(v, urlRules); err != nil {
			bad(f, "%s", err)
		}
	}
	return errors.Join(errs...)
}

// envProviders are the built-in providers FromEnv reads, in order.
var envProviders = []struct {
	kind   Kind
	prefix string
}{
	{KindGitHub, "AUTH_GITHUB_"},
	{KindGitLab, "AUTH_GITLAB_"},
	{KindLinkedIn, "AUTH_LINKEDIN_"},
}

// FromEnv reads the providers from the environment, with the original
// thon's variables:
//
//	AUTH_ENABLED=true                         turns the providers below on
//	AUTH_GITHUB_CLIENT_ID, ..._CLIENT_SECRET   GitHub (OAuth2)
//	AUTH_GITLAB_CLIENT_ID, ..._CLIENT_SECRET   GitLab (gitlab.com)
//	AUTH_LINKEDIN_CLIENT_ID, ..._CLIENT_SECRET LinkedIn
//
// and a generic OpenID Connect issuer:
//
//	AUTH_OIDC_ISSUER, AUTH_OIDC_CLIENT_ID, AUTH_OIDC_CLIENT_SECRET
//	AUTH_OIDC_NAME           its name in the URLs (default "oidc")
//	AUTH_OIDC_DISPLAY_NAME   the login button's label (default the name)
//	AUTH_OIDC_SCOPES         space- or comma-separated (default "openid profile email")
//	AUTH_OIDC_GROUPS_CLAIM   the claim listing the user's groups (e.g. "groups")
//
// AUTH_ENABLED=false gives no providers. AUTH_ENABLED unset with a
// provider's variables set, AUTH_ENABLED=true with none, a client id
// without its secret (or the reverse) and a bad issuer URL are errors
// naming the variable (all of them, joined). Values are trimmed of
// surrounding spaces.
func FromEnv(getenv func(string) string) ([]Config, error) {
	get := func(k string) string { return strings.TrimSpace(getenv(k)) }
	var configs []Config
	var fields []func(string) string
	var errs []error
	bad := func(f, format string, args ...any) {
		errs = append(errs, &FieldError{Field: f, Msg: fmt.Sprintf(format, args...)})
	}
	pair := func(prefix string) (id, secret string, ok bool) {
		id, secret = get(prefix+"CLIENT_ID"), get(prefix+"CLIENT_SECRET")
		switch {
		case id == "" && secret == "":
			return "", "", false
		case secret == "":
			bad(prefix+"CLIENT_SECRET", "required when %sCLIENT_ID is set", prefix)
			return "", "", false
		case id == "":
			bad(prefix+"CLIENT_ID", "required when %sCLIENT_SECRET is set", prefix)
			return "", "", false
		}
		return id, secret, true
	}
	for _, p := range envProviders {
		if id, secret, ok := pair(p.prefix); ok {
			configs = append(configs, Config{Name: string(p.kind), Kind: p.kind, ClientID: id, ClientSecret: secret})
			fields = append(fields, envField(p.prefix))
		}
	}
	const op = "AUTH_OIDC_"
	issuer := get(op + "ISSUER")
	id, secret, ok := pair(op)
	switch {
	case ok && issuer == "":
		bad(op+"ISSUER", "required when %sCLIENT_ID is set", op)
	case !ok && issuer != "" && get(op+"CLIENT_ID") == "" && get(op+"CLIENT_SECRET") == "":
		bad(op+"CLIENT_ID", "required when %sISSUER is set", op)
	case ok:
		c := Config{
			Name:         cmpOr(get(op+"NAME"), string(KindOIDC)),
			Kind:         KindOIDC,
			DisplayName:  get(op + "DISPLAY_NAME"),
			ClientID:     id,
			ClientSecret: secret,
			Issuer:       issuer,
			Scopes:       strings.FieldsFunc(get(op+"SCOPES"), func(r rune) bool { return r == ',' || r == ' ' || r == '\t' }),
			GroupsClaim:  get(op + "GROUPS_CLAIM"),
		}
		for _, taken := range configs {
			if taken.Name == c.Name {
				bad(op+"NAME", "%q is the name of the built-in %s provider", c.Name, taken.Kind)
			}
		}
		configs = append(configs, c)
		fields = append(fields, envField(op))
	}
	if !ok && issuer == "" {
		for _, k := range []string{"NAME", "DISPLAY_NAME", "SCOPES", "GROUPS_CLAIM"} {
			if get(op+k) != "" {
				bad(op+k, "set without %sISSUER, %sCLIENT_ID and %sCLIENT_SECRET", op, op, op)
			}
		}
	}
	for i, c := range configs {
		if err := c.withDefaults().check(fields[i]); err != nil {
			errs = append(errs, err)
		}
	}

	enabled, err := parseEnabled(get("AUTH_ENABLED"))
	switch {
	case err != nil:
		return nil, err
	case enabled == nil && (len(configs) > 0 || len(errs) > 0):
		return nil, &FieldError{Field: "AUTH_ENABLED", Msg: "not set, but identity provider variables are: set AUTH_ENABLED=true to use them or AUTH_ENABLED=false to leave them off"}
	case enabled == nil || !*enabled:
		return nil, nil
	case len(errs) > 0:
		return nil, errors.Join(errs...)
	case len(configs) == 0:
		return nil, &FieldError{Field: "AUTH_ENABLED", Msg: "true, but no identity provider is configured: set AUTH_GITHUB_CLIENT_ID and AUTH_GITHUB_CLIENT_SECRET (or GITLAB, LINKEDIN, or AUTH_OIDC_ISSUER with AUTH_OIDC_CLIENT_ID and AUTH_OIDC_CLIENT_SECRET)"}
	}
	return configs, nil
}

// envField maps a Config field to its environment variable.
func envField(prefix string) func(string) string {
	return func(f string) string { return prefix + strings.ToUpper(f) }
}

// parseEnabled reads AUTH_ENABLED: nil when unset.
func parseEnabled(v string) (*bool, error) {
	if v == "" {
		return nil, nil
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		return nil, &FieldError{Field: "AUTH_ENABLED", Msg: fmt.Sprintf("%q is not true or false", v)}
	}
	return &b, nil
}

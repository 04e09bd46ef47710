package oidc

import (
	"fmt"
	"strings"
)

// Identity is who a provider says the user is (its JSON form is for the
// caller's sessions and pages).
type Identity struct {
	// Provider is the Config.Name of the provider that vouched, Kind its
	// kind.
	Provider string `json:"provider"`
	Kind     Kind   `json:"kind"`
	// Subject is the user's stable id at the provider: the ID token's
	// "sub", GitHub's numeric user id. It never changes when the user
	// renames their account; Login and Email may.
	Subject string `json:"subject"`
	// Email is the address the provider gave: the "email" claim, or the
	// primary address of the GitHub account. EmailVerified says whether
	// the provider vouches for it ("email_verified", GitHub's "verified").
	// An unverified address proves nothing: match rosters and allow-lists
	// with VerifiedEmail only.
	Email         string `json:"email,omitempty"`
	EmailVerified bool   `json:"email_verified"`
	// Login is the account name: the GitHub login, "preferred_username"
	// (or "nickname") of an OIDC provider; empty for LinkedIn.
	Login string `json:"login,omitempty"`
	Name  string `json:"name,omitempty"`
	// Groups come from the provider's groups claim (Config.GroupsClaim),
	// exactly as sent: GitLab's group paths ("org/team"), Keycloak's
	// "/group" when it sends full paths.
	Groups []string `json:"groups,omitempty"`
}

// VerifiedEmail returns the identity's email address when its provider
// vouches for it, and ErrEmailUnverified otherwise (no address, or one
// the provider has not verified). This is the address to match a roster
// user by.
func (id Identity) VerifiedEmail() (string, error) {
	if id.Email == "" || !id.EmailVerified {
		return "", fmt.Errorf("%s: %w", id.Provider, ErrEmailUnverified)
	}
	return id.Email, nil
}

// fromClaims reads an identity from ID token or userinfo claims, filling
// only the fields id does not have yet. groupsClaim is Config.GroupsClaim.
func (id *Identity) fromClaims(claims map[string]any, groupsClaim string) error {
	str := func(k string) string { s, _ := claims[k].(string); return strings.TrimSpace(s) }
	if id.Email == "" {
		id.Email = str("email")
		id.EmailVerified = id.Email != "" && claimBool(claims["email_verified"])
	}
	if id.Login == "" {
		id.Login = cmpOr(str("preferred_username"), str("nickname"))
	}
	if id.Name == "" {
		id.Name = cmpOr(str("name"), strings.TrimSpace(str("given_name")+" "+str("family_name")))
	}
	if groupsClaim == "" || id.Groups != nil {
		return nil
	}
	switch g := claims[groupsClaim].(type) {
	case nil:
	case string:
		id.Groups = []string{g}
	case []any:
		id.Groups = make([]string, 0, len(g))
		for _, v := range g {
			s, ok := v.(string)
			if !ok {
				return fmt.Errorf("%w: claim %q is not a list of strings", ErrProfile, groupsClaim)
			}
			id.Groups = append(id.Groups, s)
		}
	default:
		return fmt.Errorf("%w: claim %q is not a list of strings", ErrProfile, groupsClaim)
	}
	return nil
}

// claimBool reads a boolean claim; LinkedIn sends email_verified as the
// string "true".
func claimBool(v any) bool {
	switch b := v.(type) {
	case bool:
		return b
	case string:
		return strings.EqualFold(b, "true")
	}
	return false
}

// Package oidc signs users in at identity providers: GitHub (OAuth2 and
// its user API), GitLab and LinkedIn (OpenID Connect) and any OpenID
// Connect issuer found by discovery (Keycloak, Authentik, ...). It is the
// layer under thon's sign-in (package auth), which keeps sessions and
// decides what an identity may do; this package only proves who the user
// is, and offers the organiser allow-list as a pure function.
//
// A login is two requests. At /api/auth/login/<name> the caller calls
// Begin, keeps the returned Pending (sealed into a short-lived cookie by
// a Sealer) and redirects the browser to the returned URL. At
// /api/auth/callback/<name> it opens the Pending and calls Finish with
// the callback's query, which gives the Identity. Every login carries a
// random state and a PKCE S256 verifier (except at LinkedIn, which
// refuses PKCE), and a nonce checked in the ID token at OpenID Connect
// providers (LinkedIn leaves it out; one it sends must match).
//
// Identity.Email may be an address the provider has not verified; only
// Identity.VerifiedEmail (and so AllowList) counts it, and participants
// are matched to roster users by that address alone.
//
// Nothing here talks to the network before the first login: New only
// checks the configuration, and discovery runs at the first Begin, with a
// timeout and an error naming the issuer.
package oidc

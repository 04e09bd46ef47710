package oidc

import "errors"

// Errors of a login, for errors.Is. Every error Begin and Finish return
// matches one of them (or the caller's context error); the message adds
// the provider's name and what it said.
var (
	// ErrStateMismatch: the callback's state is not the one this login
	// began with, or the pending login belongs to another provider (a
	// forged or stale callback, a login begun in another tab).
	ErrStateMismatch = errors.New("login state does not match")
	// ErrDenied: the provider sent the user back with an error instead of
	// a code (the user declined, or the provider refused the request).
	ErrDenied = errors.New("identity provider refused the login")
	// ErrExchange: the token endpoint refused the code: a PKCE verifier
	// that does not match the challenge, a reused or expired code, a
	// redirect URL or client secret it does not accept.
	ErrExchange = errors.New("identity provider refused the code")
	// ErrIDToken: the ID token is missing or invalid (signature, issuer,
	// audience, expiry, access-token hash), or the userinfo answer is for
	// another subject.
	ErrIDToken = errors.New("invalid ID token")
	// ErrNonce: the ID token's nonce is not the one this login sent.
	ErrNonce = errors.New("ID token nonce does not match")
	// ErrProfile: the provider did not give the user's profile (GitHub's
	// /user or /user/emails, an OIDC userinfo endpoint).
	ErrProfile = errors.New("identity provider gave no usable profile")
	// ErrUnavailable: the provider could not be reached or answered with
	// something that is not its protocol (discovery, token endpoint,
	// user API). The message names the URL.
	ErrUnavailable = errors.New("identity provider unavailable")
	// ErrPendingInvalid: a sealed pending login (a cookie) that was not
	// made by this key, was altered, or is not one at all.
	ErrPendingInvalid = errors.New("invalid pending login")
	// ErrPendingExpired: a sealed pending login older than PendingTTL.
	ErrPendingExpired = errors.New("pending login expired")
	// ErrEmailUnverified: the identity carries no email address its
	// provider vouches for.
	ErrEmailUnverified = errors.New("no verified email address")
)

// FieldError is a configuration this package refuses: Field names the
// setting at fault (an environment variable such as
// "AUTH_GITHUB_CLIENT_SECRET", or a Config field such as "client_secret")
// and Msg says what is wrong.
type FieldError struct {
	Field string
	Msg   string
}

// Error returns Field + ": " + Msg.
func (e *FieldError) Error() string { return e.Field + ": " + e.Msg }

// Package auth decides who a request is: organisers (a password, the
// one-time setup link, an API token) and participants (sessions made by
// other parts, such as join links and identity providers). It keeps
// sessions, API tokens and one-time secrets in the store as hashes only,
// signs session cookies, checks CSRF tokens and limits login attempts.
//
// A Service is built per configuration from Options; what must outlive a
// configuration (the cache of live sessions, the login limiter) is a
// *State shared by the Services built on it. The package uses net/http
// types but no Caddy: caddymodule wires it in, api guards every route
// with it.
//
// Proofs:
//
//   - A session cookie (SessionCookieName) carries a random session id and
//     an HMAC of it under the session secret, so a forged cookie is
//     refused without a database read. The database keeps the SHA-256 of
//     the id; a live session is then checked in memory only. Every
//     state-changing request made with the cookie must also carry the
//     session's CSRF token (CSRFHeader, or the form field CSRFField),
//     which is an HMAC of the session's handle and is never stored.
//   - An organiser API token (TokenPrefix...) is sent as
//     "Authorization: Bearer <token>" and needs no CSRF token: a browser
//     never adds that header by itself.
//   - Before there is a session, a form (the login page) carries a
//     random token that must equal the FormCookieName cookie.
package auth

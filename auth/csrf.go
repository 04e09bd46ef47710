package auth

import (
	"crypto/hmac"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"net/http"
)

// NewFormToken returns a random CSRF token for a form shown before there
// is a session: set it with FormCookie and put it in the form's CSRFField.
func NewFormToken() (string, error) {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("reading random bytes for a form token: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b[:]), nil
}

// FormCookie returns the cookie that holds a form token for a response to
// r: HttpOnly, SameSite=Strict, Secure over HTTPS, for the browser session.
func FormCookie(r *http.Request, token string) *http.Cookie {
	return &http.Cookie{
		Name: FormCookieName, Value: token, Path: "/",
		HttpOnly: true, Secure: r.TLS != nil, SameSite: http.SameSiteStrictMode,
	}
}

// CheckFormToken reports whether token is not empty and equals r's form
// cookie, in constant time: a page elsewhere cannot read the cookie, so it
// cannot send the token.
func CheckFormToken(r *http.Request, token string) bool {
	if token == "" {
		return false
	}
	for _, c := range r.CookiesNamed(FormCookieName) {
		if hmac.Equal([]byte(c.Value), []byte(token)) {
			return true
		}
	}
	return false
}

// Package httpurl checks the http(s) URLs thon's settings take (the
// Lemonade Server, the gateway's upstream, the address Kilo reaches the
// gateway at), so that every setting accepts and refuses the same ones
// with the same message.
package httpurl

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
)

// ErrInvalid matches every error of Parse and Check.
var ErrInvalid = errors.New("invalid http(s) URL")

// Error reports a value that is not an acceptable URL. The caller
// prefixes it with the setting's name.
type Error struct {
	Value  string
	Reason string // e.g. "is not an http(s) URL"
}

func (e *Error) Error() string { return fmt.Sprintf("%q %s", e.Value, e.Reason) }

// Is makes errors.Is(err, ErrInvalid) true.
func (e *Error) Is(target error) bool { return target == ErrInvalid }

// Rules are what a setting forbids beyond the scheme and the host.
type Rules struct {
	NoQuery    bool // no query and no fragment
	NoUserInfo bool // no user:password@
	// HTTPSOrLoopback refuses plain http unless the host is a loopback
	// address or localhost: for URLs that secrets are sent to (an
	// identity provider's token endpoint) or that vouch for identities.
	HTTPSOrLoopback bool
}

// Parse parses v as an absolute http or https URL with a host, within
// rules.
func Parse(v string, rules Rules) (*url.URL, error) {
	u, err := url.Parse(v)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, &Error{Value: v, Reason: "is not an http(s) URL"}
	}
	if rules.NoQuery && (u.RawQuery != "" || u.Fragment != "" || u.ForceQuery) {
		return nil, &Error{Value: v, Reason: "must not carry a query or fragment"}
	}
	if rules.NoUserInfo && u.User != nil {
		return nil, &Error{Value: v, Reason: "must not carry user info"}
	}
	if rules.HTTPSOrLoopback && u.Scheme != "https" && !IsLoopback(u.Hostname()) {
		return nil, &Error{Value: v, Reason: "must use https (plain http only for a loopback address)"}
	}
	return u, nil
}

// IsLoopback reports whether host (a URL's Hostname, without port or
// brackets) is localhost or a loopback IP address.
func IsLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// Check is Parse for callers that keep v as it is.
func Check(v string, rules Rules) error {
	_, err := Parse(v, rules)
	return err
}

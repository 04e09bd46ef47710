// Package nginx emits nginx configuration and certificate files for
// deployments that keep nginx at the edge, as the original thon did: one
// server block on 80/443 with a location per sandbox, proxying to the
// sandbox's port on 127.0.0.1 with WebSocket headers, unbuffered and with
// long timeouts, and the root CA served at /ca.crt.
//
// Render produces the configuration text; Writer puts it, the certificate
// files and a sites-enabled link on disk and records every path it created
// in a manifest, so that Cleanup removes exactly those. Test, Reload and
// Inspect drive the nginx binary.
package nginx

import (
	"fmt"
	"net/netip"
	"path/filepath"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Site is one nginx server block serving every sandbox.
type Site struct {
	// ServerName is the domain of the site, or "_" (the default) when
	// participants use an IP address.
	ServerName string `json:"server_name,omitempty"`

	// ListenAddr is the IP address the listen directives bind to. Empty
	// means every interface, as the original did.
	ListenAddr string `json:"listen_addr,omitempty"`

	// HTTPPort and HTTPSPort are the listening ports; 0 means 80 and 443.
	HTTPPort  int `json:"http_port,omitempty"`
	HTTPSPort int `json:"https_port,omitempty"`

	// ListenIPv6 adds `listen [::]:<HTTPSPort> ssl;` like the original.
	// Production callers set it; it cannot be combined with ListenAddr.
	ListenIPv6 bool `json:"listen_ipv6,omitempty"`

	// CertFile and KeyFile are the absolute paths of the certificate chain
	// and its private key.
	CertFile string `json:"cert_file,omitempty"`
	KeyFile  string `json:"key_file,omitempty"`

	// CAFile, when set, is the absolute path of the root CA certificate,
	// served at /ca.crt so participants can import it.
	CAFile string `json:"ca_file,omitempty"`

	// ExternalIP is the address participants use when ServerName is "_".
	// It only names the certificate files Writer creates
	// (thon-<sha256(ip)[:8]>.pem, as the original); Render does not emit it.
	ExternalIP string `json:"external_ip,omitempty"`

	// Sandboxes are the proxied sandboxes, one location each. Render sorts
	// them by port, so the order given does not change the output.
	Sandboxes []Location `json:"sandboxes,omitempty"`
}

// Location is one sandbox: /<Port>/ is proxied, prefix stripped, to
// http://127.0.0.1:<Port>/, and so is /s/<Group>/<User>/ when both names
// are set. Each prefix without its trailing slash redirects to it.
type Location struct {
	Port  int    `json:"port"`
	Group string `json:"group,omitempty"`
	User  string `json:"user,omitempty"`
}

// FieldError is an invalid input value. Field is the JSON name of the
// field, such as "server_name" or "sandboxes[2].port".
type FieldError struct {
	Field string
	Msg   string
}

// Error returns Field + ": " + Msg.
func (e *FieldError) Error() string { return e.Field + ": " + e.Msg }

func fieldErr(field, format string, args ...any) *FieldError {
	return &FieldError{Field: field, Msg: fmt.Sprintf(format, args...)}
}

// Default ports of the site.
const (
	DefaultHTTPPort  = 80
	DefaultHTTPSPort = 443
)

// normalized returns s with defaults applied, or the first invalid field.
// It never modifies s.Sandboxes in place.
func (s Site) normalized() (Site, error) {
	if s.ServerName == "" {
		s.ServerName = "_"
	}
	if s.HTTPPort == 0 {
		s.HTTPPort = DefaultHTTPPort
	}
	if s.HTTPSPort == 0 {
		s.HTTPSPort = DefaultHTTPSPort
	}
	if msg := serverNameProblem(s.ServerName); msg != "" {
		return s, fieldErr("server_name", "%s", msg)
	}
	if s.ListenAddr != "" {
		if msg := ipProblem(s.ListenAddr); msg != "" {
			return s, fieldErr("listen_addr", "%s", msg)
		}
		if s.ListenIPv6 {
			return s, fieldErr("listen_ipv6", "cannot be combined with listen_addr %q; listen on [::] needs an empty listen_addr", s.ListenAddr)
		}
	}
	if !validPort(s.HTTPPort) {
		return s, fieldErr("http_port", "must be 1..65535 (0 means %d), got %d", DefaultHTTPPort, s.HTTPPort)
	}
	if !validPort(s.HTTPSPort) {
		return s, fieldErr("https_port", "must be 1..65535 (0 means %d), got %d", DefaultHTTPSPort, s.HTTPSPort)
	}
	if s.HTTPPort == s.HTTPSPort {
		return s, fieldErr("https_port", "must differ from http_port (both %d)", s.HTTPPort)
	}
	if s.CertFile == "" {
		return s, fieldErr("cert_file", "required")
	}
	if msg := pathProblem(s.CertFile); msg != "" {
		return s, fieldErr("cert_file", "%s", msg)
	}
	if s.KeyFile == "" {
		return s, fieldErr("key_file", "required")
	}
	if msg := pathProblem(s.KeyFile); msg != "" {
		return s, fieldErr("key_file", "%s", msg)
	}
	if s.CAFile != "" {
		if msg := pathProblem(s.CAFile); msg != "" {
			return s, fieldErr("ca_file", "%s", msg)
		}
	}
	if s.ExternalIP != "" {
		if msg := ipProblem(s.ExternalIP); msg != "" {
			return s, fieldErr("external_ip", "%s", msg)
		}
	}

	locs := make([]Location, len(s.Sandboxes))
	copy(locs, s.Sandboxes)
	byPort := make(map[int]int, len(locs))
	byName := make(map[[2]string]int, len(locs))
	for i, l := range locs {
		field := fmt.Sprintf("sandboxes[%d]", i)
		if !validPort(l.Port) {
			return s, fieldErr(field+".port", "must be 1..65535, got %d", l.Port)
		}
		if j, dup := byPort[l.Port]; dup {
			return s, fieldErr(field+".port", "port %d is already used by sandboxes[%d]", l.Port, j)
		}
		byPort[l.Port] = i
		if l.Group == "" && l.User == "" {
			continue
		}
		if l.Group == "" {
			return s, fieldErr(field+".group", "required when user is set")
		}
		if l.User == "" {
			return s, fieldErr(field+".user", "required when group is set")
		}
		if msg := nameProblem(l.Group); msg != "" {
			return s, fieldErr(field+".group", "%s", msg)
		}
		if msg := nameProblem(l.User); msg != "" {
			return s, fieldErr(field+".user", "%s", msg)
		}
		key := [2]string{l.Group, l.User}
		if j, dup := byName[key]; dup {
			return s, fieldErr(field+".user", "%s/%s is already used by sandboxes[%d]", l.Group, l.User, j)
		}
		byName[key] = i
	}
	s.Sandboxes = locs
	return s, nil
}

func validPort(p int) bool { return p >= 1 && p <= 65535 }

// maxServerName is the length limit of a DNS name.
const maxServerName = 253

// serverNameProblem accepts "_", a host name (letters, digits, '-', '_'
// and '.', optionally starting with "*."), an IPv4 address, or an IPv6
// address in brackets. Everything nginx would read as syntax is refused.
func serverNameProblem(name string) string {
	if name == "_" {
		return ""
	}
	if len(name) > maxServerName {
		return fmt.Sprintf("invalid %.40q...: longer than %d characters", name, maxServerName)
	}
	if strings.HasPrefix(name, "[") && strings.HasSuffix(name, "]") {
		a, err := netip.ParseAddr(name[1 : len(name)-1])
		if err != nil || !a.Is6() || a.Zone() != "" {
			return fmt.Sprintf("invalid %q: not an IPv6 address in brackets", name)
		}
		return ""
	}
	host := strings.TrimPrefix(name, "*.")
	for label := range strings.SplitSeq(host, ".") {
		if label == "" {
			return fmt.Sprintf("invalid %q: empty label", name)
		}
		if len(label) > 63 {
			return fmt.Sprintf("invalid %q: label longer than 63 characters", name)
		}
		for _, r := range label {
			if !isNameRune(r) {
				return fmt.Sprintf("invalid %q: may contain only letters, digits, '-', '_' and '.', with an optional leading \"*.\"", name)
			}
		}
		if label[0] == '-' || label[len(label)-1] == '-' {
			return fmt.Sprintf("invalid %q: a label must not start or end with '-'", name)
		}
	}
	return ""
}

// nameProblem checks a group or user name, which becomes part of a
// location path: letters, digits, '-', '_' and '.', not starting with '.'.
func nameProblem(name string) string {
	if name == "" {
		return "must not be empty"
	}
	if len(name) > 63 {
		return fmt.Sprintf("invalid %.40q...: longer than 63 characters", name)
	}
	for _, r := range name {
		if !isNameRune(r) && r != '.' {
			return fmt.Sprintf("invalid %q: may contain only letters, digits, '-', '_' and '.'", name)
		}
	}
	if name[0] == '.' {
		return fmt.Sprintf("invalid %q: must not start with '.'", name)
	}
	return ""
}

func isNameRune(r rune) bool {
	return r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_'
}

func ipProblem(s string) string {
	a, err := netip.ParseAddr(s)
	if err != nil || a.Zone() != "" {
		return fmt.Sprintf("invalid %q: not an IP address", s)
	}
	return ""
}

// pathProblem requires an absolute, clean path made of printable
// characters other than space and the ones nginx reads as syntax or
// variables: ; { } ' " \ $ #.
func pathProblem(p string) string {
	if !utf8.ValidString(p) {
		return fmt.Sprintf("invalid %q: not valid UTF-8", p)
	}
	for _, r := range p {
		if r == ' ' || !unicode.IsPrint(r) || strings.ContainsRune(`;{}'"\$#`, r) {
			return fmt.Sprintf("invalid %q: must not contain whitespace, control characters or any of ; { } ' \" \\ $ #", p)
		}
	}
	if !filepath.IsAbs(p) {
		return fmt.Sprintf("invalid %q: must be an absolute path", p)
	}
	if filepath.Clean(p) != p {
		return fmt.Sprintf("invalid %q: not a clean path (use %q)", p, filepath.Clean(p))
	}
	return ""
}

package sandboxes

import (
	"fmt"
	"net"
	"strconv"
	"strings"
)

// Network modes of an endpoint, detected as the original did: an endpoint
// with a path after the port is reached through a bridge proxy.
const (
	ModeHost   = "host"   // 127.0.0.1:8443
	ModeBridge = "bridge" // 127.0.0.1:52322/proxy/8443
)

// Endpoint is a sandbox address that came from elsewhere (an imported
// record, an external sandbox server), in either of the original's forms.
type Endpoint struct {
	Mode string
	Host string
	Port int    // the host-side port: the one to proxy to
	Path string // for bridge endpoints, the path after the port ("/proxy/8443")
	// InnerPort is the port inside the sandbox, after /proxy/ in a bridge
	// endpoint, or Port in host mode.
	InnerPort int
}

// ParseEndpoint detects the mode of an endpoint string: "host:port" is
// host mode, "host:port/path" bridge mode. A scheme prefix is tolerated.
func ParseEndpoint(s string) (Endpoint, error) {
	raw := s
	s = strings.TrimSpace(s)
	if i := strings.Index(s, "://"); i >= 0 {
		s = s[i+3:]
	}
	hostport, path, bridged := strings.Cut(s, "/")
	host, portStr, err := net.SplitHostPort(hostport)
	if err != nil {
		return Endpoint{}, fmt.Errorf("endpoint %q: %v", raw, err)
	}
	if host == "" {
		return Endpoint{}, fmt.Errorf("endpoint %q: missing host", raw)
	}
	port, err := parsePort(portStr)
	if err != nil {
		return Endpoint{}, fmt.Errorf("endpoint %q: %v", raw, err)
	}
	ep := Endpoint{Mode: ModeHost, Host: host, Port: port, InnerPort: port}
	if !bridged {
		return ep, nil
	}
	path = strings.TrimSuffix(path, "/")
	if path == "" {
		return ep, nil // "host:port/" is still host mode
	}
	ep.Mode = ModeBridge
	ep.Path = "/" + path
	if inner, ok := strings.CutPrefix(path, "proxy/"); ok {
		p, err := parsePort(inner)
		if err != nil {
			return Endpoint{}, fmt.Errorf("endpoint %q: inner port: %v", raw, err)
		}
		ep.InnerPort = p
	} else {
		ep.InnerPort = 0
	}
	return ep, nil
}

// URLPath is the path participants use behind the edge proxy: /<port>/ in
// host mode, /<port>/proxy/<inner>/ in bridge mode.
func (e Endpoint) URLPath() string {
	if e.Mode == ModeBridge {
		return "/" + strconv.Itoa(e.Port) + e.Path + "/"
	}
	return "/" + strconv.Itoa(e.Port) + "/"
}

func parsePort(s string) (int, error) {
	p, err := strconv.Atoi(s)
	if err != nil || p < 1 || p > 65535 {
		return 0, fmt.Errorf("port %q is not a number from 1 to 65535", s)
	}
	return p, nil
}

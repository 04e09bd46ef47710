package nginx

import (
	"bytes"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
)

// header opens every rendered file.
const header = `# Written by thon: one server block proxying every sandbox.
# thon rewrites this file when sandboxes change; "thon nginx --cleanup" removes it.
`

// Render returns the nginx configuration of s: the original thon's layout
// (one server block listening on the HTTP and HTTPS ports, /ca.crt when
// CAFile is set, then for each sandbox a redirect from the bare prefix and
// a proxying location). The output depends only on s; sandboxes are
// ordered by port. Invalid input returns a *FieldError and no output.
func Render(s Site) ([]byte, error) {
	s, err := s.normalized()
	if err != nil {
		return nil, err
	}
	slices.SortFunc(s.Sandboxes, func(a, b Location) int { return a.Port - b.Port })

	var b bytes.Buffer
	b.WriteString(header)
	b.WriteString("server {\n")
	fmt.Fprintf(&b, "    listen %s;\n", listenAddr(s.ListenAddr, s.HTTPPort))
	fmt.Fprintf(&b, "    listen %s ssl;\n", listenAddr(s.ListenAddr, s.HTTPSPort))
	if s.ListenIPv6 {
		fmt.Fprintf(&b, "    listen [::]:%d ssl;\n", s.HTTPSPort)
	}
	fmt.Fprintf(&b, "    server_name %s;\n", s.ServerName)
	fmt.Fprintf(&b, "    ssl_certificate %s;\n", s.CertFile)
	fmt.Fprintf(&b, "    ssl_certificate_key %s;\n", s.KeyFile)
	b.WriteString("    ssl_protocols TLSv1.2 TLSv1.3;\n")
	b.WriteString("    ssl_ciphers HIGH:!aNULL:!MD5;\n")
	if s.CAFile != "" {
		b.WriteString("\n    location = /ca.crt {\n")
		fmt.Fprintf(&b, "        alias %s;\n", s.CAFile)
		b.WriteString("        default_type application/x-x509-ca-cert;\n")
		b.WriteString("        add_header Content-Disposition 'attachment; filename=\"rootCA.crt\"';\n")
		b.WriteString("    }\n")
	}
	for _, l := range s.Sandboxes {
		writeLocation(&b, "/"+strconv.Itoa(l.Port), l.Port)
		if l.Group != "" {
			writeLocation(&b, "/s/"+l.Group+"/"+l.User, l.Port)
		}
	}
	b.WriteString("}\n")
	return b.Bytes(), nil
}

// listenAddr is the argument of a listen directive: the port alone when
// addr is empty (every interface), else addr:port with IPv6 bracketed.
func listenAddr(addr string, port int) string {
	if addr == "" {
		return strconv.Itoa(port)
	}
	return netip.AddrPortFrom(netip.MustParseAddr(addr), uint16(port)).String()
}

// writeLocation writes the redirect of prefix to prefix + "/" (keeping the
// query; relative, so it holds behind port mappings) and the original's
// proxying location for prefix + "/", whose proxy_pass URI "/" strips the
// prefix.
func writeLocation(b *bytes.Buffer, prefix string, port int) {
	fmt.Fprintf(b, "\n    location = %s {\n", prefix)
	b.WriteString("        absolute_redirect off;\n")
	fmt.Fprintf(b, "        return 301 %s/$is_args$args;\n", prefix)
	b.WriteString("    }\n")

	fmt.Fprintf(b, "\n    location %s/ {\n", prefix)
	fmt.Fprintf(b, "        proxy_pass http://127.0.0.1:%d/;\n", port)
	b.WriteString(`        proxy_http_version 1.1;
        proxy_set_header Upgrade $http_upgrade;
        proxy_set_header Connection "upgrade";
        proxy_set_header Host $http_host;
        proxy_set_header X-Real-IP $remote_addr;
        proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
        proxy_set_header X-Forwarded-Proto $scheme;
        proxy_set_header X-Forwarded-Host $http_host;
        proxy_set_header Accept-Encoding gzip;
        proxy_redirect default;
        add_header Service-Worker-Allowed /;
        proxy_ssl_verify off;
        proxy_read_timeout 86400;
        proxy_send_timeout 86400;
        proxy_buffering off;
        proxy_request_buffering off;
    }
`)
}

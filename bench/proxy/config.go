package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/thon-dev/thon/bench/internal/benchkit"
	"github.com/thon-dev/thon/sandboxes/nginx"
)

// thonCaddyfile is thon with its sandbox route on a loopback site.
func thonCaddyfile(admin, site, siteFlush, portStart int, dataDir, image string, memoryMiB int, cpus float64) string {
	global := fmt.Sprintf(`	skip_install_trust
	thon {
		data_dir %s
		image %s
		port_range %d %d
		memory %dMiB
		cpus %s
		pids 256
	}
`, dataDir, image, portStart, portStart+19, memoryMiB, strconv.FormatFloat(cpus, 'f', -1, 64))
	return benchkit.Caddyfile(admin, global, fmt.Sprintf(`http://:%d {
	bind 127.0.0.1
	thon_sandbox
	respond "not a sandbox" 404
}

http://:%d {
	bind 127.0.0.1
	thon_sandbox {
		flush_interval -1
	}
	respond "not a sandbox" 404
}
`, site, siteFlush))
}

// caddyCaddyfile is plain Caddy: reverse_proxy to the sandbox's port,
// nothing else, on one site; and, on a second, the same with the settings
// thon_sandbox gives its proxy (prefix stripped, stream timeouts,
// Service-Worker-Allowed), from a static upstream.
func caddyCaddyfile(admin, plain, static, sandboxPort int, prefix string) string {
	return benchkit.Caddyfile(admin, "", fmt.Sprintf(`http://:%d {
	bind 127.0.0.1
	reverse_proxy 127.0.0.1:%d
}

http://:%d {
	bind 127.0.0.1
	handle_path %s/* {
		reverse_proxy 127.0.0.1:%d {
			stream_close_delay 5m
			stream_timeout 48h
			header_down Service-Worker-Allowed /
		}
	}
	respond "not a sandbox" 404
}
`, plain, sandboxPort, static, prefix, sandboxPort))
}

// writeNginxSite writes thon's nginx emission for one sandbox under dir
// (sites-available, sites-enabled, ssl) with a throwaway certificate, and
// the main configuration; it returns the main configuration's path.
func writeNginxSite(dir string, httpPort, httpsPort, keepalivePort, sandboxPort int, group, user string) (string, error) {
	w := nginx.Writer{
		SitesAvailable: filepath.Join(dir, "sites-available"),
		SitesEnabled:   filepath.Join(dir, "sites-enabled"),
		SSLDir:         filepath.Join(dir, "ssl"),
	}
	for _, d := range []string{w.SitesAvailable, w.SitesEnabled} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return "", err
		}
	}
	certPEM, keyPEM, err := selfSigned()
	if err != nil {
		return "", err
	}
	site := nginx.Site{
		ListenAddr: "127.0.0.1",
		HTTPPort:   httpPort,
		HTTPSPort:  httpsPort,
		ExternalIP: "127.0.0.1",
		Sandboxes:  []nginx.Location{{Port: sandboxPort, Group: group, User: user}},
	}
	if _, err := w.Write(site, certPEM, keyPEM, nil); err != nil {
		return "", err
	}
	tuned := nginxKeepaliveSite(keepalivePort, sandboxPort, "/s/"+group+"/"+user)
	if err := os.WriteFile(filepath.Join(w.SitesEnabled, "bench-keepalive"), []byte(tuned), 0o644); err != nil {
		return "", err
	}
	// Every site of sites-enabled: thon's and the tuned one.
	return benchkit.WriteNginxConf(dir, "    include "+w.SitesEnabled+"/*;\n")
}

// nginxKeepaliveSite is a hand-written nginx server block for the same
// sandbox, tuned as nginx's documentation advises for proxying with
// WebSockets: an upstream with keepalive connections, and Connection:
// upgrade only on upgrade requests, so other requests reuse upstream
// connections. It goes into sites-enabled next to thon's site.
func nginxKeepaliveSite(port, sandboxPort int, prefix string) string {
	return fmt.Sprintf(`map $http_upgrade $thon_bench_connection {
    default upgrade;
    ''      '';
}
upstream thon_bench_sandbox {
    server 127.0.0.1:%d;
    keepalive 64;
}
server {
    listen 127.0.0.1:%d;
    location %s/ {
        proxy_pass http://thon_bench_sandbox/;
        proxy_http_version 1.1;
        proxy_set_header Upgrade $http_upgrade;
        proxy_set_header Connection $thon_bench_connection;
        proxy_set_header Host $http_host;
        proxy_set_header X-Real-IP $remote_addr;
        proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
        proxy_set_header X-Forwarded-Proto $scheme;
        add_header Service-Worker-Allowed /;
        proxy_read_timeout 86400;
        proxy_send_timeout 86400;
        proxy_buffering off;
        proxy_request_buffering off;
    }
}
`, sandboxPort, port, prefix)
}

// selfSigned is a certificate for 127.0.0.1 the HTTPS listener needs; the
// benchmark speaks plain HTTP.
func selfSigned() (certPEM, keyPEM []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "127.0.0.1"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, err
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), nil
}

package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/thon-dev/thon/sandboxes/nginx"
)

// proc is a server process this benchmark started.
type proc struct {
	name   string
	cmd    *exec.Cmd
	log    string // its stdout and stderr
	exited chan error
}

// startProc starts bin with args in its own process group, output to
// logPath.
func startProc(name, logPath string, env []string, bin string, args ...string) (*proc, error) {
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Env = env
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("starting %s: %v", name, err)
	}
	p := &proc{name: name, cmd: cmd, log: logPath, exited: make(chan error, 1)}
	go func() {
		p.exited <- cmd.Wait()
		logf.Close()
	}()
	return p, nil
}

// stop ends the process: SIGTERM, then SIGKILL to its group after 15s.
func (p *proc) stop() {
	if p == nil {
		return
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(15 * time.Second):
		syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		<-p.exited
	}
}

// tail is the end of the process's log, for error messages.
func (p *proc) tail() string {
	b, _ := os.ReadFile(p.log)
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return string(b)
}

// waitHTTP waits until url answers with status want, or the process
// exits, or timeout passes.
func (p *proc) waitHTTP(ctx context.Context, url string, want int, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	client := &http.Client{Timeout: 2 * time.Second}
	var last string
	for {
		resp, err := client.Get(url)
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == want {
				return nil
			}
			last = resp.Status
		} else {
			last = err.Error()
		}
		select {
		case err := <-p.exited:
			p.exited <- err
			return fmt.Errorf("%s exited (%v):\n%s", p.name, err, p.tail())
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: %s does not answer %d within %v (last: %s)\n%s", p.name, url, want, timeout, last, p.tail())
		}
	}
}

// freePort returns a loopback port that was free a moment ago.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// buildThon builds ./cmd/thon into dir, as `make build` does.
func buildThon(ctx context.Context, goBin, dir string) (string, error) {
	out := filepath.Join(dir, "thon")
	cmd := exec.CommandContext(ctx, goBin, "build", "-tags", "nobadger,nomysql,nopgx", "-o", out, "./cmd/thon")
	var b bytes.Buffer
	cmd.Stdout, cmd.Stderr = &b, &b
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("go build ./cmd/thon: %v\n%s", err, b.String())
	}
	return out, nil
}

// thonCaddyfile is thon with its sandbox route on a loopback site.
func thonCaddyfile(admin, site, siteFlush, portStart int, dataDir, image string, memoryMiB int, cpus float64) string {
	return fmt.Sprintf(`{
	admin localhost:%d
	persist_config off
	skip_install_trust
	thon {
		data_dir %s
		image %s
		port_range %d %d
		memory %dMiB
		cpus %s
		pids 256
	}
}

http://:%d {
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
`, admin, dataDir, image, portStart, portStart+19, memoryMiB, strconv.FormatFloat(cpus, 'f', -1, 64), site, siteFlush)
}

// caddyCaddyfile is plain Caddy: reverse_proxy to the sandbox's port,
// nothing else, on one site; and, on a second, the same with the settings
// thon_sandbox gives its proxy (prefix stripped, stream timeouts,
// Service-Worker-Allowed), from a static upstream.
func caddyCaddyfile(admin, plain, static, sandboxPort int, prefix string) string {
	return fmt.Sprintf(`{
	admin localhost:%d
	persist_config off
}

http://:%d {
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
`, admin, plain, sandboxPort, static, prefix, sandboxPort)
}

// nginxMainConf is nginx.conf for the benchmark: nginx's files under dir,
// one worker per CPU as Caddy uses every CPU, no access log (Caddy logs
// none by default), and the site thon emits.
func nginxMainConf(dir, sitesEnabled string) string {
	user := ""
	if os.Geteuid() == 0 {
		user = "user root;\n"
	}
	return fmt.Sprintf(`%sworker_processes auto;
pid %[2]s/nginx.pid;
error_log %[2]s/error.log warn;
events {
    worker_connections 4096;
}
http {
    access_log off;
    client_body_temp_path %[2]s/temp/body;
    proxy_temp_path %[2]s/temp/proxy;
    fastcgi_temp_path %[2]s/temp/fastcgi;
    uwsgi_temp_path %[2]s/temp/uwsgi;
    scgi_temp_path %[2]s/temp/scgi;
    include %[3]s/*;
}
`, user, dir, sitesEnabled)
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
	for _, d := range []string{w.SitesAvailable, w.SitesEnabled, filepath.Join(dir, "temp")} {
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
	conf := filepath.Join(dir, "nginx.conf")
	return conf, os.WriteFile(conf, []byte(nginxMainConf(dir, w.SitesEnabled)), 0o644)
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

// admin calls thon's admin API and decodes the JSON answer into v.
func admin(ctx context.Context, port int, method, path, contentType string, body []byte, v any) error {
	req, err := http.NewRequestWithContext(ctx, method, fmt.Sprintf("http://localhost:%d%s", port, path), bytes.NewReader(body))
	if err != nil {
		return err
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := (&http.Client{Timeout: 3 * time.Minute}).Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode >= 300 {
		return fmt.Errorf("%s %s: %s: %s", method, path, resp.Status, strings.TrimSpace(string(b)))
	}
	if v == nil {
		return nil
	}
	return json.Unmarshal(b, v)
}

// removeGroup removes the containers and volumes thon made for group.
func removeGroup(group string) {
	for _, args := range [][]string{
		{"ps", "-aq", "--filter", "label=thon.group=" + group},
		{"volume", "ls", "-q", "--filter", "label=thon.group=" + group},
	} {
		out, err := exec.Command("docker", args...).Output()
		if err != nil {
			continue
		}
		ids := strings.Fields(string(out))
		if len(ids) == 0 {
			continue
		}
		rm := []string{"rm", "-f"}
		if args[0] == "volume" {
			rm = []string{"volume", "rm", "-f"}
		}
		exec.Command("docker", append(rm, ids...)...).Run()
	}
}

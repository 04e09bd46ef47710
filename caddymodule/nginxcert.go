package caddymodule

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddypki"

	"github.com/thon-dev/thon/sandboxes/nginx"
)

func init() {
	caddy.RegisterModule(nginxCertAdmin{})
}

// Lifetimes of the certificates issued for nginx.
const (
	// nginxCertLifetime stays within the 398 days browsers accept.
	nginxCertLifetime = 397 * 24 * time.Hour
	// nginxCertRenewBefore: a certificate closer than this to its end is
	// replaced by the next write.
	nginxCertRenewBefore = 30 * 24 * time.Hour
)

// nginxCertNames are added to every certificate issued for nginx, so the
// site also verifies when reached from the machine itself.
var nginxCertNames = []string{"localhost", "127.0.0.1"}

// localCA is Caddy's local CA in ctx's config: the PKI app's when the
// config loaded it (tls internal, thon_ca_cert), else provisioned from
// storage as Caddy's own /pki/ca/local admin route does, so it is the same
// CA either way.
func localCA(ctx caddy.Context) (*caddypki.CA, error) {
	if app, err := ctx.AppIfConfigured("pki"); err == nil {
		if ca, ok := app.(*caddypki.PKI).CAs[caddypki.DefaultCAID]; ok {
			return ca, nil
		}
	}
	ca := new(caddypki.CA)
	if err := ca.Provision(ctx, caddypki.DefaultCAID, ctx.Logger()); err != nil {
		return nil, fmt.Errorf("provisioning the local CA: %w", err)
	}
	return ca, nil
}

// issueOrKeep returns current when it is still good for names under ca's
// root, else a new certificate signed by the root.
func issueOrKeep(ca *caddypki.CA, names []string, current nginx.KeyPair, now time.Time) (nginx.KeyPair, error) {
	root := ca.RootCertificate()
	rootPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: root.Raw})
	if keepLeaf(current, root, names, now) {
		current.CA = rootPEM
		return current, nil
	}
	key, err := ca.RootKey()
	if err != nil {
		return nginx.KeyPair{}, fmt.Errorf("loading the local CA's root key: %w", err)
	}
	certPEM, keyPEM, err := issueLeaf(root, key, names, now)
	if err != nil {
		return nginx.KeyPair{}, err
	}
	return nginx.KeyPair{Cert: certPEM, Key: keyPEM, CA: rootPEM}, nil
}

// issueLeaf signs a server certificate for names (IP addresses and DNS
// names) plus localhost and 127.0.0.1 with the root CA directly: an nginx
// site keeps its files for months, longer than Caddy's intermediates live
// (7 days). The key is ECDSA P-256; the lifetime 397 days, cut to the
// root's.
func issueLeaf(root *x509.Certificate, rootKey crypto.Signer, names []string, now time.Time) (certPEM, keyPEM []byte, err error) {
	if err := checkCertNames(names); err != nil {
		return nil, nil, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		return nil, nil, err
	}
	notAfter := now.Add(nginxCertLifetime)
	if root.NotAfter.Before(notAfter) {
		notAfter = root.NotAfter
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: names[0], Organization: []string{"thon"}},
		NotBefore:             now.Add(-time.Hour), // clock skew
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
	}
	for _, n := range allCertNames(names) {
		if ip := net.ParseIP(n); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, n)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, root, &key.PublicKey, rootKey)
	if err != nil {
		return nil, nil, fmt.Errorf("signing the certificate: %w", err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), nil
}

// allCertNames is names followed by nginxCertNames, without repeats.
func allCertNames(names []string) []string {
	out := slices.Clone(names)
	for _, n := range nginxCertNames {
		if !slices.Contains(out, n) {
			out = append(out, n)
		}
	}
	return out
}

// keepLeaf reports whether kp is a key pair whose certificate was signed
// by root, covers every name, and stays valid for nginxCertRenewBefore.
func keepLeaf(kp nginx.KeyPair, root *x509.Certificate, names []string, now time.Time) bool {
	if len(kp.Cert) == 0 || len(kp.Key) == 0 {
		return false
	}
	pair, err := tls.X509KeyPair(kp.Cert, kp.Key)
	if err != nil || len(pair.Certificate) == 0 {
		return false
	}
	leaf, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil || now.Add(nginxCertRenewBefore).After(leaf.NotAfter) || now.Before(leaf.NotBefore) {
		return false
	}
	if !bytes.Equal(leaf.RawIssuer, root.RawSubject) || leaf.CheckSignatureFrom(root) != nil {
		return false
	}
	for _, n := range allCertNames(names) {
		if leaf.VerifyHostname(n) != nil {
			return false
		}
	}
	return true
}

// maxCertNames bounds the names of one certificate request.
const maxCertNames = 20

// checkCertNames accepts 1 to maxCertNames names, each an IP address or a
// DNS name (a leading "*." allowed).
func checkCertNames(names []string) error {
	if len(names) == 0 {
		return errors.New("names: at least one name is required")
	}
	if len(names) > maxCertNames {
		return fmt.Errorf("names: at most %d names, got %d", maxCertNames, len(names))
	}
	for i, n := range names {
		if net.ParseIP(n) != nil {
			continue
		}
		if !validDNSName(strings.TrimPrefix(n, "*.")) {
			return fmt.Errorf("names[%d]: %q is neither an IP address nor a DNS name", i, n)
		}
	}
	return nil
}

func validDNSName(s string) bool {
	if s == "" || len(s) > 253 {
		return false
	}
	for label := range strings.SplitSeq(s, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for _, r := range label {
			if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-') {
				return false
			}
		}
	}
	return true
}

// nginxCertAdmin issues certificates for `thon nginx` on the admin
// endpoint, which the command reaches as any other admin client:
//
//	POST /thon/nginx/certificate {"names": ["203.0.113.7"]}
//	→ {"certificate": "<PEM>", "key": "<PEM>", "ca": "<root PEM>"}
//
// The certificate is signed by Caddy's local CA (see issueLeaf). Like
// the rest of the admin API, which can load any configuration, it is for
// the machine's administrators only.
type nginxCertAdmin struct {
	ctx caddy.Context
}

// CaddyModule returns the Caddy module information.
func (nginxCertAdmin) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "admin.api.thon_nginx",
		New: func() caddy.Module { return new(nginxCertAdmin) },
	}
}

// Provision keeps the config's context, whose storage holds the CA.
func (a *nginxCertAdmin) Provision(ctx caddy.Context) error {
	a.ctx = ctx
	return nil
}

// nginxCertPath is the admin route of nginxCertAdmin.
const nginxCertPath = "/thon/nginx/certificate"

// Routes returns the admin route.
func (a *nginxCertAdmin) Routes() []caddy.AdminRoute {
	return []caddy.AdminRoute{{Pattern: nginxCertPath, Handler: caddy.AdminHandlerFunc(a.serve)}}
}

// nginxCertRequest is the body of POST /thon/nginx/certificate.
type nginxCertRequest struct {
	Names []string `json:"names"`
}

// nginxCertResponse is its answer.
type nginxCertResponse struct {
	Certificate string `json:"certificate"`
	Key         string `json:"key"`
	CA          string `json:"ca"`
}

// maxCertRequest bounds the request body.
const maxCertRequest = 64 << 10

func (a *nginxCertAdmin) serve(w http.ResponseWriter, r *http.Request) error {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		return caddy.APIError{HTTPStatus: http.StatusMethodNotAllowed, Err: fmt.Errorf("method %s not allowed; use POST", r.Method)}
	}
	req, err := decodeCertRequest(http.MaxBytesReader(w, r.Body, maxCertRequest))
	if err != nil {
		return caddy.APIError{HTTPStatus: http.StatusBadRequest, Err: err}
	}
	ca, err := localCA(a.ctx)
	if err != nil {
		return caddy.APIError{HTTPStatus: http.StatusInternalServerError, Err: err}
	}
	kp, err := issueOrKeep(ca, req.Names, nginx.KeyPair{}, time.Now())
	if err != nil {
		return caddy.APIError{HTTPStatus: http.StatusInternalServerError, Err: err}
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	return json.NewEncoder(w).Encode(nginxCertResponse{Certificate: string(kp.Cert), Key: string(kp.Key), CA: string(kp.CA)})
}

// decodeCertRequest reads one JSON object with valid names and no unknown
// fields.
func decodeCertRequest(body io.Reader) (nginxCertRequest, error) {
	var req nginxCertRequest
	dec := json.NewDecoder(body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		return req, fmt.Errorf("request body: %w", err)
	}
	if dec.More() {
		return req, errors.New("request body: more than one JSON value")
	}
	if err := checkCertNames(req.Names); err != nil {
		return req, err
	}
	return req, nil
}

// Interface guards
var (
	_ caddy.Provisioner = (*nginxCertAdmin)(nil)
	_ caddy.AdminRouter = (*nginxCertAdmin)(nil)
)

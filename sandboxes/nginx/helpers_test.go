package nginx

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"net"
	"testing"
	"time"
)

// testPKI is a root CA and a leaf certificate it signed.
type testPKI struct {
	caPEM, certPEM, keyPEM []byte
	pool                   *x509.CertPool
}

// newPKI makes an ECDSA root CA and a leaf for the given IP addresses.
func newPKI(t testing.TB, ips ...string) testPKI {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "thon test root"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, err := x509.ParseCertificate(caDER)
	if err != nil {
		t.Fatal(err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	leaf := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: "thon test site"},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	for _, ip := range ips {
		leaf.IPAddresses = append(leaf.IPAddresses, net.ParseIP(ip))
	}
	der, err := x509.CreateCertificate(rand.Reader, leaf, caCert, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	p := testPKI{
		caPEM:   pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}),
		certPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		keyPEM:  pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}),
		pool:    x509.NewCertPool(),
	}
	p.pool.AddCert(caCert)
	return p
}

// diffKeys returns the keys of b missing from a.
func diffKeys(a, b map[string]string) []string {
	var out []string
	for k := range b {
		if _, ok := a[k]; !ok {
			out = append(out, k)
		}
	}
	return out
}

// confDirective is one directive of a parsed nginx configuration.
type confDirective struct {
	name     string
	args     []string
	hasBlock bool
	block    []confDirective
}

// parseConf parses nginx configuration syntax as nginx tokenizes it:
// words separated by whitespace, '#' comments, single- or double-quoted
// strings (with backslash escapes) and the specials ';', '{' and '}'.
func parseConf(src string) ([]confDirective, error) {
	toks, err := confTokens(src)
	if err != nil {
		return nil, err
	}
	ds, rest, err := parseBlock(toks, false)
	if err != nil {
		return nil, err
	}
	if len(rest) > 0 {
		return nil, errors.New("unexpected }")
	}
	return ds, nil
}

type confToken struct {
	text    string
	special bool // ; { or } outside quotes
}

func confTokens(src string) ([]confToken, error) {
	var toks []confToken
	r := []rune(src)
	for i := 0; i < len(r); {
		c := r[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			i++
		case c == '#':
			for i < len(r) && r[i] != '\n' {
				i++
			}
		case c == ';' || c == '{' || c == '}':
			toks = append(toks, confToken{text: string(c), special: true})
			i++
		case c == '"' || c == '\'':
			quote := c
			var s []rune
			i++
			for ; i < len(r) && r[i] != quote; i++ {
				if r[i] == '\\' && i+1 < len(r) {
					i++
				}
				s = append(s, r[i])
			}
			if i >= len(r) {
				return nil, errors.New("unterminated quote")
			}
			i++
			toks = append(toks, confToken{text: string(s)})
		default:
			start := i
			for i < len(r) && !containsRune(" \t\n\r;{}", r[i]) {
				i++
			}
			toks = append(toks, confToken{text: string(r[start:i])})
		}
	}
	return toks, nil
}

func containsRune(s string, c rune) bool {
	for _, x := range s {
		if x == c {
			return true
		}
	}
	return false
}

// parseBlock reads directives until '}' (when inner) or the end.
func parseBlock(toks []confToken, inner bool) ([]confDirective, []confToken, error) {
	var ds []confDirective
	var words []string
	for len(toks) > 0 {
		tk := toks[0]
		toks = toks[1:]
		if !tk.special {
			words = append(words, tk.text)
			continue
		}
		switch tk.text {
		case ";":
			if len(words) == 0 {
				return nil, nil, errors.New("empty directive")
			}
			ds = append(ds, confDirective{name: words[0], args: words[1:]})
			words = nil
		case "{":
			if len(words) == 0 {
				return nil, nil, errors.New("block without a name")
			}
			children, rest, err := parseBlock(toks, true)
			if err != nil {
				return nil, nil, err
			}
			ds = append(ds, confDirective{name: words[0], args: words[1:], hasBlock: true, block: children})
			words = nil
			toks = rest
		case "}":
			if !inner {
				return nil, nil, errors.New("unexpected }")
			}
			if len(words) > 0 {
				return nil, nil, errors.New("directive without ;")
			}
			return ds, toks, nil
		}
	}
	if inner {
		return nil, nil, errors.New("unterminated block")
	}
	if len(words) > 0 {
		return nil, nil, errors.New("directive without ;")
	}
	return ds, nil, nil
}

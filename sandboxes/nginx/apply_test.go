package nginx

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/thon-dev/thon/internal/nginxtest"
	"github.com/thon-dev/thon/sandboxes"
)

func TestLocations(t *testing.T) {
	list := []sandboxes.Instance{
		{Group: "g", User: "a", State: sandboxes.StateRunning, Port: 9001},
		{Group: "g", User: "b", State: sandboxes.StatePaused, Port: 9002},
		{Group: "g", User: "c", State: sandboxes.StateTerminated, Port: 9003},
		{Group: "g", User: "d", State: sandboxes.StateStarting},
		{Group: "h", User: "e", State: sandboxes.StateStopped, Port: 9005},
	}
	got := Locations(list)
	want := []Location{{Port: 9001, Group: "g", User: "a"}, {Port: 9002, Group: "g", User: "b"}, {Port: 9005, Group: "h", User: "e"}}
	if !slices.Equal(got, want) {
		t.Errorf("locations %v, want %v", got, want)
	}
}

// keyPairs hands out a fixed key pair and records the current pairs it
// was given, standing where thon's internal CA does.
type keyPairs struct {
	pki  testPKI
	mu   sync.Mutex
	seen []KeyPair
	fail error
}

func (k *keyPairs) certificate(_ context.Context, _ []string, current KeyPair) (KeyPair, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.seen = append(k.seen, current)
	if k.fail != nil {
		return KeyPair{}, k.fail
	}
	return KeyPair{Cert: k.pki.certPEM, Key: k.pki.keyPEM, CA: k.pki.caPEM}, nil
}

// TestApplier drives Apply and Cleanup against a running nginx: a write
// that is tested, reloaded and served; the same again, which changes
// nothing; one nginx -t refuses, whose files are put back; a certificate
// that cannot be had; a reload that fails; and a cleanup that leaves the
// tree as it was.
func TestApplier(t *testing.T) {
	nginxtest.Require(t)
	l := newLayout(t)
	before := nginxtest.Tree(t, l.root)
	conf := nginxtest.StartSites(t, l.w.SitesEnabled)
	_, upPort := newUpstream(t, "alice")
	port := nginxtest.FreePorts(t, 2)
	kp := &keyPairs{pki: newPKI(t, "127.0.0.1")}
	o := Options{
		Writer:      l.w,
		Bin:         nginxtest.Bin,
		Conf:        conf,
		Site:        Site{ListenAddr: "127.0.0.1", HTTPPort: port[0], HTTPSPort: port[1], ExternalIP: "127.0.0.1"},
		Certificate: kp.certificate,
	}
	locs := []Location{{Port: upPort, Group: "team", User: "alice"}}
	var a Applier
	ctx := context.Background()

	res, err := a.Apply(ctx, o, locs)
	if err != nil {
		t.Fatal(err)
	}
	if res.Sandboxes != 1 || !res.Tested || !res.Reloaded || res.Result.Unchanged {
		t.Fatalf("first apply: %+v", res)
	}
	url := fmt.Sprintf("http://127.0.0.1:%d/s/team/alice/page", port[0])
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(url)
		if err == nil {
			var s seen
			derr := json.NewDecoder(resp.Body).Decode(&s)
			resp.Body.Close()
			if derr == nil && s.Name == "alice" && s.Path == "/page" {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("GET %s after the reload: %v", url, err)
		}
		time.Sleep(50 * time.Millisecond)
	}

	// The same again: nothing written, nothing reloaded; the certificate
	// callback was given what the first write left.
	res, err = a.Apply(ctx, o, locs)
	if err != nil || !res.Result.Unchanged || res.Reloaded || !res.Tested {
		t.Errorf("same apply: %+v %v", res, err)
	}
	if len(kp.seen) != 2 || kp.seen[0].Cert != nil || string(kp.seen[1].Cert) != string(kp.pki.certPEM) || string(kp.seen[1].Key) != string(kp.pki.keyPEM) {
		t.Errorf("current key pairs given: %d", len(kp.seen))
	}

	// nginx -t refuses: the previous files come back.
	written := nginxtest.Tree(t, l.root)
	bad := filepath.Join(t.TempDir(), "bad.conf")
	if err := os.WriteFile(bad, []byte("events {}\nhttp { "+nginxtest.IncludeSites(l.w.SitesEnabled)+" this_is_not_a_directive on; }\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	refused := o
	refused.Conf = bad
	refused.Site.ServerName = "sandboxes.test" // another file and certificate
	_, err = a.Apply(ctx, refused, append(locs, Location{Port: upPort + 1}))
	var se *StepError
	if !errors.As(err, &se) || se.Step != "test" || !se.Restored || !strings.Contains(err.Error(), "this_is_not_a_directive") {
		t.Errorf("refused apply: %v", err)
	}
	if after := nginxtest.Tree(t, l.root); !maps.Equal(after, written) {
		t.Errorf("a refused apply changed the files:\n got %v\nwant %v", after, written)
	}

	// No certificate: an *Error wrapping the callback's, nothing written.
	errNoCA := errors.New("no CA today")
	kp.fail = errNoCA
	_, err = a.Apply(ctx, o, nil)
	var ae *Error
	if !errors.As(err, &ae) || !errors.Is(err, errNoCA) || !strings.HasPrefix(err.Error(), "certificate: ") {
		t.Errorf("apply without a certificate: %v", err)
	}
	kp.fail = nil
	noNames := o
	noNames.Site.ExternalIP = ""
	if _, err := a.Apply(ctx, noNames, nil); !errors.As(err, &ae) || !strings.Contains(err.Error(), "external_ip or domain is required") {
		t.Errorf("apply with no name to certify: %v", err)
	}
	// A site that cannot be rendered: the field is named.
	badSite := o
	badSite.Site.HTTPSPort = badSite.Site.HTTPPort
	var fe *FieldError
	if _, err := a.Apply(ctx, badSite, nil); !errors.As(err, &ae) || !errors.As(err, &fe) || fe.Field != "https_port" {
		t.Errorf("apply of a bad site: %v", err)
	}
	if after := nginxtest.Tree(t, l.root); !maps.Equal(after, written) {
		t.Errorf("failed applies changed the files:\n got %v\nwant %v", after, written)
	}

	// A reload that fails (no nginx runs with this configuration's pid
	// file): the files are written and tested, the error says so.
	idle := nginxtest.WriteConf(t, t.TempDir(), nginxtest.IncludeSites(l.w.SitesEnabled))
	other := o
	other.Conf = idle
	_, err = a.Apply(ctx, other, nil)
	if !errors.As(err, &se) || se.Step != "reload" || !strings.Contains(err.Error(), "passed nginx -t") {
		t.Errorf("apply with a failing reload: %v", err)
	}

	// Cleanup removes exactly what was written, tests and reloads.
	cl, err := a.Cleanup(ctx, o)
	if err != nil || len(cl.Removed) == 0 || !cl.Tested || !cl.Reloaded {
		t.Errorf("cleanup: %+v %v", cl, err)
	}
	if after := nginxtest.Tree(t, l.root); !maps.Equal(after, before) {
		t.Errorf("after cleanup\n got %v\nwant %v", after, before)
	}
	cl, err = a.Cleanup(ctx, o)
	if err != nil || len(cl.Removed) != 0 || cl.Removed == nil || cl.Reloaded {
		t.Errorf("second cleanup: %+v %v", cl, err)
	}
}

// TestApplierSerialises runs applies of different sandbox lists at once
// through one Applier: each one succeeds, and what is left on disk is
// one of them whole, recorded by the manifest and accepted by nginx -t.
func TestApplierSerialises(t *testing.T) {
	nginxtest.Require(t)
	l := newLayout(t)
	conf := nginxtest.WriteConf(t, t.TempDir(), nginxtest.IncludeSites(l.w.SitesEnabled))
	pki := newPKI(t, "127.0.0.1")
	port := nginxtest.FreePorts(t, 2)
	o := Options{
		Writer: l.w,
		Bin:    nginxtest.Bin,
		Conf:   conf,
		Site:   Site{ListenAddr: "127.0.0.1", HTTPPort: port[0], HTTPSPort: port[1], ExternalIP: "127.0.0.1"},
		Certificate: func(context.Context, []string, KeyPair) (KeyPair, error) {
			return KeyPair{Cert: pki.certPEM, Key: pki.keyPEM, CA: pki.caPEM}, nil
		},
		NoReload: true,
	}
	var a Applier
	const n = 6
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			locs := make([]Location, i+1)
			for j := range locs {
				locs[j] = Location{Port: 20000 + j}
			}
			_, errs[i] = a.Apply(context.Background(), o, locs)
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("apply %d: %v", i, err)
		}
	}
	st := Inspect(l.w, nginxtest.Bin)
	if !st.Written || !st.Enabled || st.Sandboxes < 1 || st.Sandboxes > n {
		t.Fatalf("status after concurrent applies: %+v", st)
	}
	data, err := os.ReadFile(st.ConfigPath)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Count(string(data), "location /2000"); got != st.Sandboxes {
		t.Errorf("the site holds %d sandboxes, the manifest %d", got, st.Sandboxes)
	}
	if err := Test(context.Background(), nginxtest.Bin, conf); err != nil {
		t.Errorf("nginx -t after concurrent applies: %v", err)
	}
}

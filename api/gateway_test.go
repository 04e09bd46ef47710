package api

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http/httptest"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/thon-dev/thon/gateway"
	"github.com/thon-dev/thon/store"
)

// gatewayEnv is a test server with the gateway routes, the consumer
// service they call and the gateway runtime it tells of changes.
type gatewayEnv struct {
	*testEnv
	svc *gateway.Service
	rt  *gateway.Runtime
}

// newGatewayService returns a gateway runtime and consumer service over a
// new database.
func newGatewayService(t testing.TB, opts gateway.ServiceOptions) (*store.Store, *gateway.Runtime, *gateway.Service) {
	t.Helper()
	st, err := store.Open(context.Background(), filepath.Join(t.TempDir(), "thon.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	rt := gateway.NewRuntime(st, nil)
	return st, rt, gateway.NewService(rt, opts)
}

func newGatewayEnv(t *testing.T, edit func(*gateway.ServiceOptions)) gatewayEnv {
	t.Helper()
	opts := gateway.ServiceOptions{KiloURL: "https://thon.example.org/v1"}
	if edit != nil {
		edit(&opts)
	}
	st, rt, svc := newGatewayService(t, opts)
	e := newTestEnv(t, Options{Store: st, Gateway: svc})
	roster := store.Roster{Groups: []store.RosterGroup{
		{Name: "alpha", Users: []store.RosterUser{{Name: "alice"}, {Name: "bob"}, {Name: "carol"}}},
		{Name: "beta", Users: []store.RosterUser{{Name: "dave"}}},
		{Name: "empty"},
	}}
	if _, err := e.store.ImportRoster(context.Background(), roster); err != nil {
		t.Fatal(err)
	}
	return gatewayEnv{testEnv: e, svc: svc, rt: rt}
}

func (e gatewayEnv) setup(body string) gateway.SetupResult {
	e.t.Helper()
	var out gateway.SetupResult
	e.doJSON("POST", "/api/gateway/setup", body).wantStatus(e.t, 200).decode(e.t, &out)
	return out
}

// kiloKey returns the gateway provider's apiKey and baseURL of a kilo.jsonc.
func kiloKey(t *testing.T, content string) (key, baseURL string) {
	t.Helper()
	var doc struct {
		Provider map[string]struct {
			Options struct {
				APIKey  string `json:"apiKey"`
				BaseURL string `json:"baseURL"`
			} `json:"options"`
		} `json:"provider"`
	}
	if err := json.Unmarshal([]byte(content), &doc); err != nil {
		t.Fatalf("kilo.jsonc: %v\n%s", err, content)
	}
	p, ok := doc.Provider["lemonade-gateway"]
	if !ok {
		t.Fatalf("kilo.jsonc has no lemonade-gateway provider:\n%s", content)
	}
	return p.Options.APIKey, p.Options.BaseURL
}

func TestGatewayRoutesNeedOptions(t *testing.T) {
	e := newTestEnv(t, Options{})
	for _, r := range [][2]string{{"POST", "/api/gateway/setup"}, {"GET", "/api/gateway/status"}, {"GET", "/api/gateway/consumers"},
		{"DELETE", "/api/gateway/consumers/x"}, {"POST", "/api/gateway/cleanup"}, {"GET", "/api/gateway/usage"}} {
		e.doJSON(r[0], r[1], nil).wantError(t, 503, "", "gateway is not configured")
	}
}

func TestGatewaySetupPerUser(t *testing.T) {
	e := newGatewayEnv(t, nil)
	out := e.setup(`{"mode": "per-user", "token_limit": 1000, "token_window": 120, "concurrency_limit": 2}`)
	if !out.Enabled || out.Mode != "per-user" || out.TokenLimit != 1000 || out.TokenWindow != 120 || out.ConcurrencyLimit != 2 ||
		out.Strategy != "total_tokens" || out.KiloURL != "https://thon.example.org/v1" {
		t.Errorf("settings = %+v", out.Settings)
	}
	var names []string
	keys := map[string]string{}
	for _, c := range out.Consumers {
		names = append(names, c.Username)
		keys[c.Username] = c.Key
		if !strings.HasPrefix(c.Key, gateway.KeyPrefixMark) || len(c.Key) != 48 || c.KeyPrefix != gateway.KeyPrefix(c.Key) {
			t.Errorf("%s: key %q, prefix %q", c.Username, c.Key, c.KeyPrefix)
		}
		if c.Members != 1 || c.EffectiveTokenLimit != 1000 || c.EffectiveConcurrencyLimit != 2 {
			t.Errorf("%s: %+v", c.Username, c.ConsumerView)
		}
		stored, err := e.store.GetConsumerByHash(context.Background(), gateway.HashKey(c.Key))
		if err != nil || stored.Username != c.Username {
			t.Errorf("%s: stored by hash: %+v %v", c.Username, stored, err)
		}
	}
	if want := []string{"alpha-alice", "alpha-bob", "alpha-carol", "beta-dave"}; !slices.Equal(names, want) {
		t.Errorf("consumers = %v, want %v", names, want)
	}
	if _, ok := e.rt.Lookup(keys["alpha-bob"]); !ok || e.rt.Status().Keys != 4 {
		t.Error("setup did not tell the gateway")
	}

	// Each user's sandbox gets a kilo.jsonc with their own key.
	content, ok, err := e.svc.Kilo(context.Background(), "alpha", "bob")
	if err != nil || !ok {
		t.Fatalf("GatewayKilo: %v %v", ok, err)
	}
	key, base := kiloKey(t, content)
	if key != keys["alpha-bob"] || base != "https://thon.example.org/v1" {
		t.Errorf("bob's kilo has key %q base %q", key, base)
	}
	if strings.Contains(content, keys["alpha-alice"]) {
		t.Error("bob's kilo.jsonc holds alice's key")
	}

	// The list shows no key; the status counts.
	list := e.doJSON("GET", "/api/gateway/consumers", nil).wantStatus(t, 200)
	if strings.Contains(string(list.body), keys["alpha-bob"]) || strings.Contains(string(list.body), `"key"`) {
		t.Errorf("the list shows keys: %s", list.body)
	}
	var st gateway.Status
	e.doJSON("GET", "/api/gateway/status", nil).wantStatus(t, 200).decode(t, &st)
	if !st.Enabled || st.Consumers != 4 || st.Revoked != 0 || st.Runtime == nil || st.Runtime.Keys != 4 || st.Runtime.Policy != "local" {
		t.Errorf("status = %+v", st)
	}

	// A second setup replaces every key.
	again := e.setup(`{}`)
	if again.TokenLimit != 0 || again.ConcurrencyLimit != 1 || again.TokenWindow != 60 || len(again.Consumers) != 4 {
		t.Errorf("defaults = %+v", again.Settings)
	}
	if again.Consumers[0].Key == keys[again.Consumers[0].Username] {
		t.Error("a second setup kept the old key")
	}
	if _, err := e.store.GetConsumerByHash(context.Background(), gateway.HashKey(keys["alpha-alice"])); err == nil {
		t.Error("the old key is still stored")
	}
}

func TestGatewaySetupPerGroup(t *testing.T) {
	e := newGatewayEnv(t, func(o *gateway.ServiceOptions) { o.KiloURL, o.ExternalIP = "", "203.0.113.7" })
	out := e.setup(`{"mode": "per-group", "token_limit": 500, "concurrency_limit": 1, "strategy": "completion_tokens"}`)
	if len(out.Consumers) != 2 {
		t.Fatalf("consumers = %+v (the empty group gets none)", out.Consumers)
	}
	a := out.Consumers[0]
	if a.Username != "group-alpha" || a.Members != 3 || a.EffectiveTokenLimit != 1500 || a.EffectiveConcurrencyLimit != 3 || a.User != "" {
		t.Errorf("group-alpha = %+v", a.ConsumerView)
	}
	if out.KiloURL != "https://203.0.113.7/v1" {
		t.Errorf("kilo_url = %q", out.KiloURL)
	}
	// Every user of a group gets the group's key.
	for _, u := range []string{"alice", "carol"} {
		content, ok, err := e.svc.Kilo(context.Background(), "alpha", u)
		if err != nil || !ok {
			t.Fatalf("%s: %v %v", u, ok, err)
		}
		if key, base := kiloKey(t, content); key != a.Key || base != out.KiloURL {
			t.Errorf("%s: key %q base %q", u, key, base)
		}
		if !strings.Contains(content, "group key") {
			t.Errorf("%s: the provider name does not say the key is the group's", u)
		}
	}
	g, err := gateway.LoadSettings(context.Background(), e.store)
	if err != nil || g.Strategy != "completion_tokens" || g.Mode != "per-group" {
		t.Errorf("stored settings = %+v %v", g, err)
	}
}

func TestGatewaySetupValidation(t *testing.T) {
	e := newGatewayEnv(t, nil)
	before := e.setup(`{"token_limit": 10}`)
	for i, tc := range []struct {
		body, field string
	}{
		{`{"mode": "per-team"}`, "mode"},
		{`{"concurrency_limit": -1}`, "concurrency_limit"},
		{`{"token_limit": -5}`, "token_limit"},
		{`{"token_window": 0}`, "token_window"},
		{`{"strategy": "words"}`, "strategy"},
		{`{"token_limit": "many"}`, "token_limit"},
		{`{"mod": "per-user"}`, "mod"},
	} {
		r := e.doJSON("POST", "/api/gateway/setup", tc.body)
		if r.status != 400 {
			t.Errorf("case %d: %d %s", i, r.status, r.body)
			continue
		}
		r.wantError(t, 400, tc.field)
	}
	after, _ := e.store.ListConsumers(context.Background())
	for i, c := range after {
		if c.KeyPrefix != before.Consumers[i].KeyPrefix {
			t.Errorf("a refused setup changed %s", c.Username)
		}
	}
	if g, _ := gateway.LoadSettings(context.Background(), e.store); g.TokenLimit != 10 {
		t.Errorf("a refused setup changed the settings: %+v", g)
	}
}

func TestGatewayConsumersFollowRoster(t *testing.T) {
	e := newGatewayEnv(t, nil)
	ctx := context.Background()
	// Off: nothing is made for anyone, and sandboxes get the organiser's kilo.
	e.doJSON("GET", "/api/gateway/consumers", nil).wantStatus(t, 200)
	if cs, _ := e.store.ListConsumers(ctx); len(cs) != 0 {
		t.Errorf("consumers while off: %+v", cs)
	}
	if _, ok, _ := e.svc.Kilo(ctx, "alpha", "alice"); ok {
		t.Error("a kilo.jsonc while the gateway is off")
	}

	e.setup(`{"concurrency_limit": 3}`)
	// Users imported later get a consumer with the gateway's limits...
	if _, err := e.store.ImportRoster(ctx, store.Roster{Groups: []store.RosterGroup{{Name: "gamma", Users: []store.RosterUser{{Name: "erin"}}}}}); err != nil {
		t.Fatal(err)
	}
	content, ok, err := e.svc.Kilo(ctx, "gamma", "erin")
	if err != nil || !ok {
		t.Fatalf("kilo for a user imported later: %v %v", ok, err)
	}
	key, _ := kiloKey(t, content)
	c, err := e.store.GetConsumerByHash(ctx, gateway.HashKey(key))
	if err != nil || c.Username != "gamma-erin" || c.ConcurrencyLimit != 3 {
		t.Errorf("erin's consumer: %+v %v", c, err)
	}
	if _, ok := e.rt.Lookup(key); !ok {
		t.Error("the sync did not tell the gateway")
	}
	// ...and a deleted user's consumer goes.
	if _, err := e.store.DeleteUser(ctx, "alpha", "bob"); err != nil {
		t.Fatal(err)
	}
	created, deleted, err := e.svc.Sync(ctx)
	if err != nil || created != 0 || deleted != 1 {
		t.Errorf("sync = %d created, %d deleted, %v", created, deleted, err)
	}
	var l consumerList
	e.doJSON("GET", "/api/gateway/consumers", nil).wantStatus(t, 200).decode(t, &l)
	var names []string
	for _, c := range l.Consumers {
		names = append(names, c.Username)
	}
	if want := []string{"alpha-alice", "alpha-carol", "beta-dave", "gamma-erin"}; !slices.Equal(names, want) {
		t.Errorf("consumers = %v, want %v", names, want)
	}
}

func TestGatewayConsumerLifecycle(t *testing.T) {
	e := newGatewayEnv(t, nil)
	ctx := context.Background()
	e.doJSON("POST", "/api/gateway/consumers", `{"group": "alpha", "user": "alice"}`).wantError(t, 409, "", "setup")
	out := e.setup(`{}`)
	old := out.Consumers[0]

	// Create: exists, unknown user, bad names, own limits.
	e.doJSON("POST", "/api/gateway/consumers", `{"group": "alpha", "user": "alice"}`).wantError(t, 409, "", "alpha-alice")
	e.doJSON("POST", "/api/gateway/consumers", `{"group": "alpha", "user": "zed"}`).wantStatus(t, 404)
	e.doJSON("POST", "/api/gateway/consumers", `{"group": "Alpha", "user": "zed"}`).wantError(t, 400, "group")
	e.doJSON("POST", "/api/gateway/consumers", `{"group": "alpha"}`).wantError(t, 400, "user")
	e.doJSON("DELETE", "/api/gateway/consumers/alpha-alice", nil).wantStatus(t, 200)
	var made gateway.IssuedConsumer
	e.doJSON("POST", "/api/gateway/consumers", `{"group": "alpha", "user": "alice", "token_limit": 99}`).wantStatus(t, 201).decode(t, &made)
	if made.Username != "alpha-alice" || made.TokenLimit != 99 || made.Key == "" || made.Key == old.Key {
		t.Errorf("created = %+v", made)
	}
	e.doJSON("DELETE", "/api/gateway/consumers/nobody", nil).wantStatus(t, 404)

	// Revoke, then rotate: a new key, a new kilo.jsonc, the revocation lifted.
	var rev gateway.ConsumerView
	e.doJSON("POST", "/api/gateway/consumers/alpha-alice/revoke", nil).wantStatus(t, 200).decode(t, &rev)
	if rev.RevokedAt == nil {
		t.Errorf("revoked = %+v", rev)
	}
	var st gateway.Status
	e.doJSON("GET", "/api/gateway/status", nil).wantStatus(t, 200).decode(t, &st)
	if st.Revoked != 1 {
		t.Errorf("status revoked = %d", st.Revoked)
	}
	var rot gateway.IssuedConsumer
	e.doJSON("POST", "/api/gateway/consumers/alpha-alice/rotate", nil).wantStatus(t, 200).decode(t, &rot)
	if rot.Key == made.Key || rot.RevokedAt != nil || rot.TokenLimit != 99 {
		t.Errorf("rotated = %+v", rot)
	}
	content, _, _ := e.svc.Kilo(ctx, "alpha", "alice")
	if key, _ := kiloKey(t, content); key != rot.Key {
		t.Errorf("kilo after rotate has %q, want the new key", key)
	}
	e.doJSON("POST", "/api/gateway/consumers/nobody/rotate", nil).wantStatus(t, 404)

	// Cleanup: everything goes, the gateway is off, usage stays.
	if err := e.store.RecordUsage(ctx, []store.UsageRecord{{Consumer: "alpha-alice", Total: 3, Status: 200}}); err != nil {
		t.Fatal(err)
	}
	var cl gatewayCleaned
	e.doJSON("POST", "/api/gateway/cleanup", nil).wantStatus(t, 200).decode(t, &cl)
	if cl.Deleted != 4 {
		t.Errorf("cleanup deleted %d, want 4", cl.Deleted)
	}
	if _, ok, _ := e.svc.Kilo(ctx, "alpha", "alice"); ok {
		t.Error("kilo.jsonc after cleanup")
	}
	e.doJSON("GET", "/api/gateway/status", nil).wantStatus(t, 200).decode(t, &st)
	if st.Enabled || st.Consumers != 0 {
		t.Errorf("status after cleanup = %+v", st)
	}
	var u gatewayUsage
	e.doJSON("GET", "/api/gateway/usage", nil).wantStatus(t, 200).decode(t, &u)
	if len(u.Usage) != 1 || u.Usage[0].TotalTokens != 3 {
		t.Errorf("usage after cleanup = %+v", u)
	}
}

func TestGatewayUsageRoute(t *testing.T) {
	e := newGatewayEnv(t, nil)
	t0 := time.Date(2026, 5, 1, 9, 0, 0, 0, time.UTC)
	if err := e.store.RecordUsage(context.Background(), []store.UsageRecord{
		{Consumer: "alpha-alice", At: t0, Prompt: 3, Completion: 4, Total: 7, Status: 200},
		{Consumer: "alpha-alice", At: t0.Add(time.Hour), Total: 10, Status: 429},
		{Consumer: "beta-dave", At: t0.Add(2 * time.Hour), Total: 1, Status: 200},
	}); err != nil {
		t.Fatal(err)
	}
	var u gatewayUsage
	e.doJSON("GET", "/api/gateway/usage?from=2026-05-01T09:00:00Z&to=2026-05-01T10:30:00Z", nil).wantStatus(t, 200).decode(t, &u)
	if len(u.Usage) != 1 || u.Usage[0].Requests != 2 || u.Usage[0].Errors != 1 || u.Usage[0].TotalTokens != 17 ||
		u.From == nil || !u.From.Equal(t0) {
		t.Errorf("usage = %+v", u)
	}
	e.doJSON("GET", "/api/gateway/usage?consumer=beta-dave", nil).wantStatus(t, 200).decode(t, &u)
	if len(u.Usage) != 1 || u.Usage[0].Consumer != "beta-dave" {
		t.Errorf("one consumer = %+v", u)
	}
	e.doJSON("GET", "/api/gateway/usage?from=yesterday", nil).wantError(t, 400, "from", "RFC 3339")
	e.doJSON("GET", "/api/gateway/usage?from=2026-05-02T00:00:00Z&to=2026-05-01T00:00:00Z", nil).wantError(t, 400, "to")
}

// The organiser's kilo.jsonc is the skeleton of each consumer's, without
// the direct Lemonade provider: its key must never reach a participant
// whose requests should go through the gateway.
func TestGatewayKiloKeepsSkeletonDropsLemonadeKey(t *testing.T) {
	e := newGatewayEnv(t, nil)
	ctx := context.Background()
	org := `{
	// the organiser's own
	"model": "lemonade/user.gemma-4-31b-it",
	"provider": {"lemonade": {"options": {"apiKey": "LEMONADE-SECRET", "baseURL": "http://203.0.113.7:13305/v1"}}},
	"mcp": {"my-tool": {"type": "local", "command": ["my-tool"]}},
}`
	if _, err := e.store.PutConfigFile(ctx, store.KeyKiloJSON, org); err != nil {
		t.Fatal(err)
	}
	out := e.setup(`{}`)
	content, ok, err := e.svc.Kilo(ctx, "beta", "dave")
	if err != nil || !ok {
		t.Fatal(ok, err)
	}
	if strings.Contains(content, "LEMONADE-SECRET") || strings.Contains(content, `"lemonade":`) {
		t.Errorf("the consumer's kilo.jsonc keeps the direct provider:\n%s", content)
	}
	if !strings.Contains(content, "my-tool") || !strings.Contains(content, `"model": "lemonade-gateway/`) {
		t.Errorf("the organiser's settings or the gateway model are missing:\n%s", content)
	}
	if key, _ := kiloKey(t, content); key != out.Consumers[3].Key {
		t.Errorf("dave's key = %q", key)
	}
}

func TestGatewaySchemasMatchTypes(t *testing.T) {
	e := newTestEnv(t, Options{})
	doc, _ := fetchOpenAPI(t, e)
	for name, v := range map[string]any{
		"GatewaySettings":      gateway.Settings{},
		"GatewaySetupRequest":  gateway.SetupRequest{},
		"GatewaySetupResponse": gateway.SetupResult{},
		"GatewayConsumer":      gateway.ConsumerView{},
		"IssuedConsumer":       gateway.IssuedConsumer{},
		"GatewayRuntime":       gateway.RuntimeStatus{},
		"GatewayStatus":        gateway.Status{},
		"ConsumerList":         consumerList{},
		"ConsumerCreate":       gateway.CreateRequest{},
		"DeletedConsumer":      deletedConsumer{},
		"GatewayCleaned":       gatewayCleaned{},
		"ConsumerUsage":        store.ConsumerUsage{},
		"GatewayUsage":         gatewayUsage{},
	} {
		schema, ok := doc.Components.Schemas[name]
		if !ok {
			t.Errorf("components.schemas lacks %s", name)
			continue
		}
		var props []string
		for p := range schema.Properties {
			props = append(props, p)
		}
		sort.Strings(props)
		if want := jsonFields(reflect.TypeOf(v)); !slices.Equal(props, want) {
			t.Errorf("schema %s properties = %v, want the JSON fields %v", name, props, want)
		}
	}
}

// FuzzGatewayBodies sends arbitrary bodies to the gateway's JSON routes:
// no panic, never a 5xx, every error a JSON error, and a setup that is
// refused changes no key.
func FuzzGatewayBodies(f *testing.F) {
	st, _, svc := newGatewayService(f, gateway.ServiceOptions{KiloURL: "https://thon.example.org/v1"})
	e := newTestEnv(f, Options{Store: st, Gateway: svc})
	if _, err := e.store.ImportRoster(context.Background(), store.Roster{Groups: []store.RosterGroup{
		{Name: "alpha", Users: []store.RosterUser{{Name: "alice"}}}}}); err != nil {
		f.Fatal(err)
	}
	for i, s := range []string{
		`{"mode": "per-group", "token_limit": 10, "token_window": 5, "concurrency_limit": 2, "strategy": "prompt_tokens"}`,
		`{"mode": "per-user"}`, `{}`, ``, `{"token_limit": 1e99}`, `{"token_window": -1}`, `{"mode": null}`,
		`{"group": "alpha", "user": "alice", "token_limit": 5}`, `{"group": "alpha"}`, `[]`, `{"concurrency_limit": 9999999999999}`,
	} {
		f.Add(uint8(i), []byte(s))
	}
	routes := []string{"/api/gateway/setup", "/api/gateway/consumers", "/api/gateway/consumers/alpha-alice/rotate", "/api/gateway/cleanup"}
	f.Fuzz(func(t *testing.T, target uint8, body []byte) {
		path := routes[int(target)%len(routes)]
		before, _ := e.store.ListConsumers(context.Background())
		req := httptest.NewRequest("POST", path, bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		rec := httptest.NewRecorder()
		e.server.ServeHTTP(rec, e.authorize(req))
		if rec.Code >= 500 {
			t.Fatalf("POST %s with %q: %d %s", path, body, rec.Code, rec.Body)
		}
		if rec.Code >= 400 {
			var er Error
			if json.Unmarshal(rec.Body.Bytes(), &er) != nil || er.Error == "" {
				t.Fatalf("POST %s with %q: %d without a JSON error: %s", path, body, rec.Code, rec.Body)
			}
			after, _ := e.store.ListConsumers(context.Background())
			if len(after) != len(before) {
				t.Fatalf("a refused POST %s changed the consumers", path)
			}
		}
	})
}

package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/thon-dev/thon/llm"
	"github.com/thon-dev/thon/store"
)

// Errors of the consumer service; test them with errors.Is. Bad input is
// a *store.FieldError naming the field.
var (
	// ErrOff reports an operation that needs the gateway on.
	ErrOff = errors.New("the gateway is off: run the gateway setup first")
	// ErrConflict reports an operation the current state forbids: the
	// consumer exists, or Lemonade's configuration cannot be read back.
	ErrConflict = errors.New("conflict")
)

// conflictError keeps its own message and matches ErrConflict.
type conflictError struct{ err error }

func (e *conflictError) Error() string        { return e.err.Error() }
func (e *conflictError) Unwrap() error        { return e.err }
func (e *conflictError) Is(target error) bool { return target == ErrConflict }

// KiloURL is the gateway's OpenAI base URL as Kilo inside a sandbox
// reaches it, written into every consumer's kilo.jsonc: explicit when set,
// else https://<domain>/v1, else https://<externalIP>/v1 (the container
// must then trust thon's root), else http://localhost:9080/v1 (the
// original's plain-HTTP gateway port, llm.DefaultGatewayPort).
func KiloURL(explicit, domain, externalIP string) string {
	switch {
	case explicit != "":
		return explicit
	case domain != "":
		return "https://" + domain + "/v1"
	case externalIP != "":
		return "https://" + externalIP + "/v1"
	default:
		return "http://localhost:" + strconv.Itoa(llm.DefaultGatewayPort) + "/v1"
	}
}

// ServiceOptions configure a Service.
type ServiceOptions struct {
	// KiloURL, Domain and ExternalIP give the gateway URL written into
	// consumers' kilo.jsonc; see KiloURL.
	KiloURL, Domain, ExternalIP string
	// KiloFile is the organiser's kilo.jsonc file, if any; it (else the
	// database slot) is the skeleton of consumers' kilo.jsonc.
	KiloFile string
	// LemonadeSettings returns the models and options of the Lemonade
	// Server thon set up, which consumers' kilo.jsonc name; nil means the
	// defaults (llm.DefaultSettings). An error refuses the operation that
	// needed them with ErrConflict.
	LemonadeSettings func() (llm.Settings, error)
}

// Service manages the gateway's consumers in the database: the settings,
// the setup, the consumers kept in line with the roster, each consumer's
// key and kilo.jsonc, the usage. Changes of every Service of one Runtime
// are serialised, and the runtime's keys reloaded after each.
type Service struct {
	rt      *Runtime
	st      *store.Store
	opts    ServiceOptions
	kiloURL string
}

// NewService returns the consumer service of rt's database. It changes
// nothing.
func NewService(rt *Runtime, o ServiceOptions) *Service {
	return &Service{rt: rt, st: rt.st, opts: o, kiloURL: KiloURL(o.KiloURL, o.Domain, o.ExternalIP)}
}

// KiloURL is the gateway URL written into consumers' kilo.jsonc.
func (s *Service) KiloURL() string { return s.kiloURL }

// lock serialises consumer changes.
func (s *Service) lock() func() {
	s.rt.consumersMu.Lock()
	return s.rt.consumersMu.Unlock
}

// changed reloads the running gateway's keys after consumers changed.
func (s *Service) changed(ctx context.Context) {
	if err := s.rt.Reload(context.WithoutCancel(ctx)); err != nil {
		s.rt.log().Error("reloading the gateway's keys", "error", err)
	}
}

// ConsumerView is a consumer with the limits the gateway applies to it (a
// per-group consumer's are the per-user limits times its members).
type ConsumerView struct {
	store.Consumer
	EffectiveTokenLimit       int64 `json:"effective_token_limit"`
	EffectiveConcurrencyLimit int   `json:"effective_concurrency_limit"`
}

// IssuedConsumer is a consumer with its key, shown only when made.
type IssuedConsumer struct {
	ConsumerView
	// Key is the API key; it is shown this once and stored only hashed.
	Key string `json:"key"`
}

// View returns c with its effective limits.
func View(c store.Consumer) ConsumerView {
	v := ConsumerView{Consumer: c}
	lim := Limits{Concurrency: c.ConcurrencyLimit, TokenLimit: c.TokenLimit}
	if c.Mode == ModePerGroup {
		lim = ScaleLimits(lim, c.Members)
	}
	v.EffectiveTokenLimit, v.EffectiveConcurrencyLimit = lim.TokenLimit, lim.Concurrency
	return v
}

// SetupRequest is a setup's mode and per-user limits; unset ones get the
// defaults.
type SetupRequest struct {
	// Mode is per-user (default) or per-group.
	Mode string `json:"mode"`
	// TokenLimit is the tokens a user may use per window; 0 (default) is
	// no limit.
	TokenLimit *int64 `json:"token_limit"`
	// TokenWindow is the window in seconds; default 60.
	TokenWindow *int64 `json:"token_window"`
	// ConcurrencyLimit is the requests a user may have in flight; default
	// 1, 0 is no limit.
	ConcurrencyLimit *int `json:"concurrency_limit"`
	// Strategy is what a token limit counts: total_tokens (default),
	// prompt_tokens or completion_tokens.
	Strategy string `json:"strategy"`
}

// settings validates the request into gateway settings.
func (req SetupRequest) settings() (Settings, error) {
	g := Settings{Enabled: true, Mode: req.Mode, TokenWindow: DefaultWindow,
		ConcurrencyLimit: DefaultConcurrency, Strategy: req.Strategy}
	if g.Mode == "" {
		g.Mode = ModePerUser
	}
	if g.Strategy == "" {
		g.Strategy = StrategyTotalTokens
	}
	g = g.withLimits(req.TokenLimit, req.TokenWindow, req.ConcurrencyLimit)
	return g, g.Validate()
}

// SetupResult is what a setup made.
type SetupResult struct {
	Settings
	// KiloURL is where each consumer's kilo.jsonc points Kilo.
	KiloURL string `json:"kilo_url"`
	// Consumers are every consumer with its key, shown this once.
	Consumers []IssuedConsumer `json:"consumers"`
	// Skipped are consumer names that two users of the roster would share;
	// they get no consumer.
	Skipped []string `json:"skipped"`
}

// Setup turns the gateway on with a consumer mode and limits, and gives
// every user (or group) of the roster a consumer with a new key: all
// earlier consumers and keys are replaced, in one transaction. Bad input
// changes nothing.
func (s *Service) Setup(ctx context.Context, req SetupRequest) (SetupResult, error) {
	g, err := req.settings()
	if err != nil {
		return SetupResult{}, err
	}
	defer s.lock()()
	groups, err := s.st.ListGroups(ctx)
	if err != nil {
		return SetupResult{}, err
	}
	want, clashes := wantedConsumers(groups, g.Mode)
	kilo, err := s.kiloMaker(ctx)
	if err != nil {
		return SetupResult{}, err
	}
	rows := make([]store.Consumer, 0, len(want))
	kilos := make(map[string]string, len(want))
	keys := make(map[string]string, len(want))
	for _, wc := range want {
		is, err := issue(newConsumerRow(wc, g), kilo)
		if err != nil {
			return SetupResult{}, err
		}
		rows = append(rows, is.consumer)
		kilos[wc.name], keys[wc.name] = is.kilo, is.key
	}
	stored, err := s.st.ReplaceConsumers(ctx, rows, kilos, g.settingsMap())
	if err != nil {
		return SetupResult{}, err
	}
	s.changed(ctx)
	out := SetupResult{Settings: g, KiloURL: s.kiloURL, Consumers: []IssuedConsumer{}, Skipped: clashes}
	if out.Skipped == nil {
		out.Skipped = []string{}
	}
	for _, c := range stored {
		out.Consumers = append(out.Consumers, IssuedConsumer{ConsumerView: View(c), Key: keys[c.Username]})
	}
	return out, nil
}

// Status is the gateway's settings, consumer counts and runtime.
type Status struct {
	Settings
	KiloURL   string         `json:"kilo_url"`
	Consumers int            `json:"consumers"`
	Revoked   int            `json:"revoked"`
	Runtime   *RuntimeStatus `json:"runtime,omitempty"`
}

// Status brings consumers in line with the roster and describes the
// gateway.
func (s *Service) Status(ctx context.Context) (Status, error) {
	if _, _, err := s.Sync(ctx); err != nil {
		return Status{}, err
	}
	g, err := LoadSettings(ctx, s.st)
	if err != nil {
		return Status{}, err
	}
	cs, err := s.st.ListConsumers(ctx)
	if err != nil {
		return Status{}, err
	}
	rt := s.rt.Status()
	out := Status{Settings: g, KiloURL: s.kiloURL, Consumers: len(cs), Runtime: &rt}
	for _, c := range cs {
		if c.RevokedAt != nil {
			out.Revoked++
		}
	}
	return out, nil
}

// Consumers lists the consumers, without their keys; users imported since
// the last change get their consumer first.
func (s *Service) Consumers(ctx context.Context) ([]ConsumerView, error) {
	if _, _, err := s.Sync(ctx); err != nil {
		return nil, err
	}
	cs, err := s.st.ListConsumers(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]ConsumerView, 0, len(cs))
	for _, c := range cs {
		out = append(out, View(c))
	}
	return out, nil
}

// CreateRequest names a consumer to create: a user of a group (per-user)
// or a group (per-group), with limits; unset ones are the gateway's.
type CreateRequest struct {
	// Group is the consumer's group; User its user in per-user mode.
	Group string `json:"group"`
	User  string `json:"user"`
	// Limits; unset ones are the gateway's defaults (see setup).
	TokenLimit       *int64 `json:"token_limit"`
	TokenWindow      *int64 `json:"token_window"`
	ConcurrencyLimit *int   `json:"concurrency_limit"`
}

// CreateConsumer adds one consumer, in the gateway's mode, for an
// existing user or group, with a new key shown once. It fails with ErrOff
// while the gateway is off and ErrConflict when the consumer exists.
func (s *Service) CreateConsumer(ctx context.Context, req CreateRequest) (IssuedConsumer, error) {
	defer s.lock()()
	g, err := LoadSettings(ctx, s.st)
	if err != nil {
		return IssuedConsumer{}, err
	}
	if !g.Enabled {
		return IssuedConsumer{}, ErrOff
	}
	if err := store.ValidateName("group", req.Group); err != nil {
		return IssuedConsumer{}, err
	}
	wc := wantConsumer{group: req.Group}
	switch g.Mode {
	case ModePerGroup:
		if req.User != "" {
			return IssuedConsumer{}, &store.FieldError{Field: "user", Msg: "must be empty: the gateway is per-group"}
		}
		grp, err := s.st.GetGroup(ctx, req.Group)
		if err != nil {
			return IssuedConsumer{}, err
		}
		if len(grp.Users) == 0 {
			return IssuedConsumer{}, &store.FieldError{Field: "group", Msg: fmt.Sprintf("%q has no users", req.Group)}
		}
		wc.name = GroupConsumerName(req.Group)
	default:
		if err := store.ValidateName("user", req.User); err != nil {
			return IssuedConsumer{}, err
		}
		if _, err := s.st.GetUser(ctx, req.Group, req.User); err != nil {
			return IssuedConsumer{}, err
		}
		wc.name, wc.user = UserConsumerName(req.Group, req.User), req.User
	}
	g = g.withLimits(req.TokenLimit, req.TokenWindow, req.ConcurrencyLimit)
	if err := g.Validate(); err != nil {
		return IssuedConsumer{}, err
	}
	kilo, err := s.kiloMaker(ctx)
	if err != nil {
		return IssuedConsumer{}, err
	}
	is, err := issue(newConsumerRow(wc, g), kilo)
	if err != nil {
		return IssuedConsumer{}, err
	}
	stored, err := s.st.CreateConsumers(ctx, []store.Consumer{is.consumer}, map[string]string{wc.name: is.kilo})
	if errors.Is(err, store.ErrConflict) {
		return IssuedConsumer{}, &conflictError{fmt.Errorf("consumer %q exists: rotate its key or delete it first", wc.name)}
	}
	if err != nil {
		return IssuedConsumer{}, err
	}
	s.changed(ctx)
	return IssuedConsumer{ConsumerView: View(stored[0]), Key: is.key}, nil
}

// DeleteConsumer deletes a consumer; its key stops working at once.
func (s *Service) DeleteConsumer(ctx context.Context, name string) (ConsumerView, error) {
	defer s.lock()()
	c, err := s.st.DeleteConsumer(ctx, name)
	if err != nil {
		return ConsumerView{}, err
	}
	s.changed(ctx)
	return View(c), nil
}

// RotateConsumer gives a consumer a new key (shown once) and a new
// kilo.jsonc, and lifts a revocation. The old key stops working at once;
// sandboxes made before keep the old key until they are recreated.
func (s *Service) RotateConsumer(ctx context.Context, name string) (IssuedConsumer, error) {
	defer s.lock()()
	return s.rotateLocked(ctx, name)
}

// rotateLocked is RotateConsumer with the consumers' lock held.
func (s *Service) rotateLocked(ctx context.Context, name string) (IssuedConsumer, error) {
	c, err := s.st.GetConsumer(ctx, name)
	if err != nil {
		return IssuedConsumer{}, err
	}
	kilo, err := s.kiloMaker(ctx)
	if err != nil {
		return IssuedConsumer{}, err
	}
	is, err := issue(c, kilo)
	if err != nil {
		return IssuedConsumer{}, err
	}
	c, err = s.st.RotateConsumer(ctx, c.Username, is.consumer.KeyHash, is.consumer.KeyPrefix, is.kilo)
	if err != nil {
		return IssuedConsumer{}, err
	}
	s.changed(ctx)
	return IssuedConsumer{ConsumerView: View(c), Key: is.key}, nil
}

// RevokeConsumer disables a consumer's key; rotating gives it a new one.
func (s *Service) RevokeConsumer(ctx context.Context, name string) (ConsumerView, error) {
	defer s.lock()()
	c, err := s.st.RevokeConsumer(ctx, name)
	if err != nil {
		return ConsumerView{}, err
	}
	s.changed(ctx)
	return View(c), nil
}

// Cleanup turns the gateway off and deletes every consumer, returning how
// many; usage recorded so far is kept. New sandboxes get the organiser's
// kilo.jsonc.
func (s *Service) Cleanup(ctx context.Context) (deleted int, err error) {
	defer s.lock()()
	n, err := s.st.DeleteAllConsumers(ctx, map[string]string{settingEnabled: "false"})
	if err != nil {
		return 0, err
	}
	s.changed(ctx)
	return n, nil
}

// Usage sums the usage per consumer within f.
func (s *Service) Usage(ctx context.Context, f store.UsageFilter) ([]store.ConsumerUsage, error) {
	return s.st.UsageSummary(ctx, f)
}

// Sync brings the consumers in line with the roster while the gateway is
// on: it creates a consumer, with a new key and its kilo.jsonc, for every
// user (per-user) or group (per-group) that has none, so that users
// imported later get one, and deletes the consumers whose user or group no
// longer exists. It returns how many it created and deleted.
func (s *Service) Sync(ctx context.Context) (created, deleted int, err error) {
	unlock := s.lock()
	defer unlock()
	created, deleted, err = s.syncLocked(ctx)
	if created+deleted > 0 {
		s.changed(ctx)
	}
	return created, deleted, err
}

func (s *Service) syncLocked(ctx context.Context) (created, deleted int, err error) {
	g, err := LoadSettings(ctx, s.st)
	if err != nil || !g.Enabled {
		return 0, 0, err
	}
	groups, err := s.st.ListGroups(ctx)
	if err != nil {
		return 0, 0, err
	}
	have, err := s.st.ListConsumers(ctx)
	if err != nil {
		return 0, 0, err
	}
	users := map[[2]string]bool{}
	for _, gr := range groups {
		users[[2]string{gr.Name, ""}] = true
		for _, u := range gr.Users {
			users[[2]string{gr.Name, u.Name}] = true
		}
	}
	existing := map[string]bool{}
	var orphans []string
	for _, c := range have {
		existing[c.Username] = true
		if !users[[2]string{c.Group, c.User}] {
			orphans = append(orphans, c.Username)
		}
	}
	if len(orphans) > 0 {
		if deleted, err = s.st.DeleteConsumers(store.WithActor(ctx, "gateway"), orphans); err != nil {
			return 0, 0, err
		}
	}
	want, clashes := wantedConsumers(groups, g.Mode)
	if len(clashes) > 0 {
		s.rt.log().Warn("two users make the same gateway consumer name; the second gets none", "names", clashes)
	}
	var missing []wantConsumer
	for _, w := range want {
		if !existing[w.name] {
			missing = append(missing, w)
		}
	}
	if len(missing) == 0 {
		return 0, deleted, nil
	}
	kilo, err := s.kiloMaker(ctx)
	if err != nil {
		return 0, deleted, err
	}
	rows := make([]store.Consumer, 0, len(missing))
	kilos := make(map[string]string, len(missing))
	for _, w := range missing {
		is, err := issue(newConsumerRow(w, g), kilo)
		if err != nil {
			return 0, deleted, err
		}
		rows = append(rows, is.consumer)
		kilos[w.name] = is.kilo
	}
	if _, err := s.st.CreateConsumers(store.WithActor(ctx, "gateway"), rows, kilos); err != nil {
		return 0, deleted, err
	}
	return len(rows), deleted, nil
}

// Kilo returns the kilo.jsonc of a user's gateway consumer (the user's
// own, or the group's), when the gateway is on: it points Kilo at the
// gateway with that consumer's key. A user without a consumer gets one
// first (see Sync). ok is false when the gateway is off or the user has
// no consumer, and the sandbox gets the organiser's kilo.jsonc.
func (s *Service) Kilo(ctx context.Context, group, user string) (content string, ok bool, err error) {
	g, err := LoadSettings(ctx, s.st)
	if err != nil || !g.Enabled {
		return "", false, err
	}
	name := ConsumerName(g.Mode, group, user)
	content, ok, err = s.st.ConsumerKilo(ctx, name)
	if err != nil || ok {
		return content, ok, err
	}
	if _, _, err := s.Sync(ctx); err != nil {
		return "", false, err
	}
	return s.st.ConsumerKilo(ctx, name)
}

// issued is a consumer made with a new key, and the kilo.jsonc for it.
type issued struct {
	consumer store.Consumer
	key      string
	kilo     string
}

// kiloMaker generates the kilo.jsonc of a consumer from its key.
type kiloMaker func(mode, key string) (string, error)

// issue makes a consumer with a new key and its kilo.jsonc.
func issue(c store.Consumer, kilo kiloMaker) (issued, error) {
	key, err := NewKey()
	if err != nil {
		return issued{}, err
	}
	c.KeyHash, c.KeyPrefix = HashKey(key), KeyPrefix(key)
	k, err := kilo(c.Mode, key)
	if err != nil {
		return issued{}, err
	}
	return issued{consumer: c, key: key, kilo: k}, nil
}

// wantConsumer is a consumer the roster calls for.
type wantConsumer struct {
	name, group, user string
}

// wantedConsumers returns the consumers the roster calls for in mode: one
// per user, or one per group with users. Names two roster entries share
// (group "a-b" user "c" and group "a" user "b-c" both make "a-b-c") are
// reported in clashes and left out.
func wantedConsumers(groups []store.Group, mode string) (want []wantConsumer, clashes []string) {
	seen := map[string]bool{}
	add := func(w wantConsumer) {
		if seen[w.name] {
			clashes = append(clashes, w.name)
			return
		}
		seen[w.name] = true
		want = append(want, w)
	}
	for _, g := range groups {
		if mode == ModePerGroup {
			if len(g.Users) > 0 {
				add(wantConsumer{name: GroupConsumerName(g.Name), group: g.Name})
			}
			continue
		}
		for _, u := range g.Users {
			add(wantConsumer{name: UserConsumerName(g.Name, u.Name), group: g.Name, user: u.Name})
		}
	}
	return want, clashes
}

// newConsumerRow is the row of a wanted consumer with the default limits
// of g.
func newConsumerRow(w wantConsumer, g Settings) store.Consumer {
	return store.Consumer{
		Username: w.name, Mode: g.Mode, Group: w.group, User: w.user,
		TokenLimit: g.TokenLimit, TokenWindow: g.TokenWindow, ConcurrencyLimit: g.ConcurrencyLimit,
	}
}

// kiloMaker returns the generator of consumers' kilo.jsonc: Lemonade's
// models as thon set them up (LemonadeSettings), the gateway URL, and the
// organiser's kilo.jsonc (file or database slot) as the skeleton, without
// its direct Lemonade provider, which would carry Lemonade's own key past
// the gateway.
func (s *Service) kiloMaker(ctx context.Context) (kiloMaker, error) {
	settings := llm.DefaultSettings()
	if s.opts.LemonadeSettings != nil {
		var err error
		if settings, err = s.opts.LemonadeSettings(); err != nil {
			return nil, &conflictError{err}
		}
	}
	res, err := s.st.ResolveConfig(ctx, store.KeyKiloJSON, s.opts.KiloFile)
	if err != nil {
		return nil, err
	}
	var skeleton []byte
	if res.Content != "" {
		if skeleton, err = gatewaySkeleton([]byte(res.Content)); err != nil {
			return nil, fmt.Errorf("kilo.jsonc (%s): %w", res.Source, err)
		}
	}
	externalIP, url := s.opts.ExternalIP, s.kiloURL
	return func(mode, key string) (string, error) {
		km := llm.KiloGatewayPerUser
		if mode == ModePerGroup {
			km = llm.KiloGatewayPerGroup
		}
		b, err := llm.GenerateKilo(settings, llm.KiloOptions{
			Mode: km, ExternalIP: externalIP, GatewayURL: url, APIKey: key, Skeleton: skeleton,
		})
		return string(b), err
	}, nil
}

// gatewaySkeleton is an organiser's kilo.jsonc made into a skeleton for
// gateway configs: normalised, without the direct "lemonade" provider.
func gatewaySkeleton(content []byte) ([]byte, error) {
	norm, err := llm.NormalizeKilo(content)
	if err != nil {
		return nil, err
	}
	var doc map[string]any
	if err := json.Unmarshal(norm, &doc); err != nil {
		return nil, err
	}
	if p, ok := doc["provider"].(map[string]any); ok {
		delete(p, llm.KiloProviderDirect)
	}
	if m, ok := doc["model"].(string); ok && strings.HasPrefix(m, llm.KiloProviderDirect+"/") {
		delete(doc, "model")
	}
	return json.Marshal(doc)
}

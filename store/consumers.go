package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"
)

// Consumer modes: the one source of these values (gateway.ModePerUser and
// gateway.ModePerGroup are these).
const (
	ConsumerPerUser  = "per-user"
	ConsumerPerGroup = "per-group"
)

// kiloKeyPrefix starts the settings key holding a consumer's generated
// kilo.jsonc: kilo:<username>.
const kiloKeyPrefix = "kilo:"

// maxConsumerName is the longest consumer name accepted.
const maxConsumerName = 253

// Consumer is an AI gateway consumer: the holder of one API key. Only the
// SHA-256 hash of the key is stored, with its first characters to tell keys
// apart in lists.
type Consumer struct {
	// Username is <group>-<user> (per-user) or group-<group> (per-group).
	Username string `json:"username"`
	// Mode is per-user or per-group.
	Mode string `json:"mode"`
	// Group and User are whom the consumer belongs to; User is empty for a
	// per-group consumer.
	Group string `json:"group"`
	User  string `json:"user,omitempty"`
	// KeyHash is the hex SHA-256 of the key; never shown.
	KeyHash string `json:"-"`
	// KeyPrefix is the first characters of the key.
	KeyPrefix string `json:"key_prefix"`
	// Per-user limits: tokens per window (0 = off), the window in seconds,
	// requests in flight (0 = off). A per-group consumer gets them times
	// Members.
	TokenLimit       int64 `json:"token_limit"`
	TokenWindow      int64 `json:"token_window"`
	ConcurrencyLimit int   `json:"concurrency_limit"`
	// Members is the number of users the consumer stands for: 1 for a
	// per-user consumer, the users of the group now for a per-group one.
	// It is computed when read and ignored when written.
	Members   int        `json:"members"`
	CreatedAt time.Time  `json:"created_at"`
	RevokedAt *time.Time `json:"revoked_at,omitempty"`
}

// Validate reports the first invalid field of c as a *FieldError.
func (c Consumer) Validate() error {
	if msg := consumerNameProblem(c.Username); msg != "" {
		return &FieldError{Field: "username", Msg: msg}
	}
	switch c.Mode {
	case ConsumerPerUser:
		if err := ValidateName("user", c.User); err != nil {
			return err
		}
	case ConsumerPerGroup:
		if c.User != "" {
			return &FieldError{Field: "user", Msg: "must be empty for a per-group consumer"}
		}
	default:
		return &FieldError{Field: "mode", Msg: fmt.Sprintf("must be %s or %s, got %q", ConsumerPerUser, ConsumerPerGroup, c.Mode)}
	}
	if err := ValidateName("group", c.Group); err != nil {
		return err
	}
	if len(c.KeyHash) != 64 || strings.Trim(c.KeyHash, "0123456789abcdef") != "" {
		return &FieldError{Field: "key_hash", Msg: "must be 64 lowercase hex characters (a SHA-256)"}
	}
	if len(c.KeyPrefix) > 32 {
		return &FieldError{Field: "key_prefix", Msg: "longer than 32 characters"}
	}
	switch {
	case c.TokenLimit < 0:
		return &FieldError{Field: "token_limit", Msg: fmt.Sprintf("must not be negative, got %d", c.TokenLimit)}
	case c.TokenWindow < 0:
		return &FieldError{Field: "token_window", Msg: fmt.Sprintf("must not be negative, got %d", c.TokenWindow)}
	case c.TokenLimit > 0 && c.TokenWindow < 1:
		return &FieldError{Field: "token_window", Msg: "must be at least 1 second when token_limit is set"}
	case c.ConcurrencyLimit < 0:
		return &FieldError{Field: "concurrency_limit", Msg: fmt.Sprintf("must not be negative, got %d", c.ConcurrencyLimit)}
	}
	return nil
}

// consumerNameProblem describes what is wrong with a consumer name, or
// returns "": 1 to 253 letters, digits, '-', '_' and '.'.
func consumerNameProblem(name string) string {
	if name == "" {
		return "must not be empty"
	}
	if len(name) > maxConsumerName {
		return fmt.Sprintf("longer than %d characters", maxConsumerName)
	}
	for i := 0; i < len(name); i++ {
		ch := name[i]
		if ch >= 'a' && ch <= 'z' || ch >= 'A' && ch <= 'Z' || ch >= '0' && ch <= '9' || ch == '-' || ch == '_' || ch == '.' {
			continue
		}
		return fmt.Sprintf("character %q at offset %d not allowed (letters, digits, '-', '_' and '.' only)", ch, i)
	}
	return ""
}

// consumerColumns selects a consumer row with its member count.
const consumerColumns = `c.username, c.mode, c.group_name, c.user_name, c.key_hash, c.key_prefix,
	c.token_limit, c.token_window, c.concurrency_limit,
	CASE c.mode WHEN 'per-group' THEN (SELECT COUNT(*) FROM users u JOIN groups g ON g.id = u.group_id
		WHERE g.name = c.group_name) ELSE 1 END,
	c.created_at, c.revoked_at`

func scanConsumer(row scanner) (Consumer, error) {
	var c Consumer
	var created string
	var revoked sql.NullString
	err := row.Scan(&c.Username, &c.Mode, &c.Group, &c.User, &c.KeyHash, &c.KeyPrefix,
		&c.TokenLimit, &c.TokenWindow, &c.ConcurrencyLimit, &c.Members, &created, &revoked)
	if err != nil {
		return c, err
	}
	if c.CreatedAt, err = parseTime(created); err != nil {
		return c, err
	}
	c.RevokedAt, err = parseNullTime(revoked)
	return c, err
}

func consumerTarget(name string) string { return "consumer:" + name }

// KiloKey returns the settings key under which the kilo.jsonc generated
// for consumer is kept.
func KiloKey(consumer string) string { return kiloKeyPrefix + consumer }

// validateConsumerBatch checks every consumer and kilo entry of a batch:
// fields, names unique in the batch, and kilo entries of consumers in it.
func validateConsumerBatch(cs []Consumer, kilo map[string]string) error {
	seen := make(map[string]int, len(cs))
	hashes := make(map[string]int, len(cs))
	for i, c := range cs {
		if err := c.Validate(); err != nil {
			var fe *FieldError
			if errors.As(err, &fe) {
				return &FieldError{Field: fmt.Sprintf("consumers[%d].%s", i, fe.Field), Msg: fe.Msg}
			}
			return err
		}
		if j, dup := seen[c.Username]; dup {
			return &FieldError{Field: fmt.Sprintf("consumers[%d].username", i),
				Msg: fmt.Sprintf("%q is also consumers[%d] (two names of the groups file make the same consumer name)", c.Username, j)}
		}
		if j, dup := hashes[c.KeyHash]; dup {
			return &FieldError{Field: fmt.Sprintf("consumers[%d].key_hash", i), Msg: fmt.Sprintf("same key as consumers[%d]", j)}
		}
		seen[c.Username], hashes[c.KeyHash] = i, i
	}
	for name := range kilo {
		if _, ok := seen[name]; !ok {
			return &FieldError{Field: "kilo", Msg: fmt.Sprintf("kilo config for %q, which is not in the batch", name)}
		}
	}
	return nil
}

// validateSettingsBatch refuses the config-file slots and empty keys.
func validateSettingsBatch(settings map[string]string) error {
	for k := range settings {
		if k == "" {
			return &FieldError{Field: "settings", Msg: "a key is empty"}
		}
		if slices.Contains(ConfigKeys(), k) || strings.HasPrefix(k, kiloKeyPrefix) {
			return &FieldError{Field: "settings", Msg: fmt.Sprintf("%q cannot be written with consumers", k)}
		}
	}
	return nil
}

// insertConsumers inserts cs with their kilo configs; a name or key that
// exists is ErrConflict.
func insertConsumers(ctx context.Context, tx *sql.Tx, cs []Consumer, kilo map[string]string, created time.Time) error {
	stmt, err := tx.PrepareContext(ctx, `INSERT INTO consumers (username, mode, group_name, user_name, key_hash,
		key_prefix, token_limit, token_window, concurrency_limit, created_at, revoked_at)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, NULL)`)
	if err != nil {
		return fmt.Errorf("insert consumers: %w", err)
	}
	defer stmt.Close()
	for _, c := range cs {
		_, err := stmt.ExecContext(ctx, c.Username, c.Mode, c.Group, c.User, c.KeyHash, c.KeyPrefix,
			c.TokenLimit, c.TokenWindow, c.ConcurrencyLimit, formatTime(created))
		if isUnique(err) {
			return fmt.Errorf("consumer %q (or its key) exists: %w", c.Username, ErrConflict)
		}
		if err != nil {
			return fmt.Errorf("insert consumer %q: %w", c.Username, err)
		}
		if k, ok := kilo[c.Username]; ok {
			if err := putSetting(ctx, tx, KiloKey(c.Username), k); err != nil {
				return err
			}
		}
		if err := audit(ctx, tx, "consumer.create", consumerTarget(c.Username),
			detailMap(map[string]string{"mode": c.Mode, "key_prefix": c.KeyPrefix})); err != nil {
			return err
		}
	}
	return nil
}

// loadConsumers returns the consumers matching where (a condition on c, or
// ""), ordered by username.
func loadConsumers(ctx context.Context, q queryer, where string, args ...any) ([]Consumer, error) {
	cond := ""
	if where != "" {
		cond = " WHERE " + where
	}
	rows, err := q.QueryContext(ctx, `SELECT `+consumerColumns+` FROM consumers c`+cond+` ORDER BY c.username`, args...)
	if err != nil {
		return nil, fmt.Errorf("list consumers: %w", err)
	}
	out := []Consumer{}
	for rows.Next() {
		c, err := scanConsumer(rows)
		if err != nil {
			rows.Close()
			return nil, fmt.Errorf("list consumers: %w", err)
		}
		out = append(out, c)
	}
	if err := closeRows(rows); err != nil {
		return nil, fmt.Errorf("list consumers: %w", err)
	}
	return out, nil
}

// CreateConsumers adds consumers, with the kilo.jsonc generated for each
// (kilo, by username; optional), in one transaction: all or nothing. A name
// or key that exists already is ErrConflict. It returns the consumers as
// stored.
func (s *Store) CreateConsumers(ctx context.Context, cs []Consumer, kilo map[string]string) ([]Consumer, error) {
	if err := validateConsumerBatch(cs, kilo); err != nil {
		return nil, err
	}
	var out []Consumer
	err := s.write(ctx, func(tx *sql.Tx) error {
		if err := insertConsumers(ctx, tx, cs, kilo, now()); err != nil {
			return err
		}
		var err error
		out, err = loadConsumers(ctx, tx, `c.username IN (SELECT value FROM json_each(?))`, jsonNames(cs))
		return err
	})
	return out, err
}

// ReplaceConsumers replaces every consumer (and every stored kilo.jsonc of
// a consumer) by cs with their kilo configs, and writes settings, in one
// transaction: all or nothing. Usage already recorded is kept.
func (s *Store) ReplaceConsumers(ctx context.Context, cs []Consumer, kilo map[string]string, settings map[string]string) ([]Consumer, error) {
	if err := validateConsumerBatch(cs, kilo); err != nil {
		return nil, err
	}
	if err := validateSettingsBatch(settings); err != nil {
		return nil, err
	}
	var out []Consumer
	err := s.write(ctx, func(tx *sql.Tx) error {
		n, err := deleteAllConsumers(ctx, tx)
		if err != nil {
			return err
		}
		if err := insertConsumers(ctx, tx, cs, kilo, now()); err != nil {
			return err
		}
		for _, k := range slices.Sorted(maps.Keys(settings)) {
			if err := putSetting(ctx, tx, k, settings[k]); err != nil {
				return err
			}
		}
		if err := audit(ctx, tx, "consumer.replace", "consumers",
			detailJSON(map[string]int{"deleted": n, "created": len(cs)})); err != nil {
			return err
		}
		out, err = loadConsumers(ctx, tx, "")
		return err
	})
	return out, err
}

// ListConsumers returns every consumer, revoked ones included, ordered by
// username.
func (s *Store) ListConsumers(ctx context.Context) ([]Consumer, error) {
	return loadConsumers(ctx, s.db, "")
}

// GetConsumer returns a consumer by username.
func (s *Store) GetConsumer(ctx context.Context, username string) (Consumer, error) {
	return loadConsumer(ctx, s.db, username)
}

// loadConsumer reads one consumer by username, or ErrNotFound.
func loadConsumer(ctx context.Context, q queryer, username string) (Consumer, error) {
	cs, err := loadConsumers(ctx, q, `c.username = ?`, username)
	if err != nil {
		return Consumer{}, err
	}
	if len(cs) == 0 {
		return Consumer{}, fmt.Errorf("consumer %q: %w", username, ErrNotFound)
	}
	return cs[0], nil
}

// GetConsumerByHash returns the consumer whose key has hash keyHash (hex
// SHA-256), revoked or not.
func (s *Store) GetConsumerByHash(ctx context.Context, keyHash string) (Consumer, error) {
	cs, err := loadConsumers(ctx, s.db, `c.key_hash = ?`, keyHash)
	if err != nil {
		return Consumer{}, err
	}
	if len(cs) == 0 {
		return Consumer{}, fmt.Errorf("consumer with that key: %w", ErrNotFound)
	}
	return cs[0], nil
}

// ConsumerKilo returns the kilo.jsonc generated for a consumer and whether
// there is one.
func (s *Store) ConsumerKilo(ctx context.Context, username string) (string, bool, error) {
	return s.Setting(ctx, KiloKey(username))
}

// RotateConsumer gives a consumer a new key (its hash and prefix) and the
// kilo.jsonc generated with it, and lifts a revocation.
func (s *Store) RotateConsumer(ctx context.Context, username, keyHash, keyPrefix, kilo string) (Consumer, error) {
	probe := Consumer{Username: username, Mode: ConsumerPerGroup, Group: "g", KeyHash: keyHash, KeyPrefix: keyPrefix}
	if err := probe.Validate(); err != nil {
		return Consumer{}, err
	}
	var out Consumer
	err := s.write(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE consumers SET key_hash = ?, key_prefix = ?, revoked_at = NULL
			WHERE username = ?`, keyHash, keyPrefix, username)
		if isUnique(err) {
			return fmt.Errorf("key of consumer %q: %w", username, ErrConflict)
		}
		if err != nil {
			return fmt.Errorf("rotate consumer %q: %w", username, err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return fmt.Errorf("consumer %q: %w", username, ErrNotFound)
		}
		if kilo != "" {
			if err := putSetting(ctx, tx, KiloKey(username), kilo); err != nil {
				return err
			}
		} else if _, err := tx.ExecContext(ctx, `DELETE FROM settings WHERE key = ?`, KiloKey(username)); err != nil {
			return fmt.Errorf("rotate consumer %q: %w", username, err)
		}
		if err := audit(ctx, tx, "consumer.rotate", consumerTarget(username), detail("key_prefix", keyPrefix)); err != nil {
			return err
		}
		out, err = loadConsumer(ctx, tx, username)
		return err
	})
	return out, err
}

// RevokeConsumer disables a consumer's key, keeping the consumer and its
// usage. Revoking a revoked consumer changes nothing.
func (s *Store) RevokeConsumer(ctx context.Context, username string) (Consumer, error) {
	var out Consumer
	err := s.write(ctx, func(tx *sql.Tx) error {
		var err error
		if out, err = loadConsumer(ctx, tx, username); err != nil {
			return err
		}
		if out.RevokedAt != nil {
			return nil
		}
		t := now()
		if _, err := tx.ExecContext(ctx, `UPDATE consumers SET revoked_at = ? WHERE username = ?`, formatTime(t), username); err != nil {
			return fmt.Errorf("revoke consumer %q: %w", username, err)
		}
		out.RevokedAt = &t
		return audit(ctx, tx, "consumer.revoke", consumerTarget(username), "")
	})
	return out, err
}

// DeleteConsumer deletes a consumer and its kilo.jsonc and returns what
// was deleted. Its recorded usage is kept.
func (s *Store) DeleteConsumer(ctx context.Context, username string) (Consumer, error) {
	var out Consumer
	err := s.write(ctx, func(tx *sql.Tx) error {
		var err error
		if out, err = loadConsumer(ctx, tx, username); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM consumers WHERE username = ?`, username); err != nil {
			return fmt.Errorf("delete consumer %q: %w", username, err)
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM settings WHERE key = ?`, KiloKey(username)); err != nil {
			return fmt.Errorf("delete consumer %q: %w", username, err)
		}
		return audit(ctx, tx, "consumer.delete", consumerTarget(username), "")
	})
	return out, err
}

// DeleteConsumers deletes the named consumers and their kilo.jsonc in one
// transaction, skipping names that do not exist, and returns how many it
// deleted.
func (s *Store) DeleteConsumers(ctx context.Context, usernames []string) (int, error) {
	n := 0
	err := s.write(ctx, func(tx *sql.Tx) error {
		for _, name := range usernames {
			res, err := tx.ExecContext(ctx, `DELETE FROM consumers WHERE username = ?`, name)
			if err != nil {
				return fmt.Errorf("delete consumer %q: %w", name, err)
			}
			if k, _ := res.RowsAffected(); k == 0 {
				continue
			}
			n++
			if _, err := tx.ExecContext(ctx, `DELETE FROM settings WHERE key = ?`, KiloKey(name)); err != nil {
				return fmt.Errorf("delete consumer %q: %w", name, err)
			}
			if err := audit(ctx, tx, "consumer.delete", consumerTarget(name), ""); err != nil {
				return err
			}
		}
		return nil
	})
	return n, err
}

// DeleteAllConsumers deletes every consumer and every stored kilo.jsonc of
// a consumer, writes settings, in one transaction, and returns how many
// consumers it deleted. Recorded usage is kept.
func (s *Store) DeleteAllConsumers(ctx context.Context, settings map[string]string) (int, error) {
	if err := validateSettingsBatch(settings); err != nil {
		return 0, err
	}
	n := 0
	err := s.write(ctx, func(tx *sql.Tx) error {
		var err error
		if n, err = deleteAllConsumers(ctx, tx); err != nil {
			return err
		}
		for _, k := range slices.Sorted(maps.Keys(settings)) {
			if err := putSetting(ctx, tx, k, settings[k]); err != nil {
				return err
			}
		}
		return audit(ctx, tx, "consumer.delete_all", "consumers", detailJSON(map[string]int{"deleted": n}))
	})
	return n, err
}

func deleteAllConsumers(ctx context.Context, tx *sql.Tx) (int, error) {
	res, err := tx.ExecContext(ctx, `DELETE FROM consumers`)
	if err != nil {
		return 0, fmt.Errorf("delete consumers: %w", err)
	}
	n, _ := res.RowsAffected()
	if _, err := tx.ExecContext(ctx, `DELETE FROM settings WHERE substr(key, 1, ?) = ?`, len(kiloKeyPrefix), kiloKeyPrefix); err != nil {
		return 0, fmt.Errorf("delete consumer kilo configs: %w", err)
	}
	return int(n), nil
}

// UsageRecord is one request that went through the gateway.
type UsageRecord struct {
	Consumer   string
	At         time.Time
	Model      string
	Prompt     int64
	Completion int64
	Total      int64
	// Status is the HTTP status answered to the client.
	Status int
}

// RecordUsage stores usage records in one transaction. Records are not
// audited.
func (s *Store) RecordUsage(ctx context.Context, records []UsageRecord) error {
	if len(records) == 0 {
		return nil
	}
	for i, r := range records {
		if msg := consumerNameProblem(r.Consumer); msg != "" {
			return &FieldError{Field: fmt.Sprintf("records[%d].consumer", i), Msg: msg}
		}
		if r.Prompt < 0 || r.Completion < 0 || r.Total < 0 {
			return &FieldError{Field: fmt.Sprintf("records[%d]", i), Msg: "token counts must not be negative"}
		}
	}
	return s.write(ctx, func(tx *sql.Tx) error {
		stmt, err := tx.PrepareContext(ctx, `INSERT INTO usage (consumer, at, model, prompt_tokens,
			completion_tokens, total_tokens, status) VALUES (?, ?, ?, ?, ?, ?, ?)`)
		if err != nil {
			return fmt.Errorf("record usage: %w", err)
		}
		defer stmt.Close()
		for _, r := range records {
			at := r.At
			if at.IsZero() {
				at = now()
			}
			if _, err := stmt.ExecContext(ctx, r.Consumer, formatTime(at), r.Model, r.Prompt, r.Completion, r.Total, r.Status); err != nil {
				return fmt.Errorf("record usage: %w", err)
			}
		}
		return nil
	})
}

// UsageFilter selects usage for UsageSummary.
type UsageFilter struct {
	// From and To bound the time of the requests: From <= at < To. A zero
	// From means the beginning, a zero To means no end.
	From, To time.Time
	// Consumer restricts the summary to one consumer; empty means all.
	Consumer string
}

// ConsumerUsage sums one consumer's requests over a time range.
type ConsumerUsage struct {
	Consumer         string    `json:"consumer"`
	Requests         int64     `json:"requests"`
	Errors           int64     `json:"errors"`
	PromptTokens     int64     `json:"prompt_tokens"`
	CompletionTokens int64     `json:"completion_tokens"`
	TotalTokens      int64     `json:"total_tokens"`
	LastUsed         time.Time `json:"last_used"`
}

// UsageSummary returns, per consumer with requests in the range, the number
// of requests, of answers with an error status (400 and above), the tokens
// and the time of the latest request, ordered by consumer.
func (s *Store) UsageSummary(ctx context.Context, f UsageFilter) ([]ConsumerUsage, error) {
	if !f.From.IsZero() && !f.To.IsZero() && !f.To.After(f.From) {
		return nil, &FieldError{Field: "to", Msg: "must be after from"}
	}
	var conds []string
	var args []any
	if !f.From.IsZero() {
		conds = append(conds, "at >= ?")
		args = append(args, formatTime(f.From))
	}
	if !f.To.IsZero() {
		conds = append(conds, "at < ?")
		args = append(args, formatTime(f.To))
	}
	if f.Consumer != "" {
		conds = append(conds, "consumer = ?")
		args = append(args, f.Consumer)
	}
	where := ""
	if len(conds) > 0 {
		where = " WHERE " + strings.Join(conds, " AND ")
	}
	rows, err := s.db.QueryContext(ctx, `SELECT consumer, COUNT(*), SUM(CASE WHEN status >= 400 THEN 1 ELSE 0 END),
		SUM(prompt_tokens), SUM(completion_tokens), SUM(total_tokens), MAX(at)
		FROM usage`+where+` GROUP BY consumer ORDER BY consumer`, args...)
	if err != nil {
		return nil, fmt.Errorf("usage summary: %w", err)
	}
	out := []ConsumerUsage{}
	for rows.Next() {
		var u ConsumerUsage
		var last string
		if err := rows.Scan(&u.Consumer, &u.Requests, &u.Errors, &u.PromptTokens, &u.CompletionTokens, &u.TotalTokens, &last); err != nil {
			rows.Close()
			return nil, fmt.Errorf("usage summary: %w", err)
		}
		if u.LastUsed, err = parseTime(last); err != nil {
			rows.Close()
			return nil, fmt.Errorf("usage summary: %w", err)
		}
		out = append(out, u)
	}
	if err := closeRows(rows); err != nil {
		return nil, fmt.Errorf("usage summary: %w", err)
	}
	return out, nil
}

// jsonNames returns the usernames of cs as a JSON array, for json_each.
func jsonNames(cs []Consumer) string {
	names := make([]string, len(cs))
	for i, c := range cs {
		names[i] = c.Username
	}
	return detailJSON(names)
}

package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode"
)

// Errors of one-time secrets (setup tokens, join links), returned wrapped.
var (
	// ErrSpent means the one-time secret was used already.
	ErrSpent = errors.New("already used")
	// ErrExpired means the secret's time is over.
	ErrExpired = errors.New("expired")
)

// Session kinds, the one source of these values (auth.KindOrganiser and
// auth.KindParticipant are these).
const (
	SessionOrganiser   = "organiser"
	SessionParticipant = "participant"
)

// maxLoginLen bounds an organiser's login.
const maxLoginLen = 128

// Organiser is someone who may do everything. Only the argon2id encoding
// of the password is kept; an organiser let in by an identity provider has
// none.
type Organiser struct {
	ID           int64     `json:"id"`
	Login        string    `json:"login"`
	Email        string    `json:"email,omitempty"`
	PasswordHash string    `json:"-"`
	CreatedAt    time.Time `json:"created_at"`
	UpdatedAt    time.Time `json:"updated_at"`
}

// ValidateLogin reports what is wrong with an organiser's login as a
// *FieldError on field "login": it must be 1 to 128 characters with no
// spaces or control characters.
func ValidateLogin(login string) error {
	if login == "" {
		return &FieldError{Field: "login", Msg: "must not be empty"}
	}
	if len(login) > maxLoginLen {
		return &FieldError{Field: "login", Msg: fmt.Sprintf("longer than %d characters", maxLoginLen)}
	}
	for _, r := range login {
		if unicode.IsSpace(r) || unicode.IsControl(r) {
			return &FieldError{Field: "login", Msg: fmt.Sprintf("%q has a space or control character", login)}
		}
	}
	return nil
}

// ListOrganisers returns the organisers by login.
func (s *Store) ListOrganisers(ctx context.Context) ([]Organiser, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT id, login, email, password_hash, created_at, updated_at
		FROM organisers ORDER BY login`)
	if err != nil {
		return nil, fmt.Errorf("list organisers: %w", err)
	}
	out := []Organiser{}
	for rows.Next() {
		o, err := scanOrganiser(rows)
		if err != nil {
			rows.Close()
			return nil, fmt.Errorf("list organisers: %w", err)
		}
		out = append(out, o)
	}
	if err := closeRows(rows); err != nil {
		return nil, fmt.Errorf("list organisers: %w", err)
	}
	return out, nil
}

// GetOrganiser returns the organiser with login, or ErrNotFound.
func (s *Store) GetOrganiser(ctx context.Context, login string) (Organiser, error) {
	row := s.db.QueryRowContext(ctx, `SELECT id, login, email, password_hash, created_at, updated_at
		FROM organisers WHERE login = ?`, login)
	o, err := scanOrganiser(row)
	if errors.Is(err, sql.ErrNoRows) {
		return Organiser{}, fmt.Errorf("organiser %q: %w", login, ErrNotFound)
	}
	if err != nil {
		return Organiser{}, fmt.Errorf("organiser %q: %w", login, err)
	}
	return o, nil
}

// HasOrganiserPassword reports whether some organiser has a password, that
// is whether the first organiser was set up.
func (s *Store) HasOrganiserPassword(ctx context.Context) (bool, error) {
	var n int
	if err := s.db.QueryRowContext(ctx, `SELECT count(*) FROM organisers WHERE password_hash != ''`).Scan(&n); err != nil {
		return false, fmt.Errorf("count organisers: %w", err)
	}
	return n > 0, nil
}

func scanOrganiser(row interface{ Scan(...any) error }) (Organiser, error) {
	var o Organiser
	var created, updated string
	if err := row.Scan(&o.ID, &o.Login, &o.Email, &o.PasswordHash, &created, &updated); err != nil {
		return Organiser{}, err
	}
	var err error
	if o.CreatedAt, err = parseTime(created); err != nil {
		return Organiser{}, err
	}
	if o.UpdatedAt, err = parseTime(updated); err != nil {
		return Organiser{}, err
	}
	return o, nil
}

// ReplaceSetupToken keeps tokenHash (a hex SHA-256) as the one setup token
// not yet used, valid until expires: unused tokens issued before it stop
// working.
func (s *Store) ReplaceSetupToken(ctx context.Context, tokenHash string, expires time.Time) error {
	if err := checkHash("token_hash", tokenHash); err != nil {
		return err
	}
	return s.write(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `DELETE FROM setup_tokens WHERE used_at IS NULL`); err != nil {
			return fmt.Errorf("replace setup token: %w", err)
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO setup_tokens (token_hash, created_at, expires_at) VALUES (?, ?, ?)`,
			tokenHash, formatTime(now()), formatTime(expires)); err != nil {
			return fmt.Errorf("replace setup token: %w", err)
		}
		return audit(ctx, tx, "setup.issue", "", detail("expires_at", formatTime(expires)))
	})
}

// CheckSetupToken reports whether the setup token with tokenHash may be
// used at t: nil, or an error wrapping ErrNotFound, ErrSpent or ErrExpired.
func (s *Store) CheckSetupToken(ctx context.Context, tokenHash string, t time.Time) error {
	return checkSetupToken(ctx, s.db, tokenHash, t)
}

func checkSetupToken(ctx context.Context, q queryer, tokenHash string, t time.Time) error {
	var expires string
	var used sql.NullString
	err := q.QueryRowContext(ctx, `SELECT expires_at, used_at FROM setup_tokens WHERE token_hash = ?`, tokenHash).
		Scan(&expires, &used)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return fmt.Errorf("setup link: %w", ErrNotFound)
	case err != nil:
		return fmt.Errorf("setup link: %w", err)
	case used.Valid:
		return fmt.Errorf("setup link: %w", ErrSpent)
	case expires <= formatTime(t):
		return fmt.Errorf("setup link: %w", ErrExpired)
	}
	return nil
}

// CompleteSetup spends the setup token with tokenHash at t and creates the
// first organiser with login and passwordHash (an encoded argon2id hash),
// in one transaction. The token must be unused and not expired (else an
// error wrapping ErrNotFound, ErrSpent or ErrExpired) and no organiser may
// have a password yet (else ErrConflict).
func (s *Store) CompleteSetup(ctx context.Context, tokenHash string, t time.Time, login, passwordHash string) (Organiser, error) {
	if err := ValidateLogin(login); err != nil {
		return Organiser{}, err
	}
	if passwordHash == "" {
		return Organiser{}, &FieldError{Field: "password", Msg: "must not be empty"}
	}
	var o Organiser
	err := s.write(ctx, func(tx *sql.Tx) error {
		if err := checkSetupToken(ctx, tx, tokenHash, t); err != nil {
			return err
		}
		var n int
		if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM organisers WHERE password_hash != ''`).Scan(&n); err != nil {
			return fmt.Errorf("setup: %w", err)
		}
		if n > 0 {
			return fmt.Errorf("setup: an organiser has a password already: %w", ErrConflict)
		}
		if _, err := tx.ExecContext(ctx, `UPDATE setup_tokens SET used_at = ? WHERE token_hash = ?`,
			formatTime(t), tokenHash); err != nil {
			return fmt.Errorf("setup: %w", err)
		}
		ts := formatTime(now())
		// An organiser let in by an identity provider under this login
		// gets the password.
		if _, err := tx.ExecContext(ctx, `INSERT INTO organisers (login, password_hash, created_at, updated_at)
			VALUES (?, ?, ?, ?)
			ON CONFLICT (login) DO UPDATE SET password_hash = excluded.password_hash, updated_at = excluded.updated_at`,
			login, passwordHash, ts, ts); err != nil {
			return fmt.Errorf("setup: %w", err)
		}
		row := tx.QueryRowContext(ctx, `SELECT id, login, email, password_hash, created_at, updated_at
			FROM organisers WHERE login = ?`, login)
		var err error
		if o, err = scanOrganiser(row); err != nil {
			return fmt.Errorf("setup: %w", err)
		}
		return audit(ctx, tx, "organiser.setup", "organiser/"+login, "")
	})
	return o, err
}

// SessionRecord is a stored session: never the session id itself, only
// its hash.
type SessionRecord struct {
	// IDHash is the hex SHA-256 of the session id.
	IDHash string
	// Kind is SessionOrganiser or SessionParticipant.
	Kind string
	// Name is an organiser's name (login, token name or email).
	Name string
	// UserID is a participant's user; Group and User are that user's
	// group and name now (filled when read).
	UserID      int64
	Group, User string
	// Method is how the holder proved who they are (password, oidc,
	// join_link).
	Method    string
	CreatedAt time.Time
	ExpiresAt time.Time
	RevokedAt *time.Time
}

// CreateSession stores rec. Its IDHash must be a hex SHA-256; an
// organiser's session needs a name, a participant's a user.
func (s *Store) CreateSession(ctx context.Context, rec SessionRecord) error {
	if err := checkHash("id_hash", rec.IDHash); err != nil {
		return err
	}
	var user any
	switch rec.Kind {
	case SessionOrganiser:
		if rec.Name == "" {
			return &FieldError{Field: "name", Msg: "an organiser's session needs a name"}
		}
	case SessionParticipant:
		if rec.UserID <= 0 {
			return &FieldError{Field: "user_id", Msg: "a participant's session needs a user"}
		}
		user = rec.UserID
	default:
		return &FieldError{Field: "kind", Msg: fmt.Sprintf("must be %s or %s, got %q", SessionOrganiser, SessionParticipant, rec.Kind)}
	}
	if rec.Method == "" {
		return &FieldError{Field: "method", Msg: "must not be empty"}
	}
	return s.write(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO auth_sessions (id_hash, kind, name, user_id, method, created_at, expires_at)
			VALUES (?, ?, ?, ?, ?, ?, ?)`, rec.IDHash, rec.Kind, rec.Name, user, rec.Method,
			formatTime(rec.CreatedAt), formatTime(rec.ExpiresAt))
		switch {
		case isUnique(err):
			return fmt.Errorf("session: %w", ErrConflict)
		case isForeignKey(err):
			return fmt.Errorf("user %d: %w", rec.UserID, ErrNotFound)
		case err != nil:
			return fmt.Errorf("create session: %w", err)
		}
		return nil
	})
}

// GetSession returns the session with idHash, revoked and expired ones
// included, or ErrNotFound.
func (s *Store) GetSession(ctx context.Context, idHash string) (SessionRecord, error) {
	var (
		rec              SessionRecord
		user             sql.NullInt64
		created, expires string
		revoked          sql.NullString
		group, name      sql.NullString
	)
	err := s.db.QueryRowContext(ctx, `SELECT s.id_hash, s.kind, s.name, s.user_id, s.method, s.created_at, s.expires_at,
			s.revoked_at, g.name, u.name
		FROM auth_sessions s LEFT JOIN users u ON u.id = s.user_id LEFT JOIN groups g ON g.id = u.group_id
		WHERE s.id_hash = ?`, idHash).
		Scan(&rec.IDHash, &rec.Kind, &rec.Name, &user, &rec.Method, &created, &expires, &revoked, &group, &name)
	if errors.Is(err, sql.ErrNoRows) {
		return SessionRecord{}, fmt.Errorf("session: %w", ErrNotFound)
	}
	if err != nil {
		return SessionRecord{}, fmt.Errorf("read session: %w", err)
	}
	rec.UserID, rec.Group, rec.User = user.Int64, group.String, name.String
	if rec.CreatedAt, err = parseTime(created); err != nil {
		return SessionRecord{}, err
	}
	if rec.ExpiresAt, err = parseTime(expires); err != nil {
		return SessionRecord{}, err
	}
	if rec.RevokedAt, err = parseNullTime(revoked); err != nil {
		return SessionRecord{}, err
	}
	return rec, nil
}

// RevokeSession marks the session with idHash revoked at t (a session
// revoked already keeps its first time), or answers ErrNotFound.
func (s *Store) RevokeSession(ctx context.Context, idHash string, t time.Time) error {
	return s.write(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE auth_sessions SET revoked_at = coalesce(revoked_at, ?) WHERE id_hash = ?`,
			formatTime(t), idHash)
		if err != nil {
			return fmt.Errorf("revoke session: %w", err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return fmt.Errorf("session: %w", ErrNotFound)
		}
		return nil
	})
}

// RevokeUserSessions marks every live session of the user revoked at t and
// returns their hashes.
func (s *Store) RevokeUserSessions(ctx context.Context, userID int64, t time.Time) ([]string, error) {
	var hashes []string
	err := s.write(ctx, func(tx *sql.Tx) error {
		rows, err := tx.QueryContext(ctx, `UPDATE auth_sessions SET revoked_at = ?
			WHERE user_id = ? AND revoked_at IS NULL RETURNING id_hash`, formatTime(t), userID)
		if err != nil {
			return fmt.Errorf("revoke sessions of user %d: %w", userID, err)
		}
		for rows.Next() {
			var h string
			if err := rows.Scan(&h); err != nil {
				rows.Close()
				return fmt.Errorf("revoke sessions of user %d: %w", userID, err)
			}
			hashes = append(hashes, h)
		}
		return closeRows(rows)
	})
	return hashes, err
}

// DeleteExpiredSessions deletes the sessions that expired before t, revoked
// or not, and returns how many.
func (s *Store) DeleteExpiredSessions(ctx context.Context, t time.Time) (int64, error) {
	var n int64
	err := s.write(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `DELETE FROM auth_sessions WHERE expires_at < ?`, formatTime(t))
		if err != nil {
			return fmt.Errorf("delete expired sessions: %w", err)
		}
		n, _ = res.RowsAffected()
		return nil
	})
	return n, err
}

// APIToken is an organiser's API token: only the SHA-256 hash of the token
// is kept, with its first characters to tell tokens apart in lists.
type APIToken struct {
	Name      string    `json:"name"`
	Prefix    string    `json:"prefix"`
	Hash      string    `json:"-"`
	CreatedAt time.Time `json:"created_at"`
}

// CreateAPIToken stores t (its CreatedAt is set now). The name follows the
// rules of group names; a name in use answers ErrConflict.
func (s *Store) CreateAPIToken(ctx context.Context, t APIToken) (APIToken, error) {
	if err := ValidateName("name", t.Name); err != nil {
		return APIToken{}, err
	}
	if err := checkHash("hash", t.Hash); err != nil {
		return APIToken{}, err
	}
	t.CreatedAt = now()
	err := s.write(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO api_tokens (name, prefix, token_hash, created_at) VALUES (?, ?, ?, ?)`,
			t.Name, t.Prefix, t.Hash, formatTime(t.CreatedAt))
		if isUnique(err) {
			return fmt.Errorf("api token %q exists already: %w", t.Name, ErrConflict)
		}
		if err != nil {
			return fmt.Errorf("create api token: %w", err)
		}
		return audit(ctx, tx, "token.create", "token/"+t.Name, detail("prefix", t.Prefix))
	})
	if err != nil {
		return APIToken{}, err
	}
	return t, nil
}

// APITokenByHash returns the token whose hash is hash, or ErrNotFound.
func (s *Store) APITokenByHash(ctx context.Context, hash string) (APIToken, error) {
	row := s.db.QueryRowContext(ctx, `SELECT name, prefix, token_hash, created_at FROM api_tokens WHERE token_hash = ?`, hash)
	t, err := scanAPIToken(row)
	if errors.Is(err, sql.ErrNoRows) {
		return APIToken{}, fmt.Errorf("api token: %w", ErrNotFound)
	}
	return t, err
}

// ListAPITokens returns the tokens by name.
func (s *Store) ListAPITokens(ctx context.Context) ([]APIToken, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT name, prefix, token_hash, created_at FROM api_tokens ORDER BY name`)
	if err != nil {
		return nil, fmt.Errorf("list api tokens: %w", err)
	}
	out := []APIToken{}
	for rows.Next() {
		t, err := scanAPIToken(rows)
		if err != nil {
			rows.Close()
			return nil, fmt.Errorf("list api tokens: %w", err)
		}
		out = append(out, t)
	}
	if err := closeRows(rows); err != nil {
		return nil, fmt.Errorf("list api tokens: %w", err)
	}
	return out, nil
}

// DeleteAPIToken deletes the token named name and returns it, or answers
// ErrNotFound.
func (s *Store) DeleteAPIToken(ctx context.Context, name string) (APIToken, error) {
	var t APIToken
	err := s.write(ctx, func(tx *sql.Tx) error {
		row := tx.QueryRowContext(ctx, `DELETE FROM api_tokens WHERE name = ? RETURNING name, prefix, token_hash, created_at`, name)
		var err error
		t, err = scanAPIToken(row)
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("api token %q: %w", name, ErrNotFound)
		}
		if err != nil {
			return fmt.Errorf("delete api token: %w", err)
		}
		return audit(ctx, tx, "token.revoke", "token/"+name, detail("prefix", t.Prefix))
	})
	return t, err
}

func scanAPIToken(row interface{ Scan(...any) error }) (APIToken, error) {
	var t APIToken
	var created string
	if err := row.Scan(&t.Name, &t.Prefix, &t.Hash, &created); err != nil {
		return APIToken{}, err
	}
	var err error
	t.CreatedAt, err = parseTime(created)
	return t, err
}

// checkHash refuses anything but 64 lowercase hex characters.
func checkHash(field, h string) error {
	if len(h) != 64 || strings.Trim(h, "0123456789abcdef") != "" {
		return &FieldError{Field: field, Msg: "must be 64 lowercase hex characters (a SHA-256)"}
	}
	return nil
}

package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"slices"
	"time"

	"github.com/thon-dev/thon/internal/jsonc"
)

// The config-file slots: files an organiser can keep in the database
// instead of on disk (the same setting keys as the original project).
const (
	KeyGroupsYAML     = "config_groups_yaml"
	KeyKiloJSON       = "config_kilo_json"
	KeyVSCodeSettings = "config_vscode_settings"
)

// ConfigKeys returns the config-file slot keys: groups, kilo, VS Code.
func ConfigKeys() []string {
	return []string{KeyGroupsYAML, KeyKiloJSON, KeyVSCodeSettings}
}

// ConfigFile is a config-file slot and, when read singly, its content.
type ConfigFile struct {
	Key         string    `json:"key"`
	Description string    `json:"description"`
	Format      string    `json:"format"` // "yaml" | "jsonc"
	Set         bool      `json:"set"`
	Size        int       `json:"size"`
	Content     string    `json:"content,omitempty"`
	UpdatedAt   time.Time `json:"updated_at,omitzero"`
}

type slot struct {
	description string
	format      string
	filename    string // used in error messages
}

var slots = map[string]slot{
	KeyGroupsYAML:     {"Groups and users (groups.yaml)", "yaml", "groups.yaml"},
	KeyKiloJSON:       {"Kilo Code configuration (kilo.jsonc)", "jsonc", "kilo.jsonc"},
	KeyVSCodeSettings: {"VS Code settings (settings.json)", "jsonc", "settings.json"},
}

func lookupSlot(key string) (slot, error) {
	sl, ok := slots[key]
	if !ok {
		return slot{}, fmt.Errorf("config file %q: %w", key, ErrNotFound)
	}
	return sl, nil
}

// validateConfig checks content for the slot; filename is used in messages.
func validateConfig(key, filename string, content []byte) error {
	if key == KeyGroupsYAML {
		_, err := ParseRoster(filename, content)
		return err
	}
	if err := jsonc.ValidateObject(content); err != nil {
		return fmt.Errorf("%s: %w", filename, err)
	}
	return nil
}

// ConfigFiles returns every slot, without content.
func (s *Store) ConfigFiles(ctx context.Context) ([]ConfigFile, error) {
	files := make([]ConfigFile, 0, len(slots))
	for _, key := range ConfigKeys() {
		f, err := s.ConfigFile(ctx, key)
		if err != nil {
			return nil, err
		}
		f.Content = ""
		files = append(files, f)
	}
	return files, nil
}

// ConfigFile returns a slot with its content. An unknown key is
// ErrNotFound; an unset slot has Set false.
func (s *Store) ConfigFile(ctx context.Context, key string) (ConfigFile, error) {
	sl, err := lookupSlot(key)
	if err != nil {
		return ConfigFile{}, err
	}
	return readConfigFile(ctx, s.db, key, sl)
}

func readConfigFile(ctx context.Context, q queryer, key string, sl slot) (ConfigFile, error) {
	f := ConfigFile{Key: key, Description: sl.description, Format: sl.format}
	var updated string
	err := q.QueryRowContext(ctx, `SELECT value, updated_at FROM settings WHERE key = ?`, key).Scan(&f.Content, &updated)
	if errors.Is(err, sql.ErrNoRows) {
		return f, nil
	}
	if err != nil {
		return ConfigFile{}, fmt.Errorf("read config file %q: %w", key, err)
	}
	f.Set, f.Size = true, len(f.Content)
	if f.UpdatedAt, err = parseTime(updated); err != nil {
		return ConfigFile{}, err
	}
	return f, nil
}

// PutConfigFile validates content for the slot (the groups slot must parse
// as a groups file, the others must be a JSONC object) and stores it. A
// rejected content is a *FieldError for field "content", and the old
// content stays.
func (s *Store) PutConfigFile(ctx context.Context, key, content string) (ConfigFile, error) {
	sl, err := lookupSlot(key)
	if err != nil {
		return ConfigFile{}, err
	}
	if err := validateConfig(key, sl.filename, []byte(content)); err != nil {
		msg := err.Error()
		var fe *FieldError
		if errors.As(err, &fe) {
			msg = fe.located()
		}
		return ConfigFile{}, &FieldError{Field: "content", Msg: msg}
	}
	var f ConfigFile
	err = s.write(ctx, func(tx *sql.Tx) error {
		if err := putSetting(ctx, tx, key, content); err != nil {
			return err
		}
		var err error
		if f, err = readConfigFile(ctx, tx, key, sl); err != nil {
			return err
		}
		return audit(ctx, tx, "config.put", "config:"+key, detail("size", fmt.Sprint(len(content))))
	})
	return f, err
}

// DeleteConfigFile clears a slot. Clearing an unset slot does nothing.
func (s *Store) DeleteConfigFile(ctx context.Context, key string) error {
	if _, err := lookupSlot(key); err != nil {
		return err
	}
	return s.write(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `DELETE FROM settings WHERE key = ?`, key)
		if err != nil {
			return fmt.Errorf("delete config file %q: %w", key, err)
		}
		if n, err := res.RowsAffected(); err != nil || n == 0 {
			return err
		}
		return audit(ctx, tx, "config.delete", "config:"+key, "")
	})
}

// Resolved is the content of a config file and where it came from.
type Resolved struct {
	Key     string `json:"key"`
	Content string `json:"content"`
	// Source is "file:<path>", "database" or "none".
	Source string `json:"source"`
}

// ResolveConfig finds the config file for a slot by precedence: flagPath (a
// path given on the command line or in the Caddyfile), then the database
// slot, then none. A flagPath naming a missing, unreadable or invalid file
// is an error, never a silent fall-through to the next source.
func (s *Store) ResolveConfig(ctx context.Context, key, flagPath string) (Resolved, error) {
	if _, err := lookupSlot(key); err != nil {
		return Resolved{}, err
	}
	if flagPath != "" {
		b, err := os.ReadFile(flagPath)
		if err != nil {
			return Resolved{}, fmt.Errorf("config file for %s: %w", key, err)
		}
		if err := validateConfig(key, flagPath, b); err != nil {
			return Resolved{}, fmt.Errorf("config file for %s: %w", key, err)
		}
		return Resolved{Key: key, Content: string(b), Source: "file:" + flagPath}, nil
	}
	f, err := s.ConfigFile(ctx, key)
	if err != nil {
		return Resolved{}, err
	}
	if f.Set {
		return Resolved{Key: key, Content: f.Content, Source: "database"}, nil
	}
	return Resolved{Key: key, Source: "none"}, nil
}

// Setting returns the value of a setting and whether it is set.
func (s *Store) Setting(ctx context.Context, key string) (string, bool, error) {
	var v string
	err := s.db.QueryRowContext(ctx, `SELECT value FROM settings WHERE key = ?`, key).Scan(&v)
	if errors.Is(err, sql.ErrNoRows) {
		return "", false, nil
	}
	if err != nil {
		return "", false, fmt.Errorf("read setting %q: %w", key, err)
	}
	return v, true, nil
}

// SetSetting sets a setting. The config-file slots are refused: they are
// validated, through PutConfigFile.
func (s *Store) SetSetting(ctx context.Context, key, value string) error {
	if key == "" {
		return &FieldError{Field: "key", Msg: "must not be empty"}
	}
	if slices.Contains(ConfigKeys(), key) {
		return &FieldError{Field: "key", Msg: fmt.Sprintf("%q is a config file; use PutConfigFile", key)}
	}
	return s.write(ctx, func(tx *sql.Tx) error {
		return putSetting(ctx, tx, key, value)
	})
}

func putSetting(ctx context.Context, tx *sql.Tx, key, value string) error {
	_, err := tx.ExecContext(ctx, `INSERT INTO settings (key, value, updated_at) VALUES (?, ?, ?)
		ON CONFLICT (key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at`,
		key, value, formatTime(now()))
	if err != nil {
		return fmt.Errorf("save setting %q: %w", key, err)
	}
	return nil
}

package auth

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// MinSecretBytes is the shortest session secret accepted.
const MinSecretBytes = 32

// SecretFileName is the file in thon's data directory that keeps the
// generated session secret.
const SecretFileName = "session-secret"

// LoadSecret returns the key that signs session cookies: value when it is
// not empty (AUTH_SESSION_SECRET; at least MinSecretBytes bytes), else the
// secret kept in file, which is made once (32 random bytes, hex, mode
// 0600) when it does not exist. A file that others may read is refused.
func LoadSecret(value, file string) ([]byte, error) {
	if value != "" {
		if len(value) < MinSecretBytes {
			return nil, fmt.Errorf("session secret: %d bytes, want at least %d (e.g. openssl rand -hex 32)", len(value), MinSecretBytes)
		}
		return []byte(value), nil
	}
	if file == "" {
		return nil, errors.New("session secret: no secret and no file to keep one in")
	}
	b, err := readSecretFile(file)
	if err == nil {
		return b, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	var raw [32]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return nil, fmt.Errorf("session secret: reading random bytes: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(file), 0o700); err != nil {
		return nil, fmt.Errorf("session secret: %w", err)
	}
	f, err := os.OpenFile(file, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) {
		return readSecretFile(file) // made meanwhile by another process
	}
	if err != nil {
		return nil, fmt.Errorf("session secret: %w", err)
	}
	text := hex.EncodeToString(raw[:])
	_, err = f.WriteString(text + "\n")
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(file)
		return nil, fmt.Errorf("session secret: writing %s: %w", file, err)
	}
	return []byte(text), nil
}

func readSecretFile(file string) ([]byte, error) {
	fi, err := os.Stat(file)
	if err != nil {
		return nil, err
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("session secret file %s has mode %04o: others may read it; chmod 600 it", file, fi.Mode().Perm())
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("session secret: %w", err)
	}
	text := strings.TrimSpace(string(b))
	if len(text) < MinSecretBytes {
		return nil, fmt.Errorf("session secret file %s holds %d bytes, want at least %d: remove it to have a new one made (every session ends)",
			file, len(text), MinSecretBytes)
	}
	return []byte(text), nil
}

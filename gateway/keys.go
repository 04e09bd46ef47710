package gateway

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
)

// KeyPrefixMark starts every API key made by [NewKey], so that a leaked key
// is recognisable in logs, repositories and secret scanners.
const KeyPrefixMark = "thon_"

// keyRandomBytes is the number of random bytes in a key made by [NewKey].
const keyRandomBytes = 32

// keyShownChars is how many characters of a key [KeyPrefix] shows: the mark
// and the first six random characters.
const keyShownChars = len(KeyPrefixMark) + 6

// NewKey returns a new API key: [KeyPrefixMark] followed by 32 random bytes
// in unpadded base64url (48 characters in all). The key is shown once; store
// only [HashKey] of it.
func NewKey() (string, error) {
	var b [keyRandomBytes]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("reading random bytes for an api key: %w", err)
	}
	return KeyPrefixMark + base64.RawURLEncoding.EncodeToString(b[:]), nil
}

// HashKey returns the hex SHA-256 of key, the form in which keys are stored.
func HashKey(key string) string {
	sum := sha256.Sum256([]byte(key))
	return hex.EncodeToString(sum[:])
}

// KeyPrefix returns the first characters of key, enough to tell keys apart
// in a list without revealing them. Short keys yield at most half of their
// characters, so that the prefix never gives a key away.
func KeyPrefix(key string) string {
	n := keyShownChars
	if half := len(key) / 2; half < n {
		n = half
	}
	return key[:n]
}

// KeyFromRequest returns the API key a client presented: the token of an
// "Authorization: Bearer" header (what OpenAI clients send), else the
// "apikey" header, else the "apikey" query parameter (what APISIX's key-auth
// read). It returns "" when there is none.
func KeyFromRequest(r *http.Request) string {
	if auth := r.Header.Get("Authorization"); auth != "" {
		scheme, token, ok := strings.Cut(strings.TrimSpace(auth), " ")
		if ok && strings.EqualFold(scheme, "bearer") {
			if token = strings.TrimSpace(token); token != "" {
				return token
			}
		}
	}
	if key := strings.TrimSpace(r.Header.Get("apikey")); key != "" {
		return key
	}
	if r.URL != nil && r.URL.RawQuery != "" {
		return strings.TrimSpace(r.URL.Query().Get("apikey"))
	}
	return ""
}

// Keyring maps API keys to consumers. Keys are held only as SHA-256 hashes;
// a lookup hashes the presented key, finds the entry by hash and confirms it
// with a constant-time comparison. A Keyring is safe for concurrent use and
// its contents are replaced atomically by [Keyring.Set]. The zero value is an
// empty keyring ready to use.
type Keyring struct {
	m atomic.Pointer[map[[sha256.Size]byte]*keyEntry]
}

// keyEntry is one consumer of a Keyring with its decoded key hash.
type keyEntry struct {
	hash     [sha256.Size]byte
	consumer Consumer
}

// Set replaces the whole keyring with consumers. Every consumer must be
// valid and have a KeyHash; names and key hashes must be unique. On error
// the keyring is left unchanged.
func (k *Keyring) Set(consumers []Consumer) error {
	m := make(map[[sha256.Size]byte]*keyEntry, len(consumers))
	names := make(map[string]int, len(consumers))
	for i := range consumers {
		c := consumers[i]
		if err := c.Validate(); err != nil {
			return fmt.Errorf("consumers[%d]: %w", i, err)
		}
		sum, err := parseKeyHash(c.KeyHash)
		if err != nil {
			return fmt.Errorf("consumers[%d].key_hash: %w", i, err)
		}
		if j, dup := names[c.Name]; dup {
			return fmt.Errorf("consumers[%d].name: %q already used by consumers[%d]", i, c.Name, j)
		}
		if _, dup := m[sum]; dup {
			return fmt.Errorf("consumers[%d].key_hash: key already used by consumer %q", i, m[sum].consumer.Name)
		}
		names[c.Name] = i
		m[sum] = &keyEntry{hash: sum, consumer: c}
	}
	k.m.Store(&m)
	return nil
}

// Lookup returns the consumer whose key is key.
func (k *Keyring) Lookup(key string) (Consumer, bool) {
	mp := k.m.Load()
	if mp == nil || key == "" {
		return Consumer{}, false
	}
	sum := sha256.Sum256([]byte(key))
	e, ok := (*mp)[sum]
	if !ok || subtle.ConstantTimeCompare(sum[:], e.hash[:]) != 1 {
		return Consumer{}, false
	}
	return e.consumer, true
}

// Len returns the number of consumers in the keyring.
func (k *Keyring) Len() int {
	mp := k.m.Load()
	if mp == nil {
		return 0
	}
	return len(*mp)
}

// parseKeyHash decodes a hex SHA-256 as written by HashKey.
func parseKeyHash(h string) ([sha256.Size]byte, error) {
	var sum [sha256.Size]byte
	if len(h) != 2*sha256.Size {
		return sum, fmt.Errorf("must be %d hex characters, got %d", 2*sha256.Size, len(h))
	}
	if _, err := hex.Decode(sum[:], []byte(h)); err != nil {
		return sum, fmt.Errorf("not hex: %w", err)
	}
	return sum, nil
}

package auth

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"

	"golang.org/x/crypto/argon2"
)

// PasswordParams are the argon2id costs of a new password hash. Every
// hash carries its own parameters and salt, so changing them affects only
// passwords set afterwards.
type PasswordParams struct {
	// Time is the number of passes over the memory.
	Time uint32
	// MemoryKiB is the memory used, in KiB.
	MemoryKiB uint32
	// Threads is the degree of parallelism.
	Threads uint8
}

// DefaultPasswordParams are RFC 9106's second recommended option
// (t=3, 64 MiB, p=4): about 0.2 s per hash on a laptop core.
var DefaultPasswordParams = PasswordParams{Time: 3, MemoryKiB: 64 * 1024, Threads: 4}

const (
	saltBytes   = 16
	hashBytes   = 32
	maxPassword = 1024 // bytes; longer passwords are refused
	// Bounds on the parameters read from a stored hash, so that a damaged
	// row cannot make a login take the machine.
	maxTime      = 64
	maxMemoryKiB = 1 << 20 // 1 GiB
)

// errBadHash is returned for a stored hash that is not one HashPassword makes.
var errBadHash = errors.New("not an argon2id password hash")

// HashPassword returns the encoding of password's argon2id hash under p
// (zero fields take DefaultPasswordParams'), in the PHC string format:
// $argon2id$v=19$m=<KiB>,t=<time>,p=<threads>$<salt>$<hash>, base64
// without padding.
func HashPassword(password string, p PasswordParams) (string, error) {
	if len(password) > maxPassword {
		return "", fmt.Errorf("password longer than %d bytes", maxPassword)
	}
	p = p.withDefaults()
	salt := make([]byte, saltBytes)
	if _, err := rand.Read(salt); err != nil {
		return "", fmt.Errorf("reading random bytes for a salt: %w", err)
	}
	sum := argon2.IDKey([]byte(password), salt, p.Time, p.MemoryKiB, p.Threads, hashBytes)
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s", argon2.Version, p.MemoryKiB, p.Time, p.Threads,
		base64.RawStdEncoding.EncodeToString(salt), base64.RawStdEncoding.EncodeToString(sum)), nil
}

// VerifyPassword reports whether password matches encoded, a hash made by
// HashPassword. The comparison takes constant time.
func VerifyPassword(encoded, password string) (bool, error) {
	p, salt, sum, err := decodeHash(encoded)
	if err != nil {
		return false, err
	}
	if len(password) > maxPassword {
		return false, nil
	}
	got := argon2.IDKey([]byte(password), salt, p.Time, p.MemoryKiB, p.Threads, uint32(len(sum)))
	return subtle.ConstantTimeCompare(got, sum) == 1, nil
}

func (p PasswordParams) withDefaults() PasswordParams {
	if p.Time == 0 {
		p.Time = DefaultPasswordParams.Time
	}
	if p.MemoryKiB == 0 {
		p.MemoryKiB = DefaultPasswordParams.MemoryKiB
	}
	if p.Threads == 0 {
		p.Threads = DefaultPasswordParams.Threads
	}
	return p
}

func decodeHash(encoded string) (PasswordParams, []byte, []byte, error) {
	parts := strings.Split(encoded, "$")
	if len(parts) != 6 || parts[0] != "" || parts[1] != "argon2id" {
		return PasswordParams{}, nil, nil, errBadHash
	}
	var version int
	if _, err := fmt.Sscanf(parts[2], "v=%d", &version); err != nil || version != argon2.Version {
		return PasswordParams{}, nil, nil, fmt.Errorf("%w: version %q", errBadHash, parts[2])
	}
	var p PasswordParams
	if n, err := fmt.Sscanf(parts[3], "m=%d,t=%d,p=%d", &p.MemoryKiB, &p.Time, &p.Threads); err != nil || n != 3 {
		return PasswordParams{}, nil, nil, fmt.Errorf("%w: parameters %q", errBadHash, parts[3])
	}
	if p.Time < 1 || p.Time > maxTime || p.MemoryKiB < 8 || p.MemoryKiB > maxMemoryKiB || p.Threads < 1 {
		return PasswordParams{}, nil, nil, fmt.Errorf("%w: parameters %q out of bounds", errBadHash, parts[3])
	}
	salt, err := base64.RawStdEncoding.DecodeString(parts[4])
	if err != nil || len(salt) < 8 {
		return PasswordParams{}, nil, nil, fmt.Errorf("%w: salt", errBadHash)
	}
	sum, err := base64.RawStdEncoding.DecodeString(parts[5])
	if err != nil || len(sum) < 16 {
		return PasswordParams{}, nil, nil, fmt.Errorf("%w: hash", errBadHash)
	}
	return p, salt, sum, nil
}

package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// RevealedError reports that a participant was shown a consumer's key
// already; it matches ErrSpent.
type RevealedError struct {
	UserID   int64
	Consumer string
	// At is when the key was shown.
	At time.Time
}

func (e *RevealedError) Error() string {
	return fmt.Sprintf("the key of consumer %q was shown to user %d already, at %s", e.Consumer, e.UserID,
		e.At.Format(time.RFC3339))
}

// Is makes a RevealedError match ErrSpent.
func (e *RevealedError) Is(target error) bool { return target == ErrSpent }

// validateReveal checks the arguments of the key reveal functions.
func validateReveal(userID int64, consumer, keyHash string) error {
	if userID < 1 {
		return &FieldError{Field: "user_id", Msg: fmt.Sprintf("must be a positive integer, got %d", userID)}
	}
	if msg := consumerNameProblem(consumer); msg != "" {
		return &FieldError{Field: "consumer", Msg: msg}
	}
	if len(keyHash) != 64 || strings.Trim(keyHash, "0123456789abcdef") != "" {
		return &FieldError{Field: "key_hash", Msg: "must be 64 lowercase hex characters (a SHA-256)"}
	}
	return nil
}

// RecordKeyReveal records that the user with userID is shown the key of
// consumer, whose hash is keyHash, and returns the time. A key is shown
// to a user once: if this key was shown to them already, it changes
// nothing and returns a *RevealedError (ErrSpent). A key that is not the
// consumer's current one is ErrConflict; an unknown consumer or user
// ErrNotFound.
func (s *Store) RecordKeyReveal(ctx context.Context, userID int64, consumer, keyHash string) (time.Time, error) {
	if err := validateReveal(userID, consumer, keyHash); err != nil {
		return time.Time{}, err
	}
	t := now()
	err := s.write(ctx, func(tx *sql.Tx) error {
		var current string
		err := tx.QueryRowContext(ctx, `SELECT key_hash FROM consumers WHERE username = ?`, consumer).Scan(&current)
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("consumer %q: %w", consumer, ErrNotFound)
		}
		if err != nil {
			return fmt.Errorf("key reveal of consumer %q: %w", consumer, err)
		}
		if current != keyHash {
			return fmt.Errorf("consumer %q has another key now: %w", consumer, ErrConflict)
		}
		at, shown, err := revealedAt(ctx, tx, userID, consumer, keyHash)
		if err != nil {
			return err
		}
		if shown {
			return &RevealedError{UserID: userID, Consumer: consumer, At: at}
		}
		_, err = tx.ExecContext(ctx, `INSERT INTO gateway_key_reveals (user_id, consumer, key_hash, revealed_at)
			VALUES (?, ?, ?, ?) ON CONFLICT (user_id, consumer) DO UPDATE
			SET key_hash = excluded.key_hash, revealed_at = excluded.revealed_at`,
			userID, consumer, keyHash, formatTime(t))
		if isForeignKey(err) {
			return fmt.Errorf("user %d: %w", userID, ErrNotFound)
		}
		if err != nil {
			return fmt.Errorf("key reveal of consumer %q: %w", consumer, err)
		}
		return audit(ctx, tx, "consumer.key_reveal", consumerTarget(consumer), detail("user_id", strconv.FormatInt(userID, 10)))
	})
	if err != nil {
		return time.Time{}, err
	}
	return t, nil
}

// KeyRevealedAt returns when the key of consumer whose hash is keyHash was
// shown to the user with userID; shown is false when it never was (a key
// shown before a rotation does not count).
func (s *Store) KeyRevealedAt(ctx context.Context, userID int64, consumer, keyHash string) (at time.Time, shown bool, err error) {
	if err := validateReveal(userID, consumer, keyHash); err != nil {
		return time.Time{}, false, err
	}
	err = s.read(ctx, func(tx *sql.Tx) error {
		at, shown, err = revealedAt(ctx, tx, userID, consumer, keyHash)
		return err
	})
	return at, shown, err
}

func revealedAt(ctx context.Context, q queryer, userID int64, consumer, keyHash string) (time.Time, bool, error) {
	var hash, at string
	err := q.QueryRowContext(ctx, `SELECT key_hash, revealed_at FROM gateway_key_reveals
		WHERE user_id = ? AND consumer = ?`, userID, consumer).Scan(&hash, &at)
	if errors.Is(err, sql.ErrNoRows) || err == nil && hash != keyHash {
		return time.Time{}, false, nil
	}
	if err != nil {
		return time.Time{}, false, fmt.Errorf("key reveal of consumer %q: %w", consumer, err)
	}
	t, err := parseTime(at)
	return t, err == nil, err
}

package llm

import (
	"errors"
	"fmt"
	"io/fs"
	"math"
)

// FieldError is bad input to an operation of this package: Field names
// the option at fault (a JSON field, such as "users") and Msg says what
// is wrong.
type FieldError struct {
	Field string
	Msg   string
}

// Error returns Field + ": " + Msg.
func (e *FieldError) Error() string { return e.Field + ": " + e.Msg }

// ContextLimitError is a configuration whose total context (the
// per-user context times the users) exceeds what llama-server can hold.
type ContextLimitError struct {
	Field   string // the per-user context setting, e.g. "chat.ctx_per_user"
	Users   int
	PerUser int
}

func (e *ContextLimitError) Error() string {
	return fmt.Sprintf("%s: %d users × %d tokens exceeds llama-server's context limit of %d", e.Field, e.Users, e.PerUser, math.MaxInt32)
}

// ConfigDirError is a Lemonade configuration directory thon cannot use:
// missing (Err matches fs.ErrNotExist), with a file that cannot be read
// (an *fs.PathError) or read back into settings, or (Write) a file that
// cannot be written.
type ConfigDirError struct {
	Dir   string
	Write bool
	Err   error
}

func (e *ConfigDirError) Error() string {
	if errors.Is(e.Err, fs.ErrNotExist) && !e.Write {
		return fmt.Sprintf("lemonade config dir %s does not exist: install Lemonade Server and run thon lemonade setup first", e.Dir)
	}
	return fmt.Sprintf("lemonade config dir %s: %v", e.Dir, e.Err)
}

func (e *ConfigDirError) Unwrap() error { return e.Err }

// ReloadError is Lemonade Server failing while a rescale reloads the
// loaded models: Err is the client's error (*UnreachableError,
// *LemonadeError, ...). Changed tells whether the rescale had written
// files or reloaded a model before; its result says which.
type ReloadError struct {
	URL     string // Lemonade's base URL
	Model   string // the model being reloaded; empty while listing them
	Users   int    // the users the configuration is sized for
	Changed bool
	Err     error
}

func (e *ReloadError) Error() string {
	if e.Model == "" {
		return e.Err.Error()
	}
	return fmt.Sprintf("reloading %s: %v", e.Model, e.Err)
}

func (e *ReloadError) Unwrap() error { return e.Err }

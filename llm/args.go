package llm

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
)

// ArgError is a llama-server argument thon refuses, with the reason.
type ArgError struct {
	Arg    string // the argument as given, e.g. "--ctx-size=4096"
	Reason string
}

func (e *ArgError) Error() string {
	return fmt.Sprintf("llamacpp_args: argument %q is not allowed: %s", e.Arg, e.Reason)
}

// reservedArgs are the llama-server flags Lemonade Server sets itself and
// refuses in llamacpp_args (current list, see llamacpp_server.cpp and
// custom_args.h), plus the ones thon sets from the number of users.
var reservedArgs = map[string]string{
	"-m":                  "Lemonade Server chooses the model file",
	"--model":             "Lemonade Server chooses the model file",
	"-hf":                 "Lemonade Server chooses the model file",
	"--hf-repo":           "Lemonade Server chooses the model file",
	"-mr":                 "Lemonade Server chooses the model file",
	"--hf-file":           "Lemonade Server chooses the model file",
	"-mf":                 "Lemonade Server chooses the model file",
	"-c":                  "thon sets the context size from the number of users",
	"--ctx-size":          "thon sets the context size from the number of users",
	"-dev":                "Lemonade Server selects the device",
	"--device":            "Lemonade Server selects the device",
	"--port":              "Lemonade Server assigns the backend port",
	"--jinja":             "Lemonade Server always passes it",
	"--no-jinja":          "Lemonade Server always passes --jinja",
	"--metrics":           "Lemonade Server always passes it",
	"-mm":                 "Lemonade Server passes the model's mmproj file",
	"-mmu":                "Lemonade Server passes the model's mmproj file",
	"--mmproj":            "Lemonade Server passes the model's mmproj file",
	"--mmproj-url":        "Lemonade Server passes the model's mmproj file",
	"--no-mmproj":         "Lemonade Server passes the model's mmproj file",
	"--mmproj-auto":       "Lemonade Server passes the model's mmproj file",
	"--no-mmproj-auto":    "Lemonade Server passes the model's mmproj file",
	"--no-mmproj-offload": "Lemonade Server decides the mmproj offload",
	"-md":                 "Lemonade Server passes the model's draft checkpoint",
	"--model-draft":       "Lemonade Server passes the model's draft checkpoint",
	"--spec-draft-model":  "Lemonade Server passes the model's draft checkpoint",
	"--embedding":         "Lemonade Server sets it from the model's labels",
	"--embeddings":        "Lemonade Server sets it from the model's labels",
	"--rerank":            "Lemonade Server sets it from the model's labels",
	"--reranking":         "Lemonade Server sets it from the model's labels",
	"-np":                 "thon sets the number of slots from the number of users",
	"--parallel":          "thon sets the number of slots from the number of users",
}

// ReservedArgs returns the llama-server flags refused in extra arguments.
func ReservedArgs() []string {
	return slices.Sorted(maps.Keys(reservedArgs))
}

// ParseLlamacppArgs splits user supplied llama-server arguments (a
// shell-like string: whitespace separates, quotes group, backslash escapes)
// and refuses the reserved ones with an *ArgError naming the argument.
func ParseLlamacppArgs(s string) ([]string, error) {
	args, err := SplitArgs(s)
	if err != nil {
		return nil, fmt.Errorf("llamacpp_args: %w", err)
	}
	if err := CheckLlamacppArgs(args); err != nil {
		return nil, err
	}
	return args, nil
}

// CheckLlamacppArgs refuses arguments Lemonade Server or thon set
// themselves, in either the "--flag value" or "--flag=value" form.
func CheckLlamacppArgs(args []string) error {
	for _, a := range args {
		if !strings.HasPrefix(a, "-") {
			continue
		}
		name, _, _ := strings.Cut(a, "=")
		if reason, ok := reservedArgs[name]; ok {
			return &ArgError{Arg: a, Reason: reason}
		}
	}
	return nil
}

// SplitArgs splits a shell-like argument string. Whitespace separates
// arguments; single quotes keep everything literally; double quotes group
// and allow \" and \\; a backslash outside quotes escapes the next character.
func SplitArgs(s string) ([]string, error) {
	var (
		args    []string
		cur     strings.Builder
		inArg   bool
		quote   rune
		escaped bool
	)
	for i, r := range s {
		if (r < ' ' && r != '\t' && r != '\n' && r != '\r') || r == 0x7f {
			return nil, fmt.Errorf("control character %U at byte %d", r, i)
		}
		switch {
		case escaped:
			cur.WriteRune(r)
			escaped = false
		case quote == '\'':
			if r == '\'' {
				quote = 0
			} else {
				cur.WriteRune(r)
			}
		case quote == '"':
			switch r {
			case '"':
				quote = 0
			case '\\':
				escaped = true
			default:
				cur.WriteRune(r)
			}
		case r == '\'' || r == '"':
			quote, inArg = r, true
		case r == '\\':
			escaped, inArg = true, true
		case r == ' ' || r == '\t' || r == '\n' || r == '\r':
			if inArg {
				args = append(args, cur.String())
				cur.Reset()
				inArg = false
			}
		default:
			cur.WriteRune(r)
			inArg = true
		}
	}
	if quote != 0 {
		return nil, fmt.Errorf("unterminated %c quote", quote)
	}
	if escaped {
		return nil, errors.New("trailing backslash")
	}
	if inArg {
		args = append(args, cur.String())
	}
	return args, nil
}

// JoinArgs joins arguments into one string that SplitArgs splits back into
// the same arguments, quoting only where needed.
func JoinArgs(args []string) string {
	var b strings.Builder
	for i, a := range args {
		if i > 0 {
			b.WriteByte(' ')
		}
		if a != "" && !strings.ContainsAny(a, " \t\n\r\"'\\") {
			b.WriteString(a)
			continue
		}
		b.WriteByte('"')
		for _, r := range a {
			if r == '"' || r == '\\' {
				b.WriteByte('\\')
			}
			b.WriteRune(r)
		}
		b.WriteByte('"')
	}
	return b.String()
}

// UsersFromArgs recovers the number of users from the "-np N" (or
// "--parallel N") thon puts in a model's llamacpp_args.
func UsersFromArgs(s string) (int, error) {
	args, err := SplitArgs(s)
	if err != nil {
		return 0, fmt.Errorf("llamacpp_args: %w", err)
	}
	found, n := false, 0
	for i, a := range args {
		var v string
		switch {
		case a == "-np" || a == "--parallel":
			if i+1 >= len(args) {
				return 0, fmt.Errorf("llamacpp_args: %s has no value", a)
			}
			v = args[i+1]
		case strings.HasPrefix(a, "-np=") || strings.HasPrefix(a, "--parallel="):
			_, v, _ = strings.Cut(a, "=")
		default:
			continue
		}
		u, err := strconv.Atoi(v)
		if err != nil || u < 1 {
			return 0, fmt.Errorf("llamacpp_args: %q is not a number of slots", v)
		}
		found, n = true, u // the last one wins, as in llama-server
	}
	if !found {
		return 0, errors.New("llamacpp_args: no -np (number of users) found")
	}
	return n, nil
}

// formatFloat writes a float the way the original's arguments do: at least
// one decimal ("1.0", "0.95").
func formatFloat(v float64) string {
	s := strconv.FormatFloat(v, 'f', -1, 64)
	if !strings.ContainsAny(s, ".eE") {
		s += ".0"
	}
	return s
}

package llm

import (
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"regexp"
	"strings"
)

// Environment variables of lemond holding its API keys.
const (
	EnvAPIKey      = "LEMONADE_API_KEY"
	EnvAdminAPIKey = "LEMONADE_ADMIN_API_KEY"
)

// ServiceName is Lemonade Server's systemd unit.
const ServiceName = "lemond"

// DropInPath is the systemd drop-in thon writes, relative to the systemd
// directory (/etc/systemd/system).
const DropInPath = ServiceName + ".service.d/override.conf"

// NewKey returns a random API key: 32 bytes, base64url without padding.
func NewKey() (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("generating a key: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}

var keyRe = regexp.MustCompile(`^[A-Za-z0-9._~+/=-]{16,512}$`)

// validateKey checks an API key given by the operator: it goes into a
// systemd Environment= line, so quotes, '%', '\' and spaces are refused.
func validateKey(field, key string) error {
	if key != "" && !keyRe.MatchString(key) {
		return fmt.Errorf("%s: must be 16 to 512 characters of A-Z a-z 0-9 . _ ~ + / = -", field)
	}
	return nil
}

// DropInKeys reads the API keys from a lemond drop-in's Environment= lines.
func DropInKeys(content string) (apiKey, adminKey string) {
	for _, line := range strings.Split(content, "\n") {
		for _, kv := range envAssignments(line) {
			k, v, _ := strings.Cut(kv, "=")
			switch k {
			case EnvAPIKey:
				apiKey = v
			case EnvAdminAPIKey:
				adminKey = v
			}
		}
	}
	return apiKey, adminKey
}

// envAssignments returns the VAR=value assignments of an Environment= line
// (none for other lines).
func envAssignments(line string) []string {
	rest, ok := strings.CutPrefix(strings.TrimSpace(line), "Environment=")
	if !ok {
		return nil
	}
	parts, err := SplitArgs(rest)
	if err != nil {
		return nil
	}
	return parts
}

// RenderDropIn returns the drop-in with the Environment= lines of the keys
// set (an empty admin key is left out: lemond then uses the API key). Other
// lines of an existing drop-in are kept.
func RenderDropIn(existing, apiKey, adminKey string) string {
	var kept []string
	for _, line := range strings.Split(strings.TrimRight(existing, "\n"), "\n") {
		assigns := envAssignments(line)
		if assigns == nil {
			kept = append(kept, line)
			continue
		}
		var others []string
		for _, kv := range assigns {
			k, _, _ := strings.Cut(kv, "=")
			if k != EnvAPIKey && k != EnvAdminAPIKey {
				others = append(others, kv)
			}
		}
		if len(others) > 0 {
			kept = append(kept, "Environment="+quoteEnv(others))
		}
	}
	if len(kept) == 1 && kept[0] == "" {
		kept = nil
	}
	ours := []string{fmt.Sprintf("Environment=\"%s=%s\"", EnvAPIKey, apiKey)}
	if adminKey != "" {
		ours = append(ours, fmt.Sprintf("Environment=\"%s=%s\"", EnvAdminAPIKey, adminKey))
	}
	at := -1
	for i, line := range kept {
		if strings.TrimSpace(line) == "[Service]" {
			at = i
			break
		}
	}
	var out []string
	if at < 0 {
		if len(kept) == 0 {
			out = append(out, "# Written by thon lemonade setup: API keys of Lemonade Server.")
		}
		out = append(out, kept...)
		out = append(out, "[Service]")
		out = append(out, ours...)
	} else {
		out = append(out, kept[:at+1]...)
		out = append(out, ours...)
		out = append(out, kept[at+1:]...)
	}
	return strings.Join(out, "\n") + "\n"
}

func quoteEnv(assigns []string) string {
	q := make([]string, len(assigns))
	for i, a := range assigns {
		q[i] = JoinArgs([]string{a})
		if !strings.HasPrefix(q[i], `"`) {
			q[i] = `"` + a + `"`
		}
	}
	return strings.Join(q, " ")
}

package llm

import (
	_ "embed"
	"encoding/json"
	"fmt"
	"net"
	"regexp"
	"strconv"
	"strings"

	"github.com/thon-dev/thon/internal/httpurl"
	"github.com/thon-dev/thon/internal/jsonc"
)

// KiloMode selects where Kilo Code inside a sandbox sends its requests.
type KiloMode string

// Kilo modes: straight to Lemonade Server with its API key, or through
// thon's gateway with a key per user or per group.
const (
	KiloDirect          KiloMode = "direct"
	KiloGatewayPerUser  KiloMode = "gateway-per-user"
	KiloGatewayPerGroup KiloMode = "gateway-per-group"
)

// Kilo provider ids: Lemonade Server directly, or thon's gateway.
const (
	KiloProviderDirect  = "lemonade"
	KiloProviderGateway = "lemonade-gateway"
)

// KiloNPM is the AI SDK package Kilo uses for Lemonade's OpenAI-compatible
// API. It is written explicitly: Kilo's fallback for providers missing
// from models.dev is not documented.
const KiloNPM = "@ai-sdk/openai-compatible"

// DefaultGatewayPort is the port of the plain-HTTP gateway address
// sandboxes reach when no gateway URL is given (the original's 9080).
const DefaultGatewayPort = 9080

// DefaultWorkspace is where a sandbox's workspace volume is mounted.
const DefaultWorkspace = "/workspace"

//go:embed kilo_skeleton.jsonc
var defaultKiloSkeleton []byte

// DefaultKiloSkeleton returns thon's kilo.jsonc skeleton (JSONC).
func DefaultKiloSkeleton() []byte { return append([]byte(nil), defaultKiloSkeleton...) }

// KiloOptions describe the kilo.jsonc to generate.
type KiloOptions struct {
	// Mode is direct (default), gateway-per-user or gateway-per-group.
	Mode KiloMode
	// ExternalIP, BridgeGateway: the host in the base URL is the external
	// IP when set, else the Docker bridge gateway address, else localhost.
	ExternalIP    string
	BridgeGateway string
	// GatewayURL is the gateway's OpenAI base URL (ending in /v1) in the
	// gateway modes; empty means http://<host>:<GatewayPort>/v1.
	GatewayURL string
	// GatewayPort is used when GatewayURL is empty; 0 means 9080.
	GatewayPort int
	// APIKey is Lemonade's API key (direct; empty means "none") or the
	// user's or group's gateway key (gateway modes; required).
	APIKey string
	// Langfuse adds the opencode-plugin-langfuse plugin and turns on
	// OpenTelemetry.
	Langfuse bool
	// Skeleton is the JSONC skeleton the settings are merged over; nil
	// means DefaultKiloSkeleton.
	Skeleton []byte
}

// KiloHost picks the host sandboxes use to reach thon's host: the external
// IP, else the Docker bridge gateway address, else localhost.
func KiloHost(externalIP, bridgeGateway string) string {
	switch {
	case externalIP != "":
		return externalIP
	case bridgeGateway != "":
		return bridgeGateway
	default:
		return "localhost"
	}
}

// KiloBaseURL is the OpenAI base URL Kilo uses for the given mode.
func KiloBaseURL(s Settings, o KiloOptions) (string, error) {
	for _, h := range []struct{ field, v string }{{"external_ip", o.ExternalIP}, {"bridge_gateway", o.BridgeGateway}} {
		if h.v != "" && !hostRe.MatchString(h.v) {
			return "", fmt.Errorf("kilo: %s: %q is not a host name or address", h.field, h.v)
		}
	}
	host := KiloHost(o.ExternalIP, o.BridgeGateway)
	switch o.mode() {
	case KiloDirect:
		return "http://" + net.JoinHostPort(host, strconv.Itoa(s.Port)) + "/v1", nil
	case KiloGatewayPerUser, KiloGatewayPerGroup:
		if o.GatewayURL != "" {
			if err := httpurl.Check(o.GatewayURL, httpurl.Rules{}); err != nil {
				return "", fmt.Errorf("kilo: gateway_url: %w", err)
			}
			return strings.TrimRight(o.GatewayURL, "/"), nil
		}
		port := o.GatewayPort
		if port == 0 {
			port = DefaultGatewayPort
		}
		if port < 1 || port > 65535 {
			return "", fmt.Errorf("kilo: gateway_port: %d is not a TCP port", port)
		}
		return "http://" + net.JoinHostPort(host, strconv.Itoa(port)) + "/v1", nil
	default:
		return "", fmt.Errorf("kilo: mode: %q is not one of direct, gateway-per-user, gateway-per-group", o.Mode)
	}
}

func (o KiloOptions) mode() KiloMode {
	if o.Mode == "" {
		return KiloDirect
	}
	return o.Mode
}

// GenerateKilo builds kilo.jsonc (plain, deterministic JSON) for current
// Kilo Code: the provider ("lemonade" or "lemonade-gateway") with an
// explicit npm package, the chat model, and codebase indexing with the
// embedding model at indexing.model. It is merged over the skeleton;
// $THON_USERNAME, $THON_USER_EMAIL and $WORKSPACE are left for
// FillPlaceholders.
func GenerateKilo(s Settings, o KiloOptions) ([]byte, error) {
	if err := s.Validate(); err != nil {
		return nil, err
	}
	baseURL, err := KiloBaseURL(s, o)
	if err != nil {
		return nil, err
	}
	mode := o.mode()
	key := o.APIKey
	if strings.ContainsAny(key, "\x00\n\r") {
		return nil, fmt.Errorf("kilo: api_key: contains a control character")
	}
	provider, name := KiloProviderDirect, "Lemonade Server"
	switch mode {
	case KiloDirect:
		if key == "" {
			key = "none"
		}
	case KiloGatewayPerUser, KiloGatewayPerGroup:
		if key == "" {
			return nil, fmt.Errorf("kilo: api_key: required in %s mode", mode)
		}
		provider, name = KiloProviderGateway, "thon gateway"
		if mode == KiloGatewayPerGroup {
			name = "thon gateway (group key)"
		}
	}

	skeleton := o.Skeleton
	if skeleton == nil {
		skeleton = defaultKiloSkeleton
	}
	doc, err := parseKilo("kilo skeleton", skeleton)
	if err != nil {
		return nil, err
	}

	chatModel := map[string]any{
		"name":  BareName(s.Chat.Name),
		"limit": map[string]any{"context": s.Chat.CtxPerUser, "output": s.Chat.Output},
	}
	if s.Chat.MMProj != "" {
		chatModel["attachment"] = true
		chatModel["modalities"] = map[string]any{"input": []any{"text", "image"}, "output": []any{"text"}}
	}
	gen := map[string]any{
		"model": provider + "/" + s.ChatID(),
		"share": "manual",
		"provider": map[string]any{
			provider: map[string]any{
				"npm":  KiloNPM,
				"name": name,
				"options": map[string]any{
					"apiKey":  key,
					"baseURL": baseURL,
					"timeout": false,
				},
				"models": map[string]any{s.ChatID(): chatModel},
			},
		},
	}
	if s.Embedding.Enabled {
		idx := map[string]any{
			"enabled":     true,
			"provider":    "openai-compatible",
			"vectorStore": "lancedb",
			"model":       s.EmbeddingID(),
			"openai-compatible": map[string]any{
				"baseUrl": baseURL,
				"apiKey":  key,
			},
		}
		if s.Embedding.Dimensions > 0 {
			idx["dimension"] = s.Embedding.Dimensions
		}
		gen["indexing"] = idx
	} else {
		gen["indexing"] = map[string]any{"enabled": false}
		gen["experimental"] = map[string]any{"codebase_search": false, "semantic_indexing": false}
	}
	if o.Langfuse {
		gen["plugin"] = []any{"opencode-plugin-langfuse"}
		exp, _ := gen["experimental"].(map[string]any)
		if exp == nil {
			exp = map[string]any{}
		}
		exp["openTelemetry"] = true
		gen["experimental"] = exp
	}
	out := deepMerge(doc, gen)
	normalizeKilo(out)
	return marshalCanonical(out)
}

// NormalizeKilo reads a kilo.jsonc (JSONC: comments, trailing commas;
// duplicate keys keep the last) and returns it as deterministic JSON fixed
// for current Kilo's strict schema: a "model" or "dimension" found inside
// indexing["openai-compatible"] (as in the original thon's example files)
// moves to indexing.model / indexing.dimension, and thon's providers
// ("lemonade", "lemonade-gateway") get the explicit npm package.
func NormalizeKilo(content []byte) ([]byte, error) {
	doc, err := parseKilo("kilo.jsonc", content)
	if err != nil {
		return nil, err
	}
	normalizeKilo(doc)
	return marshalCanonical(doc)
}

// parseKilo reads JSONC into a JSON object; errors carry name:line:column.
func parseKilo(name string, content []byte) (map[string]any, error) {
	std, err := jsonc.Standardize(content)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return decodeObject(name, std)
}

func normalizeKilo(doc map[string]any) {
	if idx, ok := doc["indexing"].(map[string]any); ok {
		if oc, ok := idx["openai-compatible"].(map[string]any); ok {
			for _, k := range []string{"model", "dimension"} {
				v, found := oc[k]
				if !found {
					continue
				}
				if _, set := idx[k]; !set {
					idx[k] = v
				}
				delete(oc, k)
			}
		}
	}
	if providers, ok := doc["provider"].(map[string]any); ok {
		for _, id := range []string{KiloProviderDirect, KiloProviderGateway} {
			if p, ok := providers[id].(map[string]any); ok {
				if _, has := p["npm"]; !has {
					p["npm"] = KiloNPM
				}
			}
		}
	}
}

var placeholderRe = regexp.MustCompile(`\$(THON_USERNAME|THON_USER_EMAIL|WORKSPACE)\b`)

// FillPlaceholders replaces $THON_USERNAME, $THON_USER_EMAIL and $WORKSPACE
// in a generated kilo.jsonc for one user. The values are escaped for use
// inside JSON strings. An empty email becomes <user>@thon.local and an
// empty workspace the volume's mount point, /workspace.
func FillPlaceholders(content, user, email, workspace string) string {
	if email == "" {
		email = user + "@thon.local"
	}
	if workspace == "" {
		workspace = DefaultWorkspace
	}
	values := map[string]string{
		"$THON_USERNAME":   jsonStringContent(user),
		"$THON_USER_EMAIL": jsonStringContent(email),
		"$WORKSPACE":       jsonStringContent(workspace),
	}
	return placeholderRe.ReplaceAllStringFunc(content, func(m string) string { return values[m] })
}

// jsonStringContent escapes s for use between the quotes of a JSON string.
func jsonStringContent(s string) string {
	var b strings.Builder
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(s) // a string always encodes
	out := strings.TrimSuffix(b.String(), "\n")
	return out[1 : len(out)-1]
}

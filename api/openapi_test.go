package api

import (
	"encoding/json"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/thon-dev/thon/auth"
	"github.com/thon-dev/thon/sandboxes"
	"github.com/thon-dev/thon/store"
)

// openAPIDoc is the part of an OpenAPI 3.0 document the tests check.
type openAPIDoc struct {
	OpenAPI    string                                `json:"openapi"`
	Info       struct{ Title, Version string }       `json:"info"`
	Paths      map[string]map[string]json.RawMessage `json:"paths"`
	Components struct {
		Schemas    map[string]openAPISchema `json:"schemas"`
		Parameters map[string]openAPIParam  `json:"parameters"`
		Responses  map[string]any           `json:"responses"`
	} `json:"components"`
}

type openAPISchema struct {
	Type       string                    `json:"type"`
	Properties map[string]map[string]any `json:"properties"`
	Required   []string                  `json:"required"`
}

type openAPIParam struct {
	Ref      string `json:"$ref"`
	Name     string `json:"name"`
	In       string `json:"in"`
	Required bool   `json:"required"`
}

type openAPIOperation struct {
	OperationID string                     `json:"operationId"`
	Parameters  []openAPIParam             `json:"parameters"`
	RequestBody *struct{ Content any }     `json:"requestBody"`
	Responses   map[string]json.RawMessage `json:"responses"`
}

// fetchOpenAPI gets /openapi.json from the server and decodes it.
func fetchOpenAPI(t *testing.T, e *testEnv) (openAPIDoc, []byte) {
	t.Helper()
	r := e.do("GET", "/openapi.json", "", nil).wantStatus(t, 200)
	var doc openAPIDoc
	r.decode(t, &doc)
	return doc, r.body
}

// openAPIPath converts a ServeMux pattern to an OpenAPI path template.
func openAPIPath(pattern string) string {
	p := strings.TrimSuffix(pattern, "{$}")
	return strings.ReplaceAll(p, "...}", "}")
}

var pathParam = regexp.MustCompile(`\{([^}]+)\}`)

func TestOpenAPICoversRoutes(t *testing.T) {
	e := newTestEnv(t, Options{})
	doc, _ := fetchOpenAPI(t, e)
	if doc.OpenAPI != "3.0.3" {
		t.Errorf("openapi = %q, want 3.0.3", doc.OpenAPI)
	}
	if doc.Info.Title == "" || doc.Info.Version == "" {
		t.Errorf("info = %+v, want title and version", doc.Info)
	}

	registered := make(map[string]bool)
	for _, rt := range e.server.Routes() {
		key := strings.ToLower(rt.Method) + " " + openAPIPath(rt.Pattern)
		registered[key] = true
		ops, ok := doc.Paths[openAPIPath(rt.Pattern)]
		if !ok {
			t.Errorf("route %s %s: path missing from openapi.json", rt.Method, rt.Pattern)
			continue
		}
		if _, ok := ops[strings.ToLower(rt.Method)]; !ok {
			t.Errorf("route %s %s: method missing from openapi.json", rt.Method, rt.Pattern)
		}
	}
	methods := []string{"get", "put", "post", "delete", "options", "head", "patch", "trace"}
	for path, ops := range doc.Paths {
		for m := range ops {
			if !slices.Contains(methods, m) {
				continue // "parameters", "summary", ...
			}
			if !registered[m+" "+path] {
				t.Errorf("openapi.json documents %s %s, which is not a registered route", strings.ToUpper(m), path)
			}
		}
	}
}

func TestOpenAPIOperations(t *testing.T) {
	e := newTestEnv(t, Options{})
	doc, raw := fetchOpenAPI(t, e)

	// Every $ref points at something that exists.
	var tree any
	if err := json.Unmarshal(raw, &tree); err != nil {
		t.Fatal(err)
	}
	var refs []string
	var walk func(v any)
	walk = func(v any) {
		switch v := v.(type) {
		case map[string]any:
			for k, c := range v {
				if s, ok := c.(string); ok && k == "$ref" {
					refs = append(refs, s)
				}
				walk(c)
			}
		case []any:
			for _, c := range v {
				walk(c)
			}
		}
	}
	walk(tree)
	if len(refs) == 0 {
		t.Fatal("no $ref found; the walk is broken")
	}
	for _, ref := range refs {
		name, ok := strings.CutPrefix(ref, "#/components/")
		kind, item, _ := strings.Cut(name, "/")
		var found bool
		switch kind {
		case "schemas":
			_, found = doc.Components.Schemas[item]
		case "parameters":
			_, found = doc.Components.Parameters[item]
		case "responses":
			_, found = doc.Components.Responses[item]
		}
		if !ok || !found {
			t.Errorf("$ref %q does not resolve", ref)
		}
	}

	for _, name := range []string{"Group", "User", "Roster", "ImportResult", "ConfigFile", "Error",
		"Instance", "InstanceList", "Result", "BulkRequest", "Operation", "RenewRequest"} {
		if _, ok := doc.Components.Schemas[name]; !ok {
			t.Errorf("components.schemas lacks %s", name)
		}
	}

	ids := make(map[string]string)
	for path, ops := range doc.Paths {
		// Path-level parameters apply to every operation.
		var shared []openAPIParam
		if raw, ok := ops["parameters"]; ok {
			if err := json.Unmarshal(raw, &shared); err != nil {
				t.Fatalf("%s parameters: %v", path, err)
			}
		}
		for m, rawOp := range ops {
			if m == "parameters" {
				continue
			}
			var op openAPIOperation
			if err := json.Unmarshal(rawOp, &op); err != nil {
				t.Fatalf("%s %s: %v", m, path, err)
			}
			where := strings.ToUpper(m) + " " + path
			if op.OperationID == "" {
				t.Errorf("%s: no operationId", where)
			} else if other, dup := ids[op.OperationID]; dup {
				t.Errorf("%s: operationId %q also used by %s", where, op.OperationID, other)
			}
			ids[op.OperationID] = where

			var ok2xx bool
			for code := range op.Responses {
				ok2xx = ok2xx || strings.HasPrefix(code, "2")
			}
			if !ok2xx {
				t.Errorf("%s: no 2xx response", where)
			}
			if (m == "post" || m == "put") && op.RequestBody == nil {
				t.Errorf("%s: no requestBody", where)
			}

			declared := make(map[string]bool)
			for _, p := range append(shared, op.Parameters...) {
				if p.Ref != "" {
					p = doc.Components.Parameters[strings.TrimPrefix(p.Ref, "#/components/parameters/")]
				}
				if p.In == "path" {
					if !p.Required {
						t.Errorf("%s: path parameter %s is not required", where, p.Name)
					}
					declared[p.Name] = true
				}
			}
			for _, m := range pathParam.FindAllStringSubmatch(path, -1) {
				if !declared[m[1]] {
					t.Errorf("%s: path parameter {%s} not declared", where, m[1])
				}
				delete(declared, m[1])
			}
			for name := range declared {
				t.Errorf("%s: declares path parameter %s that the path lacks", where, name)
			}
		}
	}
}

// jsonFields returns the JSON field names of struct type t; the fields of
// an embedded struct without a JSON name are promoted, as encoding/json does.
func jsonFields(t reflect.Type) []string {
	var names []string
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if f.Anonymous && name == "" && f.Type.Kind() == reflect.Struct {
			names = append(names, jsonFields(f.Type)...)
			continue
		}
		if !f.IsExported() {
			continue
		}
		if name == "-" {
			continue
		}
		if name == "" {
			name = f.Name
		}
		names = append(names, name)
	}
	sort.Strings(names)
	return names
}

func TestOpenAPISchemasMatchTypes(t *testing.T) {
	e := newTestEnv(t, Options{})
	doc, _ := fetchOpenAPI(t, e)
	types := map[string]any{
		"Group":             store.Group{},
		"User":              store.User{},
		"Roster":            store.Roster{},
		"RosterGroup":       store.RosterGroup{},
		"RosterUser":        store.RosterUser{},
		"ImportResult":      store.ImportResult{},
		"ConfigFile":        store.ConfigFile{},
		"Error":             Error{},
		"Health":            healthStatus{},
		"GroupList":         groupList{},
		"GroupCreate":       groupCreateRequest{},
		"GroupUpdate":       groupUpdateRequest{},
		"UserCreate":        userCreateRequest{},
		"UserTransfer":      userTransferRequest{},
		"DeletedGroup":      deletedGroup{},
		"DeletedUser":       deletedUser{},
		"ImportResponse":    importResponse{},
		"WorkspaceReport":   workspaceReport{},
		"AddedUser":         addedUser{},
		"WorkspaceStatus":   workspaceStatus{},
		"UserWorkspace":     userWorkspace{},
		"ConfigFileList":    configFileList{},
		"ConfigFileContent": configFilePutRequest{},
		"DeletedConfigFile": deletedConfigFile{},
		"Instance":          sandboxes.Instance{},
		"InstanceExit":      sandboxes.Exit{},
		"InstanceList":      instanceList{},
		"InstanceCreate":    instanceCreateRequest{},
		"RenewRequest":      renewRequest{},
		"BulkRequest":       bulkRequest{},
		"BulkResults":       bulkResults{},
		"Result":            sandboxes.Result{},
		"Operation":         sandboxes.Operation{},
		"OperationResponse": operationResponse{},
		"Empty":             emptyRequest{},
		"LoginRequest":      loginRequest{},
		"SetupRequest":      setupRequest{},
		"Me":                meResponse{},
		"Session":           sessionResponse{},
		"Logout":            logoutResponse{},
		"APIToken":          store.APIToken{},
		"TokenList":         tokenList{},
		"TokenCreate":       tokenCreateRequest{},
		"CreatedToken":      createdToken{},
	}
	for name, v := range types {
		schema, ok := doc.Components.Schemas[name]
		if !ok {
			t.Errorf("components.schemas lacks %s", name)
			continue
		}
		var props []string
		for p := range schema.Properties {
			props = append(props, p)
		}
		sort.Strings(props)
		if want := jsonFields(reflect.TypeOf(v)); !slices.Equal(props, want) {
			t.Errorf("schema %s properties = %v, want the JSON fields %v", name, props, want)
		}
		for _, r := range schema.Required {
			if _, ok := schema.Properties[r]; !ok {
				t.Errorf("schema %s requires %q, which it does not define", name, r)
			}
		}
	}
}

// TestOpenAPISecurity checks that the document declares how to sign in,
// requires it everywhere, and marks exactly the public routes open, so
// that Swagger UI's Authorize button sends the token where it is needed.
func TestOpenAPISecurity(t *testing.T) {
	e := newTestEnv(t, Options{})
	_, raw := fetchOpenAPI(t, e)
	var doc struct {
		Security   []map[string][]string `json:"security"`
		Components struct {
			SecuritySchemes map[string]struct {
				Type, Scheme, In, Name string
			} `json:"securitySchemes"`
		} `json:"components"`
		Paths map[string]map[string]json.RawMessage `json:"paths"`
	}
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	schemes := doc.Components.SecuritySchemes
	if b := schemes["bearerToken"]; b.Type != "http" || b.Scheme != "bearer" {
		t.Errorf("bearerToken = %+v", b)
	}
	if c := schemes["sessionCookie"]; c.Type != "apiKey" || c.In != "cookie" || c.Name != auth.SessionCookieName {
		t.Errorf("sessionCookie = %+v", c)
	}
	if c := schemes["csrfToken"]; c.Type != "apiKey" || c.In != "header" || c.Name != auth.CSRFHeader {
		t.Errorf("csrfToken = %+v", c)
	}
	want := []map[string][]string{{"bearerToken": {}}, {"sessionCookie": {}, "csrfToken": {}}}
	if !reflect.DeepEqual(doc.Security, want) {
		t.Errorf("security = %v, want %v", doc.Security, want)
	}
	for _, rt := range e.server.Routes() {
		var op struct {
			Security  *[]any                     `json:"security"`
			Responses map[string]json.RawMessage `json:"responses"`
		}
		if err := json.Unmarshal(doc.Paths[openAPIPath(rt.Pattern)][strings.ToLower(rt.Method)], &op); err != nil {
			t.Fatalf("%s %s: %v", rt.Method, rt.Pattern, err)
		}
		open := op.Security != nil && len(*op.Security) == 0
		if open != (rt.Access == LevelPublic) {
			t.Errorf("%s %s (%s): documented open = %v", rt.Method, rt.Pattern, rt.Access, open)
		}
		if rt.Access != LevelPublic {
			if _, ok := op.Responses["401"]; !ok {
				t.Errorf("%s %s: no 401 response", rt.Method, rt.Pattern)
			}
			if _, ok := op.Responses["403"]; !ok {
				t.Errorf("%s %s: no 403 response", rt.Method, rt.Pattern)
			}
		}
	}
}

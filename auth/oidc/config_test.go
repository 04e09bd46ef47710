package oidc

import (
	"errors"
	"reflect"
	"strings"
	"testing"
)

func env(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

func TestFromEnv(t *testing.T) {
	cfgs, err := FromEnv(env(map[string]string{
		"AUTH_ENABLED":              "true",
		"AUTH_GITHUB_CLIENT_ID":     " gh-id ",
		"AUTH_GITHUB_CLIENT_SECRET": "gh-secret",
		"AUTH_LINKEDIN_CLIENT_ID":   "li-id", "AUTH_LINKEDIN_CLIENT_SECRET": "li-secret",
		"AUTH_OIDC_ISSUER":        "https://sso.example.org/realms/hack",
		"AUTH_OIDC_CLIENT_ID":     "thon",
		"AUTH_OIDC_CLIENT_SECRET": "kc-secret",
		"AUTH_OIDC_NAME":          "keycloak",
		"AUTH_OIDC_DISPLAY_NAME":  "Hackathon SSO",
		"AUTH_OIDC_SCOPES":        "openid, email profile",
		"AUTH_OIDC_GROUPS_CLAIM":  "groups",
	}))
	if err != nil {
		t.Fatal(err)
	}
	want := []Config{
		{Name: "github", Kind: KindGitHub, ClientID: "gh-id", ClientSecret: "gh-secret"},
		{Name: "linkedin", Kind: KindLinkedIn, ClientID: "li-id", ClientSecret: "li-secret"},
		{Name: "keycloak", Kind: KindOIDC, DisplayName: "Hackathon SSO", ClientID: "thon", ClientSecret: "kc-secret",
			Issuer: "https://sso.example.org/realms/hack", Scopes: []string{"openid", "email", "profile"}, GroupsClaim: "groups"},
	}
	if !reflect.DeepEqual(cfgs, want) {
		t.Fatalf("configs\n%+v\nwant\n%+v", cfgs, want)
	}
	if err := ValidateAll(cfgs); err != nil {
		t.Fatal(err)
	}
	d := cfgs[0].withDefaults()
	if d.DisplayName != "GitHub" || d.GitHubURL != GitHubURL || d.GitHubAPIURL != GitHubAPIURL || strings.Join(d.Scopes, " ") != "read:user user:email" {
		t.Fatalf("github defaults %+v", d)
	}
	if d := cfgs[1].withDefaults(); d.Issuer != LinkedInIssuer || d.DisplayName != "LinkedIn" || strings.Join(d.Scopes, " ") != "openid profile email" {
		t.Fatalf("linkedin defaults %+v", d)
	}
	gl, err := FromEnv(env(map[string]string{"AUTH_ENABLED": "1", "AUTH_GITLAB_CLIENT_ID": "a", "AUTH_GITLAB_CLIENT_SECRET": "b"}))
	if err != nil || len(gl) != 1 {
		t.Fatal(gl, err)
	}
	if d := gl[0].withDefaults(); d.Issuer != GitLabIssuer || d.GroupsClaim != "groups_direct" {
		t.Fatalf("gitlab defaults %+v", d)
	}
	if d := (Config{Name: "oidc", Kind: KindOIDC}).withDefaults(); d.DisplayName != "oidc" {
		t.Fatalf("oidc defaults %+v", d)
	}

	for _, off := range []map[string]string{
		{},
		{"AUTH_ENABLED": "false", "AUTH_GITHUB_CLIENT_ID": "x"},
	} {
		if cfgs, err := FromEnv(env(off)); cfgs != nil || err != nil {
			t.Errorf("%v: %v %v, want nothing", off, cfgs, err)
		}
	}
}

func TestFromEnvErrors(t *testing.T) {
	on := func(kv ...string) map[string]string {
		m := map[string]string{"AUTH_ENABLED": "true"}
		for i := 0; i < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return m
	}
	for _, tc := range []struct {
		env   map[string]string
		field string
		msg   string
	}{
		{on("AUTH_GITHUB_CLIENT_ID", "x"), "AUTH_GITHUB_CLIENT_SECRET", "required when AUTH_GITHUB_CLIENT_ID is set"},
		{on("AUTH_GITLAB_CLIENT_SECRET", "x"), "AUTH_GITLAB_CLIENT_ID", "required when AUTH_GITLAB_CLIENT_SECRET is set"},
		{on("AUTH_LINKEDIN_CLIENT_ID", "x", "AUTH_LINKEDIN_CLIENT_SECRET", " "), "AUTH_LINKEDIN_CLIENT_SECRET", "required"},
		{on("AUTH_OIDC_CLIENT_ID", "x", "AUTH_OIDC_CLIENT_SECRET", "y"), "AUTH_OIDC_ISSUER", "required when AUTH_OIDC_CLIENT_ID is set"},
		{on("AUTH_OIDC_ISSUER", "https://sso.example.org"), "AUTH_OIDC_CLIENT_ID", "required when AUTH_OIDC_ISSUER is set"},
		{on("AUTH_OIDC_ISSUER", "ftp://sso.example.org", "AUTH_OIDC_CLIENT_ID", "x", "AUTH_OIDC_CLIENT_SECRET", "y"), "AUTH_OIDC_ISSUER", `"ftp://sso.example.org" is not an http(s) URL`},
		{on("AUTH_OIDC_ISSUER", "sso.example.org", "AUTH_OIDC_CLIENT_ID", "x", "AUTH_OIDC_CLIENT_SECRET", "y"), "AUTH_OIDC_ISSUER", "is not an http(s) URL"},
		{on("AUTH_OIDC_ISSUER", "http://sso.example.org", "AUTH_OIDC_CLIENT_ID", "x", "AUTH_OIDC_CLIENT_SECRET", "y"), "AUTH_OIDC_ISSUER", "must use https"},
		{on("AUTH_OIDC_ISSUER", "https://sso.example.org/?realm=x", "AUTH_OIDC_CLIENT_ID", "x", "AUTH_OIDC_CLIENT_SECRET", "y"), "AUTH_OIDC_ISSUER", "must not carry a query"},
		{on("AUTH_OIDC_ISSUER", "https://sso.example.org", "AUTH_OIDC_CLIENT_ID", "x", "AUTH_OIDC_CLIENT_SECRET", "y", "AUTH_OIDC_NAME", "My SSO"), "AUTH_OIDC_NAME", "is not a provider name"},
		{on("AUTH_OIDC_ISSUER", "https://sso.example.org", "AUTH_OIDC_CLIENT_ID", "x", "AUTH_OIDC_CLIENT_SECRET", "y", "AUTH_OIDC_NAME", "github", "AUTH_GITHUB_CLIENT_ID", "a", "AUTH_GITHUB_CLIENT_SECRET", "b"), "AUTH_OIDC_NAME", "built-in github provider"},
		{on("AUTH_OIDC_ISSUER", "https://sso.example.org", "AUTH_OIDC_CLIENT_ID", "x", "AUTH_OIDC_CLIENT_SECRET", "y", "AUTH_OIDC_SCOPES", "email profile"), "AUTH_OIDC_SCOPES", "must include openid"},
		{on("AUTH_OIDC_GROUPS_CLAIM", "groups", "AUTH_GITHUB_CLIENT_ID", "a", "AUTH_GITHUB_CLIENT_SECRET", "b"), "AUTH_OIDC_GROUPS_CLAIM", "set without AUTH_OIDC_ISSUER"},
		{on(), "AUTH_ENABLED", "no identity provider is configured"},
		{map[string]string{"AUTH_ENABLED": "yes"}, "AUTH_ENABLED", `"yes" is not true or false`},
		{map[string]string{"AUTH_GITHUB_CLIENT_ID": "a", "AUTH_GITHUB_CLIENT_SECRET": "b"}, "AUTH_ENABLED", "not set, but identity provider variables are"},
	} {
		cfgs, err := FromEnv(env(tc.env))
		var fe *FieldError
		if cfgs != nil || !errors.As(err, &fe) || fe.Field != tc.field || !strings.Contains(err.Error(), tc.field+": ") || !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("%v: %v, %v; want %s: ...%s", tc.env, cfgs, err, tc.field, tc.msg)
		}
	}
	// Every fault at once.
	_, err := FromEnv(env(on("AUTH_GITHUB_CLIENT_ID", "x", "AUTH_GITLAB_CLIENT_SECRET", "y")))
	if err == nil || !strings.Contains(err.Error(), "AUTH_GITHUB_CLIENT_SECRET") || !strings.Contains(err.Error(), "AUTH_GITLAB_CLIENT_ID") {
		t.Fatalf("joined errors: %v", err)
	}
}

func TestValidate(t *testing.T) {
	ok := Config{Name: "sso", Kind: KindOIDC, ClientID: "c", ClientSecret: "s", Issuer: "http://127.0.0.1:8080/realms/x"}
	if err := ok.Validate(); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		edit  func(*Config)
		field string
		msg   string
	}{
		{func(c *Config) { c.Kind = "saml" }, "kind", `"saml" is not one of`},
		{func(c *Config) { c.Name = "-x" }, "name", "is not a provider name"},
		{func(c *Config) { c.Name = strings.Repeat("a", 33) }, "name", "is not a provider name"},
		{func(c *Config) { c.ClientID = " " }, "client_id", "required"},
		{func(c *Config) { c.ClientSecret = "" }, "client_secret", "required"},
		{func(c *Config) { c.Issuer = "" }, "issuer", "required"},
		{func(c *Config) { c.Issuer = "https://u:p@sso.example.org" }, "issuer", "must not carry user info"},
		{func(c *Config) { c.Scopes = []string{"openid", "a b"} }, "scopes", `"a b" is not a scope`},
		{func(c *Config) { c.GitHubURL = "https://github.com" }, "github_url", "only for a github provider"},
		{func(c *Config) { c.Kind = KindGitHub; c.Issuer = "https://github.com" }, "issuer", "github is OAuth2"},
		{func(c *Config) { c.Kind = KindGitHub; c.Issuer = ""; c.GroupsClaim = "teams" }, "groups_claim", "github has no groups claim"},
		{func(c *Config) { c.Kind = KindGitHub; c.Issuer = ""; c.Scopes = []string{"read:user"} }, "scopes", "must include user:email"},
		{func(c *Config) { c.Kind = KindGitHub; c.Issuer = ""; c.GitHubAPIURL = "http://ghe.example.org/api/v3" }, "github_api_url", "must use https"},
	} {
		c := ok
		tc.edit(&c)
		err := c.Validate()
		var fe *FieldError
		if !errors.As(err, &fe) || fe.Field != tc.field || !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("%+v: %v, want %s: ...%s", c, err, tc.field, tc.msg)
		}
		if _, err := New(c, Options{}); err == nil {
			t.Errorf("%+v: New took it", c)
		}
	}
	dup := []Config{ok, ok}
	if err := ValidateAll(dup); err == nil || !strings.Contains(err.Error(), `providers[1].name: "sso" names two providers`) {
		t.Fatalf("ValidateAll: %v", err)
	}
}

func TestAllowListParse(t *testing.T) {
	gh := Config{Name: "github", Kind: KindGitHub}
	li := Config{Name: "linkedin", Kind: KindLinkedIn}
	kc := Config{Name: "sso", Kind: KindOIDC}
	all := []Config{gh, li, kc}
	a, err := ParseAllowList([]string{" ada@example.org", "login:octocat", "", "group:organisers", "group:sso:a:b", "login:sso:bob"}, all)
	if err != nil {
		t.Fatal(err)
	}
	if len(a.entries) != 5 || a.Empty() {
		t.Fatalf("entries %+v", a.entries)
	}
	for _, tc := range []struct {
		entry     string
		providers []Config
		msg       string
	}{
		{"Ada <ada@example.org>", all, "neither an email address"},
		{"ada", all, "neither an email address"},
		{"team:x", all, "neither an email address"},
		{"login:", all, "empty login"},
		{"group:sso:", all, "empty group"},
		{"login:gitlab:x", all, `names no configured provider "gitlab"`},
		{"group:github:x", all, "github gives no groups"},
		{"login:linkedin:x", all, "linkedin gives no logins"},
		{"login:octocat", []Config{kc}, "no github provider is configured"},
		{"group:staff", []Config{gh}, "none is configured"},
		{"ada@example.org", nil, "no identity provider is configured"},
	} {
		_, err := ParseAllowList([]string{tc.entry}, tc.providers)
		var fe *FieldError
		if !errors.As(err, &fe) || fe.Field != "organisers" || !strings.Contains(err.Error(), tc.msg) || !strings.Contains(err.Error(), tc.entry) {
			t.Errorf("%q: %v, want ...%s", tc.entry, err, tc.msg)
		}
	}
	_, err = OrganisersFromEnv(env(map[string]string{"AUTH_ORGANISERS": "ada@example.org,login:x:y"}), all)
	if err == nil || !strings.HasPrefix(err.Error(), "AUTH_ORGANISERS: ") {
		t.Fatalf("OrganisersFromEnv: %v", err)
	}
	a, err = OrganisersFromEnv(env(map[string]string{}), nil)
	if err != nil || !a.Empty() {
		t.Fatalf("unset AUTH_ORGANISERS: %v %v", a, err)
	}
}

func TestOrganiser(t *testing.T) {
	all := []Config{{Name: "github", Kind: KindGitHub}, {Name: "gitlab", Kind: KindGitLab}, {Name: "sso", Kind: KindOIDC}}
	a, err := OrganisersFromEnv(env(map[string]string{"AUTH_ORGANISERS": "ada@example.org, login:octocat, group:organisers, login:gitlab:gl-admin, group:gitlab:hack/org"}), all)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		id   Identity
		want bool
	}{
		{Identity{Provider: "sso", Kind: KindOIDC, Subject: "1", Email: "ADA@example.org", EmailVerified: true}, true},
		{Identity{Provider: "gitlab", Kind: KindGitLab, Subject: "1", Email: "ada@example.org", EmailVerified: true}, true},
		{Identity{Provider: "sso", Kind: KindOIDC, Subject: "1", Email: "ada@example.org"}, false},
		{Identity{Provider: "github", Kind: KindGitHub, Subject: "1", Login: "OctoCat"}, true},
		{Identity{Provider: "gitlab", Kind: KindGitLab, Subject: "1", Login: "octocat"}, false}, // a GitHub login only
		{Identity{Provider: "sso", Kind: KindOIDC, Subject: "1", Login: "octocat"}, false},
		{Identity{Provider: "gitlab", Kind: KindGitLab, Subject: "1", Login: "gl-admin"}, true},
		{Identity{Provider: "github", Kind: KindGitHub, Subject: "1", Login: "gl-admin"}, false},
		{Identity{Provider: "sso", Kind: KindOIDC, Subject: "1", Groups: []string{"x", "organisers"}}, true},
		{Identity{Provider: "gitlab", Kind: KindGitLab, Subject: "1", Groups: []string{"organisers"}}, false}, // the issuer's group only
		{Identity{Provider: "gitlab", Kind: KindGitLab, Subject: "1", Groups: []string{"hack/org"}}, true},
		{Identity{Provider: "sso", Kind: KindOIDC, Subject: "1", Groups: []string{"hack/org"}}, false},
		{Identity{Provider: "sso", Kind: KindOIDC, Subject: "1", Groups: []string{"Organisers"}}, false},
		{Identity{Provider: "sso", Kind: KindOIDC, Email: "ada@example.org", EmailVerified: true}, false}, // no subject
	} {
		if got := a.Organiser(tc.id); got != tc.want {
			t.Errorf("%+v: organiser %v, want %v", tc.id, got, tc.want)
		}
	}
	if (AllowList{}).Organiser(Identity{Provider: "sso", Subject: "1", Email: "a@b", EmailVerified: true}) {
		t.Fatal("an empty list let someone in")
	}
}

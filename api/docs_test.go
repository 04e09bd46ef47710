package api

import (
	"bytes"
	"context"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"
)

var (
	assetRef = regexp.MustCompile(`(?:src|href)="([^"]+)"`)
	baseHref = regexp.MustCompile(`<base href="([^"]+)">`)
)

func TestDocsPageAndAssets(t *testing.T) {
	e := newTestEnv(t, Options{})
	for _, page := range []string{"/docs", "/docs/", "/docs/index.html"} {
		t.Run(page, func(t *testing.T) {
			r := e.do("GET", page, "", nil).wantStatus(t, 200)
			if ct := r.header.Get("Content-Type"); ct != "text/html; charset=utf-8" {
				t.Errorf("Content-Type = %q", ct)
			}
			if csp := r.header.Get("Content-Security-Policy"); !strings.Contains(csp, "script-src 'self'") {
				t.Errorf("Content-Security-Policy = %q", csp)
			}
			if cc := r.header.Get("Cache-Control"); cc != "no-cache" {
				t.Errorf("Cache-Control = %q, want no-cache", cc)
			}
			html := string(r.body)
			if strings.Contains(html, "<script>") || strings.Contains(html, "http://") || strings.Contains(html, "https://") {
				t.Errorf("page has an inline script or an absolute URL:\n%s", html)
			}
			m := baseHref.FindStringSubmatch(html)
			if m == nil {
				t.Fatalf("page has no <base href>:\n%s", html)
			}
			pageURL, _ := url.Parse(e.http.URL + page)
			base := pageURL.ResolveReference(&url.URL{Path: m[1]})
			if base.Path != "/docs/" {
				t.Errorf("base resolves to %s, want /docs/", base.Path)
			}

			wantAssets := map[string]string{
				"swagger-ui.css":       "text/css; charset=utf-8",
				"swagger-ui-bundle.js": "text/javascript; charset=utf-8",
				"swagger-init.js":      "text/javascript; charset=utf-8",
				"favicon-32x32.png":    "image/png",
			}
			for _, ref := range assetRef.FindAllStringSubmatch(html, -1) {
				if ref[1] == m[1] {
					continue // the <base> itself
				}
				u, err := base.Parse(ref[1])
				if err != nil {
					t.Fatal(err)
				}
				name := strings.TrimPrefix(u.Path, "/docs/")
				wantType, ok := wantAssets[name]
				if !ok {
					if u.Path == "/openapi.json" { // the <noscript> link
						e.do("GET", u.RequestURI(), "", nil).wantStatus(t, 200)
						continue
					}
					t.Errorf("unexpected reference %q", ref[1])
					continue
				}
				delete(wantAssets, name)
				ar := e.do("GET", u.RequestURI(), "", nil).wantStatus(t, 200)
				if ct := ar.header.Get("Content-Type"); ct != wantType {
					t.Errorf("%s: Content-Type = %q, want %q", name, ct, wantType)
				}
				if cc := ar.header.Get("Cache-Control"); cc != "public, max-age=31536000, immutable" {
					t.Errorf("%s: Cache-Control = %q", name, cc)
				}
				disk, err := os.ReadFile("swaggerui/" + name)
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(ar.body, disk) {
					t.Errorf("%s: served %d bytes that differ from swaggerui/%s", name, len(ar.body), name)
				}
			}
			for name := range wantAssets {
				t.Errorf("page does not reference %s", name)
			}
		})
	}
}

func TestDocsAssetCaching(t *testing.T) {
	e := newTestEnv(t, Options{})
	r := e.do("GET", "/docs/swagger-ui.css", "", nil).wantStatus(t, 200)
	etag := r.header.Get("ETag")
	if etag == "" {
		t.Fatal("no ETag")
	}
	if cc := r.header.Get("Cache-Control"); cc != "public, max-age=3600" {
		t.Errorf("Cache-Control without version = %q", cc)
	}
	req, _ := http.NewRequest("GET", e.http.URL+"/docs/swagger-ui.css", nil)
	req.Header.Set("If-None-Match", etag)
	resp, err := e.http.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotModified {
		t.Errorf("conditional GET status = %d, want 304", resp.StatusCode)
	}
	for _, f := range []string{"LICENSE", "NOTICE", "swagger-ui-bundle.js.LICENSE.txt"} {
		r := e.do("GET", "/docs/"+f, "", nil).wantStatus(t, 200)
		if ct := r.header.Get("Content-Type"); ct != "text/plain; charset=utf-8" {
			t.Errorf("%s: Content-Type = %q", f, ct)
		}
	}
	e.do("GET", "/docs/../go.mod", "", nil).wantError(t, 404, "")
	e.do("GET", "/docs/swaggerui/LICENSE", "", nil).wantError(t, 404, "")
}

func TestDocsBundleVersion(t *testing.T) {
	bundle := docsAssets().assets["swagger-ui-bundle.js"].data
	if !bytes.Contains(bundle, []byte(`PACKAGE_VERSION:"`+swaggerUIVersion+`"`)) {
		t.Errorf("swagger-ui-bundle.js is not version %s; update swaggerUIVersion", swaggerUIVersion)
	}
}

// TestDocsRenderInChromium loads /docs/ in headless Chromium and checks that
// Swagger UI rendered the operations from /openapi.json, so the page, its
// assets, the init script and the Content-Security-Policy work together.
func TestDocsRenderInChromium(t *testing.T) {
	chromium, err := exec.LookPath("chromium")
	if err != nil {
		t.Fatal("this test needs Debian's chromium (apt-get install chromium; .ci/run installs it)")
	}
	e := newTestEnv(t, Options{})
	for _, page := range []string{"/docs/", "/docs"} {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		cmd := exec.CommandContext(ctx, chromium,
			"--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
			"--disable-background-networking", "--disable-component-update", "--disable-sync",
			"--user-data-dir="+t.TempDir(), "--virtual-time-budget=15000",
			"--dump-dom", e.http.URL+page)
		out, err := cmd.Output()
		cancel()
		if err != nil {
			t.Fatalf("chromium %s: %v", page, err)
		}
		dom := string(out)
		for _, want := range []string{`class="swagger-ui`, "thon API", "/api/groups/{group_id}/users/{user_id}/transfer",
			"Import a groups file", "/api/config-files/{key}/upload",
			`class="btn authorize`} { // the securitySchemes give Swagger UI its Authorize button
			if !strings.Contains(dom, want) {
				t.Errorf("%s: rendered page lacks %q; DOM:\n%.3000s", page, want, dom)
			}
		}
	}
}

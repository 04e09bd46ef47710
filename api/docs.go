package api

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"io/fs"
	"net/http"
	"path"
	"strings"
	"sync"
	"time"
)

// Swagger UI is served from files embedded in the binary; nothing is loaded
// from a CDN. swaggerui/ holds our own index.html and swagger-init.js plus
// these files copied unchanged from the npm package swagger-ui-dist
// (version swaggerUIVersion): swagger-ui-bundle.js, swagger-ui.css,
// favicon-32x32.png, LICENSE, NOTICE and swagger-ui-bundle.js.LICENSE.txt
// (the licenses of the bundled code).
//
// To update them:
//
//	cd /tmp && npm pack swagger-ui-dist@X.Y.Z && tar xzf swagger-ui-dist-X.Y.Z.tgz
//	cd package && cp swagger-ui-bundle.js swagger-ui.css favicon-32x32.png \
//		LICENSE NOTICE swagger-ui-bundle.js.LICENSE.txt /path/to/thon/api/swaggerui/
//
// then set swaggerUIVersion and run go test ./api/ (the docs tests load the
// page in Chromium and check that the operations render).
//
//go:embed swaggerui
var swaggerUIFiles embed.FS

// swaggerUIVersion is the swagger-ui-dist release in swaggerui/.
const swaggerUIVersion = "5.35.0"

// docsCSP is the Content-Security-Policy of the docs page: everything from
// this server; Swagger UI sets inline styles and uses data: images.
const docsCSP = "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; " +
	"img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'self'; form-action 'self'"

// docsAsset is one embedded file, ready to serve.
type docsAsset struct {
	data        []byte
	contentType string
	etag        string
}

// docsSite is the embedded Swagger UI: its assets by name and the index
// page for /docs/ and for /docs (whose base must point one level down).
type docsSite struct {
	assets       map[string]docsAsset
	indexSlash   []byte
	indexNoSlash []byte
}

// docsAssets builds the docs site once from the embedded files.
var docsAssets = sync.OnceValue(func() docsSite {
	site := docsSite{assets: make(map[string]docsAsset)}
	entries, err := fs.ReadDir(swaggerUIFiles, "swaggerui")
	if err != nil {
		panic("api: reading embedded swaggerui: " + err.Error()) // the embed directive guarantees it
	}
	var index []byte
	for _, e := range entries {
		data, err := swaggerUIFiles.ReadFile("swaggerui/" + e.Name())
		if err != nil {
			panic("api: reading embedded swaggerui: " + err.Error())
		}
		if e.Name() == "index.html" {
			index = data
			continue
		}
		sum := sha256.Sum256(data)
		site.assets[e.Name()] = docsAsset{
			data:        data,
			contentType: assetContentType(e.Name()),
			etag:        `"` + hex.EncodeToString(sum[:8]) + `"`,
		}
	}
	// Each asset reference gets its content hash as a query, so the assets
	// can be cached for long and still change with the binary.
	for name, a := range site.assets {
		index = bytes.ReplaceAll(index, []byte(`"`+name+`"`),
			[]byte(`"`+name+"?v="+strings.Trim(a.etag, `"`)+`"`))
	}
	site.indexSlash = index
	site.indexNoSlash = bytes.Replace(index, []byte(`<base href="./">`), []byte(`<base href="docs/">`), 1)
	return site
})

// assetContentType returns the Content-Type for an embedded file name.
func assetContentType(name string) string {
	switch path.Ext(name) {
	case ".js":
		return "text/javascript; charset=utf-8"
	case ".css":
		return "text/css; charset=utf-8"
	case ".png":
		return "image/png"
	case ".html":
		return "text/html; charset=utf-8"
	default: // LICENSE, NOTICE, *.txt
		return "text/plain; charset=utf-8"
	}
}

// serveDocs serves Swagger UI: the page at /docs, /docs/ and
// /docs/index.html, the assets under /docs/.
func (s *Server) serveDocs(w http.ResponseWriter, r *http.Request) {
	site := docsAssets()
	h := w.Header()
	h.Set("X-Content-Type-Options", "nosniff")
	file := r.PathValue("file")
	if file == "" || file == "index.html" {
		page := site.indexSlash
		if !strings.HasSuffix(r.URL.Path, "/") && file == "" {
			page = site.indexNoSlash
		}
		h.Set("Content-Type", "text/html; charset=utf-8")
		h.Set("Cache-Control", "no-cache")
		h.Set("Content-Security-Policy", docsCSP)
		h.Set("Referrer-Policy", "no-referrer")
		http.ServeContent(w, r, "index.html", time.Time{}, bytes.NewReader(page))
		return
	}
	a, ok := site.assets[file]
	if !ok {
		s.writeError(w, r, errorf(http.StatusNotFound, "", "no docs asset %q", file))
		return
	}
	h.Set("Content-Type", a.contentType)
	h.Set("ETag", a.etag)
	if r.URL.Query().Get("v") == strings.Trim(a.etag, `"`) {
		h.Set("Cache-Control", "public, max-age=31536000, immutable")
	} else {
		h.Set("Cache-Control", "public, max-age=3600")
	}
	http.ServeContent(w, r, file, time.Time{}, bytes.NewReader(a.data))
}

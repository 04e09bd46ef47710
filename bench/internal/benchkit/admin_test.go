package benchkit

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestAdmin(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		switch r.URL.Path {
		case "/thon/groups/import":
			if r.Method != http.MethodPost || r.Header.Get("Content-Type") != "application/yaml" || string(b) != "groups: {}\n" {
				http.Error(w, "unexpected request", http.StatusBadRequest)
				return
			}
			fmt.Fprint(w, `{"groups": 2}`)
		case "/thon/health":
			if r.Header.Get("Content-Type") != "" {
				http.Error(w, "unexpected content type", http.StatusBadRequest)
			}
		default:
			http.Error(w, "  no such route ", http.StatusConflict)
		}
	}))
	defer srv.Close()
	_, p, _ := strings.Cut(srv.Listener.Addr().String(), ":")
	port, _ := strconv.Atoi(p)
	a := Admin{Port: port, Timeout: time.Minute}
	ctx := context.Background()

	var out struct{ Groups int }
	if err := a.Call(ctx, http.MethodPost, "/thon/groups/import", "application/yaml", []byte("groups: {}\n"), &out); err != nil || out.Groups != 2 {
		t.Errorf("import: %+v %v", out, err)
	}
	if err := a.Call(ctx, http.MethodGet, "/thon/health", "", nil, nil); err != nil {
		t.Errorf("health: %v", err)
	}
	if err := a.Call(ctx, http.MethodGet, "/thon/health", "", nil, &out); err == nil {
		t.Error("an empty answer decoded")
	}
	if err := a.Call(ctx, http.MethodDelete, "/thon/x", "", nil, nil); err == nil || err.Error() != "DELETE /thon/x: 409 Conflict: no such route" {
		t.Errorf("refused: %v", err)
	}
	if err := a.Call(ctx, "BAD METHOD", "/", "", nil, nil); err == nil {
		t.Error("no error for a bad method")
	}
}

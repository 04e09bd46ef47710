package benchkit

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
)

// Admin is a client of a thon's admin API on localhost.
type Admin struct {
	Port    int           // the admin listener's, on localhost
	Timeout time.Duration // of each call; 0 for none
}

// Call sends body (of contentType, unless empty) with method to path
// and decodes the JSON answer into v, unless v is nil. An answer of 300 or
// above is an error carrying its body.
func (a Admin) Call(ctx context.Context, method, path, contentType string, body []byte, v any) error {
	req, err := http.NewRequestWithContext(ctx, method, fmt.Sprintf("http://localhost:%d%s", a.Port, path), bytes.NewReader(body))
	if err != nil {
		return err
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := (&http.Client{Timeout: a.Timeout}).Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode >= 300 {
		return fmt.Errorf("%s %s: %s: %s", method, path, resp.Status, strings.TrimSpace(string(b)))
	}
	if v == nil {
		return nil
	}
	return json.Unmarshal(b, v)
}

package main

import (
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync/atomic"
)

// upstream is the benchmark's LLM server, in the benchmark's own process:
// a stand-in for Lemonade Server (which cannot run here) answering its
// non-streamed chat completions the way internal/lemonadetest does (the
// same JSON shape, usage included), with its API-key check, but without
// the test server's request log, so that every front end meets the same
// cheap upstream. It also answers /live and /v1/health for thon's health
// watcher.
type upstream struct {
	key      string
	answer   []byte
	requests atomic.Int64 // chat completions answered
	srv      *http.Server
	ln       net.Listener
}

// completionAnswer is the answer to every chat completion: a few tokens
// of text and their usage.
func completionAnswer() []byte {
	b, _ := json.Marshal(map[string]any{
		"id": "chatcmpl-bench", "object": "chat.completion", "created": 1790000000, "model": "user.gemma-4-31b-it",
		"choices": []any{map[string]any{
			"index": 0, "finish_reason": "stop",
			"message": map[string]any{"role": "assistant", "content": "Code all night, ship at dawn; the demo works."},
		}},
		"usage": map[string]any{"prompt_tokens": 14, "completion_tokens": 12, "total_tokens": 26},
	})
	return b
}

// startUpstream listens on a loopback port and serves.
func startUpstream(key string) (*upstream, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	u := &upstream{key: key, answer: completionAnswer(), ln: ln}
	u.srv = &http.Server{Handler: u}
	go u.srv.Serve(ln)
	return u, nil
}

func (u *upstream) addr() string { return u.ln.Addr().String() }

func (u *upstream) close() { u.srv.Close() }

func (u *upstream) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	_, _ = io.Copy(io.Discard, r.Body)
	switch {
	case r.URL.Path == "/live":
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"status":"ok"}`)
		return
	case r.Header.Get("Authorization") != "Bearer "+u.key:
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusUnauthorized)
		_, _ = io.WriteString(w, `{"error":"Invalid or missing API key"}`)
		return
	case r.URL.Path == "/v1/health":
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"status":"ok","version":"10.8.0","all_models_loaded":[]}`)
		return
	case r.URL.Path == "/v1/chat/completions" && r.Method == http.MethodPost:
		u.requests.Add(1)
		h := w.Header()
		h.Set("Content-Type", "application/json")
		h.Set("Content-Length", strconv.Itoa(len(u.answer)))
		_, _ = w.Write(u.answer)
	default:
		http.NotFound(w, r)
	}
}

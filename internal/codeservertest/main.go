// Command codeservertest stands in for code-server inside the sandbox test image
// (thon/sandbox-test:latest). code-server cannot be installed where thon's
// tests run, so this program speaks the part of code-server's contract that
// thon relies on:
//
//   - the command line: --bind-addr host:port, --auth none|password,
//     --disable-telemetry and a positional workspace directory;
//   - the password from the PASSWORD environment variable or the "password:"
//     key of $HOME/.config/code-server/config.yaml;
//   - GET /healthz answering {"status":"alive","lastHeartbeat":<ms>} without
//     authentication;
//   - with --auth password, unauthenticated requests redirected to the
//     relative ./login, a login form, and POST /login setting the
//     code-server-session cookie and redirecting back;
//   - HTML pages on every path and a WebSocket endpoint (echo) on every path,
//     served at the root (a proxy strips any prefix before it).
//
// For tests it also serves GET /files?path= (read a file under the workspace
// or the home directory) and PUT /files?path= (write a file under the
// workspace), and a page on any path shows the file named by ?file=. POST
// /exit?code=N (0-255; behind the login like /files) answers 202 and then
// ends the process at once with exit code N, as a crash of code-server
// would: tests use it to see the engine restart a sandbox. GET /headers
// answers the request's headers as JSON (a WebSocket on /headers sends them
// as its first message), so tests see what a proxy passed on.
package main

import (
	"context"
	"errors"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"
)

func main() {
	cfg, err := parseArgs(os.Args[1:], os.Getenv, os.ReadFile)
	if err != nil {
		fmt.Fprintln(os.Stderr, "code-server:", err)
		os.Exit(2)
	}
	if err := run(cfg); err != nil {
		fmt.Fprintln(os.Stderr, "code-server:", err)
		os.Exit(1)
	}
}

func run(cfg config) error {
	srv, err := newServer(cfg)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", cfg.bindAddr)
	if err != nil {
		return err
	}
	log.Printf("HTTP server listening on http://%s/ (auth: %s, workspace: %s)", ln.Addr(), cfg.auth, cfg.workspace)

	httpSrv := &http.Server{
		Handler:           srv,
		ReadHeaderTimeout: 10 * time.Second,
	}

	// As PID 1 in a container, the process gets no default signal handling:
	// without this, SIGTERM from `docker stop` would be ignored until SIGKILL.
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()

	errc := make(chan error, 1)
	go func() { errc <- httpSrv.Serve(ln) }()

	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := httpSrv.Shutdown(shutdownCtx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	return nil
}

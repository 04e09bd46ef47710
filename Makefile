# thon build, run and test targets. `make run` builds thon and runs it on the
# embedded default (SQLite under ./data); `make test` runs every test.

GO       ?= go
TAGS     := nobadger,nomysql,nopgx
LDFLAGS  := -s -w -X github.com/caddyserver/caddy/v2.CustomBinaryName=thon
BIN      := bin/thon
PREFIX   ?= /usr/local
GOFILES   = $(shell git ls-files '*.go' 2>/dev/null || find . -name '*.go' -not -path './.git/*')

export GOFLAGS := -tags=$(TAGS)

.PHONY: all build generate run test test-unit test-e2e smoke bench fuzz lint vet fmt install \
	sandbox-test-image xcaddy clean

all: build

## build: the thon binary (Caddy + standard modules + thon) into bin/thon
build: generate
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/thon

## generate: generated sources (committed; this only refreshes them)
generate:
	$(GO) generate ./...

## run: build and run on the embedded default (SQLite in ./data, admin on localhost:2019)
run: build
	$(BIN) run --config Caddyfile.example

## test: everything CI runs: vet, gofmt, the sandbox test image, all tests with -race, binary smoke tests
test: lint sandbox-test-image test-unit smoke

test-unit:
	$(GO) test -race -count=1 -timeout 30m ./...

## test-e2e: the end-to-end tests only (real Caddy, Docker, nginx, Redis, Chromium)
test-e2e: sandbox-test-image
	$(GO) test -race -count=1 -timeout 30m -run 'Integration|E2E' ./...

## smoke: the built binary lists our modules, adapts and validates the example config, and it is formatted
smoke: build
	$(BIN) list-modules | grep -qx 'thon'
	$(BIN) list-modules | grep -qx 'http.handlers.thon_api'
	$(BIN) adapt --config Caddyfile.example --validate >/dev/null
	$(BIN) fmt --diff Caddyfile.example

## bench: benchmarks with ratios against their references, see bench/RESULTS.md
bench: build sandbox-test-image
	@if [ -x bench/run.sh ]; then bench/run.sh; else $(GO) test -run '^$$' -bench . -benchmem ./...; fi

## fuzz: every fuzz target for FUZZTIME (default 30s) each
FUZZTIME ?= 30s
fuzz:
	@set -e; for pkg in $$($(GO) list ./...); do \
		for f in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz' || true); do \
			echo "== $$pkg $$f"; $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) $$pkg; \
		done; \
	done

## lint: go vet and gofmt
lint: vet
	@out=$$(gofmt -l $(GOFILES)); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

vet:
	$(GO) vet ./...

fmt:
	gofmt -w $(GOFILES)

## install: binary, systemd unit and /etc/thon/Caddyfile (an existing Caddyfile is kept)
install: build
	install -D -m 0755 $(BIN) $(DESTDIR)$(PREFIX)/bin/thon
	install -D -m 0644 thon.service $(DESTDIR)/etc/systemd/system/thon.service
	@if [ -e $(DESTDIR)/etc/thon/Caddyfile ]; then echo "keeping existing /etc/thon/Caddyfile"; \
	else install -D -m 0644 Caddyfile.example $(DESTDIR)/etc/thon/Caddyfile; fi
	@echo "installed; start with: systemctl daemon-reload && systemctl enable --now thon"

## sandbox-test-image: thon/sandbox-test:latest from Debian packages and our test server (nothing pulled)
sandbox-test-image:
	sh internal/codeservertest/build-image.sh

## xcaddy: the same build through xcaddy, from xcaddy.json
xcaddy:
	$(GO) run ./internal/xcaddycmd xcaddy.json

clean:
	rm -rf bin

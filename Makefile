# `make test` is the one command that checks everything: it installs what
# the tests need on a bare machine, then runs the format check, go vet, the
# whole suite under the race detector, and each fuzz target briefly.
# .ci/run calls exactly this.
GO ?= go
# An iteration count, not a duration: a duration-bounded run can fail with
# "context deadline exceeded" when the fuzzing engine's workers are slow to
# stop on a loaded machine, which would make CI flaky for no bug.
FUZZTIME ?= 30000x

.PHONY: test deps vet unit fuzz vulncheck demo build bench

test: deps vet unit fuzz

deps:
	./scripts/install-test-deps.sh

vet:
	@unformatted="$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))"; \
	if [ -n "$$unformatted" ]; then echo "gofmt would change:"; echo "$$unformatted"; exit 1; fi
	$(GO) vet ./...

unit:
	$(GO) test -race -count=1 ./...

# Each fuzz target runs FUZZTIME (30000 inputs) from its seed corpus
# (testdata/fuzz); `make fuzz FUZZTIME=10m` for a real session.
fuzz:
	$(GO) test -run '^$$' -fuzz '^FuzzParse$$' -fuzztime $(FUZZTIME) ./config
	$(GO) test -run '^$$' -fuzz '^FuzzRouting$$' -fuzztime $(FUZZTIME) ./proxy/internal/routing
	$(GO) test -run '^$$' -fuzz '^FuzzCleanPath$$' -fuzztime $(FUZZTIME) ./proxy/internal/routing
	$(GO) test -run '^$$' -fuzz '^FuzzForwarded$$' -fuzztime $(FUZZTIME) ./proxy/internal/direct
	$(GO) test -run '^$$' -fuzz '^FuzzDirectHead$$' -fuzztime $(FUZZTIME) ./proxy
	$(GO) test -run '^$$' -fuzz '^FuzzParseHead$$' -fuzztime $(FUZZTIME) ./server/internal/h1serve
	$(GO) test -run '^$$' -fuzz '^FuzzReadResponseHead$$' -fuzztime $(FUZZTIME) ./proxy/internal/h1

# Needs the Go vulnerability database (vuln.go.dev), which this project's
# build machines cannot reach; run it where they can.
vulncheck:
	$(GO) run golang.org/x/vuln/cmd/govulncheck@v1.1.4 ./...

build:
	$(GO) build -o bin/sluice ./cmd/sluice

demo:
	$(GO) run ./cmd/sluice demo

# The benchmark against nginx, HAProxy, Caddy and httputil.ReverseProxy on
# loopback: installs the peers with apt-get if missing, about 9
# minutes, rewrites docs/BENCHMARKS.md and its charts. `go run ./bench
# -quick` checks the harness in about 2 minutes.
bench:
	$(GO) run ./bench

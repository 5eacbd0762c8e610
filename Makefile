# `make test` is the one command that checks everything: it installs what
# the tests need on a bare machine, then runs vet, a format check and the
# whole suite under the race detector. .ci/run calls exactly this.
GO ?= go

.PHONY: test deps vet demo build

test: deps vet
	$(GO) test -race -count=1 ./...

deps:
	./scripts/install-test-deps.sh

vet:
	@unformatted="$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))"; \
	if [ -n "$$unformatted" ]; then echo "gofmt would change:"; echo "$$unformatted"; exit 1; fi
	$(GO) vet ./...

build:
	$(GO) build -o bin/sluice ./cmd/sluice

demo:
	$(GO) run ./cmd/sluice demo

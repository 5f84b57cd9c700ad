# Hangar build targets. `make demo` deploys the example cluster on the local
# runtime; `make test` is the test command CI runs.
GO        ?= go
BIN       ?= $(CURDIR)/bin
PKG_TESTS ?= ./...

.PHONY: build test proto proto-check lint demo down tools clean images bench bench-quick

build:
	@mkdir -p $(BIN)
	$(GO) build -o $(BIN)/ ./cmd/...

# The whole suite, end-to-end tests included (they build the binaries themselves).
test:
	$(GO) test -count=1 -timeout 30m $(PKG_TESTS)

# The docker runtime's images, from local files and Debian's packages
# (scripts/images.sh; IMAGES="redis kv" builds some). docs/images.md.
# The scale benchmarks on the sim provider (docs/performance.md): the
# whole suite, or the small one CI runs so that the harness cannot rot.
bench:
	./bench/run full

bench-quick:
	./bench/run quick

images:
	./scripts/images.sh $(IMAGES)

# Regenerate api/ from proto/ (needs protoc: `apt-get install protobuf-compiler`, and `make tools`).
proto:
	./scripts/genproto.sh

# Fails when the committed generated code differs from what proto/ generates.
proto-check: proto
	@git diff --exit-code --stat -- api/ || (echo "api/ is stale: run 'make proto' and commit" >&2; exit 1)

tools:
	GOBIN=$$($(GO) env GOPATH)/bin $(GO) install google.golang.org/protobuf/cmd/protoc-gen-go@v1.36.12
	GOBIN=$$($(GO) env GOPATH)/bin $(GO) install google.golang.org/grpc/cmd/protoc-gen-go-grpc@v1.5.1
	GOBIN=$$($(GO) env GOPATH)/bin $(GO) install github.com/grpc-ecosystem/grpc-gateway/v2/protoc-gen-grpc-gateway@v2.33.0
	GOBIN=$$($(GO) env GOPATH)/bin $(GO) install github.com/grpc-ecosystem/grpc-gateway/v2/protoc-gen-openapiv2@v2.33.0

lint:
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || (gofmt -l $$(git ls-files '*.go'); exit 1)
	$(GO) vet ./...
	$(GO) run honnef.co/go/tools/cmd/staticcheck@v0.8.2 ./...

# Brings up pilot with the local runtime and deploys examples/kv.
demo: build
	./scripts/demo.sh

down:
	$(BIN)/hangar down

clean:
	rm -rf $(BIN)

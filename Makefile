# tenantproxy: the two commands are `make run` and `make test`.
SHELL := /bin/bash
GO    ?= $(shell command -v go || echo /usr/local/go/bin/go)

.PHONY: run test deps db db-stop build vet bench

# Start the private database, migrate it, load demo data and serve config.example.toml on
# 127.0.0.1:5432 (TENANTPROXY_LISTEN overrides).
run: build db
	scripts/run-demo

# Every test: go vet, then the Go suite (unit, database, proxy, psql and node-postgres clients).
test: deps vet
	$(GO) test -count=1 ./...

# Install what the tests need when it is missing: PostgreSQL, pgvector, Node.js and node-postgres.
deps:
	scripts/pgenv install
	scripts/node-deps

build:
	$(GO) build -o bin/tenantproxy ./cmd/tenantproxy

# The benchmark report against PostgreSQL and PgBouncer (about 15 minutes on 2 cores, 20 with --repeat 5; use a quiet machine):
# results/<UTC time>/report.md. BENCHFLAGS passes flags, e.g. BENCHFLAGS="--only pgbench".
bench: deps
	$(GO) run ./bench/cmd/bench $(BENCHFLAGS)

vet:
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); echo "gofmt: files above need formatting"; exit 1; }
	$(GO) vet ./...

# The private development database (.pgdata, 127.0.0.1:15432).
db:
	scripts/pgenv install
	scripts/pgenv start

db-stop:
	scripts/pgenv stop

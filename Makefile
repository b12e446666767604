# tenantproxy: the two commands are `make run` and `make test`.
SHELL := /bin/bash
GO    ?= $(shell command -v go || echo /usr/local/go/bin/go)

.PHONY: run test deps db db-stop build vet bench fuzz soak

# Start the private database, migrate it, load demo data and serve config.example.toml on
# 127.0.0.1:5432 (TENANTPROXY_LISTEN overrides).
run: build db
	scripts/run-demo

# Every test: go vet, then the Go suite (unit, database, proxy, psql and node-postgres clients, the
# compatibility suite of real drivers and ORMs in compat/, faults) under the race detector, which
# also replays each fuzz target's corpus; then each fuzz target runs for a few seconds.
test: deps vet
	$(GO) test -race -count=1 -timeout 30m ./...
	$(MAKE) --no-print-directory fuzz FUZZTIME=3s

# Each fuzz target for FUZZTIME (go test -fuzz takes one target at a time). New inputs that
# find something are written to the package's testdata/fuzz; commit them with the fix.
FUZZTIME ?= 20s
FUZZ_TARGETS := ./internal/wire:FuzzReader ./internal/wire:FuzzDecoders ./guard:FuzzPrefilterSound ./proxy/queue:FuzzQueue \
	./faults/authfuzz:FuzzStartupPacket ./faults/authfuzz:FuzzSCRAMExchange
fuzz:
	@set -e; for target in $(FUZZ_TARGETS); do \
		echo "fuzz: $${target#*:} ($${target%%:*}) for $(FUZZTIME)"; \
		$(GO) test -run '^$$' -fuzz "^$${target#*:}\$$" -fuzztime $(FUZZTIME) -fuzzminimizetime 5s "$${target%%:*}"; \
	done

# Sustained load with faults (faults/load_test.go) for SOAK_DURATION in each pool mode, with a
# summary at the end of each: operations, errors by SQLSTATE, faults fired, recovery times.
SOAK_DURATION ?= 10m
soak: deps
	SOAK_DURATION=$(SOAK_DURATION) $(GO) test -race -count=1 -v -timeout 0 -run '^TestLoadWithFaults$$' ./faults/

# Install what the tests need when it is missing: PostgreSQL, pgvector, Node.js, and the drivers
# and ORMs the compatibility suite runs (Debian packages, npm packages of tests/node).
deps:
	scripts/pgenv install
	scripts/drivers-deps

build:
	$(GO) build -buildvcs=auto -o bin/tenantproxy ./cmd/tenantproxy

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

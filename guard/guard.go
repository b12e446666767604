// Package guard is the SQL guard. It reads every statement text a client sends — a simple
// Query, which may hold several statements, or a Parse — and decides whether the proxy may
// forward it. It keeps the tenant context out of clients' reach (42501) and, when backends are
// pooled per transaction, keeps session state from passing to the next client of a backend
// (0A000).
//
// A cheap pre-filter (prefilter.go) lets most statements through without parsing; the rest go
// through PostgreSQL's own parser (libpg_query) and the rules (rules.go), and their verdicts are
// cached by text (cache.go).
package guard

import (
	"bytes"
	"strings"
	"sync/atomic"

	pg_query "github.com/pganalyze/pg_query_go/v6"

	"github.com/tenantproxy/tenantproxy/internal/guc"
)

// PoolMode says how backend sessions are shared, which decides whether session state is allowed.
type PoolMode int

const (
	// SessionMode gives each client connection its own backend: session state is the client's own.
	SessionMode PoolMode = iota
	// TransactionMode lends a backend per transaction: session state would leak to the next client.
	TransactionMode
)

// Config configures a Guard.
type Config struct {
	// ReservedPrefixes are lower-case setting namespaces ending with ".", e.g. "app.". Clients may
	// neither set nor reset a setting in them. "app." when empty.
	ReservedPrefixes []string
	Mode             PoolMode
	// CacheSize is how many verdicts are kept, by statement text; 10000 when 0.
	CacheSize int
}

// SQLSTATEs of a refusal.
const (
	CodeInsufficientPrivilege = "42501" // touches the tenant context, identity or what tenants share
	CodeFeatureNotSupported   = "0A000" // session state in transaction mode
	CodeSyntaxError           = "42601" // could not parse
)

// Verdict is the guard's decision on one statement text.
type Verdict struct {
	Refused bool
	// Code is the SQLSTATE when refused: CodeInsufficientPrivilege, CodeFeatureNotSupported or
	// CodeSyntaxError.
	Code string
	// Rule is a stable short id of the rule that refused, e.g. "reserved-setting".
	Rule string
	// Message is for the client and names what was refused and why.
	Message string
	// Hint, when set, says what to do instead.
	Hint string

	// Effects the proxy acts on when an allowed statement runs:

	// ResetsContext is set for RESET ALL and DISCARD ALL: the tenant context must be put back.
	ResetsContext bool
	// DropsStatements is set for DISCARD ALL and DEALLOCATE ALL: every prepared statement of the
	// session is gone.
	DropsStatements bool
	// ChangesSettings is set for SET, SET LOCAL, RESET and DISCARD ALL: until they have run and
	// the transaction is over, statements may be parsed under settings the proxy cannot name.
	ChangesSettings bool
	// Explains is set for EXPLAIN: its row estimates come from statistics sampled over every
	// tenant's rows, and EXPLAIN ANALYZE counts rows the policies filtered out, so the proxy
	// refuses it but to users trusted with it.
	Explains bool
}

// Stats counts how Check reached its verdicts.
type Stats struct {
	Prefiltered uint64 // allowed by the pre-filter, without parsing
	CacheHits   uint64 // answered from the cache
	Parsed      uint64 // parsed and cached
}

// Guard decides which statement texts the proxy forwards. It is safe for concurrent use.
type Guard struct {
	reserved []string // lower case, each ending with "."
	mode     PoolMode
	pre      *prefilter
	cache    *verdictCache

	prefiltered, cacheHits, parsed atomic.Uint64
}

// New returns a guard for cfg.
func New(cfg Config) *Guard {
	var reserved []string
	for _, p := range cfg.ReservedPrefixes {
		p = guc.Fold(strings.TrimSpace(p))
		if p == "" || p == "." {
			continue
		}
		if !strings.HasSuffix(p, ".") {
			p += "."
		}
		reserved = append(reserved, p)
	}
	if len(reserved) == 0 {
		reserved = []string{"app."}
	}
	size := cfg.CacheSize
	if size <= 0 {
		size = 10000
	}
	return &Guard{
		reserved: reserved,
		mode:     cfg.Mode,
		pre:      newPrefilter(reserved),
		cache:    newVerdictCache(size),
	}
}

// Check decides whether the proxy may forward sql, the text of a Query or Parse message without
// its terminating zero byte. It allocates nothing when the pre-filter lets sql through or the
// verdict is cached.
func (g *Guard) Check(sql []byte) Verdict {
	if !g.pre.flags(sql) {
		g.prefiltered.Add(1)
		return Verdict{}
	}
	if v, ok := g.cache.get(sql); ok {
		g.cacheHits.Add(1)
		return v
	}
	v := g.Inspect(sql)
	g.parsed.Add(1)
	g.cache.put(sql, v)
	return v
}

// Prefilter reports whether sql holds a trigger of the pre-filter, so that Check parses it.
// A text that it does not flag is allowed unread.
func (g *Guard) Prefilter(sql []byte) bool { return g.pre.flags(sql) }

// Inspect parses sql and applies every rule, without the pre-filter or the cache: the ground
// truth that Check's shortcuts must agree with.
func (g *Guard) Inspect(sql []byte) Verdict {
	// libpg_query reads a C string, which ends at the first zero byte: it would never see what
	// follows one.
	if bytes.IndexByte(sql, 0) >= 0 {
		return unparsableVerdict("the text contains a zero byte")
	}
	tree, err := pg_query.Parse(string(sql))
	if err != nil {
		return unparsableVerdict(err.Error())
	}
	in := inspection{g: g}
	for _, raw := range tree.GetStmts() {
		stmt := raw.GetStmt()
		if stmt == nil {
			continue
		}
		in.statement(stmt)
		in.walk(stmt.ProtoReflect())
		if in.denied != nil {
			break
		}
	}
	return in.verdict()
}

// Stats returns how many verdicts came from each path so far.
func (g *Guard) Stats() Stats {
	return Stats{
		Prefiltered: g.prefiltered.Load(),
		CacheHits:   g.cacheHits.Load(),
		Parsed:      g.parsed.Load(),
	}
}

func unparsableVerdict(why string) Verdict {
	return Verdict{
		Refused: true,
		Code:    CodeSyntaxError,
		Rule:    "unparsable",
		Message: "tenantproxy could not parse this statement: " + why,
	}
}

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
	"context"
	"fmt"
	"runtime/debug"
	"strings"
	"sync/atomic"
	"time"

	pg_query "github.com/pganalyze/pg_query_go/v6"
	"golang.org/x/sync/semaphore"

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
	// Memory bounds what parsing may take at one time, in bytes (parsing takes about
	// parseBytesPerByte times the text); 512 MiB when 0. A text that could not be parsed within
	// it is refused (54000); a parse waits for room, up to parseWait, while others run.
	Memory int64
}

// Parsing a text takes about this many bytes per byte of text, measured with pg_query_go on
// statements from a few bytes to megabytes (125x to 142x in Go's heap, plus the C parser's own),
// and this much besides.
const (
	parseBytesPerByte = 150
	parseBaseBytes    = 64 << 10
)

// parseWait bounds how long a parse waits for the memory other parses hold.
const parseWait = 5 * time.Second

// afterHugeParse: past this cost the memory of a parse goes back to the system at once, so that
// one client's huge statement does not leave the proxy large.
const afterHugeParse = 64 << 20

// SQLSTATEs of a refusal.
const (
	CodeInsufficientPrivilege = "42501" // touches the tenant context, identity or what tenants share
	CodeFeatureNotSupported   = "0A000" // session state in transaction mode
	CodeSyntaxError           = "42601" // could not parse
	CodeProgramLimitExceeded  = "54000" // too large to check
	CodeOutOfMemory           = "53200" // no memory to check it now
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

	// Effects the proxy acts on when an allowed statement runs (or, for Explains, that it may
	// refuse):

	// ResetsContext is set for RESET ALL and DISCARD ALL: the tenant context must be put back.
	ResetsContext bool
	// DropsStatements is set for DISCARD ALL and DEALLOCATE ALL: every prepared statement of the
	// session is gone.
	DropsStatements bool
	// ChangesSettings is set for SET, SET LOCAL, RESET, set_config and DISCARD ALL: until they have
	// run and the transaction is over, statements may be parsed under settings the proxy cannot
	// name.
	ChangesSettings bool
	// ChangesSessionSettings is set when the change may outlive the transaction (SET and RESET
	// without LOCAL, SET SESSION CHARACTERISTICS, set_config not certainly local): in transaction
	// pooling the proxy then reads the session's settings back, to carry them.
	ChangesSessionSettings bool
	// CustomSettings names, comma-separated, the custom settings (with a dot, like myapp.flag)
	// the text sets or resets at session level: the server lists no custom setting in
	// pg_settings, so the proxy must know their names to read them back.
	CustomSettings string
	// Deallocate is the name of a text that is exactly DEALLOCATE name: in transaction pooling
	// the proxy answers it for the client's protocol-level statements.
	Deallocate string
	// Rewrite, when set, is the text to send instead: every set_config and pg_notify call goes to
	// the database's wrapper of it (lockdown.SetConfigWrapper, lockdown.NotifyWrapper), which
	// keeps the tenant context, and the tenant's channels, itself.
	Rewrite string
	// Channels is set for LISTEN, UNLISTEN and NOTIFY: the proxy maps the channel names onto the
	// client's tenant's own (LISTEN is refused in transaction pooling).
	Channels bool
	// Explains is set for EXPLAIN: its row estimates come from statistics sampled over every
	// tenant's rows, and EXPLAIN ANALYZE counts rows the policies filtered out, so the proxy
	// refuses it but to users trusted with it.
	Explains bool
	// HoldsCursor is set for DECLARE ... WITH HOLD: the cursor outlives its transaction on its
	// backend, which in transaction pooling then stays with the client until the cursor is
	// closed.
	HoldsCursor bool
}

// Stats counts how Check reached its verdicts.
type Stats struct {
	Prefiltered uint64 // allowed by the pre-filter, without parsing
	CacheHits   uint64 // answered from the cache
	Parsed      uint64 // parsed and cached
	// Unaffordable counts texts refused because parsing them did not fit the guard's memory.
	Unaffordable uint64
}

// Guard decides which statement texts the proxy forwards. It is safe for concurrent use.
type Guard struct {
	reserved []string // lower case, each ending with "."
	mode     PoolMode
	pre      *prefilter
	cache    *verdictCache
	memory   *semaphore.Weighted
	limit    int64

	prefiltered, cacheHits, parsed, unaffordable atomic.Uint64
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
	limit := cfg.Memory
	if limit <= 0 {
		limit = 512 << 20
	}
	return &Guard{
		reserved: reserved,
		mode:     cfg.Mode,
		pre:      newPrefilter(reserved),
		cache:    newVerdictCache(size),
		memory:   semaphore.NewWeighted(limit),
		limit:    limit,
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
	cost := int64(len(sql))*parseBytesPerByte + parseBaseBytes
	if cost > g.limit {
		g.unaffordable.Add(1)
		return tooLargeVerdict(len(sql), g.limit)
	}
	ctx, cancel := context.WithTimeout(context.Background(), parseWait)
	err := g.memory.Acquire(ctx, cost)
	cancel()
	if err != nil {
		g.unaffordable.Add(1)
		return busyVerdict
	}
	v := g.Inspect(sql)
	g.memory.Release(cost)
	if cost > afterHugeParse {
		debug.FreeOSMemory()
	}
	g.parsed.Add(1)
	g.cache.put(sql, v)
	return v
}

// tooLargeVerdict refuses a text the guard could never afford to parse: never passed unchecked.
func tooLargeVerdict(n int, limit int64) Verdict {
	return Verdict{
		Refused: true, Code: CodeProgramLimitExceeded, Rule: "guard-memory",
		Message: fmt.Sprintf("tenantproxy: this statement (%d bytes) is too large for the SQL guard to check within its memory (limits.guard_memory, %d bytes, checks texts up to about %d bytes)",
			n, limit, (limit-parseBaseBytes)/parseBytesPerByte),
		Hint: "Send large values as parameters of a prepared statement (they are not part of the text the guard reads), or split the statement.",
	}
}

var busyVerdict = Verdict{
	Refused: true, Code: CodeOutOfMemory, Rule: "guard-memory",
	Message: "tenantproxy: the SQL guard has no memory free to check this statement: other large statements are being checked",
	Hint:    "Retry the statement.",
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
	in := inspection{g: g, single: len(tree.GetStmts()) == 1}
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
	v := in.verdict()
	if !v.Refused && len(in.wrapped) > 0 {
		rewrite, err := toWrappers(sql, in.wrapped)
		if err != nil {
			return unparsableVerdict(err.Error())
		}
		v.Rewrite = rewrite
	}
	return v
}

// Stats returns how many verdicts came from each path so far.
func (g *Guard) Stats() Stats {
	return Stats{
		Prefiltered:  g.prefiltered.Load(),
		CacheHits:    g.cacheHits.Load(),
		Parsed:       g.parsed.Load(),
		Unaffordable: g.unaffordable.Load(),
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

package policy

// The SQL guard reads every statement text a client sends — a simple Query, which may hold
// several statements, or a Parse — and decides whether the proxy may forward it. It keeps the
// tenant context out of clients' reach (42501) and, when backends are pooled per transaction,
// keeps session state from passing to the next client of a backend (0A000).
//
// A cheap pre-filter (prefilter.go) lets most statements through without parsing; the rest go
// through PostgreSQL's own parser (libpg_query), and their verdicts are cached by text.

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hash/maphash"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"unicode/utf8"

	pg_query "github.com/pganalyze/pg_query_go/v6"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// PoolMode says how backend sessions are shared, which decides whether session state is allowed.
type PoolMode int

const (
	// SessionMode gives each client connection its own backend: session state is the client's own.
	SessionMode PoolMode = iota
	// TransactionMode lends a backend per transaction: session state would leak to the next client.
	TransactionMode
)

// GuardConfig configures a Guard.
type GuardConfig struct {
	// ReservedPrefixes are lower-case setting namespaces ending with ".", e.g. "app.". Clients may
	// neither set nor reset a setting in them. The namespace of DefaultSetting when empty.
	ReservedPrefixes []string
	Mode             PoolMode
	// CacheSize is how many verdicts are kept, by statement text; 10000 when 0.
	CacheSize int
	// TrackedSettings are settings (lower-case names) a client may SET at session level in
	// transaction mode, because the proxy tracks and replays them: the server reports them.
	TrackedSettings []string
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
}

// GuardStats counts how Check reached its verdicts.
type GuardStats struct {
	Prefiltered uint64 // allowed by the pre-filter, without parsing
	CacheHits   uint64 // answered from the cache
	Parsed      uint64 // parsed and cached
}

// Guard decides which statement texts the proxy forwards. It is safe for concurrent use.
type Guard struct {
	reserved []string        // lower case, each ending with "."
	tracked  map[string]bool // lower case
	mode     PoolMode
	pre      *prefilter
	cache    *verdictCache

	prefiltered, cacheHits, parsed atomic.Uint64
}

// NewGuard returns a guard for cfg.
func NewGuard(cfg GuardConfig) *Guard {
	var reserved []string
	for _, p := range cfg.ReservedPrefixes {
		p = foldASCII(strings.TrimSpace(p))
		if p == "" || p == "." {
			continue
		}
		if !strings.HasSuffix(p, ".") {
			p += "."
		}
		reserved = append(reserved, p)
	}
	if len(reserved) == 0 {
		reserved = []string{DefaultSetting[:strings.IndexByte(DefaultSetting, '.')+1]}
	}
	tracked := make(map[string]bool, len(cfg.TrackedSettings))
	for _, s := range cfg.TrackedSettings {
		tracked[foldASCII(strings.TrimSpace(s))] = true
	}
	size := cfg.CacheSize
	if size <= 0 {
		size = 10000
	}
	return &Guard{
		reserved: reserved,
		tracked:  tracked,
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
func (g *Guard) Stats() GuardStats {
	return GuardStats{
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

// fingerprintMax bounds a fingerprint, which goes into logs.
const fingerprintMax = 200

// Fingerprint returns sql with its literals replaced by $n, at most 200 bytes, for logs: a
// tenant's values (and the tenant id someone tried to set) stay out of them. An unparsable text
// gets a short hash instead.
func Fingerprint(sql string) string {
	normalized, err := pg_query.Normalize(sql)
	if err != nil {
		sum := sha256.Sum256([]byte(sql))
		return "unparsable:" + hex.EncodeToString(sum[:8])
	}
	if len(normalized) <= fingerprintMax {
		return normalized
	}
	cut := fingerprintMax
	for cut > 0 && !utf8.RuneStart(normalized[cut]) {
		cut--
	}
	return normalized[:cut]
}

// inspection applies the rules to the statements of one text.
type inspection struct {
	g           *Guard
	denied      *Verdict // first 42501 refusal: it wins over any 0A000
	unsupported *Verdict // first 0A000 refusal
	resets      bool
	drops       bool
	changes     bool
	views       int // depth inside CREATE VIEW
}

func (in *inspection) verdict() Verdict {
	switch {
	case in.denied != nil:
		return *in.denied
	case in.unsupported != nil:
		return *in.unsupported
	}
	return Verdict{ResetsContext: in.resets, DropsStatements: in.drops, ChangesSettings: in.changes || in.resets}
}

// deny refuses with 42501, in every mode.
func (in *inspection) deny(rule, message, hint string) {
	if in.denied == nil {
		in.denied = &Verdict{Refused: true, Code: CodeInsufficientPrivilege, Rule: rule, Message: message, Hint: hint}
	}
}

// notPooled refuses with 0A000 in transaction mode: what would outlive the transaction on a
// backend that the next client inherits.
func (in *inspection) notPooled(rule, what, hint string) {
	if in.g.mode == TransactionMode && in.unsupported == nil {
		in.unsupported = &Verdict{
			Refused: true, Code: CodeFeatureNotSupported, Rule: rule,
			Message: "tenantproxy: " + what + " is not supported in transaction pooling mode: the next client of this backend would inherit it",
			Hint:    hint,
		}
	}
}

// statement applies the rules that only hold for a whole statement, not for a clause of one
// (ALTER FUNCTION f() SET search_path = x is not session state; ALTER FUNCTION f() RESET ALL
// resets nothing now).
func (in *inspection) statement(stmt *pg_query.Node) {
	s := stmt.GetVariableSetStmt()
	if s == nil {
		return
	}
	name := foldASCII(s.GetName())
	if s.GetKind() != pg_query.VariableSetKind_VAR_SET_MULTI || name == "session characteristics" {
		in.changes = true
	}
	switch s.GetKind() {
	case pg_query.VariableSetKind_VAR_RESET_ALL:
		in.resets = true
	case pg_query.VariableSetKind_VAR_SET_VALUE, pg_query.VariableSetKind_VAR_SET_DEFAULT,
		pg_query.VariableSetKind_VAR_SET_CURRENT, pg_query.VariableSetKind_VAR_SET_MULTI:
		if s.GetKind() == pg_query.VariableSetKind_VAR_SET_MULTI && name != "session characteristics" {
			break // SET TRANSACTION ..., SET TRANSACTION SNAPSHOT
		}
		if s.GetIsLocal() || in.g.tracked[name] || name == "transaction" || name == "transaction snapshot" {
			break
		}
		if name == "session characteristics" {
			in.notPooled("session-state", "SET SESSION CHARACTERISTICS",
				"Use SET TRANSACTION (or BEGIN with the characteristics) in each transaction, or pass default_transaction_* settings as startup parameters.")
			break
		}
		in.notPooled("session-state", fmt.Sprintf("session-level SET of %q", name),
			"Use SET LOCAL inside a transaction, or pass the setting as a startup parameter.")
	}
	// With pg_temp in the path, CREATE TABLE x creates a temporary table that outlives the
	// transaction and shadows x for the next client.
	if name == "search_path" && s.GetKind() == pg_query.VariableSetKind_VAR_SET_VALUE {
		for _, arg := range s.GetArgs() {
			if v, ok := settingValue(arg); !ok || mentionsTempSchema(v) {
				in.notPooled("temp-object", "a search_path with pg_temp", temporaryHint)
				break
			}
		}
	}
}

// walk visits m and every message below it, through every message, list, map and oneof
// field, so that no clause of any statement is left unread.
func (in *inspection) walk(m protoreflect.Message) {
	if in.denied != nil {
		return
	}
	msg := m.Interface()
	in.node(msg)
	if _, ok := msg.(*pg_query.ViewStmt); ok {
		in.views++
		defer func() { in.views-- }()
	}
	plan := walkPlanFor(m.Descriptor())
	for _, fd := range plan.fields {
		if !m.Has(fd) {
			continue
		}
		switch {
		case fd.IsMap():
			if fd.MapValue().Message() != nil {
				m.Get(fd).Map().Range(func(_ protoreflect.MapKey, v protoreflect.Value) bool {
					in.walk(v.Message())
					return true
				})
			}
		case fd.IsList():
			list := m.Get(fd).List()
			for j := 0; j < list.Len(); j++ {
				in.walk(list.Get(j).Message())
			}
		default:
			in.walk(m.Get(fd).Message())
		}
	}
	for _, od := range plan.oneofs {
		if fd := m.WhichOneof(od); fd != nil && fd.Message() != nil {
			in.walk(m.Get(fd).Message())
		}
	}
}

// walkPlan lists the fields of one message type that can hold messages. Node, the wrapper of
// every node, has a field per node type in one oneof: asking which one is set, rather than
// asking each field, is what keeps the walk cheap.
type walkPlan struct {
	fields []protoreflect.FieldDescriptor // message, list and map fields outside any oneof
	oneofs []protoreflect.OneofDescriptor
}

var walkPlans sync.Map // protoreflect.FullName → *walkPlan

func walkPlanFor(md protoreflect.MessageDescriptor) *walkPlan {
	if p, ok := walkPlans.Load(md.FullName()); ok {
		return p.(*walkPlan)
	}
	p := &walkPlan{}
	fields := md.Fields()
	for i := 0; i < fields.Len(); i++ {
		fd := fields.Get(i)
		if od := fd.ContainingOneof(); od != nil && !od.IsSynthetic() {
			continue
		}
		if fd.Message() != nil {
			p.fields = append(p.fields, fd)
		}
	}
	oneofs := md.Oneofs()
	for i := 0; i < oneofs.Len(); i++ {
		if od := oneofs.Get(i); !od.IsSynthetic() {
			p.oneofs = append(p.oneofs, od)
		}
	}
	walkPlans.Store(md.FullName(), p)
	return p
}

// node applies the rules that hold wherever a node appears.
func (in *inspection) node(msg any) {
	switch n := msg.(type) {
	case *pg_query.VariableSetStmt:
		in.setting(n)
	case *pg_query.FuncCall:
		in.funcCall(n)
	case *pg_query.RangeVar:
		in.rangeVar(n)

	case *pg_query.UpdateStmt:
		in.settingsTarget("UPDATE", n.GetRelation())
	case *pg_query.InsertStmt:
		in.settingsTarget("INSERT", n.GetRelation())
	case *pg_query.DeleteStmt:
		in.settingsTarget("DELETE", n.GetRelation())
	case *pg_query.MergeStmt:
		in.settingsTarget("MERGE", n.GetRelation())

	case *pg_query.TransactionStmt:
		switch n.GetKind() {
		case pg_query.TransactionStmtKind_TRANS_STMT_PREPARE,
			pg_query.TransactionStmtKind_TRANS_STMT_COMMIT_PREPARED,
			pg_query.TransactionStmtKind_TRANS_STMT_ROLLBACK_PREPARED:
			// A prepared transaction outlives the session and, every tenant sharing one
			// role, any of them could commit or roll back another's.
			in.deny("two-phase", "tenantproxy: two-phase commit (PREPARE TRANSACTION, COMMIT/ROLLBACK PREPARED) is refused: prepared transactions are shared by every tenant", "")
		}

	case *pg_query.AlterRoleSetStmt:
		in.persistentSetting("ALTER ROLE ... SET")
	case *pg_query.AlterDatabaseSetStmt:
		in.persistentSetting("ALTER DATABASE ... SET")
	case *pg_query.AlterSystemStmt:
		in.persistentSetting("ALTER SYSTEM")

	case *pg_query.CreateRoleStmt:
		in.roleDDL("CREATE ROLE")
	case *pg_query.AlterRoleStmt:
		in.roleDDL("ALTER ROLE")
	case *pg_query.DropRoleStmt:
		in.roleDDL("DROP ROLE")
	case *pg_query.GrantRoleStmt:
		if n.GetIsGrant() {
			in.roleDDL("GRANT of a role")
		} else {
			in.roleDDL("REVOKE of a role")
		}
	case *pg_query.ReassignOwnedStmt:
		in.roleDDL("REASSIGN OWNED")
	case *pg_query.DropOwnedStmt:
		in.roleDDL("DROP OWNED")
	case *pg_query.RenameStmt:
		if n.GetRenameType() == pg_query.ObjectType_OBJECT_ROLE {
			in.roleDDL("ALTER ROLE ... RENAME")
		}

	case *pg_query.DoStmt:
		in.deny("dynamic-sql", "tenantproxy: DO is refused: it runs code the proxy cannot inspect", "")
	case *pg_query.CreateFunctionStmt:
		if n.GetIsProcedure() {
			in.codeDefinition("CREATE PROCEDURE")
		} else {
			in.codeDefinition("CREATE FUNCTION")
		}
	case *pg_query.CreateTrigStmt:
		in.codeDefinition("CREATE TRIGGER")
	case *pg_query.RuleStmt:
		in.codeDefinition("CREATE RULE")
	case *pg_query.CreateEventTrigStmt:
		in.codeDefinition("CREATE EVENT TRIGGER")
	case *pg_query.CreatePLangStmt:
		in.codeDefinition("CREATE LANGUAGE")
	case *pg_query.CreateExtensionStmt:
		in.codeDefinition("CREATE EXTENSION")
	case *pg_query.AlterExtensionStmt, *pg_query.AlterExtensionContentsStmt:
		in.codeDefinition("ALTER EXTENSION")
	case *pg_query.CreateCastStmt:
		in.codeDefinition("CREATE CAST")
	case *pg_query.DefineStmt:
		in.codeDefinition("CREATE " + strings.ReplaceAll(strings.TrimPrefix(n.GetKind().String(), "OBJECT_"), "_", " "))
	case *pg_query.CreateTransformStmt:
		in.codeDefinition("CREATE TRANSFORM")
	case *pg_query.CreateConversionStmt:
		in.codeDefinition("CREATE CONVERSION")

	case *pg_query.LoadStmt:
		in.deny("load", "tenantproxy: LOAD is refused: it loads code into the server", "")
	case *pg_query.CopyStmt:
		if n.GetIsProgram() || n.GetFilename() != "" {
			in.deny("server-file", "tenantproxy: COPY to or from a server file or program is refused: only COPY ... STDIN and STDOUT are allowed",
				"Use COPY ... FROM STDIN or COPY ... TO STDOUT.")
		}
	case *pg_query.ListenStmt:
		in.deny("notify", "tenantproxy: LISTEN is refused: notification channels are shared by every tenant of the database", "")
	case *pg_query.NotifyStmt:
		in.deny("notify", "tenantproxy: NOTIFY is refused: notification channels are shared by every tenant of the database", "")

	case *pg_query.PrepareStmt:
		in.notPooled("sql-prepare", "PREPARE", sqlPrepareHint)
	case *pg_query.ExecuteStmt:
		in.notPooled("sql-prepare", "EXECUTE of an SQL-level prepared statement", sqlPrepareHint)
	case *pg_query.DeallocateStmt:
		if n.GetIsall() || n.GetName() == "" {
			in.drops = true
		} else {
			in.notPooled("sql-prepare", "DEALLOCATE", sqlPrepareHint)
		}
	case *pg_query.DiscardStmt:
		if n.GetTarget() == pg_query.DiscardMode_DISCARD_ALL {
			in.resets = true
			in.drops = true
		}
	case *pg_query.DeclareCursorStmt:
		if n.GetOptions()&cursorOptHold != 0 {
			in.notPooled("cursor-with-hold", "DECLARE ... WITH HOLD",
				"Declare the cursor without WITH HOLD and read it inside the transaction.")
		}

	// Types made in a temporary schema name no RangeVar.
	case *pg_query.CreateEnumStmt:
		in.typeName(n.GetTypeName())
	case *pg_query.CreateRangeStmt:
		in.typeName(n.GetTypeName())
	case *pg_query.CreateDomainStmt:
		in.typeName(n.GetDomainname())
	case *pg_query.CreateStatsStmt:
		in.typeName(n.GetDefnames())
	}
}

// cursorOptHold is CURSOR_OPT_HOLD of DeclareCursorStmt.options.
const cursorOptHold = 0x0020

const (
	sqlPrepareHint = "Use your driver's protocol-level prepared statements, which the proxy supports."
	temporaryHint  = "Use a regular table, a CTE or a subquery; temporary objects outlive the transaction on a shared backend."
	lexerHint      = "standard_conforming_strings must stay on, and client_encoding must not be SJIS, SHIFT_JIS_2004, BIG5, GBK, UHC, GB18030 or JOHAB."
)

// setting applies the rules on SET and RESET of one setting, wherever they appear (a SET
// clause of ALTER FUNCTION sets the setting whenever the function runs).
func (in *inspection) setting(s *pg_query.VariableSetStmt) {
	name := foldASCII(s.GetName())
	if name == "" {
		return // RESET ALL
	}
	verb := "SET"
	if s.GetKind() == pg_query.VariableSetKind_VAR_RESET {
		verb = "RESET"
	}
	if in.g.isReserved(name) {
		in.deny("reserved-setting",
			fmt.Sprintf("tenantproxy: %s of %q is refused: the tenant context is set by the proxy", verb, name), "")
		return
	}
	switch name {
	case "role":
		in.deny("identity", "tenantproxy: "+verb+" ROLE is refused: the session's role is fixed by the proxy", "")
		return
	case "session_authorization":
		in.deny("identity", "tenantproxy: "+verb+" SESSION AUTHORIZATION is refused: the session's identity is fixed by the proxy", "")
		return
	}
	if s.GetKind() == pg_query.VariableSetKind_VAR_SET_VALUE && isLexerSetting(name) {
		var value string
		ok := len(s.GetArgs()) == 1
		if ok {
			value, ok = settingValue(s.GetArgs()[0])
		}
		if !ok || !lexerValueSafe(name, value) {
			in.deny("lexer-setting",
				fmt.Sprintf("tenantproxy: SET of %q to %s is refused: the proxy must read statements as the server does", name, describeValue(value, ok)), lexerHint)
		}
	}
}

func (g *Guard) isReserved(name string) bool {
	for _, p := range g.reserved {
		if strings.HasPrefix(name, p) {
			return true
		}
	}
	return false
}

// Functions refused by name (the last part of the name, lower-cased).
var (
	dynamicSQLFunctions = nameSet(
		"query_to_xml", "query_to_xmlschema", "query_to_xml_and_xmlschema",
		"cursor_to_xml", "cursor_to_xmlschema",
		"table_to_xml", "table_to_xmlschema", "table_to_xml_and_xmlschema",
		"schema_to_xml", "schema_to_xmlschema", "schema_to_xml_and_xmlschema",
		"database_to_xml", "database_to_xmlschema", "database_to_xml_and_xmlschema",
		"ts_stat", "ts_rewrite",
	)
	serverFileFunctions    = nameSet("pg_read_file", "pg_read_binary_file", "pg_stat_file")
	otherSessionFunctions  = nameSet("pg_cancel_backend", "pg_terminate_backend")
	sessionAdvisoryLocks   = nameSet("pg_advisory_lock", "pg_advisory_lock_shared", "pg_try_advisory_lock", "pg_try_advisory_lock_shared", "pg_advisory_unlock", "pg_advisory_unlock_shared", "pg_advisory_unlock_all")
	sessionSequenceReaders = nameSet("currval", "lastval")
)

func (in *inspection) funcCall(fc *pg_query.FuncCall) {
	parts := fc.GetFuncname()
	if len(parts) == 0 {
		return
	}
	name := foldASCII(parts[len(parts)-1].GetString_().GetSval())
	switch {
	case name == "set_config":
		in.setConfig(fc)
	case dynamicSQLFunctions[name] || strings.HasPrefix(name, "dblink"):
		in.deny("dynamic-sql", "tenantproxy: "+name+" is refused: it runs SQL the proxy cannot inspect", "")
	case strings.HasPrefix(name, "lo_") || name == "loread" || name == "lowrite":
		in.deny("large-object", "tenantproxy: "+name+" is refused: large objects are shared by every tenant of the database", "")
	case name == "pg_notify":
		in.deny("notify", "tenantproxy: pg_notify is refused: notification channels are shared by every tenant of the database", "")
	case serverFileFunctions[name] || strings.HasPrefix(name, "pg_ls_"):
		in.deny("server-file", "tenantproxy: "+name+" is refused: it reads the server's files", "")
	case otherSessionFunctions[name]:
		in.deny("other-sessions", "tenantproxy: "+name+" is refused: it acts on other clients' sessions", "")
	case sessionAdvisoryLocks[name]:
		in.notPooled("session-state", "the session-level advisory lock function "+name,
			"Use pg_advisory_xact_lock or pg_try_advisory_xact_lock, which the transaction's end releases.")
	case sessionSequenceReaders[name]:
		in.notPooled("session-state", name+", which reads session state,",
			"Use INSERT ... RETURNING to get generated values.")
	case name == "setseed":
		// The seed outlives the transaction: the next client's random() would follow it.
		in.notPooled("session-state", "setseed, which seeds the session's random(),",
			"Use session pooling for reproducible random sequences.")
	}
}

// setConfig applies the rules on set_config(name, value, is_local). The name must be a string
// constant, or the guard could not tell which setting it changes.
func (in *inspection) setConfig(fc *pg_query.FuncCall) {
	args := fc.GetArgs()
	var name string
	ok := len(args) > 0
	if ok {
		name, ok = constText(args[0])
	}
	if !ok {
		in.deny("set-config", "tenantproxy: set_config is refused unless its first argument is a constant setting name: the tenant context is set by the proxy", "")
		return
	}
	name = foldASCII(name)
	if in.g.isReserved(name) {
		in.deny("set-config", fmt.Sprintf("tenantproxy: set_config of %q is refused: the tenant context is set by the proxy", name), "")
		return
	}
	if name == "role" || name == "session_authorization" {
		in.deny("identity", fmt.Sprintf("tenantproxy: set_config of %q is refused: the session's identity is fixed by the proxy", name), "")
		return
	}
	var value string
	valueOK := len(args) > 1
	if valueOK {
		value, valueOK = constText(args[1])
	}
	if isLexerSetting(name) && (!valueOK || !lexerValueSafe(name, value)) {
		in.deny("lexer-setting", fmt.Sprintf("tenantproxy: set_config of %q to %s is refused: the proxy must read statements as the server does", name, describeValue(value, valueOK)), lexerHint)
		return
	}
	local := len(args) > 2 && isTrueConstant(args[2])
	if !local && !in.g.tracked[name] {
		in.notPooled("session-state", fmt.Sprintf("session-level set_config of %q", name),
			"Pass true as set_config's third argument, so that the setting ends with the transaction.")
	}
	if name == "search_path" && (!valueOK || mentionsTempSchema(value)) {
		in.notPooled("temp-object", "a search_path with pg_temp, or computed,", temporaryHint)
	}
}

// rangeVar applies the rules on a named relation.
func (in *inspection) rangeVar(rv *pg_query.RangeVar) {
	if rv.GetRelpersistence() == "t" || isTempSchema(rv.GetSchemaname()) {
		in.notPooled("temp-object", "a temporary table, view or sequence", temporaryHint)
	}
	// A simple view over pg_settings is updatable, and pg_settings' update rule calls set_config.
	if in.views > 0 && foldASCII(rv.GetRelname()) == "pg_settings" {
		in.deny("pg-settings", "tenantproxy: a view over pg_settings is refused: an UPDATE through it changes settings, including the tenant context", "")
	}
}

// typeName applies the temporary-object rule to a qualified name being created.
func (in *inspection) typeName(names []*pg_query.Node) {
	if len(names) >= 2 && isTempSchema(names[len(names)-2].GetString_().GetSval()) {
		in.notPooled("temp-object", "a temporary type or statistics object", temporaryHint)
	}
}

func (in *inspection) settingsTarget(command string, rel *pg_query.RangeVar) {
	if rel != nil && foldASCII(rel.GetRelname()) == "pg_settings" {
		in.deny("pg-settings", "tenantproxy: "+command+" of pg_settings is refused: it changes settings, including the tenant context", "")
	}
}

func (in *inspection) persistentSetting(what string) {
	in.deny("persistent-setting", "tenantproxy: "+what+" is refused: it would change the settings of every tenant's sessions", "")
}

func (in *inspection) roleDDL(what string) {
	in.deny("role-ddl", "tenantproxy: "+what+" is refused: roles are managed outside the proxy, and every tenant shares the backend role", "")
}

func (in *inspection) codeDefinition(what string) {
	in.deny("code-definition", "tenantproxy: "+what+" is refused: code defined here would run SQL the proxy cannot inspect", "")
}

// constText returns the value of a string constant, possibly cast to text or varchar (other
// casts, like varchar(4) or a reg* type, can change the value).
func constText(n *pg_query.Node) (string, bool) {
	for {
		tc := n.GetTypeCast()
		if tc == nil {
			break
		}
		if !isPlainTextType(tc.GetTypeName()) {
			return "", false
		}
		n = tc.GetArg()
	}
	c := n.GetAConst()
	if c == nil || c.GetIsnull() || c.GetSval() == nil {
		return "", false
	}
	return c.GetSval().GetSval(), true
}

func isPlainTextType(t *pg_query.TypeName) bool {
	if t == nil || len(t.GetTypmods()) > 0 || len(t.GetArrayBounds()) > 0 || t.GetSetof() || t.GetPctType() {
		return false
	}
	var names []string
	for _, n := range t.GetNames() {
		names = append(names, n.GetString_().GetSval())
	}
	switch strings.Join(names, ".") {
	case "text", "pg_catalog.text", "varchar", "pg_catalog.varchar":
		return true
	}
	return false
}

// settingValue returns a SET argument as the server reads it.
func settingValue(n *pg_query.Node) (string, bool) {
	c := n.GetAConst()
	switch {
	case c == nil || c.GetIsnull():
		return "", false
	case c.GetSval() != nil:
		return c.GetSval().GetSval(), true
	case c.GetIval() != nil:
		return strconv.Itoa(int(c.GetIval().GetIval())), true
	case c.GetFval() != nil:
		return c.GetFval().GetFval(), true
	}
	return "", false
}

func isTrueConstant(n *pg_query.Node) bool {
	b := n.GetAConst().GetBoolval()
	return b != nil && b.GetBoolval()
}

func isTempSchema(schema string) bool {
	s := foldASCII(schema)
	return s == "pg_temp" || strings.HasPrefix(s, "pg_temp_") || strings.HasPrefix(s, "pg_toast_temp_")
}

func mentionsTempSchema(searchPath string) bool {
	return strings.Contains(foldASCII(searchPath), "pg_temp")
}

// Two settings change how the server splits a text into tokens, which the guard's parser
// (libpg_query, with standard_conforming_strings on and UTF-8 text) cannot follow: with
// standard_conforming_strings off, 'a\' , ' ; SET app.x = v ; --' is one string to the guard
// and a SET to the server. In the client-only encodings the second byte of a character can be
// an ASCII quote or backslash, which the server never sees (it converts the text first).
func isLexerSetting(name string) bool {
	return name == "standard_conforming_strings" || name == "client_encoding"
}

func lexerValueSafe(name, value string) bool {
	if name == "standard_conforming_strings" {
		return trueWords[foldASCII(value)]
	}
	return SafeClientEncoding(value)
}

// SafeClientEncoding reports whether the guard reads texts in the named client encoding as the
// server does: not SJIS, SHIFT_JIS_2004, BIG5, GBK, UHC, GB18030 or JOHAB, whose characters may
// end with a byte that looks like a quote or a backslash. The proxy must not open a backend
// with any other (a client's startup parameter included).
func SafeClientEncoding(name string) bool { return asciiSafeEncodings[cleanEncodingName(name)] }

func describeValue(value string, constant bool) string {
	if !constant {
		return "a value that is not a constant"
	}
	return strconv.Quote(value)
}

// trueWords are the spellings PostgreSQL reads as a true boolean setting.
var trueWords = nameSet("on", "true", "tru", "tr", "t", "yes", "ye", "y", "1")

// asciiSafeEncodings are PostgreSQL's encoding names (cleaned as cleanEncodingName does)
// whose characters never contain a byte below 0x80 other than ASCII characters: every
// encoding except the client-only SJIS, SHIFT_JIS_2004, BIG5, GBK, UHC, GB18030 and JOHAB.
var asciiSafeEncodings = nameSet(
	"utf8", "unicode", "sqlascii", "muleinternal",
	"euccn", "eucjis2004", "eucjp", "euckr", "euctw",
	"latin1", "latin2", "latin3", "latin4", "latin5", "latin6", "latin7", "latin8", "latin9", "latin10",
	"iso88591", "iso88592", "iso88593", "iso88594", "iso88595", "iso88596", "iso88597", "iso88598",
	"iso88599", "iso885910", "iso885913", "iso885914", "iso885915", "iso885916",
	"koi8", "koi8r", "koi8u",
	"win", "win866", "win874", "win1250", "win1251", "win1252", "win1253", "win1254", "win1255",
	"win1256", "win1257", "win1258",
	"windows866", "windows874", "windows1250", "windows1251", "windows1252", "windows1253",
	"windows1254", "windows1255", "windows1256", "windows1257", "windows1258",
	"alt", "abc", "tcvn", "tcvn5712", "vscii",
)

// cleanEncodingName keeps the ASCII letters and digits of name, lower-cased, as PostgreSQL does
// before looking an encoding up. A name with other non-ASCII bytes matches nothing.
func cleanEncodingName(name string) string {
	var b strings.Builder
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case c >= 0x80:
			return ""
		case 'A' <= c && c <= 'Z':
			b.WriteByte(c + 'a' - 'A')
		case 'a' <= c && c <= 'z', '0' <= c && c <= '9':
			b.WriteByte(c)
		}
	}
	return b.String()
}

func nameSet(names ...string) map[string]bool {
	m := make(map[string]bool, len(names))
	for _, n := range names {
		m[n] = true
	}
	return m
}

// maxCachedText keeps huge texts (bulk INSERTs) out of the cache, which would otherwise hold
// up to CacheSize of them.
const maxCachedText = 8 << 10

// verdictCache maps statement texts to verdicts. It is split in shards, each a map behind its
// own lock, so that goroutines checking different texts rarely wait for each other; a full
// shard drops an arbitrary entry.
type verdictCache struct {
	seed   maphash.Seed
	shards []cacheShard
}

type cacheShard struct {
	mu      sync.RWMutex
	entries map[string]Verdict
	limit   int
	_       [40]byte // keep shards' locks on different cache lines
}

func newVerdictCache(size int) *verdictCache {
	n := min(16, size)
	c := &verdictCache{seed: maphash.MakeSeed(), shards: make([]cacheShard, n)}
	for i := range c.shards {
		c.shards[i].limit = (size + n - 1) / n
		c.shards[i].entries = make(map[string]Verdict)
	}
	return c
}

func (c *verdictCache) shard(sql []byte) *cacheShard {
	return &c.shards[maphash.Bytes(c.seed, sql)%uint64(len(c.shards))]
}

func (c *verdictCache) get(sql []byte) (Verdict, bool) {
	s := c.shard(sql)
	s.mu.RLock()
	v, ok := s.entries[string(sql)] // no allocation: the compiler looks the bytes up in place
	s.mu.RUnlock()
	return v, ok
}

func (c *verdictCache) put(sql []byte, v Verdict) {
	if len(sql) > maxCachedText {
		return
	}
	s := c.shard(sql)
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.entries[string(sql)]; !ok && len(s.entries) >= s.limit {
		for old := range s.entries {
			delete(s.entries, old)
			break
		}
	}
	s.entries[string(sql)] = v
}

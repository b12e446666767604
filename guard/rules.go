package guard

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"

	pg_query "github.com/pganalyze/pg_query_go/v6"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/tenantproxy/tenantproxy/internal/guc"
	"github.com/tenantproxy/tenantproxy/lockdown"
)

// inspection applies the rules to the statements of one text.
type inspection struct {
	g           *Guard
	denied      *Verdict // first 42501 refusal: it wins over any 0A000
	unsupported *Verdict // first 0A000 refusal
	resets      bool
	drops       bool
	changes     bool
	// sessionChanges: a change of settings that may outlive the transaction.
	sessionChanges bool
	// custom are the custom settings changed at session level.
	custom      []string
	explains    bool
	holdsCursor bool
	// single: the text is one statement.
	single bool
	// deallocate is the name of a lone DEALLOCATE name.
	deallocate string
	// wrapped are the byte offsets of the calls to send to a wrapper (set_config, pg_notify),
	// with the wrapper.
	wrapped map[int]string
	// channels: the text names notification channels (LISTEN, UNLISTEN, NOTIFY).
	channels bool
	views    int // depth inside CREATE VIEW
}

func (in *inspection) verdict() Verdict {
	switch {
	case in.denied != nil:
		return *in.denied
	case in.unsupported != nil:
		return *in.unsupported
	}
	return Verdict{
		ResetsContext: in.resets, DropsStatements: in.drops, ChangesSettings: in.changes || in.resets,
		ChangesSessionSettings: in.sessionChanges || in.resets, CustomSettings: strings.Join(in.custom, ","),
		Explains: in.explains, HoldsCursor: in.holdsCursor, Deallocate: in.deallocate, Channels: in.channels,
	}
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
	name := guc.Fold(s.GetName())
	if s.GetKind() != pg_query.VariableSetKind_VAR_SET_MULTI || name == "session characteristics" {
		in.changes = true
		if !s.GetIsLocal() {
			in.sessionChanges = true
			in.noteCustom(name)
		}
	}
	if s.GetKind() == pg_query.VariableSetKind_VAR_RESET_ALL {
		in.resets = true
	}
	// Any other SET, SET SESSION CHARACTERISTICS or RESET is the client's to make: in
	// transaction pooling the proxy carries it to whichever backend serves the client.
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

	case *pg_query.ExplainStmt:
		in.explains = true

	case *pg_query.LoadStmt:
		in.deny("load", "tenantproxy: LOAD is refused: it loads code into the server", "")
	case *pg_query.CopyStmt:
		if n.GetIsProgram() || n.GetFilename() != "" {
			in.deny("server-file", "tenantproxy: COPY to or from a server file or program is refused: only COPY ... STDIN and STDOUT are allowed",
				"Use COPY ... FROM STDIN or COPY ... TO STDOUT.")
		}
	// Notification channels are shared by the whole database: the proxy gives each tenant its
	// own, mapping the names of LISTEN, UNLISTEN and NOTIFY (and pg_notify goes to a wrapper
	// that does the same in the database). A listening session outlives the transaction.
	case *pg_query.ListenStmt:
		in.channels = true
		in.notPooled("listen", "LISTEN", "LISTEN needs a session of its own: connect to a proxy in session pooling (pool.mode = \"session\"). NOTIFY works in either mode.")
	case *pg_query.UnlistenStmt, *pg_query.NotifyStmt:
		in.channels = true

	case *pg_query.PrepareStmt:
		in.notPooled("sql-prepare", "PREPARE", sqlPrepareHint)
	case *pg_query.ExecuteStmt:
		in.notPooled("sql-prepare", "EXECUTE of an SQL-level prepared statement", sqlPrepareHint)
	case *pg_query.DeallocateStmt:
		switch {
		case n.GetIsall() || n.GetName() == "":
			in.drops = true
		case in.single:
			// DEALLOCATE name, alone: the proxy forgets the client's name for a statement it
			// prepared through the protocol, as the server would.
			in.deallocate = n.GetName()
		default:
			in.notPooled("sql-prepare", "DEALLOCATE among other statements", "Send DEALLOCATE name as a statement of its own.")
		}
	case *pg_query.DiscardStmt:
		if n.GetTarget() == pg_query.DiscardMode_DISCARD_ALL {
			in.resets = true
			in.drops = true
		}
	case *pg_query.DeclareCursorStmt:
		if n.GetOptions()&cursorOptHold != 0 {
			in.holdsCursor = true
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
	name := guc.Fold(s.GetName())
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
		if !ok || !guc.LexerValueSafe(name, value) {
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

// Functions refused by name (the last part of the name, lower-cased) besides the lockdown's,
// which would outlive the transaction on a pooled backend.
var (
	sessionAdvisoryLocks   = nameSet("pg_advisory_lock", "pg_advisory_lock_shared", "pg_try_advisory_lock", "pg_try_advisory_lock_shared")
	sessionSequenceReaders = nameSet("currval", "lastval")
)

func (in *inspection) funcCall(fc *pg_query.FuncCall) {
	parts := fc.GetFuncname()
	if len(parts) == 0 {
		return
	}
	name := guc.Fold(parts[len(parts)-1].GetString_().GetSval())
	switch name {
	case "set_config":
		in.setConfig(fc)
		return
	case "pg_notify":
		in.wrap(fc, lockdown.NotifyWrapper) // the wrapper notifies on the tenant's own channel
		return
	}
	if rule, ok := refusedFunction(name); ok {
		// What the database lockdown revokes, refused before the database does, with the
		// lockdown's reason: a clear message, and a second wall.
		in.deny(string(rule), "tenantproxy: "+name+" is refused: "+rule.Why(), "")
		return
	}
	switch {
	case sessionAdvisoryLocks[name]:
		// Unlocking is allowed: in transaction pooling no session lock can be held.
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

// wrap sends a function call to the database's wrapper of it.
func (in *inspection) wrap(fc *pg_query.FuncCall, wrapper string) {
	if in.wrapped == nil {
		in.wrapped = map[int]string{}
	}
	in.wrapped[int(fc.GetLocation())] = wrapper
}

// noteCustom records a custom setting (a name with a dot) changed at session level.
func (in *inspection) noteCustom(name string) {
	if strings.Contains(name, ".") && !strings.ContainsRune(name, ',') && !slices.Contains(in.custom, name) {
		in.custom = append(in.custom, name)
	}
}

// refusedFunction finds a function the lockdown revokes, or one of a family it revokes by name
// that an extension or a later release may add to (dblink*, lo_*, pg_ls_*).
func refusedFunction(name string) (lockdown.Rule, bool) {
	if rule, ok := lockdown.Revoked(name); ok {
		return rule, true
	}
	switch {
	case strings.HasPrefix(name, "dblink"):
		return lockdown.RuleDynamicSQL, true
	case strings.HasPrefix(name, "lo_"):
		return lockdown.RuleLargeObject, true
	case strings.HasPrefix(name, "pg_ls_"):
		return lockdown.RuleServerFile, true
	}
	return "", false
}

// setConfig applies the rules on set_config(name, value, is_local). The name must be a string
// constant, or the guard could not tell which setting it changes.
func (in *inspection) setConfig(fc *pg_query.FuncCall) {
	// Whatever it sets, it sets through the database's wrapper (which refuses the reserved
	// namespace, identity and the lexer settings itself): set_config stays revoked.
	in.changes = true
	in.wrap(fc, lockdown.SetConfigWrapper)
	args := fc.GetArgs()
	in.sessionChanges = in.sessionChanges || len(args) < 3 || !isTrueConstant(args[2])
	var name string
	ok := len(args) > 0
	if ok {
		name, ok = constText(args[0])
	}
	if !ok {
		return // a name computed at run time: the wrapper judges it
	}
	name = guc.Fold(name)
	if len(args) < 3 || !isTrueConstant(args[2]) {
		in.noteCustom(name)
	}
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
	if isLexerSetting(name) && (!valueOK || !guc.LexerValueSafe(name, value)) {
		in.deny("lexer-setting", fmt.Sprintf("tenantproxy: set_config of %q to %s is refused: the proxy must read statements as the server does", name, describeValue(value, valueOK)), lexerHint)
		return
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
	if in.views > 0 && guc.Fold(rv.GetRelname()) == "pg_settings" {
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
	if rel != nil && guc.Fold(rel.GetRelname()) == "pg_settings" {
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
	s := guc.Fold(schema)
	return s == "pg_temp" || strings.HasPrefix(s, "pg_temp_") || strings.HasPrefix(s, "pg_toast_temp_")
}

func mentionsTempSchema(searchPath string) bool {
	return strings.Contains(guc.Fold(searchPath), "pg_temp")
}

// isLexerSetting reports whether name changes how the server splits a text into tokens, which
// the guard's parser (libpg_query, with standard_conforming_strings on and UTF-8 text) cannot
// follow: with standard_conforming_strings off, 'a\' , ' ; SET app.x = v ; --' is one string to
// the guard and a SET to the server. In the client-only encodings the second byte of a character
// can be an ASCII quote or backslash, which the server never sees (it converts the text first).
func isLexerSetting(name string) bool {
	s, _ := guc.Lookup(name)
	return s.Lexer
}

func describeValue(value string, constant bool) string {
	if !constant {
		return "a value that is not a constant"
	}
	return strconv.Quote(value)
}

func nameSet(names ...string) map[string]bool {
	m := make(map[string]bool, len(names))
	for _, n := range names {
		m[n] = true
	}
	return m
}

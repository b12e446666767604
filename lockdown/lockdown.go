// Package lockdown holds what the database itself takes away from the app role, so that the SQL
// guard is not the only wall: with it, a SET or RESET statement (which the guard sees) is the
// only way left to change the tenant context, and no function shows a tenant anything of another
// tenant's rows or of other sessions.
//
// It is the one list of revoked functions (Functions, each under a Rule that says why), views
// and languages. The migrations revoke them and `tenantproxy check` reports any that is usable
// again; the SQL guard is to refuse the same names, reporting the rule. review.txt records why
// every function the app role may still execute is safe; a test against the migrated database
// fails when the role can execute a function that neither list covers.
//
// This package imports nothing of this module.
package lockdown

import (
	"crypto/sha256"
	"encoding/hex"
)

// Rule is why a group of functions is revoked. Its value is the rule id for the guard's
// refusal of one of them.
type Rule string

// The rules, in the order the review presents them.
const (
	RuleSetConfig         Rule = "set-config"
	RuleDynamicSQL        Rule = "dynamic-sql"
	RuleServerFile        Rule = "server-file"
	RuleOtherSessions     Rule = "other-sessions"
	RuleTransactionStatus Rule = "transaction-status"
	RuleActivityCounters  Rule = "activity-counters"
	RuleReplication       Rule = "replication"
	RuleNotify            Rule = "notify"
	RuleLargeObject       Rule = "large-object"
)

// Rules lists every rule once.
var Rules = []Rule{
	RuleSetConfig, RuleDynamicSQL, RuleServerFile, RuleOtherSessions, RuleTransactionStatus,
	RuleActivityCounters, RuleReplication, RuleNotify, RuleLargeObject,
}

// Why completes "NAME is refused: ..." for a function under the rule.
func (r Rule) Why() string { return ruleWhy[r] }

var ruleWhy = map[Rule]string{
	RuleSetConfig:         "it changes settings, the tenant context among them, without a SET statement",
	RuleDynamicSQL:        "it runs SQL the proxy cannot inspect",
	RuleServerFile:        "it reads the server's files",
	RuleOtherSessions:     "it reads or acts on other sessions: their queries, locks, statements, cursors or row versions",
	RuleTransactionStatus: "it reveals other sessions' transactions: which are running, committed or aborted, and when",
	RuleActivityCounters:  "its counters show when and how much other tenants read and write",
	RuleReplication:       "replication slots and logical decoding carry every tenant's changes",
	RuleNotify:            "notification channels are shared by every tenant of the database",
	RuleLargeObject:       "large objects are shared by every tenant of the database",
}

// Function is a function revoked from PUBLIC, by name: every overload in pg_catalog.
type Function struct {
	Name string
	Rule Rule
}

// FunctionNames returns the names of Functions, in order.
func FunctionNames() []string {
	names := make([]string, len(Functions))
	for i, f := range Functions {
		names[i] = f.Name
	}
	return names
}

// Revoked reports whether name (a pg_catalog function name) is in Functions, and under which
// rule.
func Revoked(name string) (Rule, bool) {
	r, ok := revokedByName[name]
	return r, ok
}

var revokedByName = func() map[string]Rule {
	m := make(map[string]Rule, len(Functions))
	for _, f := range Functions {
		m[f.Name] = f.Rule
	}
	return m
}()

// SetConfigWrapper is the function every set_config a client sends is rewritten to call (the
// SQL guard rewrites it): it refuses the reserved namespace of the tenant context, identity and
// the settings that change how the server reads a text, then calls set_config, which stays
// revoked from the app role. pg_dump and ORMs call set_config; the migrations create it.
const SetConfigWrapper = "tenantproxy.set_config"

// NotifyWrapper is the function every pg_notify a client sends is rewritten to call: it
// notifies on the channel of the client's tenant (ChannelPrefix), as the proxy maps the names of
// LISTEN, UNLISTEN and NOTIFY, so that no tenant hears another's. pg_notify stays revoked.
const NotifyWrapper = "tenantproxy.pg_notify"

// ProxyFunctions are the migrations' functions the proxy sends calls to: the two wrappers, and
// the count of the session's WITH HOLD cursors it asks for in transaction pooling. The backend
// role must be able to execute each.
var ProxyFunctions = []string{
	SetConfigWrapper + "(text,text,boolean)", NotifyWrapper + "(text,text)", "tenantproxy.holdable_cursors()",
}

// ChannelPrefix is what the proxy and NotifyWrapper put before a channel name to make it the
// tenant's own: "t", 16 hex digits of the SHA-256 of the tenant's name, and "_" (18 bytes, so a
// client's channel name may have 45, PostgreSQL's names having 63). migrations/sql/006_notify.sql
// computes the same in SQL.
func ChannelPrefix(tenant string) string {
	sum := sha256.Sum256([]byte(tenant))
	return "t" + hex.EncodeToString(sum[:8]) + "_"
}

// MaxChannelName is the longest channel name a client may use.
const MaxChannelName = 63 - 18

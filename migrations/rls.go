package migrations

// The row-level security policies that confine a backend session to its tenant's rows, made by
// one helper for every table, so no table can get a policy that differs from the others.

import (
	"fmt"
	"regexp"
	"strings"

	"github.com/jackc/pgx/v5"
)

// DefaultSetting is the session setting that names the tenant of a backend session.
const DefaultSetting = "app.current_tenant_id"

// DefaultTenantColumn is the column that holds the tenant of a row.
const DefaultTenantColumn = "tenant_id"

// RLSTable names one tenant table and how its rows are tied to a tenant.
type RLSTable struct {
	Schema string
	Table  string
	// Column holds each row's tenant; DefaultTenantColumn when empty.
	Column string
	// Setting is the session setting compared to Column; DefaultSetting when empty.
	Setting string
}

// PolicyNames are the four policies RLSPolicySQL creates, one per command, by command.
var PolicyNames = map[string]string{
	"SELECT": "tenant_isolation_select",
	"INSERT": "tenant_isolation_insert",
	"UPDATE": "tenant_isolation_update",
	"DELETE": "tenant_isolation_delete",
}

var settingName = regexp.MustCompile(`^[a-z_][a-z0-9_]*\.[a-z_][a-z0-9_]*$`)

// RLSPolicySQL returns the statements that confine t to the tenant named by the session setting:
// row-level security enabled and forced (so the table owner is bound too), and one policy per
// command comparing the tenant column with current_setting(setting, true). An unset setting
// yields NULL and an empty one matches no row, so a session without a tenant sees nothing.
//
// The statements are idempotent (each policy is dropped if it exists, then created); run them in
// one transaction so no session ever sees the table between the drop and the create.
func RLSPolicySQL(t RLSTable) (string, error) {
	if t.Schema == "" || t.Table == "" {
		return "", fmt.Errorf("policy: schema and table are required")
	}
	column := t.Column
	if column == "" {
		column = DefaultTenantColumn
	}
	setting := t.Setting
	if setting == "" {
		setting = DefaultSetting
	}
	if !settingName.MatchString(setting) {
		return "", fmt.Errorf("policy: setting %q is not of the form prefix.name in lower case", setting)
	}

	table := pgx.Identifier{t.Schema, t.Table}.Sanitize()
	match := fmt.Sprintf("%s = current_setting('%s', true)", pgx.Identifier{column}.Sanitize(), setting)

	var b strings.Builder
	fmt.Fprintf(&b, "ALTER TABLE %s ENABLE ROW LEVEL SECURITY;\n", table)
	fmt.Fprintf(&b, "ALTER TABLE %s FORCE ROW LEVEL SECURITY;\n", table)
	for _, p := range []struct{ command, clauses string }{
		{"SELECT", "USING (" + match + ")"},
		{"INSERT", "WITH CHECK (" + match + ")"},
		{"UPDATE", "USING (" + match + ") WITH CHECK (" + match + ")"},
		{"DELETE", "USING (" + match + ")"},
	} {
		name := pgx.Identifier{PolicyNames[p.command]}.Sanitize()
		fmt.Fprintf(&b, "DROP POLICY IF EXISTS %s ON %s;\n", name, table)
		fmt.Fprintf(&b, "CREATE POLICY %s ON %s FOR %s %s;\n", name, table, p.command, p.clauses)
	}
	return b.String(), nil
}

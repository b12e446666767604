// Package lint checks a database for what tenant isolation needs: a backend role that row-level
// security binds, every table of the protected schemas under forced RLS with a tenant policy for
// each command, and the lockdown that leaves no other way to change the tenant context.
// `tenantproxy check` prints its findings; `tenantproxy serve` refuses to start on any.
package lint

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/tenantproxy/tenantproxy/lockdown"
	"github.com/tenantproxy/tenantproxy/migrations"
)

// Options say what to check.
type Options struct {
	// Role is the role the proxy's backend sessions use; the connection's user when empty.
	Role string
	// Schemas hold the tenant tables.
	Schemas []string
	// Setting is the tenant context's setting; policies must compare with it.
	Setting string
	// ReservedPrefixes are the namespaces no role or database default may set.
	ReservedPrefixes []string
}

// Finding is one problem.
type Finding struct {
	Rule    string // short id, e.g. "superuser", "rls-not-forced"
	Object  string // what it is about
	Message string
}

func (f Finding) String() string { return fmt.Sprintf("%s: %s: %s", f.Rule, f.Object, f.Message) }

// MinimumVersions are the oldest minor release of each major version with the row-level
// security and statistics fixes the isolation relies on (up to CVE-2025-8713).
var MinimumVersions = map[int]int{13: 130022, 14: 140019, 15: 150014, 16: 160010, 17: 170006}

type checker struct {
	ctx      context.Context
	conn     *pgx.Conn
	opts     Options
	findings []Finding
	err      error
}

// Check runs every check and returns the findings, sorted.
func Check(ctx context.Context, conn *pgx.Conn, opts Options) ([]Finding, error) {
	if opts.Setting == "" {
		opts.Setting = migrations.DefaultSetting
	}
	if opts.Role == "" {
		if err := conn.QueryRow(ctx, "SELECT current_user").Scan(&opts.Role); err != nil {
			return nil, err
		}
	}
	c := &checker{ctx: ctx, conn: conn, opts: opts}
	var exists bool
	if err := conn.QueryRow(ctx, "SELECT true FROM pg_roles WHERE rolname = $1", opts.Role).Scan(&exists); err != nil {
		return nil, fmt.Errorf("role %q: %w", opts.Role, err)
	}
	c.version()
	c.role()
	c.schemas()
	c.tables()
	c.policies()
	c.lockdown()
	c.proxyFunctions()
	c.defaults()
	c.directory()
	if c.err != nil {
		return nil, c.err
	}
	slices.SortFunc(c.findings, func(a, b Finding) int { return strings.Compare(a.String(), b.String()) })
	return c.findings, nil
}

func (c *checker) add(rule, object, format string, args ...any) {
	c.findings = append(c.findings, Finding{Rule: rule, Object: object, Message: fmt.Sprintf(format, args...)})
}

// each runs query and calls fn with every row's first column as text.
func (c *checker) each(query string, fn func(string), args ...any) {
	if c.err != nil {
		return
	}
	rows, err := c.conn.Query(c.ctx, query, args...)
	if err != nil {
		c.err = fmt.Errorf("%s: %w", strings.Join(strings.Fields(query), " "), err)
		return
	}
	values, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		c.err = err
		return
	}
	for _, v := range values {
		fn(v)
	}
}

func (c *checker) version() {
	var num int
	var text string
	if err := c.conn.QueryRow(c.ctx, "SELECT current_setting('server_version_num')::int, current_setting('server_version')").Scan(&num, &text); err != nil {
		c.err = err
		return
	}
	if min, ok := MinimumVersions[num/10000]; ok && num < min {
		c.add("server-version", "PostgreSQL "+text, "older than %d.%d, which fixes row-level security and statistics leaks: upgrade the minor release",
			min/10000, min%100)
	} else if num < 130000 {
		c.add("server-version", "PostgreSQL "+text, "unsupported: use PostgreSQL 13 or newer")
	}
}

func (c *checker) role() {
	role := c.opts.Role
	c.each(`SELECT r.rolname || CASE WHEN r.rolsuper THEN ' (superuser)' ELSE ' (BYPASSRLS)' END
		FROM pg_roles r WHERE pg_has_role($1, r.oid, 'MEMBER') AND (r.rolsuper OR r.rolbypassrls)`, func(r string) {
		if strings.HasPrefix(r, role+" ") {
			if strings.HasSuffix(r, "(superuser)") {
				c.add("superuser", "role "+role, "is a superuser: row-level security does not apply to it")
			} else {
				c.add("bypassrls", "role "+role, "has BYPASSRLS: row-level security does not apply to it")
			}
			return
		}
		c.add("member-of-privileged", "role "+role, "can become %s", r)
	}, role)
	c.each(`SELECT r.rolname FROM pg_roles r
		WHERE r.rolname = ANY ('{pg_read_server_files,pg_write_server_files,pg_execute_server_program,pg_signal_backend,pg_read_all_stats,pg_monitor,pg_stat_scan_tables}')
		AND pg_has_role($1, r.oid, 'MEMBER')`, func(r string) {
		c.add("predefined-role", "role "+role, "is a member of %s, which reaches beyond row-level security or into other sessions", r)
	}, role)
}

func (c *checker) schemas() {
	found := map[string]bool{}
	c.each(`SELECT nspname FROM pg_namespace WHERE nspname = ANY ($1)`, func(s string) { found[s] = true }, c.opts.Schemas)
	for _, s := range c.opts.Schemas {
		if !found[s] && c.err == nil {
			c.add("schema-missing", "schema "+s, "does not exist: run tenantproxy migrate up")
		}
	}
	c.each(`SELECT n.nspname FROM pg_namespace n WHERE nspname = ANY ($2) AND pg_has_role($1, n.nspowner, 'MEMBER')`, func(s string) {
		c.add("owns-schema", "schema "+s, "is owned by %s (or a role it belongs to): the owner can change its tables", c.opts.Role)
	}, c.opts.Role, c.opts.Schemas)
	c.each(`SELECT nspname FROM pg_namespace WHERE has_schema_privilege($1, oid, 'CREATE')
		AND nspname NOT LIKE 'pg\_temp\_%' AND nspname NOT LIKE 'pg\_toast\_temp\_%'`, func(s string) {
		c.add("create-in-schema", "schema "+s, "%s may create objects in it", c.opts.Role)
	}, c.opts.Role)
	c.each(`SELECT p.privilege FROM unnest(ARRAY['CREATE', 'TEMPORARY']) p(privilege)
		WHERE has_database_privilege($1, current_database(), p.privilege)`, func(p string) {
		c.add("database-privilege", "database", "%s has %s on it", c.opts.Role, p)
	}, c.opts.Role)
}

const protectedTables = `
	SELECT c.oid, c.oid::regclass::text AS name, c.relrowsecurity, c.relforcerowsecurity, c.relowner
	FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
	WHERE n.nspname = ANY ($1) AND c.relkind IN ('r', 'p')`

func (c *checker) tables() {
	role := c.opts.Role
	c.each(`SELECT t.name FROM (`+protectedTables+`) t WHERE NOT t.relrowsecurity`, func(t string) {
		c.add("rls-disabled", "table "+t, "row-level security is not enabled")
	}, c.opts.Schemas)
	c.each(`SELECT t.name FROM (`+protectedTables+`) t WHERE NOT t.relforcerowsecurity`, func(t string) {
		c.add("rls-not-forced", "table "+t, "row-level security is not forced, so its owner is not bound by it")
	}, c.opts.Schemas)
	c.each(`SELECT t.name FROM (`+protectedTables+`) t WHERE pg_has_role($2, t.relowner, 'MEMBER')`, func(t string) {
		c.add("owns-table", "table "+t, "is owned by %s (or a role it belongs to): the owner can disable row-level security", role)
	}, c.opts.Schemas, role)
	c.each(`SELECT t.name || ': ' || p.privilege FROM (`+protectedTables+`) t,
		unnest(ARRAY['TRUNCATE', 'REFERENCES', 'TRIGGER']) p(privilege)
		WHERE has_table_privilege($2, t.oid, p.privilege)`, func(tp string) {
		name, priv, _ := strings.Cut(tp, ": ")
		c.add("table-privilege", "table "+name, "%s has %s on it (TRUNCATE ignores row-level security)", role, priv)
	}, c.opts.Schemas, role)
}

// policies: each protected table needs, for each command, a permissive policy, and every
// permissive policy must compare with the tenant setting (a USING (true) would open the table).
func (c *checker) policies() {
	setting := "current_setting('" + c.opts.Setting + "'"
	c.each(`SELECT t.name || '|' || cmd.c FROM (`+protectedTables+`) t,
		(VALUES ('SELECT', 'r'), ('INSERT', 'a'), ('UPDATE', 'w'), ('DELETE', 'd')) cmd(c, code)
		WHERE NOT EXISTS (SELECT FROM pg_policy p WHERE p.polrelid = t.oid AND p.polpermissive
			AND p.polcmd IN (cmd.code, '*'))`, func(v string) {
		table, cmd, _ := strings.Cut(v, "|")
		c.add("policy-missing", "table "+table, "no policy for %s", cmd)
	}, c.opts.Schemas)
	c.each(`SELECT t.name || '|' || p.polname || '|' || coalesce(pg_get_expr(p.polqual, p.polrelid), '') || '|' || coalesce(pg_get_expr(p.polwithcheck, p.polrelid), '')
		FROM (`+protectedTables+`) t JOIN pg_policy p ON p.polrelid = t.oid WHERE p.polpermissive`, func(v string) {
		parts := strings.SplitN(v, "|", 4)
		for _, expr := range parts[2:] {
			if expr != "" && !strings.Contains(expr, setting) {
				c.add("policy-without-tenant", "table "+parts[0], "policy %s does not compare with %s: %s", parts[1], c.opts.Setting, expr)
			}
		}
	}, c.opts.Schemas)
}

func (c *checker) lockdown() {
	role := c.opts.Role
	c.each(`SELECT p.proname || '|' || p.oid::regprocedure::text FROM pg_proc p
		WHERE ((p.pronamespace = 'pg_catalog'::regnamespace AND p.proname = ANY ($2)) OR p.proname LIKE 'dblink%')
		AND has_function_privilege($1, p.oid, 'EXECUTE')`, func(v string) {
		name, signature, _ := strings.Cut(v, "|")
		why := "it runs SQL the proxy cannot inspect"
		if rule, ok := lockdown.Revoked(name); ok {
			why = rule.Why()
		}
		c.add("lockdown-function", "function "+signature, "%s may execute it, and %s", role, why)
	}, role, lockdown.FunctionNames())
	c.each(`SELECT v FROM unnest($2::text[]) v
		WHERE to_regclass('pg_catalog.' || quote_ident(v)) IS NOT NULL
		AND has_table_privilege($1, ('pg_catalog.' || quote_ident(v))::regclass, 'SELECT')`, func(v string) {
		c.add("lockdown-view", "view pg_catalog."+v, "%s may read it (other sessions' activity or statements, or activity counters)", role)
	}, role, lockdown.Views)
	c.each(`SELECT 'pg_settings' WHERE has_table_privilege($1, 'pg_catalog.pg_settings', 'UPDATE')`, func(v string) {
		c.add("lockdown-pg-settings", "view pg_catalog.pg_settings", "%s may UPDATE it, which calls set_config", role)
	}, role)
	c.each(`SELECT lanname FROM pg_language WHERE (lanname = ANY ($2) OR laninline <> 0)
		AND has_language_privilege($1, oid, 'USAGE')`, func(l string) {
		c.add("lockdown-language", "language "+l, "%s may use it (DO blocks run SQL the guard never sees)", role)
	}, role, lockdown.Languages)
}

// proxyFunctions: the functions the proxy calls must be there, executable by the role.
func (c *checker) proxyFunctions() {
	c.each(`SELECT f FROM unnest($2::text[]) f
		WHERE to_regprocedure(f) IS NULL OR NOT has_function_privilege($1, to_regprocedure(f), 'EXECUTE')`, func(f string) {
		c.add("proxy-function", "function "+f, "missing, or %s may not execute it, and the proxy calls it: run tenantproxy migrate up", c.opts.Role)
	}, c.opts.Role, lockdown.ProxyFunctions)
}

// defaults: a role or database default in the reserved namespace would come back with every
// RESET, under any tenant.
func (c *checker) defaults() {
	c.each(`SELECT coalesce(r.rolname, 'every role') || ' in ' || coalesce(d.datname, 'every database') || ': ' || s.setting
		FROM pg_db_role_setting drs
		CROSS JOIN LATERAL unnest(drs.setconfig) s(setting)
		LEFT JOIN pg_roles r ON r.oid = drs.setrole
		LEFT JOIN pg_database d ON d.oid = drs.setdatabase
		WHERE (drs.setrole = 0 OR pg_has_role($1, drs.setrole, 'MEMBER'))
		AND (drs.setdatabase = 0 OR d.datname = current_database())
		AND lower(s.setting) LIKE ANY ($2)`, func(v string) {
		c.add("reserved-default", "setting", "a default in the reserved namespace: %s", v)
	}, c.opts.Role, likePatterns(c.opts.ReservedPrefixes))
}

// directory: the backend role must not read the tenant directory, whose verifiers would let
// whoever holds them pose as the proxy to its users and try their passwords offline.
func (c *checker) directory() {
	c.each(`SELECT nspname FROM pg_namespace WHERE nspname = $2 AND has_schema_privilege($1, oid, 'USAGE')`, func(s string) {
		c.add("directory-readable", "schema "+s, "%s may use it, and it holds the users' password verifiers", c.opts.Role)
	}, c.opts.Role, migrations.DirectorySchema)
	c.each(`SELECT c.oid::regclass::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE n.nspname = $2 AND has_any_column_privilege($1, c.oid, 'SELECT')`, func(t string) {
		c.add("directory-readable", "table "+t, "%s may read it, and the tenant directory holds the users' password verifiers", c.opts.Role)
	}, c.opts.Role, migrations.DirectorySchema)
}

func likePatterns(prefixes []string) []string {
	if len(prefixes) == 0 {
		prefixes = []string{"app."}
	}
	out := make([]string, len(prefixes))
	for i, p := range prefixes {
		out[i] = strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`).Replace(strings.ToLower(p)) + "%"
	}
	return out
}

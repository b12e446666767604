// Package migrations creates and upgrades tenantproxy's schema in a database: the owner, app and
// directory roles, the RLS-protected vector and graph tables, the tenant directory, and the
// database lockdown.
//
// Migrations are SQL templates embedded in the binary and applied by tern (github.com/jackc/tern):
// each in its own transaction, under an advisory lock so two runs cannot race, with the version
// kept in a table. Templates get the schema and role names already quoted, and the row-level
// security statements from the policy package, so every table's policies come from one helper.
package migrations

import (
	"context"
	"embed"
	"fmt"
	"io/fs"
	"regexp"
	"strings"
	"text/template"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/tern/v2/migrate"

	"github.com/tenantproxy/tenantproxy/internal/scramsecret"
	"github.com/tenantproxy/tenantproxy/lockdown"
)

//go:embed sql/*.sql
var files embed.FS

// lockdownSQL is the database lockdown, applied by every Up (see the file).
//
//go:embed lockdown.sql
var lockdownSQL string

const (
	// OwnerRole owns the schema, its tables and functions. It never logs in.
	OwnerRole = "tenantproxy_owner"
	// AppRole is the role tenantproxy's backend sessions use: DML only, always under RLS.
	AppRole = "tenantproxy_app"
	// DefaultSchema holds the tenant tables.
	DefaultSchema = "llmspell"
	// DirectorySchema holds the tenant directory (users, user_changes), one per database.
	DirectorySchema = "tenantproxy_directory"
	// DirectoryRole is the role the proxy reads the directory as: SELECT on it, nothing else.
	DirectoryRole = "tenantproxy_directory"
)

// TenantTables are the tables the migrations create, each with a tenant_id column under RLS.
var TenantTables = []string{
	"vector_embeddings_384", "vector_embeddings_768", "vector_embeddings_1536", "vector_embeddings_3072",
	"entities", "relationships",
}

var schemaName = regexp.MustCompile(`^[a-z_][a-z0-9_]{0,62}$`)

// Options choose what to migrate.
type Options struct {
	// Schema holds the tenant tables; DefaultSchema when empty. Lower-case letters, digits and _.
	Schema string
}

func (o Options) schema() (string, error) {
	if o.Schema == "" {
		return DefaultSchema, nil
	}
	if !schemaName.MatchString(o.Schema) {
		return "", fmt.Errorf("schema name %q: use lower-case letters, digits and _ (at most 63)", o.Schema)
	}
	return o.Schema, nil
}

// Status says where a database stands.
type Status struct {
	Schema  string
	Current int32    // version applied, 0 for none
	Latest  int32    // version this binary knows
	Pending []string // migrations not yet applied, in order
}

// Up applies every pending migration, then the database lockdown. The lockdown is applied on
// every run, so it always matches this binary's lists (package lockdown) and
// a database copied from a template, which does not inherit database-level privileges, gets it
// too. Running Up again changes nothing. conn must be a superuser connection.
func Up(ctx context.Context, conn *pgx.Conn, opts Options) (Status, error) {
	schema, err := opts.schema()
	if err != nil {
		return Status{}, err
	}
	m, err := newMigrator(ctx, conn, schema, true)
	if err != nil {
		return Status{}, err
	}
	if err := m.Migrate(ctx); err != nil {
		return Status{}, fmt.Errorf("migrate: %w", err)
	}
	if err := applyLockdown(ctx, conn, schema); err != nil {
		return Status{}, err
	}
	return status(ctx, conn, m, schema)
}

// CurrentStatus reports the applied and pending migrations without changing anything.
func CurrentStatus(ctx context.Context, conn *pgx.Conn, opts Options) (Status, error) {
	schema, err := opts.schema()
	if err != nil {
		return Status{}, err
	}
	m, err := newMigrator(ctx, conn, schema, false)
	if err != nil {
		return Status{}, err
	}
	return status(ctx, conn, m, schema)
}

// SetAppPassword gives the app role a password. Only a SCRAM verifier made here is sent, so the
// plaintext never reaches the server or its logs.
func SetAppPassword(ctx context.Context, conn *pgx.Conn, password string) error {
	return setPassword(ctx, conn, AppRole, password)
}

// SetDirectoryPassword gives the directory role a password, the same way.
func SetDirectoryPassword(ctx context.Context, conn *pgx.Conn, password string) error {
	return setPassword(ctx, conn, DirectoryRole, password)
}

func setPassword(ctx context.Context, conn *pgx.Conn, role, password string) error {
	verifier, err := scramsecret.New(password)
	if err != nil {
		return err
	}
	_, err = conn.Exec(ctx, fmt.Sprintf("ALTER ROLE %s PASSWORD %s",
		pgx.Identifier{role}.Sanitize(), quoteLiteral(verifier)))
	return err
}

func versionTable(schema string) string {
	return "public.tenantproxy_version_" + schema
}

// newMigrator loads the templates. With create false and no version table yet, the migrator is
// built without a connection so that reading the status changes nothing.
func newMigrator(ctx context.Context, conn *pgx.Conn, schema string, create bool) (*migrate.Migrator, error) {
	c := conn
	if !create {
		exists, err := tableExists(ctx, conn, versionTable(schema))
		if err != nil {
			return nil, err
		}
		if !exists {
			c = nil
		}
	}
	m, err := migrate.NewMigratorEx(ctx, c, versionTable(schema), &migrate.MigratorOptions{})
	if err != nil {
		return nil, fmt.Errorf("migrate: %w", err)
	}
	m.Data = templateData(schema)
	sub, err := fs.Sub(files, "sql")
	if err != nil {
		return nil, err
	}
	if err := m.LoadMigrations(sub); err != nil {
		return nil, fmt.Errorf("migrate: loading migrations: %w", err)
	}
	return m, nil
}

func status(ctx context.Context, conn *pgx.Conn, m *migrate.Migrator, schema string) (Status, error) {
	s := Status{Schema: schema, Latest: int32(len(m.Migrations))}
	exists, err := tableExists(ctx, conn, versionTable(schema))
	if err != nil {
		return s, err
	}
	if exists {
		if err := conn.QueryRow(ctx, "SELECT version FROM "+versionTable(schema)).Scan(&s.Current); err != nil {
			return s, err
		}
	}
	for _, mig := range m.Migrations {
		if mig.Sequence > s.Current {
			s.Pending = append(s.Pending, mig.Name)
		}
	}
	return s, nil
}

func tableExists(ctx context.Context, conn *pgx.Conn, name string) (bool, error) {
	var ok bool
	err := conn.QueryRow(ctx, "SELECT to_regclass($1) IS NOT NULL", name).Scan(&ok)
	return ok, err
}

func applyLockdown(ctx context.Context, conn *pgx.Conn, schema string) error {
	tmpl, err := template.New("lockdown").Parse(lockdownSQL)
	if err != nil {
		return err
	}
	var sql strings.Builder
	if err := tmpl.Execute(&sql, templateData(schema)); err != nil {
		return err
	}
	tx, err := conn.Begin(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, sql.String()); err != nil {
		return fmt.Errorf("lockdown: %w", err)
	}
	return tx.Commit(ctx)
}

// rlsTemplates gives templates the policy helper: {{.rls.Table "entities"}}.
type rlsTemplates struct{ schema string }

func (r rlsTemplates) Table(table string) (string, error) {
	return RLSPolicySQL(RLSTable{Schema: r.schema, Table: table})
}

func templateData(schema string) map[string]any {
	return map[string]any{
		"schema":         pgx.Identifier{schema}.Sanitize(),
		"owner":          pgx.Identifier{OwnerRole}.Sanitize(),
		"app":            pgx.Identifier{AppRole}.Sanitize(),
		"ownerLiteral":   quoteLiteral(OwnerRole),
		"appLiteral":     quoteLiteral(AppRole),
		"settingLiteral": quoteLiteral(DefaultSetting),
		// The namespace of the tenant context's setting, "app.".
		"reservedPrefixLiteral": quoteLiteral(DefaultSetting[:strings.IndexByte(DefaultSetting, '.')+1]),
		"directory":             pgx.Identifier{DirectorySchema}.Sanitize(),
		"directoryRole":         pgx.Identifier{DirectoryRole}.Sanitize(),
		"directoryRoleLiteral":  quoteLiteral(DirectoryRole),
		"rls":                   rlsTemplates{schema: schema},
		"lockdownFunctions":     textArray(lockdown.FunctionNames()),
		"lockdownViews":         textArray(lockdown.Views),
		"lockdownLanguages":     quoteIdentifiers(lockdown.Languages),
	}
}

func quoteLiteral(s string) string {
	return "'" + strings.ReplaceAll(s, "'", "''") + "'"
}

func textArray(items []string) string {
	quoted := make([]string, len(items))
	for i, s := range items {
		quoted[i] = quoteLiteral(s)
	}
	return "ARRAY[" + strings.Join(quoted, ", ") + "]::text[]"
}

func quoteIdentifiers(items []string) []string {
	quoted := make([]string, len(items))
	for i, s := range items {
		quoted[i] = pgx.Identifier{s}.Sanitize()
	}
	return quoted
}

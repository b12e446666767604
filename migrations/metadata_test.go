package migrations_test

import (
	"os"
	osexec "os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/tenantproxy/tenantproxy/internal/pgtest"
)

// The lockdown must leave clients' metadata queries working: they read the shared schema through
// the catalog functions the review keeps (format_type, pg_get_expr, pg_get_indexdef, ...).
// Straight to the database as the app role, as tenant acme.

// appEnv is a libpq environment for the app role of db, as tenant acme.
func appEnv(db *pgtest.DB) []string {
	return append(os.Environ(),
		"PGHOST="+db.Host, "PGPORT="+strconv.Itoa(db.Port), "PGDATABASE="+db.Name,
		"PGUSER=tenantproxy_app", "PGPASSWORD="+pgtest.AppPassword, "PGSSLMODE=disable",
		"PGOPTIONS=-c app.current_tenant_id=acme")
}

// lookPath finds a PostgreSQL client program or fails saying how to get it.
func lookPath(t *testing.T, program string) string {
	t.Helper()
	path, err := osexec.LookPath(program)
	if err != nil {
		t.Fatalf("%s is not on PATH: install the PostgreSQL client (scripts/pgenv install, or apt-get install postgresql-client)", program)
	}
	return path
}

// psql's describe commands, in one session: every one must succeed without an error.
func TestPsqlDescribeCommandsWork(t *testing.T) {
	db := pgtest.New(t)
	psql := lookPath(t, "psql")
	commands := []string{
		`\d llmspell.entities`, `\d+ llmspell.vector_embeddings_3072`, `\dt llmspell.*`,
		`\dt+ llmspell.*`, `\di+ llmspell.*`, `\dv`, `\ds`, `\df l2_*`, `\df+ vector_dims`,
		`\dT+ vector`, `\dn+`, `\dx+ vector`, `\dp llmspell.*`, `\ddp`, `\l+`, `\du`, `\dD`,
		`\dconfig hnsw.*`, `\dC`, `\do <=>`, `\dy`, `\dRp`, `\dRs`, `\dL`, `\dP`, `\dX`, `\des`,
		`\dew`, `\dA+`, `\dO`, `\dF`, `\dFd`, `\dFp`, `\dFt`, `\db`, `\dc`, `\drds`,
		`\sf public.vector_dims(public.vector)`, `\dAc`, `\dAf`, `\dAo btree`, `\dAp btree`,
		`\z llmspell.entities`, `\dE`, `\dm`, `\dg`, `\det`, `\deu`, `\dd`,
	}
	var script strings.Builder
	for _, c := range commands {
		// A backslash would start another meta-command on the \\echo line.
		script.WriteString("\\echo command: " + strings.TrimPrefix(c, `\`) + "\n" + c + "\n")
	}
	cmd := osexec.Command(psql, "-X")
	cmd.Env = appEnv(db)
	cmd.Stdin = strings.NewReader(script.String())
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("psql: %v\n%s", err, out)
	}
	ran, command := 0, ""
	for _, line := range strings.Split(string(out), "\n") {
		if c, ok := strings.CutPrefix(line, "command: "); ok {
			ran++
			command = `\` + c
		} else if strings.Contains(line, "ERROR") {
			t.Errorf("psql %s: %s", command, line)
		}
	}
	if ran != len(commands) {
		t.Errorf("psql ran %d of %d commands:\n%s", ran, len(commands), out)
	}
}

// The metadata queries of PgJDBC, SQLAlchemy and ActiveRecord, as the server logged them when
// these clients described the schema (testdata/metadata): each must run.
func TestDriverMetadataQueriesWork(t *testing.T) {
	db := pgtest.New(t)
	files, err := filepath.Glob("testdata/metadata/*.sql")
	if err != nil || len(files) < 3 {
		t.Fatalf("testdata/metadata: %v, %v", files, err)
	}
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) {
			text, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			queries := strings.Split(string(text), "\n-- query\n")[1:]
			if len(queries) < 10 {
				t.Fatalf("%s holds %d queries", file, len(queries))
			}
			conn := db.TenantConn(t, "acme")
			for _, q := range queries {
				if _, err := conn.Exec(ctx, q); err != nil {
					t.Errorf("%v\n%s", err, q)
				}
			}
		})
	}
}

// pg_dump of one table with --enable-row-security dumps the tenant's own rows. pg_dump's first
// statement is SELECT pg_catalog.set_config('search_path', ”, false), and set_config stays
// revoked (it would change the tenant context): against the database directly, pg_dump stops
// there. Everything after it must work, which this database shows with set_config granted back.
func TestPgDumpOfATableNeedsOnlySetConfig(t *testing.T) {
	db := pgtest.New(t)
	pgDump := lookPath(t, "pg_dump")
	admin := pgtest.Connect(t, db.AdminURL)
	exec(t, admin, `INSERT INTO llmspell.entities (tenant_id, entity_type, name)
		VALUES ('acme', 'person', 'acme-dumped'), ('globex', 'person', 'globex-hidden')`)
	dump := func() (string, error) {
		cmd := osexec.Command(pgDump, "--enable-row-security", "--table=llmspell.entities")
		cmd.Env = appEnv(db)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}

	out, err := dump()
	if err == nil || !strings.Contains(out, "permission denied for function set_config") {
		t.Fatalf("pg_dump with set_config revoked: want it refused at set_config, got %v\n%s", err, out)
	}

	exec(t, admin, "GRANT EXECUTE ON FUNCTION pg_catalog.set_config(text, text, boolean) TO tenantproxy_app")
	out, err = dump()
	if err != nil {
		t.Fatalf("pg_dump (needs pg_dump at least as new as the server on PATH): %v\n%s", err, out)
	}
	if !strings.Contains(out, "CREATE TABLE llmspell.entities") || !strings.Contains(out, "acme-dumped") {
		t.Errorf("the dump lacks the table or acme's row:\n%s", out)
	}
	if strings.Contains(out, "globex") {
		t.Errorf("the dump holds globex's row:\n%s", out)
	}
}

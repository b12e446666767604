package proxy_test

import (
	"fmt"
	"maps"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tenantproxy/tenantproxy/config"
	"github.com/tenantproxy/tenantproxy/internal/pgtest"
	"github.com/tenantproxy/tenantproxy/migrations"
)

// A reload changes users, tenants and limits without dropping a connection that may stay, ends
// those that may not, and keeps the keys that need a restart.
func TestReload(t *testing.T) {
	both(t, func(t *testing.T, p *testProxy) {
		alice := p.connect(t, "alice")
		bob := p.connect(t, "bob")
		carol := p.connect(t, "carol") // acme, carol's default
		dave := p.connect(t, "dave", "options=-c%20tenant%3Dglobex")
		mustExec(t, alice, "BEGIN")
		mustExec(t, alice, `INSERT INTO llmspell.entities (tenant_id, entity_type, name)
			VALUES (current_setting('app.current_tenant_id'), 'thing', 'during the reload')`)

		next := *p.srv.Config()
		next.Users = maps.Clone(next.Users)
		delete(next.Users, "bob")
		next.Users["carol"] = config.User{Password: verifier(), Tenant: "globex"}
		next.Users["erin"] = config.User{Password: verifier(), Tenant: "initech"}
		next.Pool.Size++ // needs a restart
		next.Tenants = map[string]config.Tenant{"acme": {StatementTimeout: config.Duration{Duration: time.Minute}}}
		kept, err := p.srv.Reload(&next)
		if err != nil {
			t.Fatalf("Reload: %v", err)
		}
		if !slices.Equal(kept, []string{"pool.size"}) {
			t.Errorf("kept = %v, want [pool.size]", kept)
		}
		if got := p.srv.Config().Pool.Size; got != p.cfg.Pool.Size {
			t.Errorf("pool.size after the reload = %d, want the running %d", got, p.cfg.Pool.Size)
		}
		if got := p.srv.Config().TenantLimits("acme").StatementTimeout.Duration; got != time.Minute {
			t.Errorf("acme's statement_timeout after the reload = %v", got)
		}

		// alice's transaction goes on and commits; dave may still act for globex.
		mustExec(t, alice, "COMMIT")
		if n := queryInt(t, alice, "SELECT count(*) FROM llmspell.entities WHERE name = 'during the reload'"); n != 1 {
			t.Errorf("alice's transaction across the reload: %d rows", n)
		}
		if got := tenantOf(t, dave); got != "globex" {
			t.Errorf("dave after the reload: %q", got)
		}
		// bob was removed, carol may no longer act for acme: both are ended.
		for _, conn := range []*pgx.Conn{bob, carol} {
			_, err := conn.Exec(ctx, "SELECT 1")
			wantCode(t, err, "57P01", "terminating connection due to administrator command")
		}
		_, err = pgx.Connect(ctx, p.url("bob"))
		wantCode(t, err, "28P01")
		if got := tenantOf(t, p.connect(t, "carol")); got != "globex" {
			t.Errorf("carol's new login: tenant %q, want globex", got)
		}
		if got := tenantOf(t, p.connect(t, "erin")); got != "initech" {
			t.Errorf("erin, added by the reload: tenant %q", got)
		}

		// A reload that cannot be applied changes nothing.
		broken := *p.srv.Config()
		broken.TLS = config.TLS{Mode: "allow", Cert: "/nonexistent/cert.pem", Key: "/nonexistent/key.pem"}
		broken.Users = map[string]config.User{"alice": {Password: verifier(), Tenant: "acme"}}
		if _, err := p.srv.Reload(&broken); err == nil {
			t.Fatal("a reload with a TLS file that does not exist succeeded")
		}
		if got := tenantOf(t, p.connect(t, "erin")); got != "initech" {
			t.Errorf("erin after a failed reload: %q", got)
		}
	})
}

// A reload from the file: the console's RELOAD reads it again, and a file that does not load
// changes nothing.
func TestReloadFile(t *testing.T) {
	db := pgtest.New(t)
	file := t.TempDir() + "/tenantproxy.toml"
	writeConfig(t, file, db, "alice")
	cfg, err := config.Load(file)
	if err != nil {
		t.Fatal(err)
	}
	p := startProxy(t, db, "transaction", func(c *config.Config) { *c = *cfg })
	alice := p.connect(t, "alice")
	_, err = pgx.Connect(ctx, p.url("bob"))
	wantCode(t, err, "28P01")

	writeConfig(t, file, db, "alice", "bob")
	if out, err := psqlConsole(p, "RELOAD"); err != nil || out != "RELOAD\n" {
		t.Fatalf("psql RELOAD: %v\n%s", err, out)
	}
	if got := tenantOf(t, p.connect(t, "bob")); got != "globex" {
		t.Errorf("bob after RELOAD: %q", got)
	}

	if err := writeFile(file, "this is not toml ["); err != nil {
		t.Fatal(err)
	}
	_, err = consoleExec(p, "RELOAD")
	wantCode(t, err, "F0000", "configuration not reloaded")
	if got := tenantOf(t, p.connect(t, "bob")); got != "globex" {
		t.Errorf("bob after a failed RELOAD: %q", got)
	}
	if got := tenantOf(t, alice); got != "acme" {
		t.Errorf("alice across both reloads: %q", got)
	}
}

// writeConfig writes a configuration file serving db in transaction mode, with the admin ops
// and the named users among alice (acme) and bob (globex).
func writeConfig(t testing.TB, file string, db *pgtest.DB, users ...string) {
	t.Helper()
	tenants := map[string]string{"alice": "acme", "bob": "globex"}
	text := fmt.Sprintf(`listen = "127.0.0.1:0"
database = "app"
[backend]
host = %q
port = %d
database = %q
user = %q
password = %q
sslmode = "disable"
[pool]
mode = "transaction"
size = 10
[tenancy]
tenants = ["acme", "globex"]
[admins.ops]
password = %q
`, db.Host, db.Port, db.Name, migrations.AppRole, pgtest.AppPassword, verifier())
	for _, u := range users {
		text += fmt.Sprintf("[users.%s]\npassword = %q\ntenant = %q\n", u, verifier(), tenants[u])
	}
	if err := writeFile(file, text); err != nil {
		t.Fatal(err)
	}
}

// writeFile replaces file's contents at once (a rename), as an editor or a deployment does.
func writeFile(file, text string) error {
	tmp := file + ".tmp"
	if err := os.WriteFile(tmp, []byte(text), 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, file)
}

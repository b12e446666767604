package proxy_test

import (
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tenantproxy/tenantproxy/config"
	"github.com/tenantproxy/tenantproxy/directory"
	"github.com/tenantproxy/tenantproxy/internal/pgtest"
	"github.com/tenantproxy/tenantproxy/internal/scramsecret"
)

// withDirectory reads users from db's tenant directory too, refreshed every 100ms.
func withDirectory(db *pgtest.DB) func(*config.Config) {
	return func(cfg *config.Config) {
		u, err := url.Parse(db.DirectoryURL)
		if err != nil {
			panic(err)
		}
		port, _ := strconv.Atoi(u.Port())
		password, _ := u.User.Password()
		cfg.Directory = &config.Directory{
			Host: u.Hostname(), Port: port, Database: db.Name, User: u.User.Username(), Password: password,
			SSLMode: "disable", Refresh: config.Duration{Duration: 100 * time.Millisecond},
		}
	}
}

// Users kept in the tenant directory log in without a restart; a change to one reaches its
// open sessions within the refresh interval.
func TestDirectoryUsers(t *testing.T) {
	db := pgtest.New(t)
	p := startProxy(t, db, "transaction", withDirectory(db))
	admin := pgtest.Connect(t, db.AdminURL)
	add := func(u directory.User) {
		t.Helper()
		u.Verifier = verifier()
		if err := directory.Add(ctx, admin, u); err != nil {
			t.Fatalf("adding %s: %v", u.Name, err)
		}
	}
	loginTenant := func(user string, extra ...string) string {
		conn, err := pgx.Connect(ctx, p.url(user, extra...))
		if err != nil {
			return err.Error()
		}
		defer conn.Close(ctx)
		return tenantOrError(conn)
	}

	// An unknown name fails as a wrong password; once added, it logs in (the cached "no such
	// user" is forgotten within the refresh).
	_, err := pgx.Connect(ctx, p.url("dora"))
	wantCode(t, err, "28P01")
	add(directory.User{Name: "dora", Tenant: "acme"})
	pgtest.WaitFor(t, "dora to log in", func() bool { return loginTenant("dora") == "acme" })
	add(directory.User{Name: "erin", Tenants: []string{"acme", "globex"}, DefaultTenant: "globex"})
	if got := loginTenant("erin"); got != "globex" {
		t.Errorf("erin: %q", got)
	}
	if got := loginTenant("erin", "options=-c%20tenant%3Dacme"); got != "acme" {
		t.Errorf("erin choosing acme: %q", got)
	}
	// The file's user wins over a directory user of the same name.
	add(directory.User{Name: "alice", Tenant: "globex"})
	if got := loginTenant("alice"); got != "acme" {
		t.Errorf("alice, in the file and the directory: %q, want the file's acme", got)
	}

	// A new password leaves open sessions alone; new logins need it.
	dora := p.connect(t, "dora")
	other, err := scramsecret.New("another password")
	if err != nil {
		t.Fatal(err)
	}
	if err := directory.SetVerifier(ctx, admin, "dora", other); err != nil {
		t.Fatal(err)
	}
	pgtest.WaitFor(t, "dora's old password to be refused", func() bool {
		_, err := pgx.Connect(ctx, p.url("dora"))
		return err != nil
	})
	if got := tenantOf(t, dora); got != "acme" {
		t.Errorf("dora's open session after a new password: %q", got)
	}

	// A user moved to another tenant, disabled or removed loses its sessions at once.
	erin := p.connect(t, "erin")
	if err := directory.SetTenants(ctx, admin, "dora", "globex", nil, ""); err != nil {
		t.Fatal(err)
	}
	if err := directory.SetDisabled(ctx, admin, "erin", true); err != nil {
		t.Fatal(err)
	}
	for who, conn := range map[string]*pgx.Conn{"dora": dora, "erin": erin} {
		waitEnded(t, who, conn)
	}
	if got := loginTenant("erin"); got == "acme" || got == "globex" {
		t.Errorf("disabled erin logged in to %s", got)
	}
	fred := p.connect(t, "t07")
	add(directory.User{Name: "gina", Tenant: "t07"})
	gina := p.connect(t, "gina")
	if err := directory.Remove(ctx, admin, "gina"); err != nil {
		t.Fatal(err)
	}
	waitEnded(t, "gina", gina)
	if got := tenantOf(t, fred); got != "t07" {
		t.Errorf("a file user of the same tenant after gina's removal: %q", got)
	}
	if want := `may no longer act for tenant \"t07\"`; !strings.Contains(p.logs.String(), want) {
		t.Errorf("the proxy log does not say why gina was ended (%s)", want)
	}
}

// waitEnded waits until conn, who's, is ended by the proxy with FATAL 57P01.
func waitEnded(t testing.TB, who string, conn *pgx.Conn) {
	t.Helper()
	var err error
	pgtest.WaitFor(t, who+"'s session to end", func() bool {
		_, err = conn.Exec(ctx, "SELECT 1")
		return err != nil
	})
	wantCode(t, err, "57P01", "terminating connection due to administrator command")
}

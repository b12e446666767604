package faults

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/tenantproxy/tenantproxy/config"
	"github.com/tenantproxy/tenantproxy/directory"
	"github.com/tenantproxy/tenantproxy/migrations"
)

// The tenant directory out of reach: a user it never answered for is refused with FATAL 08006
// that says so, users it answered for (its cache) and the file's users still log in, open
// sessions go on, and everything comes back with the directory.
func TestDirectoryUnreachable(t *testing.T) {
	ctx := context.Background()
	const directoryPassword = "faults-directory"
	dirRelay := newRelay(t, "127.0.0.1")
	f := newFixture(t, "transaction", func(cfg *config.Config) {
		conn, err := pgx.Connect(ctx, pg.urlFor(cfg.Backend.Database))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close(ctx)
		if err := migrations.SetDirectoryPassword(ctx, conn, directoryPassword); err != nil {
			t.Fatal(err)
		}
		cfg.Directory = &config.Directory{
			Host: dirRelay.host, Port: dirRelay.port, Database: cfg.Backend.Database,
			User: migrations.DirectoryRole, Password: directoryPassword, SSLMode: "disable",
			ConnectTimeout: config.Duration{Duration: 2 * time.Second},
			Refresh:        config.Duration{Duration: 100 * time.Millisecond},
		}
	})
	admin := f.db.admin(t)
	defer admin.Close(ctx)
	// fay, refused once (and so cached as unknown), is added last: once she can log in, the
	// proxy has read the whole change log, and caching dora below is not undone by it.
	if _, err := f.dial(ctx, "fay", false); err == nil {
		t.Fatal("fay logged in before being added")
	}
	for _, u := range []directory.User{{Name: "dora", Tenant: "acme"}, {Name: "erin", Tenant: "globex"}, {Name: "fay", Tenant: "acme"}} {
		u.Verifier = verifier()
		if err := directory.Add(ctx, admin, u); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, 10*time.Second, "fay's login", func() error { return f.once(ctx, "fay", "SELECT 1") })
	dora := f.connect(t, "dora")

	dirRelay.stop()
	_, err := f.dial(ctx, "erin", false)
	wantSQLState(t, "erin, never looked up, while the directory is down", err, "08006")
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && (!strings.Contains(pgErr.Message, "tenant directory cannot be reached") || pgErr.Hint == "") {
		t.Errorf("erin's refusal does not say why and what to do: %q (hint %q)", pgErr.Message, pgErr.Hint)
	}
	if err := f.once(ctx, "dora", "SELECT 1"); err != nil {
		t.Errorf("dora, cached, while the directory is down: %v", err)
	}
	if err := f.once(ctx, "alice", "SELECT 1"); err != nil {
		t.Errorf("alice, a file user, while the directory is down: %v", err)
	}
	if err := checkSession(ctx, dora, "acme"); err != nil {
		t.Errorf("dora's open session while the directory is down: %v", err)
	}
	if !strings.Contains(f.logs.String(), "the tenant directory cannot be read") {
		t.Error("the refusal is not logged with its cause")
	}

	if err := dirRelay.proxy.Start(); err != nil {
		t.Fatalf("restarting the directory's relay: %v", err)
	}
	recovery(t, "erin's login", time.Now(), 30*time.Second, func(ctx context.Context) error {
		return f.once(ctx, "erin", "SELECT 1")
	})
}

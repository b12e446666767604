package directory_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/rs/zerolog"

	"github.com/tenantproxy/tenantproxy/config"
	"github.com/tenantproxy/tenantproxy/directory"
	"github.com/tenantproxy/tenantproxy/internal/pgtest"
	"github.com/tenantproxy/tenantproxy/internal/scramsecret"
)

var ctx = context.Background()

func TestMain(m *testing.M) { pgtest.Main(m) }

// refresh is short so tests wait little; waits have deadlines of many refreshes.
const refresh = 100 * time.Millisecond

func open(t testing.TB, db *pgtest.DB) *directory.Directory {
	t.Helper()
	d, err := directory.Open(ctx, db.DirectoryURL, directory.Options{Refresh: refresh})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(d.Close)
	return d
}

func verifier(t testing.TB, password string) string {
	t.Helper()
	v, err := scramsecret.New(password)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func add(t testing.TB, admin *pgx.Conn, u directory.User) directory.User {
	t.Helper()
	if u.Verifier == "" {
		u.Verifier = verifier(t, "pw-"+u.Name)
	}
	if err := directory.Add(ctx, admin, u); err != nil {
		t.Fatalf("add %s: %v", u.Name, err)
	}
	return u
}

func lookup(t *testing.T, d *directory.Directory, name string) (directory.User, bool) {
	t.Helper()
	u, found, err := d.Lookup(ctx, name)
	if err != nil {
		t.Fatalf("lookup %s: %v", name, err)
	}
	return u, found
}

// eventually retries check until it holds or five seconds (fifty refreshes) pass.
func eventually(t *testing.T, what string, check func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !check() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 5s", what)
		}
		time.Sleep(refresh / 4)
	}
}

// waitForChange reads Changes() until name comes, or fails after five seconds.
func waitForChange(t *testing.T, d *directory.Directory, name string) {
	t.Helper()
	timeout := time.After(5 * time.Second)
	var seen []string
	for {
		select {
		case got, ok := <-d.Changes():
			if !ok {
				t.Fatalf("Changes() closed before reporting %s (saw %v)", name, seen)
			}
			if got == name {
				return
			}
			seen = append(seen, got)
		case <-timeout:
			t.Fatalf("Changes() did not report %s within 5s (saw %v)", name, seen)
		}
	}
}

func TestLookupFindsAUserWithItsTenants(t *testing.T) {
	db := pgtest.New(t)
	admin := pgtest.Connect(t, db.AdminURL)
	alice := add(t, admin, directory.User{Name: "alice", Tenant: "acme", MaxConnections: 5})
	carol := add(t, admin, directory.User{Name: "carol", Tenants: []string{"acme", "globex"}, DefaultTenant: "globex"})
	d := open(t, db)

	u, found := lookup(t, d, "alice")
	if !found || u.Name != "alice" || u.Verifier != alice.Verifier || u.Tenant != "acme" || u.Tenants != nil ||
		u.MaxConnections != 5 || u.Disabled {
		t.Errorf("alice = %+v, found %v", u, found)
	}
	u, found = lookup(t, d, "carol")
	if !found || u.Verifier != carol.Verifier || u.Tenant != "" || !slices.Equal(u.Tenants, []string{"acme", "globex"}) ||
		u.DefaultTenant != "globex" || u.MaxConnections != 0 {
		t.Errorf("carol = %+v, found %v", u, found)
	}
	// The caller's copy is its own: changing it leaves the cached answer alone.
	u.Tenants[0] = "mutated"
	if again, _ := lookup(t, d, "carol"); again.Tenants[0] != "acme" {
		t.Errorf("the cached user changed with the caller's copy: %+v", again)
	}
	for _, name := range []string{"nobody", "o'brien", "", strings.Repeat("x", 64)} {
		if _, found := lookup(t, d, name); found {
			t.Errorf("%q found", name)
		}
	}
}

// An unknown name is cached as unknown; adding the user invalidates that on every instance
// within the refresh interval.
func TestLookupSeesAnAddWithinTheRefresh(t *testing.T) {
	db := pgtest.New(t)
	admin := pgtest.Connect(t, db.AdminURL)
	first, second := open(t, db), open(t, db)
	for _, d := range []*directory.Directory{first, second} {
		if _, found := lookup(t, d, "dave"); found {
			t.Fatal("dave found before he was added")
		}
	}
	add(t, admin, directory.User{Name: "dave", Tenant: "acme"})
	for _, d := range []*directory.Directory{first, second} {
		eventually(t, "dave found", func() bool {
			u, found := lookup(t, d, "dave")
			return found && u.Tenant == "acme"
		})
		waitForChange(t, d, "dave")
	}
}

func TestChangesReportsARemovedUser(t *testing.T) {
	db := pgtest.New(t)
	admin := pgtest.Connect(t, db.AdminURL)
	add(t, admin, directory.User{Name: "erin", Tenant: "acme"})
	d := open(t, db)
	if _, found := lookup(t, d, "erin"); !found {
		t.Fatal("erin not found")
	}
	if err := directory.Remove(ctx, admin, "erin"); err != nil {
		t.Fatal(err)
	}
	waitForChange(t, d, "erin")
	if _, found := lookup(t, d, "erin"); found {
		t.Error("erin still found after Changes() reported her removal")
	}
}

func TestEveryKindOfChangeReachesTheCache(t *testing.T) {
	db := pgtest.New(t)
	admin := pgtest.Connect(t, db.AdminURL)
	add(t, admin, directory.User{Name: "frank", Tenant: "acme"})
	d := open(t, db)
	if u, _ := lookup(t, d, "frank"); u.Disabled {
		t.Fatal("frank disabled from the start")
	}

	if err := directory.SetDisabled(ctx, admin, "frank", true); err != nil {
		t.Fatal(err)
	}
	waitForChange(t, d, "frank")
	if u, found := lookup(t, d, "frank"); !found || !u.Disabled {
		t.Errorf("after disabling: %+v, found %v", u, found)
	}

	newVerifier := verifier(t, "new password")
	if err := directory.SetVerifier(ctx, admin, "frank", newVerifier); err != nil {
		t.Fatal(err)
	}
	if err := directory.SetDisabled(ctx, admin, "frank", false); err != nil {
		t.Fatal(err)
	}
	eventually(t, "frank enabled with the new verifier", func() bool {
		u, _ := lookup(t, d, "frank")
		return !u.Disabled && u.Verifier == newVerifier
	})

	if err := directory.SetTenants(ctx, admin, "frank", "", []string{"acme", "globex"}, "globex"); err != nil {
		t.Fatal(err)
	}
	if err := directory.SetMaxConnections(ctx, admin, "frank", 2); err != nil {
		t.Fatal(err)
	}
	eventually(t, "frank's new tenants and limit", func() bool {
		u, _ := lookup(t, d, "frank")
		return u.Tenant == "" && slices.Equal(u.Tenants, []string{"acme", "globex"}) && u.DefaultTenant == "globex" && u.MaxConnections == 2
	})
	if err := directory.SetTenants(ctx, admin, "frank", "", []string{"acme"}, "globex"); err == nil || !strings.Contains(err.Error(), "not one of the user's tenants") {
		t.Errorf("a default outside the tenants: %v", err)
	}
}

func TestWritesNameTheirProblem(t *testing.T) {
	db := pgtest.New(t)
	admin := pgtest.Connect(t, db.AdminURL)
	add(t, admin, directory.User{Name: "grace", Tenant: "acme"})

	if err := directory.Add(ctx, admin, directory.User{Name: "grace", Tenant: "acme", Verifier: verifier(t, "x")}); !errors.Is(err, directory.ErrExists) {
		t.Errorf("adding grace twice: %v", err)
	}
	for name, err := range map[string]error{
		"remove":  directory.Remove(ctx, admin, "nobody"),
		"passwd":  directory.SetVerifier(ctx, admin, "nobody", verifier(t, "x")),
		"disable": directory.SetDisabled(ctx, admin, "nobody", true),
	} {
		if !errors.Is(err, directory.ErrNoUser) || !strings.Contains(err.Error(), `"nobody"`) {
			t.Errorf("%s of an unknown user: %v", name, err)
		}
	}
	if err := directory.SetVerifier(ctx, admin, "grace", "hunter2"); err == nil || !strings.Contains(err.Error(), "not a SCRAM-SHA-256 verifier") {
		t.Errorf("a plaintext password as verifier: %v", err)
	}
	// As the directory role, which may only read.
	reader := pgtest.Connect(t, db.DirectoryURL)
	if err := directory.Remove(ctx, reader, "grace"); err == nil || !strings.Contains(err.Error(), "superuser") {
		t.Errorf("removing as the directory role: %v", err)
	}
	list, err := directory.List(ctx, admin)
	if err != nil || len(list) != 1 || list[0].Name != "grace" {
		t.Errorf("list after refused writes: %+v, %v", list, err)
	}
}

func TestBadUsersAreRefused(t *testing.T) {
	db := pgtest.New(t)
	admin := pgtest.Connect(t, db.AdminURL)
	good := verifier(t, "pw")
	cases := []struct {
		name string
		user directory.User
		want string
	}{
		{"bad user name", directory.User{Name: "o'brien", Tenant: "acme", Verifier: good}, `user name "o'brien": user names use letters`},
		{"user name too long", directory.User{Name: strings.Repeat("u", 64), Tenant: "acme", Verifier: good}, "user names use"},
		{"bad tenant", directory.User{Name: "h", Tenant: "acme; DROP", Verifier: good}, `tenant "acme; DROP": tenant names use`},
		{"bad tenant in a list", directory.User{Name: "h", Tenants: []string{"acme", "-x"}, Verifier: good}, `tenant "-x": tenant names use`},
		{"tenant twice", directory.User{Name: "h", Tenants: []string{"acme", "acme"}, Verifier: good}, `tenant "acme" is listed twice`},
		{"no tenant", directory.User{Name: "h", Verifier: good}, "needs a tenant or a list of tenants"},
		{"both", directory.User{Name: "h", Tenant: "acme", Tenants: []string{"acme"}, Verifier: good}, "not both"},
		{"default outside the list", directory.User{Name: "h", Tenants: []string{"acme"}, DefaultTenant: "globex", Verifier: good}, `default tenant "globex" is not one of`},
		{"default with one tenant", directory.User{Name: "h", Tenant: "acme", DefaultTenant: "acme", Verifier: good}, "only for users with a list"},
		{"plaintext password", directory.User{Name: "h", Tenant: "acme", Verifier: "hunter2"}, "not a SCRAM-SHA-256 verifier"},
		{"negative limit", directory.User{Name: "h", Tenant: "acme", Verifier: good, MaxConnections: -1}, "max connections -1"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := directory.Add(ctx, admin, c.user)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %v, want %q", err, c.want)
			}
		})
	}
	if list, err := directory.List(ctx, admin); err != nil || len(list) != 0 {
		t.Errorf("users after refused adds: %+v, %v", list, err)
	}
}

// Cached answers serve while the directory cannot be reached; names not cached get an error; and
// when it is back, so is everything.
func TestCachedAnswersServeWhileTheDatabaseIsUnreachable(t *testing.T) {
	db := pgtest.New(t)
	admin := pgtest.Connect(t, db.AdminURL)
	add(t, admin, directory.User{Name: "heidi", Tenant: "acme"})
	add(t, admin, directory.User{Name: "ivan", Tenant: "acme"})
	d := open(t, db)
	lookup(t, d, "heidi")
	lookup(t, d, "nobody")

	database := pgx.Identifier{db.Name}.Sanitize()
	exec(t, admin, "REVOKE CONNECT ON DATABASE "+database+" FROM PUBLIC, tenantproxy_directory")
	exec(t, admin, `SELECT pg_terminate_backend(pid) FROM pg_stat_activity
		WHERE datname = current_database() AND usename = 'tenantproxy_directory'`)

	if u, found, err := d.Lookup(ctx, "heidi"); err != nil || !found || u.Name != "heidi" {
		t.Errorf("heidi while unreachable: %+v, %v, %v", u, found, err)
	}
	if _, found, err := d.Lookup(ctx, "nobody"); err != nil || found {
		t.Errorf("nobody while unreachable: %v, %v", found, err)
	}
	_, _, err := d.Lookup(ctx, "ivan")
	if err == nil || !strings.Contains(err.Error(), "tenant directory") {
		t.Fatalf("ivan while unreachable: %v, want an error naming the tenant directory", err)
	}

	exec(t, admin, "GRANT CONNECT ON DATABASE "+database+" TO tenantproxy_directory")
	eventually(t, "ivan found once the directory is back", func() bool {
		u, found, err := d.Lookup(ctx, "ivan")
		return err == nil && found && u.Name == "ivan"
	})
	if err := directory.Remove(ctx, admin, "heidi"); err != nil {
		t.Fatal(err)
	}
	waitForChange(t, d, "heidi")
}

// When the rows after what an instance has read are pruned before it reads them, it cannot know
// what changed: it forgets its cache and reports every user it had cached.
func TestLosingTrackFlushesTheCache(t *testing.T) {
	db := pgtest.New(t)
	admin := pgtest.Connect(t, db.AdminURL)
	add(t, admin, directory.User{Name: "judy", Tenant: "acme"})
	add(t, admin, directory.User{Name: "ken", Tenant: "acme"})
	d := open(t, db)
	if u, _ := lookup(t, d, "judy"); u.Disabled {
		t.Fatal("judy disabled from the start")
	}

	// Disable judy and lose her change-log row in the same transaction, as a prune would.
	tx, err := admin.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, sql := range []string{
		"UPDATE tenantproxy_directory.users SET disabled = true WHERE name = 'judy'",
		"UPDATE tenantproxy_directory.users SET max_connections = 3 WHERE name = 'ken'",
		"DELETE FROM tenantproxy_directory.user_changes WHERE version < (SELECT max(version) FROM tenantproxy_directory.user_changes)",
	} {
		if _, err := tx.Exec(ctx, sql); err != nil {
			t.Fatal(err)
		}
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	waitForChange(t, d, "judy")
	if u, _ := lookup(t, d, "judy"); !u.Disabled {
		t.Errorf("judy = %+v: the stale cached answer survived", u)
	}
}

// The proxy opens the directory from its configuration: [directory] with what it leaves out taken
// from [backend].
func TestOpenConfig(t *testing.T) {
	db := pgtest.New(t)
	admin := pgtest.Connect(t, db.AdminURL)
	add(t, admin, directory.User{Name: "olga", Tenant: "acme"})
	file := fmt.Sprintf(`
[backend]
host = %q
port = %d
database = %q
sslmode = "disable"

[directory]
password = %q
refresh = "150ms"
`, db.Host, db.Port, db.Name, pgtest.DirectoryPassword)
	cfg, err := config.Parse("directory.toml", []byte(file))
	if err != nil {
		t.Fatal(err)
	}
	d, err := directory.OpenConfig(ctx, cfg.Directory, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	if u, found := lookup(t, d, "olga"); !found || u.Tenant != "acme" {
		t.Errorf("olga through the config's directory: %+v, %v", u, found)
	}
	d.Close()
	if _, open := <-d.Changes(); open {
		t.Error("Changes() still open after Close")
	}
}

func TestOpenSaysWhatIsWrong(t *testing.T) {
	db := pgtest.New(t)
	if _, err := directory.Open(ctx, db.AppURL, directory.Options{}); err == nil || !strings.Contains(err.Error(), "connect as tenantproxy_directory") {
		t.Errorf("opening as the app role: %v", err)
	}
	admin := pgtest.Connect(t, db.AdminURL)
	bare := db.Name + "_bare"
	exec(t, admin, "CREATE DATABASE "+bare)
	t.Cleanup(func() { admin.Exec(ctx, "DROP DATABASE "+bare+" WITH (FORCE)") })
	if _, err := directory.Open(ctx, db.AdminURLFor(bare), directory.Options{}); err == nil || !strings.Contains(err.Error(), "run tenantproxy migrate up") {
		t.Errorf("opening a database without a directory: %v", err)
	}
}

func exec(t *testing.T, conn *pgx.Conn, sql string) {
	t.Helper()
	if _, err := conn.Exec(ctx, sql); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

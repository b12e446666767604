package proxy_test

import (
	"context"
	"fmt"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/tenantproxy/tenantproxy/config"
	"github.com/tenantproxy/tenantproxy/internal/pgtest"
)

// withAdmin adds the console admin "ops" (password as every test user's).
func withAdmin(cfg *config.Config) {
	cfg.Admins = map[string]config.Admin{"ops": {Password: verifier()}}
}

// consoleURL is a URL of the admin console for user.
func (p *testProxy) consoleURL(user string) string {
	return fmt.Sprintf("postgres://%s:%s@%s/%s?sslmode=disable&default_query_exec_mode=simple_protocol",
		user, password, p.addr, config.AdminDatabase)
}

// console opens a connection to the admin console as ops.
func (p *testProxy) console(t testing.TB) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(ctx, p.consoleURL("ops"))
	if err != nil {
		t.Fatalf("connecting to the admin console: %v", err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

// consoleRows runs a console command and returns its rows, each by column name.
func consoleRows(t testing.TB, conn *pgx.Conn, command string) []map[string]string {
	t.Helper()
	rows, err := conn.Query(ctx, command)
	if err != nil {
		t.Fatalf("%s: %v", command, err)
	}
	defer rows.Close()
	var out []map[string]string
	for rows.Next() {
		row := map[string]string{}
		for i, f := range rows.FieldDescriptions() {
			row[f.Name] = string(rows.RawValues()[i])
		}
		out = append(out, row)
	}
	if err := rows.Err(); err != nil {
		t.Fatalf("%s: %v", command, err)
	}
	return out
}

// rowWith is the first row whose column key is value (nil when none).
func rowWith(rows []map[string]string, key, value string) map[string]string {
	for _, r := range rows {
		if r[key] == value {
			return r
		}
	}
	return nil
}

func TestConsole(t *testing.T) {
	p := startProxy(t, pgtest.New(t), "transaction", withAdmin)
	alice := p.connect(t, "alice", "application_name=billing")
	mustExec(t, alice, "SELECT 1")
	if _, err := alice.Exec(ctx, "SELECT 1/0"); err == nil {
		t.Fatal("SELECT 1/0 succeeded")
	}
	console := p.console(t)

	help := consoleRows(t, console, "SHOW HELP")
	for _, usage := range []string{"SHOW POOLS", "SHOW CLIENTS", "SHOW SERVERS", "SHOW TENANTS", "SHOW STATS", "SHOW CONFIG",
		"SHOW VERSION", "RELOAD", "PAUSE [tenant]", "RESUME [tenant]", "KILL tenant", "SHUTDOWN"} {
		if rowWith(help, "command", usage) == nil {
			t.Errorf("SHOW HELP does not list %q: %v", usage, help)
		}
	}

	pools := consoleRows(t, console, "show pools") // commands are case-insensitive
	if len(pools) != 1 || pools[0]["mode"] != "transaction" || pools[0]["size"] != "10" || pools[0]["clients"] != "2" {
		t.Errorf("SHOW POOLS = %v; want one pool, transaction, size 10, 2 clients (alice and the console)", pools)
	}

	clients := consoleRows(t, console, "SHOW CLIENTS")
	if r := rowWith(clients, "user", "alice"); r == nil || r["tenant"] != "acme" || r["state"] != "idle" || r["application_name"] != "billing" {
		t.Errorf("SHOW CLIENTS: alice's row = %v; want tenant acme, idle, application billing (all: %v)", r, clients)
	}
	if r := rowWith(clients, "user", "ops"); r == nil || r["state"] != "console" {
		t.Errorf("SHOW CLIENTS: the console's row = %v (all: %v)", r, clients)
	}

	servers := consoleRows(t, console, "SHOW SERVERS")
	if r := rowWith(servers, "tenant", "acme"); r == nil || r["state"] != "idle" || r["pid"] == "" {
		t.Errorf("SHOW SERVERS = %v; want the idle session alice used, last with tenant acme", servers)
	}

	tenants := consoleRows(t, console, "SHOW TENANTS")
	if r := rowWith(tenants, "tenant", "acme"); r == nil || r["clients"] != "1" || r["backends"] != "0" || r["login_rate"] != "100" || r["paused"] != "false" {
		t.Errorf("SHOW TENANTS: acme = %v (all: %d rows)", r, len(tenants))
	}

	stats := consoleRows(t, console, "SHOW STATS")
	acme := rowWith(stats, "tenant", "acme")
	if acme == nil || acme["logins"] != "1" || atoi(t, acme["statements"]) < 2 || acme["errors"] != "1" || atoi(t, acme["transactions"]) < 2 {
		t.Errorf("SHOW STATS: acme = %v; want 1 login, 2 statements or more, 1 error, 2 transactions or more", acme)
	}
	if r := rowWith(stats, "tenant", "globex"); r != nil && r["statements"] != "0" {
		t.Errorf("SHOW STATS: globex did nothing, but its row is %v", r)
	}

	settings := consoleRows(t, console, "SHOW CONFIG")
	for key, want := range map[string][2]string{
		"backend.password": {"****", "restart"},
		"pool.size":        {"10", "restart"},
		"pool.mode":        {`"transaction"`, "restart"},
		"log.level":        {`"info"`, "yes"},
	} {
		if r := rowWith(settings, "key", key); r == nil || r["value"] != want[0] || r["live"] != want[1] {
			t.Errorf("SHOW CONFIG: %s = %v; want value %s, live %s", key, r, want[0], want[1])
		}
	}
	if r := rowWith(settings, "key", "users"); r == nil || !strings.Contains(r["value"], "alice") || strings.Contains(r["value"], "SCRAM") {
		t.Errorf("SHOW CONFIG: users = %v; want the names only", r)
	}

	if v := consoleRows(t, console, "SHOW VERSION"); len(v) != 1 || v[0]["version"] == "" {
		t.Errorf("SHOW VERSION = %v", v)
	}

	_, err := console.Exec(ctx, "SHOW NONSENSE")
	wantCode(t, err, "42601", "unknown admin console command")
	_, err = console.Exec(ctx, "PAUSE acme globex")
	wantCode(t, err, "42601", "usage: PAUSE [tenant]")
	_, err = console.Exec(ctx, "KILL")
	wantCode(t, err, "42601", "usage: KILL tenant")
	_, err = console.Exec(ctx, "PAUSE 'no/such'")
	wantCode(t, err, "42601", "is not a tenant name")
	// The extended protocol is refused, and the connection stays usable.
	err = console.PgConn().ExecParams(ctx, "SHOW POOLS", nil, nil, nil, nil).Read().Err
	wantCode(t, err, "0A000", "simple query protocol only")
	if v := consoleRows(t, console, "SHOW VERSION; SHOW POOLS"); len(v) != 1 {
		t.Errorf("two commands in one Query: %v", v)
	}

	// psql, as an operator would use it: every command but RELOAD (TestReloadFile) and
	// SHUTDOWN (cmd/tenantproxy's TestServeShutdownFromTheConsole).
	for _, c := range []struct{ command, want string }{
		{"SHOW HELP", "SHOW STATS|each tenant's traffic"},
		{"SHOW POOLS", "|transaction|10|"},
		{"SHOW CLIENTS", "|alice|acme|idle|"},
		{"SHOW SERVERS", "|idle|acme|"},
		{"SHOW TENANTS", "acme|1|0|0|"},
		{"SHOW STATS", "acme|1|0|"},
		{"SHOW CONFIG", "pool.mode|\"transaction\"|restart"},
		{"SHOW VERSION", "tenantproxy "},
		{"PAUSE t05", "PAUSE"},
		{"RESUME t05", "RESUME"},
		{"KILL t06", `NOTICE:  0 client(s) of tenant "t06" disconnected`},
		{"RESUME", "RESUME"},
	} {
		out, err := psqlConsole(p, c.command)
		if err != nil || !strings.Contains(out, c.want) {
			t.Errorf("psql %s: %v; want %q in\n%s", c.command, err, c.want, out)
		}
	}

	// Nobody else gets in, and the console reaches no tenant's data.
	_, err = pgx.Connect(ctx, p.consoleURL("alice"))
	wantCode(t, err, "28000", `user "alice" is not a tenantproxy admin`)
	_, err = pgx.Connect(ctx, strings.Replace(p.consoleURL("ops"), "secret", "wrong", 1))
	wantCode(t, err, "28P01")
	_, err = pgx.Connect(ctx, p.url("ops"))
	wantCode(t, err, "28P01")
	for _, sql := range []string{"SELECT 1", "SHOW app.current_tenant_id"} {
		_, err = console.Exec(ctx, sql)
		wantCode(t, err, "42601", "unknown admin console command")
	}
	if got := metricValue(p, "tenantproxy_auth_failures_total", map[string]string{"reason": "console"}); got != 1 {
		t.Errorf("auth_failures_total{reason=console} = %v, want 1", got)
	}
}

// psqlConsole runs one console command with psql, printing command tags and notices too.
func psqlConsole(p *testProxy, command string) (string, error) {
	url := strings.Replace(p.consoleURL("ops"), "&default_query_exec_mode=simple_protocol", "", 1)
	out, err := exec.Command("psql", "-X", "-At", "-v", "ON_ERROR_STOP=1", "-d", url, "-c", command).CombinedOutput()
	return string(out), err
}

func atoi(t testing.TB, s string) int {
	t.Helper()
	n, err := strconv.Atoi(s)
	if err != nil {
		t.Fatalf("%q is not a number", s)
	}
	return n
}

// consoleExec runs a console command on a new console connection and returns its notices.
func consoleExec(p *testProxy, command string) ([]string, error) {
	var notices []string
	cfg, err := pgx.ParseConfig(p.consoleURL("ops"))
	if err != nil {
		return nil, err
	}
	cfg.OnNotice = func(_ *pgconn.PgConn, n *pgconn.Notice) { notices = append(notices, n.Message) }
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, err
	}
	defer conn.Close(context.Background())
	_, err = conn.Exec(ctx, command)
	return notices, err
}

// stateOf is the state SHOW CLIENTS gives user's first client.
func stateOf(t testing.TB, console *pgx.Conn, user string) string {
	return rowWith(consoleRows(t, console, "SHOW CLIENTS"), "user", user)["state"]
}

// tenantOrError is conn's tenant, or the error that asking for it gave (for goroutines, which
// may not fail the test).
func tenantOrError(conn *pgx.Conn) string {
	var s string
	if err := conn.QueryRow(ctx, "SELECT current_setting('app.current_tenant_id')").Scan(&s); err != nil {
		return err.Error()
	}
	return s
}

func TestConsolePauseResumeKill(t *testing.T) {
	p := startProxy(t, pgtest.New(t), "transaction", withAdmin, func(cfg *config.Config) {
		cfg.ShutdownTimeout = config.Duration{Duration: 30 * time.Second}
	})
	console := p.console(t)
	alice := p.connect(t, "alice")
	bob := p.connect(t, "bob")

	// PAUSE waits until acme's open transaction ends; other tenants go on.
	mustExec(t, alice, "BEGIN")
	mustExec(t, alice, "SELECT 1")
	paused := make(chan error, 1)
	go func() { _, err := consoleExec(p, "PAUSE acme"); paused <- err }()
	pgtest.WaitFor(t, "acme to show as paused", func() bool {
		return rowWith(consoleRows(t, console, "SHOW TENANTS"), "tenant", "acme")["paused"] == "true"
	})
	if r := rowWith(consoleRows(t, console, "SHOW TENANTS"), "tenant", "acme"); r["backends"] != "1" {
		t.Fatalf("acme holds %s backends, want 1 (its open transaction)", r["backends"])
	}
	select {
	case err := <-paused:
		t.Fatalf("PAUSE returned (%v) while acme still held a backend", err)
	default:
	}
	if got := queryString(t, bob, "SELECT current_setting('app.current_tenant_id')"); got != "globex" {
		t.Errorf("bob during acme's pause: %q", got)
	}
	mustExec(t, alice, "COMMIT")
	if err := <-paused; err != nil {
		t.Fatalf("PAUSE acme: %v", err)
	}

	// A paused tenant's next request waits (with no checkout timeout) until RESUME.
	done := make(chan string, 1)
	go func() { done <- tenantOrError(alice) }()
	pgtest.WaitFor(t, "alice to wait", func() bool { return stateOf(t, console, "alice") == "waiting" })
	mustExec(t, console, "RESUME acme")
	if got := <-done; got != "acme" {
		t.Fatalf("alice after RESUME: %q", got)
	}
	_, err := console.Exec(ctx, "RESUME acme")
	wantCode(t, err, "55000", `tenant "acme" is not paused`)

	// PAUSE gives up (55000, the pause stays) when the tenant holds on past shutdown_timeout.
	shorter := *p.srv.Config()
	shorter.ShutdownTimeout = config.Duration{Duration: 200 * time.Millisecond}
	if _, err := p.srv.Reload(&shorter); err != nil {
		t.Fatal(err)
	}
	mustExec(t, bob, "BEGIN")
	mustExec(t, bob, "SELECT 1")
	_, err = console.Exec(ctx, "PAUSE globex")
	wantCode(t, err, "55000", "still held")
	if r := rowWith(consoleRows(t, console, "SHOW TENANTS"), "tenant", "globex"); r["paused"] != "true" {
		t.Errorf("globex after PAUSE timed out: %v", r)
	}
	mustExec(t, bob, "COMMIT")
	mustExec(t, console, "RESUME")

	// KILL ends every client of the tenant and pauses it: a new client logs in but waits.
	notices, err := consoleExec(p, "KILL acme")
	if err != nil || len(notices) != 1 || !strings.Contains(notices[0], `1 client(s) of tenant "acme" disconnected`) {
		t.Fatalf("KILL acme: %v, notices %v", err, notices)
	}
	_, err = alice.Exec(ctx, "SELECT 1")
	wantCode(t, err, "57P01", "terminating connection due to administrator command")
	go func() {
		// A login ends with a session's parameters: it too waits for RESUME.
		conn, err := pgx.Connect(ctx, p.url("carol")) // tenant acme by default
		if err != nil {
			done <- err.Error()
			return
		}
		defer conn.Close(context.Background())
		done <- tenantOrError(conn)
	}()
	pgtest.WaitFor(t, "carol to wait", func() bool {
		return rowWith(consoleRows(t, console, "SHOW TENANTS"), "tenant", "acme")["waiting"] == "1"
	})
	mustExec(t, bob, "SELECT 1")
	mustExec(t, console, "RESUME")
	if got := <-done; got != "acme" {
		t.Fatalf("carol after RESUME: %q", got)
	}
	_, err = console.Exec(ctx, "RESUME")
	wantCode(t, err, "55000", "nothing is paused")
	if !strings.Contains(p.logs.String(), "client ended by the operator") {
		t.Error("the KILL is not logged")
	}
	if slices.ContainsFunc(consoleRows(t, console, "SHOW CLIENTS"), func(r map[string]string) bool { return r["user"] == "alice" }) {
		t.Error("alice is still listed after KILL")
	}
}

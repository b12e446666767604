package main

import (
	"bufio"
	"context"
	wirebin "encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/tenantproxy/tenantproxy/internal/pgtest"
	"github.com/tenantproxy/tenantproxy/internal/scramsecret"
	"github.com/tenantproxy/tenantproxy/migrations"
)

// password is every test user's password.
const password = "secret"

var testVerifier = sync.OnceValue(func() string {
	v, err := scramsecret.New(password)
	if err != nil {
		panic(err)
	}
	return v
})

// serveConfig is a configuration file serving db in transaction mode, with the admin ops, the
// named users among alice (acme) and bob (globex), and extra appended (more keys and sections).
func serveConfig(db *pgtest.DB, listen string, users []string, extra string) string {
	tenants := map[string]string{"alice": "acme", "bob": "globex"}
	text := fmt.Sprintf(`listen = %q
metrics_listen = "127.0.0.1:0"
database = "app"
shutdown_timeout = "30s"
%s
[backend]
host = %q
port = %d
database = %q
user = %q
password = %q
sslmode = "disable"
[pool]
mode = "transaction"
size = 4
[tenancy]
tenants = ["acme", "globex"]
[log]
level = "info"
[admins.ops]
password = %q
`, listen, extra, db.Host, db.Port, db.Name, migrations.AppRole, pgtest.AppPassword, testVerifier())
	for _, u := range users {
		text += fmt.Sprintf("[users.%s]\npassword = %q\ntenant = %q\n", u, testVerifier(), tenants[u])
	}
	return text
}

// writeFile replaces file's contents at once (a rename), as a deployment does.
func writeFile(t *testing.T, file, text string) {
	t.Helper()
	if err := os.WriteFile(file+".tmp", []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(file+".tmp", file); err != nil {
		t.Fatal(err)
	}
}

// server is a running `tenantproxy serve`.
type server struct {
	cmd     *exec.Cmd
	addr    string // where clients connect
	metrics string // the metrics listener
	logs    *lockedBuffer
	exited  chan struct{}
	err     error // Wait's, once exited is closed
}

// serve starts `tenantproxy serve --config file` and waits until it serves.
func serve(t *testing.T, file string) *server {
	t.Helper()
	s := &server{cmd: exec.Command(binary, "serve", "--config", file), logs: &lockedBuffer{}, exited: make(chan struct{})}
	s.cmd.Env = append(os.Environ(), "TENANTPROXY_LISTEN=", "TENANTPROXY_METRICS_LISTEN=")
	stderr, err := s.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	addrs := make(chan [2]string, 1)
	go func() {
		// Log lines are JSON: the listeners' addresses come from "serving" lines.
		var metrics string
		scanner := bufio.NewScanner(stderr)
		for scanner.Scan() {
			line := scanner.Text()
			s.logs.Write([]byte(line + "\n"))
			var entry map[string]any
			if json.Unmarshal([]byte(line), &entry) != nil {
				continue
			}
			if m, ok := entry["metrics_listen"].(string); ok {
				metrics = m
			}
			if l, ok := entry["listen"].(string); ok && entry["message"] == "tenantproxy serving" {
				addrs <- [2]string{l, metrics}
			}
		}
		io.Copy(io.Discard, stderr)
		s.err = s.cmd.Wait()
		close(s.exited)
	}()
	t.Cleanup(func() {
		s.cmd.Process.Kill()
		<-s.exited
		if t.Failed() {
			t.Logf("tenantproxy serve's log:\n%s", s.logs.String())
		}
	})
	select {
	case a := <-addrs:
		s.addr, s.metrics = a[0], a[1]
	case <-s.exited:
		t.Fatalf("tenantproxy serve exited before serving: %v\n%s", s.err, s.logs.String())
	case <-time.After(60 * time.Second):
		t.Fatalf("tenantproxy serve did not serve within a minute:\n%s", s.logs.String())
	}
	return s
}

func (s *server) url(user string) string {
	return fmt.Sprintf("postgres://%s:%s@%s/app?sslmode=disable", user, password, s.addr)
}

func (s *server) connect(t *testing.T, user string) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(context.Background(), s.url(user))
	if err != nil {
		t.Fatalf("connecting as %s: %v", user, err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

func (s *server) signal(t *testing.T, sig syscall.Signal) {
	t.Helper()
	if err := s.cmd.Process.Signal(sig); err != nil {
		t.Fatal(err)
	}
}

// waitLog waits until the log has a line containing text.
func (s *server) waitLog(t *testing.T, text string) {
	t.Helper()
	pgtest.WaitFor(t, "the log to say "+text, func() bool { return strings.Contains(s.logs.String(), text) })
}

// get fetches a path of the metrics listener: its status and body.
func (s *server) get(t *testing.T, path string) (int, string) {
	t.Helper()
	resp, err := http.Get("http://" + s.metrics + path)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

func tenantOf(t *testing.T, conn *pgx.Conn) string {
	t.Helper()
	var s string
	if err := conn.QueryRow(context.Background(), "SHOW app.current_tenant_id").Scan(&s); err != nil {
		t.Fatalf("SHOW app.current_tenant_id: %v", err)
	}
	return s
}

// SIGHUP reloads the file: users change at once, open transactions go on, keys that need a
// restart keep their values (and the log says so), and a broken file changes nothing.
func TestServeReloadsOnSIGHUP(t *testing.T) {
	ctx := context.Background()
	db := pgtest.New(t)
	file := filepath.Join(t.TempDir(), "tenantproxy.toml")
	writeFile(t, file, serveConfig(db, "127.0.0.1:0", []string{"alice"}, ""))
	s := serve(t, file)
	alice := s.connect(t, "alice")
	tx, err := alice.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pgx.Connect(ctx, s.url("bob")); err == nil {
		t.Fatal("bob logged in before being added")
	}

	next := strings.Replace(serveConfig(db, "127.0.0.1:0", []string{"alice", "bob"}, ""), "size = 4", "size = 5", 1)
	writeFile(t, file, strings.Replace(next, `level = "info"`, `level = "debug"`, 1))
	s.signal(t, syscall.SIGHUP)
	s.waitLog(t, "configuration reloaded")
	if got := tenantOf(t, s.connect(t, "bob")); got != "globex" {
		t.Errorf("bob after SIGHUP: %q", got)
	}
	if !strings.Contains(s.logs.String(), `"keys":["pool.size"]`) {
		t.Error("the log does not name pool.size as kept until a restart")
	}
	if err := tx.Commit(ctx); err != nil {
		t.Errorf("alice's transaction across the reload: %v", err)
	}
	s.waitLog(t, `"level":"debug"`) // the new log level is in force

	writeFile(t, file, "[[[ not toml")
	s.signal(t, syscall.SIGHUP)
	s.waitLog(t, "configuration not reloaded: the running one is kept")
	if got := tenantOf(t, s.connect(t, "bob")); got != "globex" {
		t.Errorf("bob after a broken file: %q", got)
	}
	if got := tenantOf(t, alice); got != "acme" {
		t.Errorf("alice after both reloads: %q", got)
	}
}

// SIGTERM drains: new clients are refused, /readyz fails while /healthz answers, an open
// transaction may commit, then its client is told and the process exits 0.
func TestServeDrainsOnSIGTERM(t *testing.T) {
	ctx := context.Background()
	db := pgtest.New(t)
	file := filepath.Join(t.TempDir(), "tenantproxy.toml")
	writeFile(t, file, serveConfig(db, "127.0.0.1:0", []string{"alice", "bob"}, ""))
	s := serve(t, file)

	if code, body := s.get(t, "/healthz"); code != 200 || body != "ok\n" {
		t.Errorf("/healthz = %d %q", code, body)
	}
	if code, body := s.get(t, "/readyz"); code != 200 || body != "ready\n" {
		t.Errorf("/readyz = %d %q", code, body)
	}
	alice := s.connect(t, "alice")
	tx, err := alice.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, `INSERT INTO llmspell.entities (tenant_id, entity_type, name)
		VALUES ('acme', 'thing', 'committed while draining')`); err != nil {
		t.Fatal(err)
	}
	if _, body := s.get(t, "/metrics"); !strings.Contains(body, `tenantproxy_tenant_logins_total{tenant="acme"} 1`) {
		t.Errorf("/metrics has no login for acme:\n%s", grepLines(body, "tenant_logins"))
	}
	bob := s.connect(t, "bob") // idle: told at once

	s.signal(t, syscall.SIGTERM)
	s.waitLog(t, "shutting down: letting transactions in flight finish")
	if code, _ := s.get(t, "/readyz"); code != http.StatusServiceUnavailable {
		t.Errorf("/readyz while draining = %d, want 503", code)
	}
	if code, _ := s.get(t, "/healthz"); code != 200 {
		t.Errorf("/healthz while draining = %d, want 200", code)
	}
	if _, err := pgx.Connect(ctx, s.url("bob")); err == nil {
		t.Error("a new client was accepted while draining")
	}
	if _, err := bob.Exec(ctx, "SELECT 1"); sqlstate(err) != "57P01" {
		t.Errorf("bob, idle at SIGTERM: %v, want 57P01", err)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatalf("alice's transaction while draining: %v", err)
	}
	select {
	case <-s.exited:
	case <-time.After(30 * time.Second):
		t.Fatal("tenantproxy did not exit after its last transaction ended")
	}
	if s.err != nil {
		t.Errorf("exit: %v, want status 0", s.err)
	}
	if got := psql(t, db.AdminURL, "SELECT count(*) FROM llmspell.entities WHERE name = 'committed while draining'"); got != "1" {
		t.Errorf("the transaction committed while draining left %s rows", got)
	}
}

// The console's SHUTDOWN drains as SIGTERM does.
func TestServeShutdownFromTheConsole(t *testing.T) {
	db := pgtest.New(t)
	file := filepath.Join(t.TempDir(), "tenantproxy.toml")
	writeFile(t, file, serveConfig(db, "127.0.0.1:0", []string{"alice"}, ""))
	s := serve(t, file)
	console := fmt.Sprintf("postgres://ops:%s@%s/tenantproxy?sslmode=disable", password, s.addr)
	if out := psql(t, console, "SHUTDOWN"); !strings.Contains(out, "NOTICE:  shutting down") {
		t.Errorf("SHUTDOWN said %q", out)
	}
	select {
	case <-s.exited:
	case <-time.After(30 * time.Second):
		t.Fatal("tenantproxy did not exit after SHUTDOWN")
	}
	if s.err != nil || !strings.Contains(s.logs.String(), "the admin console's SHUTDOWN") {
		t.Errorf("exit after SHUTDOWN: %v", s.err)
	}
}

// Behind a load balancer, a cancel request may reach another instance than its query's: with
// [peers], each instance's cancel keys name it, and the others forward the request to it.
func TestServeForwardsCancelToPeers(t *testing.T) {
	ctx := context.Background()
	db := pgtest.New(t)
	hosts := []string{"127.0.0.1", "127.0.0.2", "127.0.0.3"}
	port := portFreeOn(t, hosts)
	peers := "[peers]\n"
	for i, h := range hosts {
		peers += fmt.Sprintf("%d = \"%s:%d\"\n", i+1, h, port)
	}
	var servers []*server
	for i, h := range hosts {
		file := filepath.Join(t.TempDir(), "tenantproxy.toml")
		writeFile(t, file, serveConfig(db, fmt.Sprintf("%s:%d", h, port), []string{"alice"}, fmt.Sprintf("peer_id = %d", i+1))+peers)
		servers = append(servers, serve(t, file))
	}
	for i, target := range servers {
		conn := target.connect(t, "alice")
		done := make(chan error, 1)
		go func() {
			_, err := conn.Exec(ctx, "SELECT pg_sleep(60)")
			done <- err
		}()
		admin := pgtest.Connect(t, db.AdminURL)
		pgtest.WaitFor(t, "the sleep to run", func() bool {
			var n int
			admin.QueryRow(ctx, "SELECT count(*) FROM pg_stat_activity WHERE query = 'SELECT pg_sleep(60)' AND state = 'active'").Scan(&n)
			return n == 1
		})
		// The request goes to the next instance, which forwards it.
		via := servers[(i+1)%len(servers)]
		sendCancel(t, via.addr, conn.PgConn())
		select {
		case err := <-done:
			if sqlstate(err) != "57014" {
				t.Errorf("the query on instance %d, cancelled through instance %d: %v, want 57014", i+1, (i+1)%3+1, err)
			}
		case <-time.After(30 * time.Second):
			t.Fatalf("the query on instance %d was not cancelled through instance %d", i+1, (i+1)%3+1)
		}
	}
}

// sendCancel sends a CancelRequest for conn's query to addr, as a client behind a load balancer
// would when the balancer picks another instance.
func sendCancel(t *testing.T, addr string, conn *pgconn.PgConn) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	msg := wirebin.BigEndian.AppendUint32(nil, uint32(12+len(conn.SecretKey())))
	msg = wirebin.BigEndian.AppendUint32(msg, 80877102)
	msg = wirebin.BigEndian.AppendUint32(msg, conn.PID())
	msg = append(msg, conn.SecretKey()...)
	if _, err := c.Write(msg); err != nil {
		t.Fatal(err)
	}
	// The server closes the connection once it has handled the request.
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	io.Copy(io.Discard, c)
}

// portFreeOn finds a port that every host can listen on, below the kernel's range of
// outgoing ports (which could take it before tenantproxy listens).
func portFreeOn(t *testing.T, hosts []string) int {
	t.Helper()
	for range 100 {
		port := 20000 + rand.IntN(10000)
		free := true
		for _, h := range hosts {
			ln, err := net.Listen("tcp", fmt.Sprintf("%s:%d", h, port))
			if err != nil {
				free = false
				break
			}
			ln.Close()
		}
		if free {
			return port
		}
	}
	t.Fatalf("no port free on all of %v", hosts)
	return 0
}

func sqlstate(err error) string {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return pgErr.Code
	}
	return ""
}

func grepLines(text, substr string) string {
	var out []string
	for _, l := range strings.Split(text, "\n") {
		if strings.Contains(l, substr) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

func TestVersionAndHelp(t *testing.T) {
	for _, args := range [][]string{{"version"}, {"--version"}} {
		out, code := run(t, nil, args...)
		if code != 0 || !strings.HasPrefix(out, "tenantproxy ") {
			t.Errorf("tenantproxy %v: exit %d, %q", args, code, out)
		}
	}
	for _, args := range [][]string{{"help"}, {"--help"}, {"-h"}} {
		out, code := run(t, nil, args...)
		if code != 0 {
			t.Errorf("tenantproxy %v: exit %d", args, code)
		}
		for _, command := range []string{"serve", "check", "migrate", "user", "version"} {
			if !strings.Contains(out, command) {
				t.Errorf("tenantproxy %v does not mention %s:\n%s", args, command, out)
			}
		}
	}
	if out, code := run(t, nil, "no-such-command"); code != 2 || !strings.Contains(out, "Usage:") {
		t.Errorf("an unknown command: exit %d, %q", code, out)
	}
}

// A rolling restart on one host: with so_reuseport, the new process listens beside the old
// one, which then drains; no client is refused, and the old one's open transaction commits.
func TestServeRollingRestart(t *testing.T) {
	ctx := context.Background()
	db := pgtest.New(t)
	listen := fmt.Sprintf("127.0.0.1:%d", portFreeOn(t, []string{"127.0.0.1"}))
	config := serveConfig(db, listen, []string{"alice"}, "so_reuseport = true")
	oldFile, newFile := filepath.Join(t.TempDir(), "old.toml"), filepath.Join(t.TempDir(), "new.toml")
	writeFile(t, oldFile, config)
	writeFile(t, newFile, config)
	old := serve(t, oldFile)
	alice := old.connect(t, "alice")
	tx, err := alice.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	serve(t, newFile)

	old.signal(t, syscall.SIGTERM)
	old.waitLog(t, "shutting down: letting transactions in flight finish")
	logins := 0
	for ; logins < 20; logins++ {
		conn, err := pgx.Connect(ctx, old.url("alice"))
		if err != nil {
			t.Fatalf("login %d during the restart: %v", logins+1, err)
		}
		conn.Close(ctx)
	}
	if _, err := tx.Exec(ctx, "SELECT 1"); err != nil {
		t.Fatalf("the old process's open transaction: %v", err)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatalf("committing on the old process: %v", err)
	}
	select {
	case <-old.exited:
	case <-time.After(30 * time.Second):
		t.Fatal("the old process did not exit after its last transaction")
	}
	if old.err != nil {
		t.Errorf("the old process's exit: %v", old.err)
	}
	if got := tenantOf(t, old.connect(t, "alice")); got != "acme" {
		t.Errorf("a login after the old process left: %q", got)
	}
}

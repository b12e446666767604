package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tenantproxy/tenantproxy/internal/scramsecret"
	"github.com/tenantproxy/tenantproxy/migrations"
)

const (
	module = "github.com/tenantproxy/tenantproxy"
	// bypassRole reads the tenant tables past row-level security, to time the same queries
	// without it.
	bypassRole = "tenantproxy_bench_bypass"
	// benchUser is the client user of both proxies in the pgbench runs (tenant acme).
	benchUser = "bench"
)

// tenants are t00..t49: a user of each name holds that tenant.
var tenants = func() []string {
	var ts []string
	for i := range 50 {
		ts = append(ts, fmt.Sprintf("t%02d", i))
	}
	return ts
}()

// env is what the sections measure: the database, the two proxies and how to reach them.
type env struct {
	o         options
	repo, out string

	admin          *pgx.ConnConfig // superuser, on the benchmark's database
	appPassword    string          // tenantproxy_app
	clientPassword string          // every proxy user
	verifier       string          // clientPassword's, for every proxy user but floodUser
	floodVerifier  string
	bypassPassword string

	pgbouncerBin string
	// tenantproxy and pgbouncer serve the whole run; some sections start their own, fresh
	// ones beside them.
	tenantproxy *proxy
	pgbouncer   *proxy

	dataLoaded bool
	dataErr    error
}

// target is one thing pgbench or the Go clients connect to.
type target struct {
	Name     string
	Host     string
	Port     int
	User     string
	Password string
	Database string
	// PID is the proxy's process, whose CPU the runs read; 0 for direct.
	PID int
}

// url is how a pgx client reaches the target.
func (t target) url() string {
	return fmt.Sprintf("postgres://%s:%s@%s/%s?sslmode=disable", t.User, t.Password, net.JoinHostPort(t.Host, strconv.Itoa(t.Port)), t.Database)
}

func (e *env) direct() target {
	return target{Name: "direct", Host: e.admin.Host, Port: int(e.admin.Port), User: migrations.AppRole, Password: e.appPassword, Database: e.admin.Database}
}

// targets are the three, in the order runs start (rotated per repetition).
func (e *env) targets() []target {
	return []target{e.direct(), e.pgbouncer.target(benchUser), e.tenantproxy.target(benchUser)}
}

// maxClients is the client connections each proxy accepts: the most any section opens, and
// some to spare.
func (e *env) maxClients() int { return slices.Max(e.o.IdleClients) + 1000 }

// fileLimit is what each process needs to hold that many clients.
func (e *env) fileLimit() uint64 { return uint64(e.maxClients()) + 4096 }

// connectAs opens a pgx connection to the benchmark's database as user, or as the superuser
// when user is "".
func (e *env) connectAs(ctx context.Context, user, password string) (*pgx.Conn, error) {
	cfg := e.admin.Copy()
	if user != "" {
		cfg.User, cfg.Password = user, password
	}
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("connecting to PostgreSQL as %s: %w", cfg.User, err)
	}
	return conn, nil
}

// findRepo walks up from the working directory to tenantproxy's go.mod.
func findRepo() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		data, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil && bytes.HasPrefix(data, []byte("module "+module+"\n")) {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("run bench inside the tenantproxy repository (no go.mod of %s above the working directory)", module)
		}
		dir = parent
	}
}

func randomSecret() string {
	b := make([]byte, 12)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b)
}

// command runs name with args in dir and returns its standard output; the error carries the
// end of its standard error.
func command(ctx context.Context, dir string, env []string, name string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	cmd.Env = env
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("%s %s: %w\n%s", name, strings.Join(args, " "), err, tail(stderr.String(), 20))
	}
	return stdout.String(), nil
}

// tail is the last n lines of s.
func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// cleanEnv is this process's environment without the PG* variables (and GOMAXPROCS), which
// would otherwise change what the clients and servers started here do.
func cleanEnv(extra ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "PG") || strings.HasPrefix(kv, "GOMAXPROCS=") {
			continue
		}
		env = append(env, kv)
	}
	return append(env, extra...)
}

func isRoot() bool { return os.Geteuid() == 0 }

// setUp readies everything the sections need, registering in cl how to undo each step.
func setUp(ctx context.Context, o options, repo, out string, cl *cleanups, rep *report) (*env, error) {
	e := &env{o: o, repo: repo, out: out, appPassword: randomSecret(), clientPassword: randomSecret(), bypassPassword: randomSecret()}
	step := func(name string, fn func() error) error {
		logf("%s", name)
		start := time.Now()
		err := fn()
		rep.Setup = append(rep.Setup, timing{Step: name, Seconds: time.Since(start).Seconds()})
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		return nil
	}
	if err := step("start PostgreSQL", func() error { return e.startDatabase(ctx, cl) }); err != nil {
		return nil, err
	}
	if err := step("migrate and create roles", func() error { return e.migrate(ctx) }); err != nil {
		return nil, err
	}
	if err := e.makeVerifiers(); err != nil {
		return nil, err
	}
	if err := step("build tenantproxy", func() error { return e.build(ctx) }); err != nil {
		return nil, err
	}
	if err := step("find or build PgBouncer "+pgbouncerVersion, func() (err error) {
		e.pgbouncerBin, err = ensurePgbouncer(ctx, repo)
		return err
	}); err != nil {
		return nil, err
	}
	if o.needsPgbench() {
		if err := step(fmt.Sprintf("pgbench -i -s %d", o.Scale), func() error { return e.initPgbench(ctx) }); err != nil {
			return nil, err
		}
	}
	if err := raiseFileLimit(e.fileLimit(), rep); err != nil {
		return nil, err
	}
	if err := step("tenantproxy check", func() error { return e.checkTenantproxy(ctx, rep) }); err != nil {
		return nil, err
	}
	if err := step("start tenantproxy", func() (err error) {
		e.tenantproxy, err = e.startTenantproxy(ctx, "tenantproxy", "tenantproxy", 0)
		return err
	}); err != nil {
		return nil, err
	}
	cl.add(e.tenantproxy.stop)
	if err := step("start PgBouncer", func() (err error) {
		e.pgbouncer, err = e.startPgbouncer(ctx, "pgbouncer", "PgBouncer")
		return err
	}); err != nil {
		return nil, err
	}
	cl.add(e.pgbouncer.stop)
	for _, p := range []*proxy{e.tenantproxy, e.pgbouncer} {
		soft, hard := openFileLimit(p.pid())
		rep.note(fmt.Sprintf("%s's open-file limit: %d (hard %d).", p.Label, soft, hard))
	}
	rep.Machine = machineInfo(ctx, e)
	return e, nil
}

// startDatabase starts the private cluster, or creates the benchmark's database on the server
// --database-url names.
func (e *env) startDatabase(ctx context.Context, cl *cleanups) error {
	if e.o.DatabaseURL != "" {
		return e.createDatabase(ctx, cl)
	}
	pgenv := filepath.Join(e.repo, "scripts", "pgenv")
	if _, err := command(ctx, e.repo, cleanEnv(), pgenv, "install"); err != nil {
		return err
	}
	port := e.o.PGPort
	if port == 0 {
		var err error
		if port, err = freePort(); err != nil {
			return err
		}
	}
	dir := filepath.Join(e.out, "pgdata")
	cl.add(func() {
		logf("stopping PostgreSQL")
		if _, err := command(context.Background(), e.repo, cleanEnv(), pgenv, "stop", dir); err != nil {
			logf("stopping PostgreSQL: %v", err)
		}
		if !e.o.KeepData {
			os.RemoveAll(dir)
		}
	})
	url, err := command(ctx, e.repo, cleanEnv("TENANTPROXY_PGMAXCONN=400", "TENANTPROXY_PGDATABASE=tenantproxy_bench"),
		pgenv, "start", dir, strconv.Itoa(port))
	if err != nil {
		return err
	}
	e.admin, err = pgx.ParseConfig(strings.TrimSpace(url))
	return err
}

// createDatabase makes a database of the run's own on the --database-url server, dropped at
// the end with the bypass role.
func (e *env) createDatabase(ctx context.Context, cl *cleanups) error {
	cfg, err := pgx.ParseConfig(e.o.DatabaseURL)
	if err != nil {
		return fmt.Errorf("--database-url: %w", err)
	}
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return fmt.Errorf("--database-url: %w", err)
	}
	defer conn.Close(ctx)
	name := fmt.Sprintf("tenantproxy_bench_%d", time.Now().Unix())
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		return err
	}
	cl.add(func() {
		c, err := pgx.ConnectConfig(context.Background(), cfg)
		if err != nil {
			logf("dropping database %s: %v", name, err)
			return
		}
		defer c.Close(context.Background())
		for _, sql := range []string{
			"DROP DATABASE IF EXISTS " + name + " WITH (FORCE)",
			"DROP ROLE IF EXISTS " + bypassRole,
		} {
			if _, err := c.Exec(context.Background(), sql); err != nil {
				logf("%s: %v", sql, err)
			}
		}
	})
	e.admin = cfg.Copy()
	e.admin.Database = name
	return nil
}

// migrate applies the migrations, gives the app role its password, and creates the role that
// bypasses row-level security with the app role's settings (so both plan alike).
func (e *env) migrate(ctx context.Context) error {
	conn, err := e.connectAs(ctx, "", "")
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	if _, err := migrations.Up(ctx, conn, migrations.Options{}); err != nil {
		return err
	}
	if err := migrations.SetAppPassword(ctx, conn, e.appPassword); err != nil {
		return err
	}
	verifier, err := scramsecret.New(e.bypassPassword)
	if err != nil {
		return err
	}
	stmts := []string{
		fmt.Sprintf(`DO $$ BEGIN
			IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '%s') THEN CREATE ROLE %s; END IF;
		END $$`, bypassRole, bypassRole),
		fmt.Sprintf("ALTER ROLE %s LOGIN NOSUPERUSER BYPASSRLS PASSWORD '%s'", bypassRole, verifier),
		fmt.Sprintf("GRANT USAGE ON SCHEMA %s TO %s", migrations.DefaultSchema, bypassRole),
		fmt.Sprintf("GRANT SELECT ON ALL TABLES IN SCHEMA %s TO %s", migrations.DefaultSchema, bypassRole),
	}
	settings, err := roleSettings(ctx, conn, migrations.AppRole)
	if err != nil {
		return err
	}
	for _, s := range settings {
		name, value, _ := strings.Cut(s, "=")
		if !settingName.MatchString(name) {
			return fmt.Errorf("unexpected setting %q of %s", s, migrations.AppRole)
		}
		stmts = append(stmts, fmt.Sprintf("ALTER ROLE %s SET %s = %s", bypassRole, name, quoteLiteral(value)))
	}
	for _, sql := range stmts {
		if _, err := conn.Exec(ctx, sql); err != nil {
			return fmt.Errorf("%s: %w", strings.SplitN(sql, " PASSWORD", 2)[0], err)
		}
	}
	return nil
}

var settingName = regexp.MustCompile(`^[a-z_][a-z0-9_.]*$`)

// roleSettings are the ALTER ROLE ... SET defaults of role, as name=value.
func roleSettings(ctx context.Context, conn *pgx.Conn, role string) ([]string, error) {
	rows, err := conn.Query(ctx, `SELECT unnest(setconfig) FROM pg_db_role_setting
		WHERE setrole = (SELECT oid FROM pg_roles WHERE rolname = $1) AND setdatabase = 0`, role)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, pgx.RowTo[string])
}

func quoteLiteral(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

func goTool() string {
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	return filepath.Join(runtime.GOROOT(), "bin", "go")
}

func (e *env) tenantproxyBin() string { return filepath.Join(e.repo, "bin", "tenantproxy") }

func (e *env) build(ctx context.Context) error {
	_, err := command(ctx, e.repo, cleanEnv(), goTool(), "build", "-o", e.tenantproxyBin(), "./cmd/tenantproxy")
	return err
}

// initPgbench creates pgbench's tables as the superuser and lets the app role use them.
func (e *env) initPgbench(ctx context.Context) error {
	_, err := command(ctx, e.out, cleanEnv("PGPASSWORD="+e.admin.Password, "PGSSLMODE=disable"), "pgbench",
		"-i", "-q", "-s", strconv.Itoa(e.o.Scale), "-h", e.admin.Host, "-p", strconv.Itoa(int(e.admin.Port)),
		"-U", e.admin.User, e.admin.Database)
	if err != nil {
		return err
	}
	conn, err := e.connectAs(ctx, "", "")
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	_, err = conn.Exec(ctx, "GRANT SELECT, UPDATE, INSERT ON pgbench_accounts, pgbench_branches, pgbench_tellers, pgbench_history TO "+migrations.AppRole)
	return err
}

// machineInfo describes where the run happened.
func machineInfo(ctx context.Context, e *env) []keyValue {
	cpuinfo, _ := os.ReadFile("/proc/cpuinfo")
	model, cpus := "", 0
	for _, line := range strings.Split(string(cpuinfo), "\n") {
		k, v, _ := strings.Cut(line, ":")
		switch strings.TrimSpace(k) {
		case "processor":
			cpus++
		case "model name":
			model = strings.TrimSpace(v)
		}
	}
	info := []keyValue{
		{"CPU", fmt.Sprintf("%s, %d logical CPUs", model, cpus)},
		{"RAM", memTotal()},
		{"kernel", firstLine(readFileString("/proc/sys/kernel/osrelease"))},
		{"load average at start", firstLine(readFileString("/proc/loadavg"))},
		{"Go", runtime.Version()},
		{"tenantproxy", gitDescribe(ctx, e.repo)},
	}
	if conn, err := e.connectAs(ctx, "", ""); err == nil {
		defer conn.Close(ctx)
		var version, vector string
		_ = conn.QueryRow(ctx, "SELECT version()").Scan(&version)
		_ = conn.QueryRow(ctx, "SELECT extversion FROM pg_extension WHERE extname = 'vector'").Scan(&vector)
		info = append(info, keyValue{"PostgreSQL", version}, keyValue{"pgvector", vector})
		var settings []string
		for _, name := range []string{"max_connections", "shared_buffers", "fsync", "synchronous_commit", "max_parallel_maintenance_workers"} {
			var v string
			if conn.QueryRow(ctx, "SELECT current_setting($1)", name).Scan(&v) == nil {
				settings = append(settings, name+"="+v)
			}
		}
		info = append(info, keyValue{"PostgreSQL settings", strings.Join(settings, ", ")})
	}
	out, _ := command(ctx, e.out, cleanEnv(), e.pgbouncerBin, "--version")
	info = append(info, keyValue{"PgBouncer", fmt.Sprintf("%s, built from Debian 13's source package; max_prepared_statements = %d", firstLine(out), pgbouncerPreparedStatements)})
	out, _ = command(ctx, e.out, cleanEnv(), "pgbench", "--version")
	info = append(info, keyValue{"pgbench", firstLine(out)})
	info = append(info, keyValue{"tenantproxy threads", fmt.Sprintf("threads = 0: GOMAXPROCS, every CPU (%d here); the threads section also runs threads = 1 and 2", runtime.NumCPU())})
	return info
}

func readFileString(path string) string {
	b, _ := os.ReadFile(path)
	return string(b)
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(strings.TrimSpace(s), "\n")
	return line
}

func memTotal() string {
	for _, line := range strings.Split(readFileString("/proc/meminfo"), "\n") {
		if v, ok := strings.CutPrefix(line, "MemTotal:"); ok {
			kb, _ := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 64)
			return fmt.Sprintf("%.1f GiB", kb/1024/1024)
		}
	}
	return "unknown"
}

// gitDescribe names the commit built, and says so when the tree had uncommitted changes.
func gitDescribe(ctx context.Context, repo string) string {
	head, err := command(ctx, repo, cleanEnv(), "git", "rev-parse", "--short", "HEAD")
	if err != nil {
		return "unknown commit"
	}
	s := "commit " + strings.TrimSpace(head)
	if status, err := command(ctx, repo, cleanEnv(), "git", "status", "--porcelain", "--untracked-files=no"); err == nil && strings.TrimSpace(status) != "" {
		s += " with uncommitted changes"
	}
	return s
}

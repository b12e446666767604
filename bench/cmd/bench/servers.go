package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/tenantproxy/tenantproxy/config"
	"github.com/tenantproxy/tenantproxy/internal/scramsecret"
	"github.com/tenantproxy/tenantproxy/migrations"
)

// poolSize is both proxies' backend sessions.
const poolSize = 20

// server is a long-running process this run started: tenantproxy or PgBouncer.
type server struct {
	name    string
	cmd     *exec.Cmd
	pid     int // the server itself (under runuser, runuser's child)
	logPath string
	exited  chan struct{}
	waitErr error
}

// startServer runs argv in a process group of its own (so a Ctrl-C in the terminal reaches
// this program, which stops it in order), with its output in logPath.
func startServer(name string, argv []string, env []string, logPath string) (*server, error) {
	f, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = env
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	s := &server{name: name, cmd: cmd, pid: cmd.Process.Pid, logPath: logPath, exited: make(chan struct{})}
	go func() {
		s.waitErr = cmd.Wait()
		f.Close()
		close(s.exited)
	}()
	return s, nil
}

// stop ends the process group: SIGTERM, then SIGKILL after ten seconds.
func (s *server) stop() {
	select {
	case <-s.exited:
		return
	default:
	}
	logf("stopping %s", s.name)
	pgid := s.cmd.Process.Pid
	_ = syscall.Kill(-pgid, syscall.SIGTERM)
	select {
	case <-s.exited:
	case <-time.After(10 * time.Second):
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
		<-s.exited
	}
}

// waitListening waits until addr accepts connections, or fails with the end of the log when
// the process exits first.
func (s *server) waitListening(ctx context.Context, addr string) error {
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-s.exited:
			return fmt.Errorf("%s exited (%v):\n%s", s.name, s.waitErr, tail(readFileString(s.logPath), 20))
		case <-ctx.Done():
			return ctx.Err()
		default:
		}
		if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			c.Close()
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("%s did not listen on %s within 60s:\n%s", s.name, addr, tail(readFileString(s.logPath), 20))
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// fileLimit is what each process needs to hold the idle clients, and some to spare.
func fileLimit(idleClients int) uint64 { return uint64(idleClients) + 4096 }

// raiseFileLimit raises RLIMIT_NOFILE for this process, and so for the servers it starts,
// which inherit it (an explicit Setrlimit also stops Go from restoring the old limit in
// children). Root may raise the hard limit too, up to fs.nr_open.
func raiseFileLimit(idleClients int, rep *report) error {
	want := fileLimit(idleClients)
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		return err
	}
	if rl.Max < want && isRoot() {
		rl.Max = want
		if n, err := strconv.ParseUint(strings.TrimSpace(readFileString("/proc/sys/fs/nr_open")), 10, 64); err == nil {
			rl.Max = min(want, n)
		}
	}
	rl.Cur = min(max(rl.Cur, want), rl.Max)
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		return fmt.Errorf("raising the open-file limit to %d: %w", rl.Cur, err)
	}
	rep.note(fmt.Sprintf("Open-file limit of the bench process and the servers it starts: %d (hard %d).", rl.Cur, rl.Max))
	if rl.Cur < want {
		return fmt.Errorf("the open-file limit is %d (hard limit %d) but %d idle clients need %d: run as root, or raise the hard limit (ulimit -Hn), or lower --idle-clients",
			rl.Cur, rl.Max, idleClients, want)
	}
	return nil
}

// checkFileLimit fails unless a started server may open want files.
func checkFileLimit(pid int, want uint64) (string, error) {
	soft, hard := openFileLimit(pid)
	if soft < want {
		return "", fmt.Errorf("process %d may open %d files, %d needed", pid, soft, want)
	}
	return fmt.Sprintf("%d (hard %d)", soft, hard), nil
}

func openFileLimit(pid int) (soft, hard uint64) {
	for _, line := range strings.Split(readFileString(fmt.Sprintf("/proc/%d/limits", pid)), "\n") {
		if rest, ok := strings.CutPrefix(line, "Max open files"); ok {
			f := strings.Fields(rest)
			if len(f) >= 2 {
				soft, _ = strconv.ParseUint(f[0], 10, 64)
				hard, _ = strconv.ParseUint(f[1], 10, 64)
			}
		}
	}
	return soft, hard
}

// rssKB is a process's resident set size, from /proc/<pid>/status.
func rssKB(pid int) (int64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			return strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		}
	}
	return 0, fmt.Errorf("no VmRSS in /proc/%d/status", pid)
}

// cpuTime is the CPU a process has used so far (user and system), from /proc/<pid>/stat.
func cpuTime(pid int) (time.Duration, error) {
	stat := readFileString(fmt.Sprintf("/proc/%d/stat", pid))
	// The command name in parentheses may hold spaces; the fields after it do not.
	end := strings.LastIndexByte(stat, ')')
	if end < 0 {
		return 0, fmt.Errorf("cannot read /proc/%d/stat", pid)
	}
	fields := strings.Fields(stat[end+1:])
	if len(fields) < 13 {
		return 0, fmt.Errorf("short /proc/%d/stat", pid)
	}
	// utime and stime (fields 14 and 15 of the whole line) count clock ticks of 1/100 s:
	// USER_HZ is 100 on every architecture Go runs on under Linux.
	var ticks int64
	for _, f := range fields[11:13] {
		n, err := strconv.ParseInt(f, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("/proc/%d/stat: %w", pid, err)
		}
		ticks += n
	}
	return time.Duration(ticks) * 10 * time.Millisecond, nil
}

// tenantproxyConfig is the TOML tenantproxy serves: transaction pooling, users bench (tenant
// acme) and t00..t49 (each its own tenant), all with one SCRAM verifier.
func (e *env) tenantproxyConfig(verifier string) string {
	var b strings.Builder
	fmt.Fprintf(&b, `# Written by bench/cmd/bench for one run.
listen = "127.0.0.1:%d"
database = "app"
max_client_connections = %d
threads = 0
metrics_listen = %q

[tls]
mode = "disable"

[backend]
host = %q
port = %d
database = %q
user = %q
password = %q
sslmode = "disable"

[pool]
mode = "transaction"
size = %d

[tenancy]
tenants = ["acme", "%s"]

[log]
level = "warn"
format = "json"

[users.%s]
password = %q
tenant = "acme"
`, e.tpPort, e.o.IdleClients+1000, e.tpMetrics, e.admin.Host, e.admin.Port, e.admin.Database,
		migrations.AppRole, e.appPassword, poolSize, strings.Join(tenants, `", "`), benchUser, verifier)
	for _, t := range tenants {
		fmt.Fprintf(&b, "\n[users.%s]\npassword = %q\ntenant = %q\n", t, verifier, t)
	}
	return b.String()
}

// startTenantproxy serves the generated config. Serving runs tenantproxy's check of the
// database first, which must pass: no --insecure-skip-check. The same check is also run on its
// own, and its answer kept for the report.
func (e *env) startTenantproxy(ctx context.Context, cl *cleanups, rep *report) error {
	verifier, err := scramsecret.New(e.clientPassword)
	if err != nil {
		return err
	}
	if e.tpPort, err = freePort(); err != nil {
		return err
	}
	metricsPort, err := freePort()
	if err != nil {
		return err
	}
	e.tpMetrics = fmt.Sprintf("127.0.0.1:%d", metricsPort)
	text := e.tenantproxyConfig(verifier)
	path := filepath.Join(e.out, "tenantproxy.toml")
	if _, err := config.Parse(path, []byte(text)); err != nil {
		return fmt.Errorf("the generated configuration is invalid: %w", err)
	}
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		return err
	}

	appURL := fmt.Sprintf("postgres://%s:%s@%s/%s?sslmode=disable", migrations.AppRole, e.appPassword,
		net.JoinHostPort(e.admin.Host, strconv.Itoa(int(e.admin.Port))), e.admin.Database)
	out, err := command(ctx, e.repo, cleanEnv(), e.tenantproxyBin(), "check", "--database-url", appURL)
	if err != nil {
		return fmt.Errorf("tenantproxy check: %w\n%s", err, out)
	}
	rep.Check = strings.TrimSpace(out)

	e.tenantproxy, err = startServer("tenantproxy", []string{e.tenantproxyBin(), "serve", "--config", path},
		cleanEnv(), filepath.Join(e.out, "tenantproxy.log"))
	if err != nil {
		return err
	}
	cl.add(e.tenantproxy.stop)
	if err := e.tenantproxy.waitListening(ctx, fmt.Sprintf("127.0.0.1:%d", e.tpPort)); err != nil {
		return err
	}
	limit, err := checkFileLimit(e.tenantproxy.pid, fileLimit(e.o.IdleClients))
	if err != nil {
		return fmt.Errorf("tenantproxy: %w", err)
	}
	rep.note("tenantproxy's open-file limit: " + limit + ".")
	return nil
}

// tenantSwitches reads tenantproxy's count of handouts that had to set the tenant context.
func (e *env) tenantSwitches(ctx context.Context) (float64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+e.tpMetrics+"/metrics", nil)
	if err != nil {
		return 0, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(body), "\n") {
		if v, ok := strings.CutPrefix(line, "tenantproxy_pool_tenant_switches_total "); ok {
			return strconv.ParseFloat(strings.TrimSpace(v), 64)
		}
	}
	return 0, fmt.Errorf("tenantproxy_pool_tenant_switches_total not in /metrics")
}

const pgbouncerHowTo = "PgBouncer is not installed: apt-get install -y pgbouncer (as root), or your system's package"

// ensurePgbouncer installs Debian's PgBouncer when it is missing and this process is root.
func ensurePgbouncer(ctx context.Context) error {
	if _, err := exec.LookPath("pgbouncer"); err == nil {
		return nil
	}
	if !isRoot() {
		return fmt.Errorf("%s", pgbouncerHowTo)
	}
	if _, err := exec.LookPath("apt-get"); err != nil {
		return fmt.Errorf("%s", pgbouncerHowTo)
	}
	logf("installing PgBouncer with apt-get")
	env := cleanEnv("DEBIAN_FRONTEND=noninteractive")
	if _, err := command(ctx, "/", env, "apt-get", "update", "-qq"); err != nil {
		return err
	}
	if _, err := command(ctx, "/", env, "apt-get", "install", "-y", "-qq", "pgbouncer"); err != nil {
		return err
	}
	if _, err := exec.LookPath("pgbouncer"); err != nil {
		return fmt.Errorf("apt-get installed pgbouncer but it is not on PATH: %w", err)
	}
	return nil
}

// pgbouncerFiles writes pgbouncer.ini and its userlist: transaction pooling, SCRAM for the
// clients with the same verifier tenantproxy uses, the app role to PostgreSQL over TCP.
func (e *env) pgbouncerFiles(dir, verifier string) (string, error) {
	ini := fmt.Sprintf(`; Written by bench/cmd/bench for one run.
[databases]
app = host=%s port=%d dbname=%s user=%s password=%s

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = %d
unix_socket_dir =
auth_type = scram-sha-256
auth_file = %s
pool_mode = transaction
default_pool_size = %d
max_client_conn = %d
pidfile = %s
log_connections = 0
log_disconnections = 0
ignore_startup_parameters = extra_float_digits
`, e.admin.Host, e.admin.Port, e.admin.Database, migrations.AppRole, e.appPassword, e.pgbPort,
		filepath.Join(dir, "userlist.txt"), poolSize, e.o.IdleClients+1000, filepath.Join(dir, "pgbouncer.pid"))
	var users strings.Builder
	for _, u := range append([]string{benchUser}, tenants...) {
		fmt.Fprintf(&users, "%q %q\n", u, verifier)
	}
	path := filepath.Join(dir, "pgbouncer.ini")
	if err := os.WriteFile(path, []byte(ini), 0o600); err != nil {
		return "", err
	}
	return path, os.WriteFile(filepath.Join(dir, "userlist.txt"), []byte(users.String()), 0o600)
}

// startPgbouncer runs PgBouncer in the foreground; as root, as the postgres user (PgBouncer
// refuses root) in a folder that user owns.
func (e *env) startPgbouncer(ctx context.Context, cl *cleanups, rep *report) error {
	verifier, err := scramsecret.New(e.clientPassword)
	if err != nil {
		return err
	}
	if e.pgbPort, err = freePort(); err != nil {
		return err
	}
	dir := filepath.Join(e.out, "pgbouncer")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	ini, err := e.pgbouncerFiles(dir, verifier)
	if err != nil {
		return err
	}
	argv := []string{"pgbouncer", ini}
	if isRoot() {
		if err := chownTree(dir, "postgres"); err != nil {
			return err
		}
		// runuser's PAM session resets the soft open-file limit; prlimit raises it again, as
		// the postgres user, up to the hard limit this process passed on.
		var rl syscall.Rlimit
		if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
			return err
		}
		argv = append([]string{"runuser", "-u", "postgres", "--", "prlimit", fmt.Sprintf("--nofile=%d:%d", rl.Cur, rl.Max), "--"}, argv...)
	}
	e.pgbouncer, err = startServer("PgBouncer", argv, cleanEnv(), filepath.Join(e.out, "pgbouncer.log"))
	if err != nil {
		return err
	}
	cl.add(e.pgbouncer.stop)
	if err := e.pgbouncer.waitListening(ctx, fmt.Sprintf("127.0.0.1:%d", e.pgbPort)); err != nil {
		return err
	}
	if isRoot() {
		pid, err := pgbouncerPID(dir, e.pgbouncer.pid)
		if err != nil {
			return err
		}
		e.pgbouncer.pid = pid
	}
	limit, err := checkFileLimit(e.pgbouncer.pid, fileLimit(e.o.IdleClients))
	if err != nil {
		return fmt.Errorf("PgBouncer: %w", err)
	}
	rep.note("PgBouncer's open-file limit: " + limit + ".")
	return nil
}

// pgbouncerPID finds PgBouncer itself under runuser: its pidfile, else runuser's only child
// (prlimit execs PgBouncer in its own process).
func pgbouncerPID(dir string, runuser int) (int, error) {
	if pid, err := strconv.Atoi(strings.TrimSpace(readFileString(filepath.Join(dir, "pgbouncer.pid")))); err == nil {
		return pid, nil
	}
	children := strings.Fields(readFileString(fmt.Sprintf("/proc/%d/task/%d/children", runuser, runuser)))
	if len(children) == 1 {
		return strconv.Atoi(children[0])
	}
	return 0, fmt.Errorf("cannot find PgBouncer's process under runuser (pid %d)", runuser)
}

func chownTree(dir, name string) error {
	u, err := user.Lookup(name)
	if err != nil {
		return fmt.Errorf("PgBouncer must run as %s when this runs as root: %w", name, err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	return filepath.Walk(dir, func(path string, _ os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		return os.Chown(path, uid, gid)
	})
}

package main

import (
	"context"
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/tenantproxy/tenantproxy/migrations"
)

// pgbouncerPreparedStatements is PgBouncer's max_prepared_statements: it tracks protocol-level
// prepared statements in transaction mode, as tenantproxy does, and keeps up to this many
// prepared on each backend.
const pgbouncerPreparedStatements = 1000

// pgbouncerFiles writes pgbouncer.ini and its userlist: transaction pooling, SCRAM for the
// clients with the same verifiers tenantproxy uses, the app role to PostgreSQL over TCP. The
// database names its user, so every client user shares one pool of poolSize backends.
func (e *env) pgbouncerFiles(dir string, port int) (string, error) {
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
max_prepared_statements = %d
pidfile = %s
log_connections = 0
log_disconnections = 0
ignore_startup_parameters = extra_float_digits
`, e.admin.Host, e.admin.Port, e.admin.Database, migrations.AppRole, e.appPassword, port,
		filepath.Join(dir, "userlist.txt"), poolSize, e.maxClients(), pgbouncerPreparedStatements, filepath.Join(dir, "pgbouncer.pid"))
	var users strings.Builder
	for _, u := range append([]string{benchUser}, tenants...) {
		fmt.Fprintf(&users, "%q %q\n", u, e.verifierOf(u))
	}
	path := filepath.Join(dir, "pgbouncer.ini")
	if err := os.WriteFile(path, []byte(ini), 0o600); err != nil {
		return "", err
	}
	return path, os.WriteFile(filepath.Join(dir, "userlist.txt"), []byte(users.String()), 0o600)
}

// startPgbouncer runs PgBouncer in the foreground, its files in a folder named key under the
// run's folder. As root it runs as the postgres user (PgBouncer refuses root), from a copy of
// the binary in that folder: the build cache under root's home is closed to other users. The
// caller stops it.
func (e *env) startPgbouncer(ctx context.Context, key, label string) (*proxy, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	dir := filepath.Join(e.out, key)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	ini, err := e.pgbouncerFiles(dir, port)
	if err != nil {
		return nil, err
	}
	argv := []string{e.pgbouncerBin, ini}
	if isRoot() {
		bin := filepath.Join(dir, "pgbouncer")
		if err := copyFile(e.pgbouncerBin, bin, 0o755); err != nil {
			return nil, err
		}
		if err := chownTree(dir, "postgres"); err != nil {
			return nil, err
		}
		// runuser's PAM session resets the soft open-file limit; prlimit raises it again, as
		// the postgres user, up to the hard limit this process passed on.
		var rl syscall.Rlimit
		if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
			return nil, err
		}
		argv = []string{"runuser", "-u", "postgres", "--", "prlimit", fmt.Sprintf("--nofile=%d:%d", rl.Cur, rl.Max), "--", bin, ini}
	}
	srv, err := startServer(label, argv, cleanEnv(), filepath.Join(e.out, key+".log"))
	if err != nil {
		return nil, err
	}
	p := &proxy{Key: key, Label: label, srv: srv, port: port, password: e.clientPassword}
	if err := srv.waitListening(ctx, fmt.Sprintf("127.0.0.1:%d", port)); err != nil {
		p.stop()
		return nil, err
	}
	if isRoot() {
		pid, err := pgbouncerPID(dir, srv.pid)
		if err != nil {
			p.stop()
			return nil, err
		}
		srv.pid = pid
	}
	if _, err := checkFileLimit(srv.pid, e.fileLimit()); err != nil {
		p.stop()
		return nil, fmt.Errorf("%s: %w", label, err)
	}
	return p, nil
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

func copyFile(from, to string, mode os.FileMode) error {
	data, err := os.ReadFile(from)
	if err != nil {
		return err
	}
	return os.WriteFile(to, data, mode)
}

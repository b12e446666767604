package main

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"
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

// proxy is one running proxy, tenantproxy or PgBouncer, and how clients reach it.
type proxy struct {
	Key   string // names it in results.json and file names: "tenantproxy", "pgbouncer", ...
	Label string // names it in the report
	srv   *server
	port  int
	// metrics is the host:port of tenantproxy's /metrics ("" for PgBouncer).
	metrics  string
	password string
}

// target is the proxy as pgbench and the Go clients reach it, as user.
func (p *proxy) target(user string) target {
	return target{Name: p.Key, Host: "127.0.0.1", Port: p.port, User: user, Password: p.password, Database: "app", PID: p.srv.pid}
}

func (p *proxy) pid() int { return p.srv.pid }

func (p *proxy) stop() { p.srv.stop() }

// freshProxy starts a new process of one of the two proxies, for a section that measures a
// process of its own; key names its files.
type freshProxy struct {
	key, label string
	start      func(ctx context.Context, key, label string) (*proxy, error)
}

func (e *env) freshProxies() []freshProxy {
	return []freshProxy{
		{"tenantproxy", "tenantproxy", func(ctx context.Context, key, label string) (*proxy, error) {
			return e.startTenantproxy(ctx, key, label, 0)
		}},
		{"pgbouncer", "PgBouncer", e.startPgbouncer},
	}
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

// raiseFileLimit raises RLIMIT_NOFILE to want for this process, and so for the servers it
// starts, which inherit it (an explicit Setrlimit also stops Go from restoring the old limit in
// children). Root may raise the hard limit too, up to fs.nr_open.
func raiseFileLimit(want uint64, rep *report) error {
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
		return fmt.Errorf("the open-file limit is %d (hard limit %d) but the idle clients need %d: run as root, or raise the hard limit (ulimit -Hn), or lower --idle-clients",
			rl.Cur, rl.Max, want)
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
func rssKB(pid int) (int64, error) { return statusKB(pid, "VmRSS") }

// peakRSSKB is the largest resident set size the process has had since it started.
func peakRSSKB(pid int) (int64, error) { return statusKB(pid, "VmHWM") }

// statusKB reads one of the memory fields of /proc/<pid>/status, in kB.
func statusKB(pid int, field string) (int64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), field+":"); ok {
			return strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		}
	}
	return 0, fmt.Errorf("no %s in /proc/%d/status", field, pid)
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

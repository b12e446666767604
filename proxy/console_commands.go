package proxy

import (
	"cmp"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/tenantproxy/tenantproxy/config"
	"github.com/tenantproxy/tenantproxy/internal/version"
	"github.com/tenantproxy/tenantproxy/internal/wire"
)

// consoleCommand is one command of the admin console.
type consoleCommand struct {
	usage, help string
	// tenant: the command takes a tenant (required), or may take one (optional).
	tenant argument
	run    func(c *clientConn, tenant string) (result, error)
}

type argument int

const (
	noArgument argument = iota
	optionalTenant
	requiredTenant
)

// consoleCommands are the console's commands, by their words in upper case.
var consoleCommands map[string]consoleCommand

func init() {
	consoleCommands = map[string]consoleCommand{
		"SHOW HELP":    {usage: "SHOW HELP", help: "this list", run: showHelp},
		"SHOW POOLS":   {usage: "SHOW POOLS", help: "the backend pool: sessions open, idle, in use; clients waiting; counters", run: showPools},
		"SHOW CLIENTS": {usage: "SHOW CLIENTS", help: "each client connection: user, tenant, state, address, backend", run: showClients},
		"SHOW SERVERS": {usage: "SHOW SERVERS", help: "each backend session: its process id, state, tenant context, client", run: showServers},
		"SHOW TENANTS": {usage: "SHOW TENANTS", help: "each tenant: clients, sessions held, clients waiting (for a session or a RESUME), fair share, limits, paused", run: showTenants},
		"SHOW STATS":   {usage: "SHOW STATS", help: "each tenant's traffic: logins, transactions, statements, errors, waits, latency", run: showStats},
		"SHOW CONFIG":  {usage: "SHOW CONFIG", help: "the configuration in force, and which keys a reload can change", run: showConfig},
		"SHOW VERSION": {usage: "SHOW VERSION", help: "the running build", run: showVersion},
		"RELOAD":       {usage: "RELOAD", help: "read the configuration file again (as SIGHUP)", run: reload},
		"PAUSE":        {usage: "PAUSE [tenant]", help: "stop handing backend sessions to a tenant's clients (every tenant's without one): their next requests, and new logins, wait; returns once they hold none", tenant: optionalTenant, run: pause},
		"RESUME":       {usage: "RESUME [tenant]", help: "undo PAUSE or KILL (everything without a tenant)", tenant: optionalTenant, run: resume},
		"KILL":         {usage: "KILL tenant", help: "disconnect every client of a tenant now, and pause it until RESUME", tenant: requiredTenant, run: kill},
		"SHUTDOWN":     {usage: "SHUTDOWN", help: "shut the proxy down as SIGTERM does: transactions in flight may finish", run: shutdown},
	}
}

// consoleCommand parses and runs one command.
func (c *clientConn) consoleCommand(text string) error {
	words := strings.Fields(text)
	name, args := strings.ToUpper(words[0]), words[1:]
	if name == "SHOW" && len(args) > 0 {
		name, args = name+" "+strings.ToUpper(args[0]), args[1:]
	}
	cmd, ok := consoleCommands[name]
	if !ok {
		e := errorf(codeSyntaxError, fmt.Sprintf("unknown admin console command: %s", text))
		e.Hint = "SHOW HELP lists the commands."
		return e
	}
	tenant, err := tenantArgument(cmd, args)
	if err != nil {
		return err
	}
	r, err := cmd.run(c, tenant)
	if err != nil {
		return err
	}
	c.writeResult(r)
	return nil
}

func tenantArgument(cmd consoleCommand, args []string) (string, error) {
	switch {
	case len(args) > 1 || len(args) == 1 && cmd.tenant == noArgument || len(args) == 0 && cmd.tenant == requiredTenant:
		e := errorf(codeSyntaxError, "usage: "+cmd.usage)
		return "", e
	case len(args) == 0:
		return "", nil
	}
	tenant := strings.Trim(args[0], `'"`)
	if !config.ValidTenant(tenant) {
		return "", errorf(codeSyntaxError, fmt.Sprintf("%q is not a tenant name: tenant names use %s", tenant, config.TenantNameRule))
	}
	return tenant, nil
}

func text(names ...string) []wire.Column {
	cols := make([]wire.Column, len(names))
	for i, n := range names {
		cols[i] = wire.Column{Name: n}
	}
	return cols
}

// withBigints marks the named columns as bigint, which psql aligns to the right.
func withBigints(cols []wire.Column, names ...string) []wire.Column {
	for i := range cols {
		if slices.Contains(names, cols[i].Name) {
			cols[i].Bigint = true
		}
	}
	return cols
}

func itoa[T ~int | ~int64 | ~uint32](n T) string { return strconv.FormatInt(int64(n), 10) }

func timestamp(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format("2006-01-02 15:04:05")
}

func showHelp(*clientConn, string) (result, error) {
	r := result{columns: text("command", "description"), tag: "SHOW"}
	for _, cmd := range consoleCommands {
		r.rows = append(r.rows, []string{cmd.usage, cmd.help})
	}
	slices.SortFunc(r.rows, func(a, b []string) int { return cmp.Compare(a[0], b[0]) })
	return r, nil
}

func showPools(c *clientConn, _ string) (result, error) {
	s := c.srv
	cfg := s.Config()
	st := s.pool.Stats()
	all, tenants := s.pauses.list()
	pauseWaiting := 0
	for _, n := range s.pauses.waiting() {
		pauseWaiting += n
	}
	paused := strings.Join(tenants, ",")
	if all {
		paused = "all"
	}
	r := result{tag: "SHOW", columns: withBigints(text("database", "mode", "size", "open", "idle", "in_use", "clients",
		"clients_waiting", "acquires", "waits", "timeouts", "dials", "dial_errors", "discards", "tenant_switches", "paused"),
		"size", "open", "idle", "in_use", "clients", "clients_waiting", "acquires", "waits", "timeouts", "dials", "dial_errors", "discards", "tenant_switches")}
	r.rows = append(r.rows, []string{
		cfg.Backend.Database, cfg.Pool.Mode, itoa(cfg.Pool.Size), itoa(st.Open), itoa(st.Idle), itoa(st.Open - st.Idle),
		itoa(s.nclients.Load()), itoa(st.Waiting + pauseWaiting), itoa(st.Acquires), itoa(st.Waits), itoa(st.Timeouts), itoa(st.Dials),
		itoa(st.DialErrors), itoa(st.Discards), itoa(st.Switches), paused,
	})
	return r, nil
}

// clientState is what a client does now, as SHOW CLIENTS says it.
func (c *clientConn) state() (state string, backendPID string) {
	c.mu.Lock()
	b := c.backend
	c.mu.Unlock()
	if b != nil {
		backendPID = itoa(b.PID())
	}
	switch {
	case c.console:
		return "console", ""
	case c.busy.Load():
		return "active", backendPID
	case c.waiting.Load():
		return "waiting", backendPID
	case c.idle.Load() || b == nil:
		return "idle", backendPID
	}
	return "idle in transaction", backendPID
}

func showClients(c *clientConn, _ string) (result, error) {
	r := result{tag: "SHOW", columns: withBigints(text("pid", "user", "tenant", "state", "addr", "connect_time", "backend_pid", "tls", "application_name"), "pid", "backend_pid")}
	clients := c.srv.clientList()
	slices.SortFunc(clients, func(a, b *clientConn) int { return a.connected.Compare(b.connected) })
	for _, cl := range clients {
		state, backendPID := cl.state()
		tenant := ""
		if cl.session != nil {
			tenant = cl.session.tenant
		}
		r.rows = append(r.rows, []string{itoa(cl.keyPID), cl.user, tenant, state, cl.conn.RemoteAddr().String(),
			timestamp(cl.connected), backendPID, strconv.FormatBool(cl.tls), cl.appName})
	}
	return r, nil
}

func showServers(c *clientConn, _ string) (result, error) {
	r := result{tag: "SHOW", columns: withBigints(text("pid", "state", "tenant", "user", "client_addr", "connect_time", "last_used"), "pid")}
	for _, cl := range c.srv.clientList() {
		cl.mu.Lock()
		b := cl.backend
		cl.mu.Unlock()
		if b != nil {
			r.rows = append(r.rows, []string{itoa(b.PID()), "in use", cl.session.tenant, cl.user, cl.conn.RemoteAddr().String(), timestamp(b.Created()), ""})
		}
	}
	for _, b := range c.srv.pool.IdleSessions() {
		r.rows = append(r.rows, []string{itoa(b.PID), "idle", b.Tenant, "", "", timestamp(b.Created), timestamp(b.LastUsed)})
	}
	return r, nil
}

func showTenants(c *clientConn, _ string) (result, error) {
	s := c.srv
	cfg := s.Config()
	pool := s.pool.TenantStats()
	all, paused := s.pauses.list()
	pauseWaiting := s.pauses.waiting()
	s.mu.Lock()
	clients := maps.Clone(s.conns.byTenant)
	s.mu.Unlock()
	names := map[string]bool{}
	for name := range clients {
		names[name] = true
	}
	for name := range pool {
		names[name] = true
	}
	for name := range cfg.Tenants {
		names[name] = true
	}
	for _, name := range cfg.Tenancy.Tenants {
		names[name] = true
	}
	r := result{tag: "SHOW", columns: withBigints(text("tenant", "clients", "backends", "waiting", "share", "weight",
		"max_connections", "login_rate", "statement_timeout", "idle_in_transaction_timeout", "paused"),
		"clients", "backends", "waiting", "share", "weight", "max_connections", "login_rate")}
	for _, name := range slices.Sorted(maps.Keys(names)) {
		tl := cfg.TenantLimits(name)
		ps := pool[name]
		r.rows = append(r.rows, []string{name, itoa(clients[name]), itoa(ps.Held), itoa(ps.Waiting + pauseWaiting[name]), itoa(ps.Share), itoa(tl.Weight),
			itoa(tl.MaxConnections), itoa(tl.LoginRate), durationOrNone(tl.StatementTimeout.Duration), durationOrNone(tl.IdleInTransactionTimeout.Duration),
			strconv.FormatBool(all || slices.Contains(paused, name))})
	}
	return r, nil
}

func durationOrNone(d time.Duration) string {
	if d == 0 {
		return "none"
	}
	return d.String()
}

func showStats(c *clientConn, _ string) (result, error) {
	r := result{tag: "SHOW", columns: withBigints(text("tenant", "logins", "login_failures", "transactions", "statements",
		"errors", "avg_wait_us", "avg_statement_us"),
		"logins", "login_failures", "transactions", "statements", "errors", "avg_wait_us", "avg_statement_us")}
	for _, t := range c.srv.metrics.tenantTotals() {
		r.rows = append(r.rows, []string{t.tenant, itoa(t.logins), itoa(t.loginFailures), itoa(t.transactions), itoa(t.statements),
			itoa(t.errors), itoa(t.avgWait.Microseconds()), itoa(t.avgStatement.Microseconds())})
	}
	return r, nil
}

func showConfig(c *clientConn, _ string) (result, error) {
	r := result{tag: "SHOW", columns: text("key", "value", "live")}
	for _, s := range c.srv.Config().Settings() {
		live := "yes"
		if !s.Live {
			live = "restart"
		}
		r.rows = append(r.rows, []string{s.Key, s.Value, live})
	}
	return r, nil
}

func showVersion(*clientConn, string) (result, error) {
	return result{tag: "SHOW", columns: text("version"), rows: [][]string{{version.String()}}}, nil
}

func reload(c *clientConn, _ string) (result, error) {
	kept, err := c.srv.ReloadFile()
	if err != nil {
		e := errorf(codeConfigFile, "configuration not reloaded: "+err.Error())
		e.Hint = "The running configuration is unchanged. Fix the file and RELOAD again."
		return result{}, e
	}
	r := result{tag: "RELOAD"}
	if len(kept) > 0 {
		r.notices = append(r.notices, "changed but kept until a restart: "+strings.Join(kept, ", "))
	}
	return r, nil
}

func pause(c *clientConn, tenant string) (result, error) {
	s := c.srv
	s.pauses.pause(tenant)
	timeout := s.Config().ShutdownTimeout.Duration
	deadline := time.Now().Add(timeout)
	for {
		held := s.heldBy(tenant)
		if held == 0 {
			return result{tag: "PAUSE"}, nil
		}
		if time.Now().After(deadline) {
			e := errorf(codeObjectNotInState, fmt.Sprintf("paused, but %d backend session(s) are still held after %s", held, timeout))
			e.Hint = "The pause stays in force; its clients keep what they hold until their transactions end (in session pooling, until they disconnect). RESUME undoes it."
			return result{}, e
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// heldBy is how many backend sessions tenant's clients hold (every tenant's for "").
func (s *Server) heldBy(tenant string) int {
	held := 0
	for name, st := range s.pool.TenantStats() {
		if tenant == "" || name == tenant {
			held += st.Held
		}
	}
	return held
}

func resume(c *clientConn, tenant string) (result, error) {
	if !c.srv.pauses.resume(tenant) {
		what := "nothing is paused"
		if tenant != "" {
			what = fmt.Sprintf("tenant %q is not paused on its own", tenant)
		}
		e := errorf(codeObjectNotInState, what)
		e.Hint = "SHOW TENANTS shows what is paused; RESUME without a tenant resumes everything."
		return result{}, e
	}
	return result{tag: "RESUME"}, nil
}

func kill(c *clientConn, tenant string) (result, error) {
	c.srv.pauses.pause(tenant)
	n := 0
	for _, cl := range c.srv.clientList() {
		if !cl.console && cl.session.tenant == tenant {
			cl.end(endedByAdmin(fmt.Sprintf("tenant %q was killed from the admin console", tenant)))
			n++
		}
	}
	return result{tag: "KILL", notices: []string{fmt.Sprintf("%d client(s) of tenant %q disconnected; the tenant is paused until RESUME", n, tenant)}}, nil
}

func shutdown(c *clientConn, _ string) (result, error) {
	c.srv.askShutdown.Do(func() { close(c.srv.shutdownAsked) })
	return result{tag: "SHUTDOWN", notices: []string{"shutting down: transactions in flight may finish, then every client is disconnected"}}, nil
}

package proxy

import (
	"errors"
	"fmt"
	"maps"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/tenantproxy/tenantproxy/config"
	"github.com/tenantproxy/tenantproxy/internal/wire"
)

// The admin console is the virtual database "tenantproxy", for the users in [admins]: psql -U
// admin tenantproxy. It answers the commands of console_commands.go as result sets, over the
// simple query protocol (as PgBouncer's does), and never reaches a backend: an admin sees the
// proxy's state, never a tenant's data. Tenant users are refused (FATAL 28000) once they have
// proved who they are; unknown names fail as a wrong password does.

// consoleMessageLimit bounds a console message: commands are short.
const consoleMessageLimit = 64 << 10

// startConsole logs an admin in to the console.
func (c *clientConn) startConsole(deadline time.Time) error {
	a := c.srv.accounts.Admin(c.user)
	if a == nil {
		u, err := c.userAccount(deadline)
		if err != nil {
			return err
		}
		if err := c.login(u); err != nil {
			return err
		}
		c.srv.metrics.authFailures.WithLabelValues("console").Inc()
		c.log.Warn().Msg("admin console refused: not an admin")
		e := fatal(codeInvalidAuthSpec, fmt.Sprintf("user %q is not a tenantproxy admin", c.user))
		e.Hint = fmt.Sprintf("The admin console (database %q) is for the users in [admins]; tenants connect to database %q.",
			config.AdminDatabase, c.srv.Config().Database)
		return c.refuse(e)
	}
	if err := c.login(a); err != nil {
		return err
	}
	c.console = true
	c.log = c.log.With().Bool("console", true).Logger()
	c.log.Info().Msg("admin connected to the console")
	c.in.Limit = consoleMessageLimit

	c.out.Commit(wire.AppendAuthenticationOk(c.out.Bytes()))
	params := map[string]string{
		"server_version": c.srv.pool.ServerVersion(), "application_name": "",
		"client_encoding": "UTF8", "server_encoding": "UTF8", "DateStyle": "ISO, MDY",
		"integer_datetimes": "on", "standard_conforming_strings": "on", "TimeZone": "UTC",
		"is_superuser": "off", "session_authorization": c.user,
	}
	for _, name := range slices.Sorted(maps.Keys(params)) {
		c.out.Commit(wire.AppendParameterStatus(c.out.Bytes(), name, params[name]))
	}
	// Registered, the console client is woken by a shutdown and listed by SHOW CLIENTS; its
	// cancel key cancels nothing.
	c.srv.register(c)
	c.out.Commit(wire.AppendBackendKeyData(c.out.Bytes(), c.keyPID, c.keySecret[:]))
	writeReady(c.out, 'I')
	return c.out.Flush()
}

// serveConsole runs an admin's commands until it leaves.
func (c *clientConn) serveConsole() error {
	// skipping: an extended-query message was refused; the rest up to Sync is ignored.
	skipping := false
	for {
		if err := c.out.Flush(); err != nil {
			return err
		}
		c.idle.Store(true)
		if c.srv.draining() {
			return errShuttingDown
		}
		typ, msg, err := c.in.Next()
		c.idle.Store(false)
		switch {
		case errors.Is(err, os.ErrDeadlineExceeded) && c.srv.draining():
			return errShuttingDown
		case err != nil:
			return c.readError(err)
		}
		switch typ {
		case wire.Query:
			sql, ok := wire.DecodeQuery(msg)
			if !ok {
				return protocolViolation("invalid Query message")
			}
			c.consoleQuery(string(sql))
			writeReady(c.out, 'I')
		case wire.Parse, wire.Bind, wire.Describe, wire.Execute, wire.Close, wire.Flush:
			if !skipping {
				writeError(c.out, &pgError{Severity: "ERROR", Code: codeFeatureNotSupported,
					Message: "the admin console speaks the simple query protocol only",
					Hint:    "Use psql, or your driver's simple protocol (pgx: QueryExecModeSimpleProtocol)."})
			}
			skipping = true
		case wire.Sync:
			skipping = false
			writeReady(c.out, 'I')
		case wire.Terminate:
			return nil
		default:
			return protocolViolation("invalid frontend message type %d", typ)
		}
	}
}

// consoleQuery runs each command of a Query, stopping at the first error, as a server runs a
// multi-statement Query.
func (c *clientConn) consoleQuery(sql string) {
	ran := false
	for _, command := range strings.Split(sql, ";") {
		command = strings.TrimSpace(command)
		if command == "" {
			continue
		}
		ran = true
		c.log.Info().Str("command", command).Msg("admin console command")
		if err := c.consoleCommand(command); err != nil {
			writeError(c.out, asPgError(err))
			return
		}
	}
	if !ran {
		c.out.Commit(wire.AppendEmptyQueryResponse(c.out.Bytes()))
	}
}

// result is a command's answer: rows under columns, or just the tag.
type result struct {
	columns []wire.Column
	rows    [][]string
	tag     string
	notices []string
}

func (c *clientConn) writeResult(r result) {
	for _, n := range r.notices {
		c.out.Commit(wire.AppendNoticeResponse(c.out.Bytes(), wire.NewError("NOTICE", "00000", n, "", "")))
	}
	if r.columns != nil {
		c.out.Commit(wire.AppendRowDescription(c.out.Bytes(), r.columns))
		for _, row := range r.rows {
			c.out.Commit(wire.AppendDataRow(c.out.Bytes(), row))
		}
	}
	c.out.Commit(wire.AppendCommandComplete(c.out.Bytes(), r.tag))
}

package proxy

import (
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"github.com/tenantproxy/tenantproxy/internal/wire"
	"github.com/tenantproxy/tenantproxy/proxy/queue"
	"github.com/tenantproxy/tenantproxy/session"
)

// clientConn is one client connection, served by one goroutine from startup to the last byte.
// Its concerns live in their own files: startup.go and auth.go (before the first query),
// loop.go (the serve loop), relay.go (the backend's answers), statements.go (prepared
// statements per pool mode), context.go (the tenant context and settings), refuse.go,
// copy.go, backend.go (checkout and return) and cancel.go.
type clientConn struct {
	srv  *Server
	conn net.Conn
	in   *wire.Reader
	out  *wire.Writer
	log  zerolog.Logger
	tls  bool

	user string
	// allowExplain: the user is trusted with EXPLAIN.
	allowExplain bool
	// limits are the time limits of the client's tenant; admitted: it counts against the
	// connection limits.
	limits   limits
	admitted bool
	// The sweeper (watch.go) watches a relay in progress: relayStart is when it began (Unix
	// nanoseconds), abandoned that the client hung up meanwhile, timedOut that its statements
	// were cancelled at the tenant's statement_timeout. waitState and waitSince (a sweep
	// number) hand an idle client's wait over to the sweeper, which wakes it to park.
	relayStart atomic.Int64
	abandoned  atomic.Bool
	timedOut   atomic.Bool
	waitState  atomic.Int32
	waitSince  atomic.Uint64
	// parkedFD is the client's socket while it is parked (park_linux.go).
	parkedFD int32
	// ended, once set, is why the operator ended the client (users.go): the FATAL it is sent.
	ended atomic.Pointer[pgError]
	// console: the client is an admin on the admin console (console.go), not a tenant's.
	console bool
	// connected is when the client connected; appName its application_name at login.
	connected time.Time
	appName   string
	// waiting: the client waits for a backend session (or for its tenant's RESUME).
	waiting atomic.Bool
	// metrics are the series of the client's tenant; sentAt is when its last requests went to
	// the server, and sinceIdle counts the statements completed since it was last idle.
	metrics   *tenantMetrics
	sentAt    time.Time
	sinceIdle int
	// session is the tenant context and settings the client's backend must carry.
	session *clientSession
	keyPID  uint32
	// keySecret is the client's cancel key, as PostgreSQL's is under protocol 3.0.
	keySecret [4]byte

	// The backend serving the client, if any: always in session mode, for the length of a
	// transaction in transaction mode. mu guards it against the cancel path; cancels counts
	// cancel requests on their way to it, which must land before it can serve anyone else.
	mu       sync.Mutex
	backend  *session.Backend
	cancels  int
	canceled *sync.Cond
	busy     atomic.Bool // requests are in flight on the backend
	// idle: the client waits for its next message, with no transaction open; Shutdown may end
	// it there.
	idle atomic.Bool
	// listening: the client may LISTEN (session mode): its backend is watched while it waits.
	listening bool
	// pinned: the client declared a WITH HOLD cursor in transaction mode and keeps its backend
	// until the cursor is closed (pin.go).
	pinned bool

	queue      *queue.Queue[undo]
	statements statements
	// checkouts counts the backends the client was given, so the unnamed statement knows which
	// one it was prepared on.
	checkouts uint64
}

func newClientConn(s *Server, conn net.Conn) *clientConn {
	c := &clientConn{
		srv:       s,
		conn:      conn,
		connected: time.Now(),
		in:        wire.NewReader(conn, startupMessageLimit),
		out:       wire.NewWriter(conn),
	}
	c.out.LimitBlocking(conn, s.Config().ClientWriteTimeout.Duration)
	c.canceled = sync.NewCond(&c.mu)
	c.statements = s.mode.newStatements(c)
	c.queue = queue.New(c.statements.undo)
	c.log = s.log.With().Str("client", conn.RemoteAddr().String()).Logger()
	return c
}

// serve runs on the client's goroutine from the connection's first byte.
func (c *clientConn) serve() {
	c.srv.nclients.Add(1)
	c.srv.metrics.clients.Inc()
	err := c.startup()
	switch {
	case err == nil && c.console:
		err = c.serveConsole()
	case err == nil:
		c.log.Debug().Msg("client connected")
		c.serveLoop()
		return
	}
	c.close(err)
}

// serveLoop serves the client until it leaves, or until it parks between transactions
// (park_linux.go): a new goroutine then calls serveLoop again when the client sends more.
func (c *clientConn) serveLoop() {
	if err := c.loop(); err != errParked {
		c.close(err)
	}
}

// close ends the client, for whatever reason, and lets go of everything it held.
func (c *clientConn) close(err error) {
	var pe *pgError
	told := errors.As(err, &pe) || c.ended.Load() != nil
	c.finish(err)
	c.srv.leave(c)
	c.srv.unregister(c)
	c.srv.nclients.Add(-1)
	c.srv.metrics.clients.Dec()
	if told {
		c.closeAfterFatal()
	} else {
		c.conn.Close()
	}
	c.srv.wg.Done()
}

// closeAfterFatal closes a client that was sent a FATAL error. Closing at once would answer
// whatever it is still sending (copy data, a pipeline) with a reset, which can discard the FATAL
// before the client reads it. So the proxy stops writing and drops what the client still sends
// until it hangs up, for a second at most.
func (c *clientConn) closeAfterFatal() {
	if hc, ok := c.conn.(interface{ CloseWrite() error }); ok {
		hc.CloseWrite()
	}
	c.conn.SetReadDeadline(time.Now().Add(time.Second))
	io.Copy(io.Discard, c.conn)
	c.conn.Close()
}

// errRefused ends a connection whose refusal the client was already sent.
var errRefused = errors.New("refused at startup")

// refuse sends a FATAL error to the client during startup and returns the reason to disconnect.
func (c *clientConn) refuse(e *pgError) error {
	writeError(c.out, e)
	c.out.Flush()
	c.log.Debug().Str("code", e.Code).Msg(e.Message)
	return errRefused
}

// finish cleans up after the client leaves, for whatever reason. A backend in the middle of
// something is closed; one idle in a transaction is rolled back; in session mode the session
// is reset. Only a clean backend goes back to the pool.
func (c *clientConn) finish(cause error) {
	if e := c.ended.Load(); e != nil {
		cause = e
	}
	var pe *pgError
	switch {
	case errors.Is(cause, errCancelDone) || errors.Is(cause, errRefused):
	case errors.As(cause, &pe):
		writeError(c.out, pe)
		c.out.Flush()
		c.log.Warn().Str("code", pe.Code).Msg(pe.Message)
	case cause == nil || errors.Is(cause, io.EOF) || errors.Is(cause, net.ErrClosed) || errors.Is(cause, os.ErrDeadlineExceeded):
		c.log.Debug().Msg("client disconnected")
	default:
		c.log.Debug().Err(cause).Msg("client connection ended")
	}
	c.statements.leave()
	b := c.backend
	if b == nil {
		c.unpin()
		return
	}
	if !c.queue.Settled() {
		// Mid-request, mid-COPY, with extended-query messages not yet synced (an implicit
		// transaction may be open), or skipping to Sync: the session's state is unknown.
		c.log.Info().Msg("client left with a request in progress: closing its backend session")
		c.discardBackend()
		return
	}
	b.SetDeadline(time.Now().Add(c.srv.Config().Pool.CheckoutTimeout.Duration))
	var err error
	if b.TxStatus() != 'I' {
		c.log.Info().Msg("client left inside a transaction: rolling it back")
		err = b.Exec("ROLLBACK")
	}
	if err == nil {
		err = c.srv.mode.leave(b)
	}
	b.SetDeadline(time.Time{})
	if err != nil || b.TxStatus() != 'I' {
		c.discardBackend()
		return
	}
	c.releaseBackend()
}

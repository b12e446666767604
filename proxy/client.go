package proxy

import (
	"context"
	"crypto/subtle"
	"encoding/binary"
	"errors"
	"io"
	"maps"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/rs/zerolog"

	"github.com/tenantproxy/tenantproxy/internal/wire"
	"github.com/tenantproxy/tenantproxy/policy"
	"github.com/tenantproxy/tenantproxy/session"
)

// clientConn is one client connection and everything the proxy remembers about it.
type clientConn struct {
	srv  *Server
	conn net.Conn
	in   *wire.Reader
	out  *wire.Writer
	log  zerolog.Logger
	tls  bool

	user, tenant string
	// params are the client's tracked settings as it believes them to be; startupParams are
	// what it asked for at startup, which RESET ALL and DISCARD ALL return to.
	params, startupParams *session.Settings
	keyPID                uint32
	keySecret             [4]byte

	// The backend serving the client, if any: always in session mode, for the length of a
	// transaction in transaction mode. mu guards it against the cancel path; cancels counts
	// cancel requests on their way to it, which must land before it can serve anyone else.
	mu       sync.Mutex
	backend  *session.Backend
	cancels  int
	canceled *sync.Cond
	busy     atomic.Bool // requests are in flight on the backend

	relay relayState
	// statements are the client's named prepared statements (transaction mode), by its names.
	statements map[string]*session.Statement
	// unnamed is the client's unnamed statement (transaction mode): its Parse body, and the
	// backend checkout on which it was last prepared.
	unnamed      []byte
	unnamedCheck uint64
	checkouts    uint64
	// effectful are the client's statement names ("" for the unnamed one) whose text has
	// effects the proxy acts on each time it runs (a reset of the tenant context, a change of
	// settings), with the guard's verdict.
	effectful map[string]policy.Verdict
	// resetPending: the client reset its session; its settings go back to the startup ones.
	resetPending bool
	// settingsChanging: the client changed settings (SET, SET LOCAL, RESET, DISCARD ALL), and
	// its transaction, or the answers that report the new values, may not be over yet.
	settingsChanging bool

	flushBoth func() error
}

func newClientConn(s *Server, conn net.Conn) *clientConn {
	c := &clientConn{
		srv:        s,
		conn:       conn,
		in:         wire.NewReader(conn, s.cfg.MaxMessageSize),
		out:        wire.NewWriter(conn),
		statements: map[string]*session.Statement{},
	}
	c.canceled = sync.NewCond(&c.mu)
	c.in.BeforeBlock = c.out.Flush
	c.flushBoth = c.flushBackendAndClient
	c.log = s.log.With().Str("client", conn.RemoteAddr().String()).Logger()
	return c
}

func (c *clientConn) serve() {
	c.srv.nclients.Add(1)
	c.srv.metrics.clients.Inc()
	defer func() {
		c.srv.nclients.Add(-1)
		c.srv.metrics.clients.Dec()
		c.conn.Close()
	}()

	defer c.srv.unregister(c)
	err := c.startup()
	if err == nil {
		c.log.Debug().Msg("client connected")
		err = c.loop()
	}
	c.finish(err)
}

// greet sends what a server sends after authentication: AuthenticationOk, the server's
// settings (from a real backend session, with the client's own values), the proxy's cancel key,
// and ReadyForQuery.
func (c *clientConn) greet() error {
	b, perr := c.acquire()
	if perr != nil {
		perr.Severity = "FATAL"
		return c.refuse(perr)
	}
	encode(c.out, &pgproto3.AuthenticationOk{})
	for _, name := range slices.Sorted(maps.Keys(b.Params)) {
		if session.Reported(name) {
			encode(c.out, &pgproto3.ParameterStatus{Name: name, Value: b.Params[name]})
		}
	}
	c.srv.register(c)
	encode(c.out, &pgproto3.BackendKeyData{ProcessID: c.keyPID, SecretKey: c.keySecret[:]})
	writeReady(c.out, 'I')
	if c.srv.mode == policy.TransactionMode {
		c.releaseBackend()
	}
	return c.out.Flush()
}

// refuse sends a FATAL error to the client during startup and returns the reason to disconnect.
func (c *clientConn) refuse(e *pgError) error {
	writeError(c.out, e)
	c.out.Flush()
	c.log.Debug().Str("code", e.Code).Msg(e.Message)
	return errRefused
}

// errRefused ends a connection whose refusal the client was already sent.
var errRefused = errors.New("refused at startup")

// acquire gets the client a backend session with its tenant context and settings in place.
// Errors come back ready for the client.
func (c *clientConn) acquire() (*session.Backend, *pgError) {
	ctx := context.Background()
	b, err := c.srv.pool.Acquire(ctx, c.tenant, c.params)
	if err != nil {
		return nil, backendError(err)
	}
	b.In.BeforeBlock = c.flushBoth
	c.checkouts++
	c.relay.irregular = false
	c.mu.Lock()
	c.backend = b
	c.mu.Unlock()
	return b, nil
}

func backendError(err error) *pgError {
	var pgErr interface{ SQLState() string }
	switch {
	case errors.Is(err, session.ErrCheckoutTimeout):
		return &pgError{Severity: "ERROR", Code: codeTooManyConnections,
			Message: "tenantproxy: no database session free within the checkout timeout",
			Hint:    "The pool is busy; retry, or raise pool.size or pool.checkout_timeout."}
	case errors.Is(err, session.ErrPoolClosed):
		return &pgError{Severity: "FATAL", Code: codeAdminShutdown, Message: "tenantproxy is shutting down"}
	case errors.As(err, &pgErr):
		return &pgError{Severity: "ERROR", Code: pgErr.SQLState(), Message: "tenantproxy: could not open a database session: " + err.Error()}
	default:
		return &pgError{Severity: "ERROR", Code: codeConnectionFailure, Message: "tenantproxy: could not connect to the database: " + err.Error()}
	}
}

// releaseBackend returns the backend to the pool once no cancel request can still reach it.
func (c *clientConn) releaseBackend() {
	c.mu.Lock()
	for c.cancels > 0 {
		c.canceled.Wait()
	}
	b := c.backend
	c.backend = nil
	c.mu.Unlock()
	if b != nil {
		b.Detach()
		c.srv.pool.Release(b)
	}
}

// discardBackend closes the backend: its state is unknown or broken.
func (c *clientConn) discardBackend() {
	c.mu.Lock()
	for c.cancels > 0 {
		c.canceled.Wait()
	}
	b := c.backend
	c.backend = nil
	c.mu.Unlock()
	if b != nil {
		c.srv.pool.Discard(b)
	}
	c.relay.reset()
}

func (c *clientConn) flushBackendAndClient() error {
	if b := c.backend; b != nil {
		if err := b.Out.Flush(); err != nil {
			return err
		}
	}
	// A client that stopped reading must not stall the backend: its errors surface later.
	c.out.Flush()
	return nil
}

// finish cleans up after the client leaves, for whatever reason. A backend in the middle of
// something is closed; one idle in a transaction is rolled back; in session mode the session
// is reset. Only a clean backend goes back to the pool.
func (c *clientConn) finish(cause error) {
	var pe *pgError
	switch {
	case errors.Is(cause, errCancelDone) || errors.Is(cause, errRefused):
	case errors.As(cause, &pe):
		writeError(c.out, pe)
		c.out.Flush()
		c.log.Warn().Str("code", pe.Code).Msg(pe.Message)
	case cause == nil || errors.Is(cause, io.EOF) || errors.Is(cause, net.ErrClosed):
		c.log.Debug().Msg("client disconnected")
	default:
		c.log.Debug().Err(cause).Msg("client connection ended")
	}
	b := c.backend
	if b == nil {
		return
	}
	if c.relay.pending() > 0 || c.relay.copyIn || c.relay.unsynced || c.relay.skipping {
		// Mid-request, mid-COPY, with extended-query messages not yet synced (an implicit
		// transaction may be open), or skipping to Sync: the session's state is unknown.
		c.log.Info().Msg("client left with a request in progress: closing its backend session")
		c.discardBackend()
		return
	}
	b.SetDeadline(time.Now().Add(c.srv.cfg.Pool.CheckoutTimeout.Duration))
	var err error
	if b.TxStatus != 'I' {
		c.log.Info().Msg("client left inside a transaction: rolling it back")
		err = b.Exec("ROLLBACK")
	}
	if err == nil && c.srv.mode == policy.SessionMode {
		// DISCARD ALL clears every setting, so the tenant context too.
		b.Tenant = ""
		err = b.Exec("DISCARD ALL")
		session.ForgetUnreported(b)
	}
	b.SetDeadline(time.Time{})
	if err != nil || b.TxStatus != 'I' {
		c.discardBackend()
		return
	}
	c.releaseBackend()
}

// handleCancel serves a CancelRequest: if the key is a live client's, cancel what that client
// runs right now, on the backend serving it, and nothing else.
func (c *clientConn) handleCancel(msg []byte) {
	if len(msg) < 16 {
		return
	}
	pid := binary.BigEndian.Uint32(msg[8:12])
	target := c.srv.lookup(pid)
	if target == nil || subtle.ConstantTimeCompare(msg[12:], target.keySecret[:]) != 1 {
		c.log.Info().Uint32("pid", pid).Msg("cancel request with an unknown key ignored")
		return
	}
	target.cancel()
}

// cancel forwards a cancel to the backend serving c, if it is running something. The backend
// cannot be released until the server has taken the request (it closes the connection then),
// so the cancel can never land on a session already serving another client.
func (c *clientConn) cancel() {
	c.mu.Lock()
	b := c.backend
	if b == nil || !c.busy.Load() {
		c.mu.Unlock()
		return
	}
	c.cancels++
	c.mu.Unlock()
	ctx, stop := context.WithTimeout(context.Background(), 5*time.Second)
	err := c.srv.pool.Cancel(ctx, b)
	stop()
	c.mu.Lock()
	c.cancels--
	c.canceled.Broadcast()
	c.mu.Unlock()
	if err != nil {
		c.log.Warn().Err(err).Msg("forwarding a cancel request")
	} else {
		c.log.Debug().Msg("cancel request forwarded")
	}
}

func sortedKeys(m map[string]string) []string { return slices.Sorted(maps.Keys(m)) }

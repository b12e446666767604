package proxy

import (
	"errors"
	"os"
	"syscall"
	"time"

	"github.com/tenantproxy/tenantproxy/internal/wire"
)

// loop serves the client after startup until it leaves. Each turn waits for one message, takes
// every further whole message already received (pipelined messages go to the server together),
// forwards, answers or refuses each one, then relays the backend's answers to everything that
// is sure to be answered, and settles: in transaction mode an idle backend goes back to the
// pool.
func (c *clientConn) loop() error {
	for {
		if err := c.waitForClient(); err != nil {
			return err
		}
		for {
			if err := c.handle(); err != nil {
				return err
			}
			if !c.in.HasMessage() {
				break
			}
		}
		c.sentAt = time.Now()
		if b := c.backend; b != nil {
			if err := b.Flush(); err != nil {
				return c.backendLost(err)
			}
		}
		c.startWatch()
		c.busy.Store(c.queue.Awaiting())
		err := c.drain()
		if err != nil {
			return err
		}
		c.busy.Store(false)
		if err := c.settle(); err != nil {
			return err
		}
	}
}

// waitForClient flushes what the client is owed and waits for its next message. Between
// transactions the client is idle, and a shutdown may end it there (57P01).
func (c *clientConn) waitForClient() error {
	if err := c.out.Flush(); err != nil {
		return err
	}
	if c.in.HasMessage() {
		return nil
	}
	idle := c.backend == nil || c.backend.TxStatus() == 'I' && c.queue.Settled()
	// A transaction left open and idle is bounded by the tenant's limit.
	idleInTransaction := !idle && c.limits.idleInTransaction > 0 && c.queue.Settled()
	for {
		if e := c.ended.Load(); e != nil {
			return e
		}
		parkable := false
		if idle {
			c.idle.Store(true)
			if c.srv.draining() {
				return errShuttingDown
			}
			parkable = c.parkable()
		}
		switch {
		case idleInTransaction:
			c.conn.SetReadDeadline(time.Now().Add(c.limits.idleInTransaction))
		case parkable:
			c.startWait()
		}
		var err error
		if idle && c.listening && c.backend != nil {
			err = c.waitListening()
		} else {
			_, _, err = c.in.PeekHeader()
		}
		c.idle.Store(false)
		woke := parkable && c.endWait()
		if idleInTransaction {
			c.conn.SetReadDeadline(time.Time{})
		}
		if err == nil {
			return nil
		}
		switch {
		case !errors.Is(err, os.ErrDeadlineExceeded):
			return c.readError(err)
		case c.ended.Load() != nil:
			return c.ended.Load()
		case idleInTransaction && !c.srv.draining():
			c.srv.metrics.limitRefusals.WithLabelValues(c.srv.metrics.tenantLabel(c.session.tenant), "idle_in_transaction_timeout").Inc()
			c.log.Warn().Str("limit", "idle_in_transaction_timeout").Msg("client ended: transaction left open and idle")
			return errIdleInTransaction
		case woke && !c.srv.draining():
			c.idle.Store(true)
			if c.park() {
				return errParked
			}
			continue
		case !c.srv.draining():
			return c.readError(err)
		case idle:
			// Shutdown interrupted the wait: an idle client is told and let go.
			return errShuttingDown
		}
		// One inside a transaction may finish it.
		c.conn.SetReadDeadline(time.Time{})
	}
}

// errParked ends the client's goroutine, not the client: it waits in the parker.
var errParked = errors.New("parked")

// parkable reports whether the client may park once idle for a while (the sweeper wakes it
// then, watch.go; a busy client never pays for parking): it is a socket, it holds no backend,
// nothing is buffered either way, and it has no TLS (whose buffered records the socket cannot
// show).
func (c *clientConn) parkable() bool {
	_, socket := c.conn.(syscall.Conn)
	return socket && parking && c.backend == nil && !c.tls && c.in.Buffered() == 0 && c.out.Buffered() == 0
}

// park parks the client and reports whether it did. Its buffers go back to their pools.
func (c *clientConn) park() bool {
	c.in.Release()
	c.queue.Release()
	if !c.srv.parker.park(c) {
		return false
	}
	// Ended or drained while parking: resume at once to be told.
	if c.ended.Load() != nil || c.srv.draining() {
		c.srv.parker.unpark(c)
	}
	return true
}

// errShuttingDown ends an idle client when the proxy shuts down.
var errShuttingDown = fatal(codeAdminShutdown, "terminating connection due to administrator command")

func (c *clientConn) readError(err error) error {
	switch {
	case errors.Is(err, wire.ErrTooLarge):
		return protocolViolation("message too large: %v (max_message_size)", err)
	case errors.Is(err, wire.ErrMalformed):
		return protocolViolation("invalid message length")
	}
	return err
}

// handle reads one client message and forwards, answers or refuses it.
func (c *clientConn) handle() error {
	typ, _, err := c.in.PeekHeader()
	if err != nil {
		return c.readError(err)
	}
	if typ == wire.CopyData {
		return c.copyData()
	}
	_, msg, err := c.in.Next()
	if errors.Is(err, wire.ErrNoMemory) {
		return c.refuseOutOfMemory(typ)
	}
	if err != nil {
		return c.readError(err)
	}
	if c.queue.SkippingLocally() && typ != wire.Sync && typ != wire.Terminate {
		return nil
	}
	if c.queue.CopyIn() && typ != wire.CopyDone && typ != wire.CopyFail && typ != wire.Terminate {
		return c.interruptCopy(typ)
	}
	switch typ {
	case wire.Query:
		return c.handleQuery(msg)
	case wire.Parse:
		return c.handleParse(msg)
	case wire.Bind:
		return c.handleBind(msg)
	case wire.Describe:
		return c.handleDescribe(msg)
	case wire.Execute:
		return c.handleExecute(msg)
	case wire.Close:
		return c.handleClose(msg)
	case wire.Flush:
		if c.backend != nil {
			c.backend.Out.Write(msg)
		}
		c.queue.FlushPoint()
		return nil
	case wire.Sync:
		return c.handleSync(msg)
	case wire.FunctionCall:
		return c.refuse42501Simple("function-call", "tenantproxy: the FunctionCall protocol message is refused: it calls functions by OID, past the SQL guard")
	case wire.CopyDone, wire.CopyFail:
		return c.endCopy(msg)
	case wire.Terminate:
		return errClientTerminated
	default:
		return protocolViolation("invalid frontend message type %d", typ)
	}
}

var errClientTerminated = errors.New("client sent Terminate")

// settle runs once every answered request has been relayed: the client's session follows what
// its requests did, and an idle backend goes where the pool mode says.
func (c *clientConn) settle() error {
	if c.queue.Pending() > 0 || c.queue.CopyIn() {
		return nil
	}
	b := c.backend
	// A server skipping to Sync after an error ignores everything but Sync: not idle either.
	idle := b == nil || b.TxStatus() == 'I' && c.queue.Settled()
	c.session.settled(idle)
	if b == nil || !idle {
		// Inside a transaction the context is restored behind each message (restoreBehind)
		// and confirmed once the transaction is over.
		return nil
	}
	return c.srv.mode.idle(c)
}

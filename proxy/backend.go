package proxy

import (
	"context"
	"errors"
	"time"

	"github.com/tenantproxy/tenantproxy/internal/wire"
	"github.com/tenantproxy/tenantproxy/proxy/queue"
	"github.com/tenantproxy/tenantproxy/session"
)

// acquire gets the client a backend session with its tenant context and settings in place.
// Errors come back ready for the client.
func (c *clientConn) acquire() (*session.Backend, *pgError) {
	start := time.Now()
	c.waiting.Store(true)
	defer c.waiting.Store(false)
	if perr := c.waitWhilePaused(); perr != nil {
		return nil, perr
	}
	b, err := c.srv.pool.Acquire(context.Background(), session.Client{
		Tenant:   c.session.tenant,
		Settings: c.session.params,
		Gone:     c.hungUp,
	})
	c.metrics.backendWait.Observe(time.Since(start).Seconds())
	if err != nil {
		perr := c.backendError(err)
		if perr.Code == codeConnectionFailure {
			c.log.Warn().Err(err).Msg("could not open a database session")
		}
		return nil, perr
	}
	c.checkouts++
	c.queue.ResetIrregular()
	c.mu.Lock()
	c.backend = b
	c.mu.Unlock()
	return b, nil
}

// ensureBackend makes sure a backend serves the client before a message is forwarded, and
// readies a backend just checked out for the client's messages.
func (c *clientConn) ensureBackend() (*session.Backend, *pgError) {
	if c.backend != nil {
		return c.backend, nil
	}
	b, perr := c.acquire()
	if perr == nil {
		c.statements.checkedOut(b)
	}
	return b, perr
}

// hungUp reports whether the client closed its connection, or was ended: a checkout that waits
// asks, so that a client that left gives up its place.
func (c *clientConn) hungUp() bool { return c.ended.Load() != nil || peerClosed(c.conn) }

func (c *clientConn) backendError(err error) *pgError {
	var pgErr interface{ SQLState() string }
	var refused session.ServerError
	switch {
	case errors.Is(err, session.ErrCheckoutTimeout):
		return &pgError{Severity: "ERROR", Code: codeTooManyConnections,
			Message: "tenantproxy: no database session free within the checkout timeout",
			Hint:    "The pool is busy; retry, or raise pool.size or pool.checkout_timeout."}
	case errors.Is(err, session.ErrClientGone):
		return fatal(codeConnectionFailure, "tenantproxy: the client left while waiting for a database session")
	case errors.Is(err, session.ErrPoolClosed):
		return &pgError{Severity: "FATAL", Code: codeAdminShutdown, Message: "tenantproxy is shutting down"}
	case errors.As(err, &refused):
		// The server refused a setting of the client's: its own words.
		return &pgError{Severity: "ERROR", Code: refused.SQLState(), Message: refused.Fields.Get(wire.FieldMessage),
			Detail: refused.Fields.Get(wire.FieldDetail), Hint: refused.Fields.Get(wire.FieldHint)}
	case errors.As(err, &pgErr):
		return &pgError{Severity: "ERROR", Code: pgErr.SQLState(), Message: "tenantproxy: could not open a database session: " + err.Error()}
	default:
		return &pgError{Severity: "ERROR", Code: codeConnectionFailure, Message: "tenantproxy: could not connect to the database: " + err.Error()}
	}
}

// forward sends a client's extended-query message to b as it is.
func (c *clientConn) forward(b *session.Backend, msg []byte, kind queue.Kind) error {
	b.Out.Write(msg)
	c.queue.Push(request{Kind: kind})
	return nil
}

// queryBackend runs the proxy's own query on the client's idle backend, within the checkout
// timeout.
func (c *clientConn) queryBackend(sql string) ([][]*string, error) {
	b := c.backend
	b.SetDeadline(time.Now().Add(c.srv.Config().Pool.CheckoutTimeout.Duration))
	defer b.SetDeadline(time.Time{})
	return b.QueryRows(sql)
}

// releaseBackend returns the backend to the pool once no cancel request can still reach it. A
// backend pinned for WITH HOLD cursors is closed instead: a cursor may still be open on it.
func (c *clientConn) releaseBackend() {
	if c.pinned {
		c.discardBackend()
		return
	}
	if b := c.detachBackend(); b != nil {
		c.srv.pool.Release(b)
	}
}

// discardBackend closes the backend: its state is unknown or broken.
func (c *clientConn) discardBackend() {
	c.unpin()
	if b := c.detachBackend(); b != nil {
		c.srv.pool.Discard(b)
	}
	c.queue.Reset()
}

// detachBackend takes the backend away from the client once no cancel is on its way to it.
func (c *clientConn) detachBackend() *session.Backend {
	c.mu.Lock()
	defer c.mu.Unlock()
	for c.cancels > 0 {
		c.canceled.Wait()
	}
	b := c.backend
	c.backend = nil
	return b
}

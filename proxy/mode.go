package proxy

import (
	"github.com/tenantproxy/tenantproxy/guard"
	"github.com/tenantproxy/tenantproxy/session"
)

// poolMode is what differs between the pool modes once a client is in: how its prepared
// statements reach the backends, what happens when its backend falls idle, and how a backend it
// leaves is made ready for the next client.
type poolMode interface {
	guardMode() guard.PoolMode
	newStatements(c *clientConn) statements
	// idle runs when the client's backend is outside any transaction with nothing in flight.
	idle(c *clientConn) error
	// leave readies the idle backend of a client that left for its next client.
	leave(b *session.Backend) error
	// reserve is how many of the pool's sessions no one tenant may take.
	reserve(size int) int
}

// transactionMode lends a backend per transaction.
type transactionMode struct{}

func (transactionMode) guardMode() guard.PoolMode { return guard.TransactionMode }

func (transactionMode) newStatements(c *clientConn) statements { return newShared(c) }

// idle gives the backend back to the pool; the next checkout sets the context if it must. When
// the client changed settings that outlive its transaction, they are read back first, to be
// carried to the next backend that serves it (and reset for the next client of this one). A
// client with WITH HOLD cursors open keeps the backend (pin.go).
func (transactionMode) idle(c *clientConn) error {
	if c.pinned {
		switch held, err := c.holdsCursors(); {
		case err != nil:
			c.log.Warn().Err(err).Msg("asking the backend for the client's WITH HOLD cursors")
			c.discardBackend()
			return nil
		case held:
			return nil // the client keeps the backend its cursors live on
		}
		c.unpin()
	}
	if c.session.sessionChanged {
		b := c.backend
		rows, err := c.queryBackend(c.session.sessionSettingsSQL())
		if err != nil || b.TxStatus() != 'I' {
			c.log.Warn().Err(err).Msg("reading back the client's settings")
			c.discardBackend()
			return nil
		}
		b.NoteSessionSettings(c.session.takeSessionSettings(rows, b, c.srv.startupRules.isReserved))
	}
	if c.queue.Irregular() {
		// After an error inside an extended-query group or a COPY, what the server skipped
		// (an eviction's Close, say) may differ from what the proxy believes it did: such a
		// session serves no one else. The cost is a new session after such errors.
		c.discardBackend()
		return nil
	}
	c.releaseBackend()
	return nil
}

// reserve: none, a tenant alone may use the whole pool; it lets go after each transaction.
func (transactionMode) reserve(int) int { return 0 }

// leave has nothing to do: a transaction-mode backend carries no client state between
// transactions but what the next checkout puts right (tenant context and settings).
func (transactionMode) leave(*session.Backend) error { return nil }

// sessionMode gives each client its own backend for its whole connection.
type sessionMode struct{}

func (sessionMode) guardMode() guard.PoolMode { return guard.SessionMode }

func (sessionMode) newStatements(*clientConn) statements { return passThrough{} }

// idle puts the tenant context and settings back if the client reset them.
func (sessionMode) idle(c *clientConn) error {
	c.session.sessionChanged = false // the session is the client's own: nothing to carry
	b := c.backend
	if b.Tenant() == c.session.tenant && c.srv.pool.SettingsMatch(b, c.session.params) {
		return nil
	}
	if err := c.srv.pool.ApplyContext(b, c.session.tenant, c.session.params); err != nil {
		c.log.Error().Err(err).Msg("restoring the tenant context")
		c.discardBackend()
		return fatal(codeInternal, "tenantproxy could not restore the tenant context; please reconnect")
	}
	return nil
}

// reserve keeps a tenth of the pool (at least one session, in a pool of three or more) from any
// one tenant: its clients hold their sessions for their whole connections, and must not pin
// every one.
func (sessionMode) reserve(size int) int {
	if size < 3 {
		return 0
	}
	return max(1, size/10)
}

// leave runs DISCARD ALL, which clears every setting of the session, the tenant context too.
func (sessionMode) leave(b *session.Backend) error {
	b.ForgetContext()
	return b.Exec("DISCARD ALL")
}

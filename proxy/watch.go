package proxy

import (
	"time"
)

// While a client's requests are relayed, a watchdog (one timer per client, reused) checks on
// it every watchInterval: a client that hung up stops the relay waiting for the server (its
// backend is closed, not left to a statement nobody waits for, or a server that stalled), and
// statements past the tenant's statement_timeout (and a grace for the server's own) are
// cancelled, whatever statement_timeout the client chose.

// watchInterval is how often the watchdog looks.
const watchInterval = time.Second

// startWatch arms the watchdog for the requests about to be relayed.
func (c *clientConn) startWatch() {
	if !c.busy.Load() {
		return
	}
	c.relayStart.Store(time.Now().UnixNano())
	c.timedOut.Store(false)
	if t := c.watchdog.Load(); t != nil {
		t.Reset(watchInterval)
		return
	}
	// Stored before it is armed, so that watch always finds it to re-arm.
	t := time.AfterFunc(time.Hour, c.watch)
	t.Stop()
	c.watchdog.Store(t)
	t.Reset(watchInterval)
}

// stopWatch disarms it once the answers are in.
func (c *clientConn) stopWatch() {
	if t := c.watchdog.Load(); t != nil {
		t.Stop()
	}
}

// watch runs on the watchdog's timer.
func (c *clientConn) watch() {
	if !c.busy.Load() {
		return
	}
	if ended := c.ended.Load() != nil; ended || peerClosed(c.conn) || sentTerminate(c.conn) {
		// Nobody waits for the answers (or the operator ended the client): stop reading
		// them, and close the backend.
		c.abandoned.Store(!ended)
		c.mu.Lock()
		if b := c.backend; b != nil {
			b.SetReadDeadline(time.Now())
		}
		c.mu.Unlock()
		return
	}
	running := time.Since(time.Unix(0, c.relayStart.Load()))
	if limit := c.limits.statementTimeout; limit > 0 && running > limit+statementGrace && !c.timedOut.Swap(true) {
		c.srv.metrics.limitRefusals.WithLabelValues(c.srv.metrics.tenantLabel(c.session.tenant), "statement_timeout").Inc()
		c.log.Warn().Str("limit", "statement_timeout").Msg("statement cancelled: it ran past the tenant's statement_timeout")
		c.cancel()
	}
	if t := c.watchdog.Load(); t != nil {
		t.Reset(watchInterval)
	}
}

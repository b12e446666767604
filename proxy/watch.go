package proxy

import (
	"runtime"
	"time"
)

// One sweeper per server looks at every client sweepInterval, so that no client needs a timer
// of its own (arming one per request costs the Go runtime a wake-up of its network poller):
//
//   - while a client's requests are relayed, every watchTicks sweeps: a client that hung up
//     stops the relay waiting for the server (its backend is closed, not left to a statement
//     nobody waits for, or a server that stalled), and statements past the tenant's
//     statement_timeout (and a grace for the server's own) are cancelled, whatever
//     statement_timeout the client chose;
//   - a client idle for parkTicks sweeps, that may park, is woken to park (park_linux.go).

const (
	sweepInterval = 250 * time.Millisecond
	watchTicks    = 4 // a second
	parkTicks     = 2 // half a second to three quarters
)

// A parkable client's wait for its next message, as the sweeper and the client hand it over.
const (
	running       int32 = iota // not waiting
	waiting                    // waiting, since waitSince
	wakeRequested              // the sweeper is waking it to park
	woken                      // its read deadline is set: the wait ends
)

// sweep runs until stop is closed.
func (s *Server) sweep(stop <-chan struct{}) {
	defer close(s.swept)
	ticker := time.NewTicker(sweepInterval)
	defer ticker.Stop()
	for {
		select {
		case <-stop:
			return
		case <-ticker.C:
		}
		tick := s.ticks.Add(1)
		for _, c := range s.clientList() {
			switch {
			case c.busy.Load():
				if tick%watchTicks == 0 {
					c.watch()
				}
			case c.waitState.Load() == waiting && tick-c.waitSince.Load() >= parkTicks:
				if c.waitState.CompareAndSwap(waiting, wakeRequested) {
					c.conn.SetReadDeadline(time.Unix(1, 0))
					c.waitState.Store(woken)
				}
			}
		}
	}
}

// startWait tells the sweeper that a parkable client waits for its next message.
func (c *clientConn) startWait() {
	c.waitSince.Store(c.srv.ticks.Load())
	c.waitState.Store(waiting)
}

// endWait takes the wait back from the sweeper and reports whether the sweeper woke the client
// to park; its read deadline is then cleared.
func (c *clientConn) endWait() (woke bool) {
	if c.waitState.CompareAndSwap(waiting, running) {
		return false
	}
	for c.waitState.Load() != woken {
		runtime.Gosched() // the sweeper is between its two steps
	}
	c.conn.SetReadDeadline(time.Time{})
	c.waitState.Store(running)
	return true
}

// startWatch marks the start of a relay (sentAt) for the watchdog.
func (c *clientConn) startWatch() {
	c.relayStart.Store(c.sentAt.UnixNano())
	c.timedOut.Store(false)
}

// watch checks on a client whose requests are relayed.
func (c *clientConn) watch() {
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
}

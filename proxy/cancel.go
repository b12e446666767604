package proxy

import (
	"context"
	"crypto/subtle"
	"encoding/binary"
	"time"
)

// Each client has the proxy's own cancel key. A CancelRequest carrying it is forwarded (with the
// server's key) only to the backend serving that client at that moment, and only while a request
// is in flight. One carrying another peer's key goes to that peer (peers.go).

// cancelRequestSize is the size of a CancelRequest: length, code, process id, secret.
const cancelRequestSize = 16

// handleCancel serves a CancelRequest (forwarded: from a peer): if the key is a live client's,
// cancel what that client runs right now, on the backend serving it, and nothing else.
func (c *clientConn) handleCancel(msg []byte, forwarded bool) {
	if len(msg) != cancelRequestSize {
		return
	}
	pid := binary.BigEndian.Uint32(msg[8:12])
	if !forwarded && c.srv.forwardCancel(msg, pid) {
		return
	}
	target := c.srv.lookup(pid)
	if target == nil || subtle.ConstantTimeCompare(msg[12:16], target.keySecret[:]) != 1 {
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

package proxy

import (
	"github.com/tenantproxy/tenantproxy/guard"
	"github.com/tenantproxy/tenantproxy/internal/wire"
	"github.com/tenantproxy/tenantproxy/lockdown"
	"github.com/tenantproxy/tenantproxy/proxy/queue"
	"github.com/tenantproxy/tenantproxy/session"
)

// The client's messages, one handler per type. Each checks what it must (the guard reads every
// statement text), makes sure a backend serves the client, and forwards, answers or refuses.

// handleQuery checks a simple Query with the guard and forwards it.
func (c *clientConn) handleQuery(msg []byte) error {
	text, ok := wire.DecodeQuery(msg)
	if !ok {
		if _, _, terminated := wire.CString(msg[wire.HeaderSize:]); terminated {
			// Bytes after the text: the server refuses such a message with an error, and so
			// does the proxy, without passing on bytes it did not check.
			return c.refuseSimple(errorf(codeProtocolViolation, "invalid message format"))
		}
		return protocolViolation("invalid Query message")
	}
	v := c.check(text)
	if v.Refused {
		c.logRefusal(v, text)
		return c.refuseSimple(verdictError(v))
	}
	if v.HoldsCursor {
		if perr := c.pinForCursor(); perr != nil {
			return c.refuseSimple(perr)
		}
	}
	if v.Deallocate != "" && c.statements.deallocate(c, v.Deallocate) {
		return nil
	}
	b, perr := c.ensureBackend()
	if perr != nil {
		c.queue.Push(request{Kind: queue.Query, Answered: true, Err: perr, Status: 'I'})
		c.queue.FlushPoint()
		return nil
	}
	c.session.applyEffects(b, v)
	switch rewrite, perr := c.rewrite(text, v); {
	case perr != nil:
		return c.refuseSimple(perr)
	case rewrite != "":
		b.Out.Commit(wire.AppendQuery(b.Out.Bytes(), rewrite))
	default:
		b.Out.Write(msg)
	}
	c.queue.Push(request{Kind: queue.Query})
	c.restoreBehind(b)
	c.queue.FlushPoint()
	c.statements.querySent()
	return nil
}

func (c *clientConn) handleParse(msg []byte) error {
	name, query, types, ok := wire.DecodeParse(msg)
	if !ok {
		return protocolViolation("invalid Parse message")
	}
	v := c.check(query)
	if v.Refused {
		c.logRefusal(v, query)
		return c.failExtended(verdictError(v))
	}
	if v.HoldsCursor {
		if perr := c.pinForCursor(); perr != nil {
			return c.failExtended(perr)
		}
	}
	if v.Deallocate != "" && len(name) == 0 && c.statements.prepareDeallocate(c, v.Deallocate) {
		return nil
	}
	b, perr := c.ensureBackend()
	if perr != nil {
		return c.failExtended(perr)
	}
	rewrite, perr := c.rewrite(query, v)
	if perr != nil {
		return c.failExtended(perr)
	}
	// Its effects happen each time it is executed: remember the statements that have some.
	c.session.rememberEffects(name, v)
	c.session.applyEffects(b, v)
	if rewrite != "" {
		query = []byte(rewrite)
		msg = wire.AppendParse(nil, name, query, types)
	}
	return c.statements.parse(c, b, msg, name, query, types)
}

func (c *clientConn) handleBind(msg []byte) error {
	portal, name, rest, ok := wire.DecodeBind(msg)
	if !ok {
		return protocolViolation("invalid Bind message")
	}
	if done, err := c.statements.deallocateStep(c, queue.Bind, portal, name); done {
		return err
	}
	b, perr := c.ensureBackend()
	if perr != nil {
		return c.failExtended(perr)
	}
	if v, ok := c.session.effectsOf(name); ok {
		c.session.applyEffects(b, v)
	}
	return c.statements.bind(c, b, msg, portal, name, rest)
}

func (c *clientConn) handleDescribe(msg []byte) error {
	target, name, ok := wire.DecodeTarget(msg)
	if !ok {
		return protocolViolation("invalid Describe message")
	}
	kind, portal, statement := queue.DescribeStatement, []byte(nil), name
	if target == wire.TargetPortal {
		kind, portal, statement = queue.DescribePortal, name, nil
	}
	if done, err := c.statements.deallocateStep(c, kind, portal, statement); done {
		return err
	}
	b, perr := c.ensureBackend()
	if perr != nil {
		return c.failExtended(perr)
	}
	if kind == queue.DescribePortal {
		return c.forward(b, msg, kind)
	}
	return c.statements.describeStatement(c, b, msg, name)
}

func (c *clientConn) handleExecute(msg []byte) error {
	portal, _, ok := wire.CString(msg[wire.HeaderSize:])
	if !ok {
		return protocolViolation("invalid Execute message")
	}
	if done, err := c.statements.deallocateStep(c, queue.Execute, portal, nil); done {
		return err
	}
	return c.handleExtended(msg, queue.Execute)
}

func (c *clientConn) handleClose(msg []byte) error {
	target, name, ok := wire.DecodeTarget(msg)
	if !ok {
		return protocolViolation("invalid Close message")
	}
	if target == wire.TargetStatement && len(name) > 0 {
		return c.statements.closeStatement(c, msg, name)
	}
	return c.handleExtended(msg, queue.Close)
}

// handleExtended forwards an extended-query message the proxy passes on as it is.
func (c *clientConn) handleExtended(msg []byte, kind queue.Kind) error {
	b, perr := c.ensureBackend()
	if perr != nil {
		return c.failExtended(perr)
	}
	return c.forward(b, msg, kind)
}

func (c *clientConn) handleSync(msg []byte) error {
	b := c.backend
	if c.queue.SkippingLocally() || b == nil {
		status := byte('I')
		if b != nil {
			status = b.TxStatus()
		}
		c.queue.Push(request{Kind: queue.Sync, Answered: true, Status: status})
		c.queue.FlushPoint()
		return nil
	}
	b.Out.Write(msg)
	c.queue.Push(request{Kind: queue.Sync})
	c.restoreBehind(b)
	c.queue.FlushPoint()
	return nil
}

// rewrite returns the text to send instead of text, "" when it goes as it is: function calls
// sent to the database's wrappers (the guard's rewrite), and channel names mapped onto the
// tenant's own.
func (c *clientConn) rewrite(text []byte, v guard.Verdict) (string, *pgError) {
	if !v.Channels {
		return v.Rewrite, nil
	}
	if v.Rewrite != "" {
		text = []byte(v.Rewrite)
	}
	c.listening = true
	return mapChannels(text, lockdown.ChannelPrefix(c.session.tenant))
}

// restoreBehind sends, right behind a client's Query or Sync while the backend's context is
// unknown (after RESET ALL or DISCARD ALL), the statements that put the tenant context and the
// client's startup settings back, so the client's next messages run with them. Their answers are
// the proxy's own. Inside a transaction a ROLLBACK TO SAVEPOINT could undo them, so the context
// stays unknown, and is restored behind every message, until the pool mode confirms it outside
// any transaction.
func (c *clientConn) restoreBehind(b *session.Backend) {
	if b.Tenant() == c.session.tenant {
		return
	}
	b.Out.Commit(wire.AppendQuery(b.Out.Bytes(), c.session.restoreSQL()))
	c.queue.Push(request{Kind: queue.Query, Own: true})
}

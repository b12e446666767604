package proxy

import (
	"github.com/tenantproxy/tenantproxy/guard"
	"github.com/tenantproxy/tenantproxy/internal/wire"
	"github.com/tenantproxy/tenantproxy/proxy/queue"
)

// A refused statement must leave the client's session exactly as an error would: inside a
// transaction the transaction fails, and in an extended-query group the server skips to Sync.
// Where the server's state matters, the proxy makes the server fail a statement that cannot
// parse, and shows the client its own error instead of the server's.

// check is the guard's verdict on a statement text for this client: EXPLAIN is refused but to
// users trusted with it.
func (c *clientConn) check(sql []byte) guard.Verdict {
	v := c.srv.guard.Check(sql)
	if v.Explains && !c.allowExplain {
		return explainRefused
	}
	return v
}

var explainRefused = guard.Verdict{
	Refused: true, Code: codeInsufficientPriv, Rule: "explain",
	Message: "tenantproxy: EXPLAIN is refused: its row estimates and counts come from every tenant's rows, not only yours",
	Hint:    "EXPLAIN is for operators: the proxy's configuration can allow it for a trusted user (allow_explain).",
}

// verdictError is the client's error for a refused statement.
func verdictError(v guard.Verdict) *pgError {
	return &pgError{Severity: "ERROR", Code: v.Code, Message: v.Message, Hint: v.Hint}
}

// refuseSimple answers a refused Query (or FunctionCall) as the server answers an error.
func (c *clientConn) refuseSimple(e *pgError) error {
	b := c.backend
	if b == nil || b.TxStatus() == 'I' && c.queue.Settled() {
		c.queue.Push(request{Kind: queue.Query, Answered: true, Err: e, Status: 'I'})
		c.queue.FlushPoint()
		return nil
	}
	b.Out.Commit(wire.AppendQuery(b.Out.Bytes(), "tenantproxy refused this statement"))
	c.queue.Push(request{Kind: queue.Query, Err: e})
	c.queue.FlushPoint()
	return nil
}

func (c *clientConn) refuse42501Simple(rule, message string) error {
	c.logRefusal(guard.Verdict{Refused: true, Code: codeInsufficientPriv, Rule: rule, Message: message}, nil)
	return c.refuseSimple(errorf(codeInsufficientPriv, message))
}

// failExtended answers an extended-query message with an error, as the server would: the
// rest of the group up to Sync is skipped and an open transaction fails.
func (c *clientConn) failExtended(e *pgError) error {
	b := c.backend
	if b == nil {
		c.queue.Push(request{Kind: queue.Parse, Answered: true, Err: e})
		c.queue.SkipLocally()
		return nil
	}
	// A Parse that cannot succeed puts the server into the same state an error of its own
	// would; the client sees our error in place of the server's.
	b.Out.Commit(wire.AppendParse(b.Out.Bytes(), "tenantproxy_refused", []byte("tenantproxy refused this statement"), []byte{0, 0}))
	c.queue.Push(request{Kind: queue.Parse, Err: e})
	return nil
}

// refuseOutOfMemory refuses a message that would take more than limits.message_memory leaves
// (every client's large messages share it): it is read past without being held, and refused as
// PostgreSQL refuses what it has no memory for. The connection goes on.
func (c *clientConn) refuseOutOfMemory(typ byte) error {
	if err := c.in.Skip(); err != nil {
		return c.readError(err)
	}
	c.srv.metrics.limitRefusals.WithLabelValues(c.metrics.label, "message_memory").Inc()
	c.log.Warn().Str("limit", "message_memory").Msg("message refused: the memory for large client messages is taken")
	e := &pgError{Severity: "ERROR", Code: codeOutOfMemory,
		Message: "tenantproxy: out of memory for large client messages (limits.message_memory); the message was not run",
		Hint:    "Retry later. Large data can go as COPY, which streams without being held."}
	switch {
	case c.queue.SkippingLocally():
		return nil
	case typ == wire.Query:
		return c.refuseSimple(e)
	case c.queue.CopyIn():
		return c.interruptCopy(typ)
	}
	return c.failExtended(e)
}

func (c *clientConn) logRefusal(v guard.Verdict, text []byte) {
	c.srv.metrics.refusals.WithLabelValues(c.metrics.label, v.Rule).Inc()
	c.countError(v.Code)
	ev := c.log.Warn().Str("rule", v.Rule).Str("code", v.Code)
	if text != nil {
		ev = ev.Str("statement", guard.Fingerprint(string(text)))
	}
	ev.Msg("statement refused")
}

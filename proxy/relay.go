package proxy

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"

	"github.com/tenantproxy/tenantproxy/internal/wire"
	"github.com/tenantproxy/tenantproxy/policy"
	"github.com/tenantproxy/tenantproxy/session"
)

// The relay forwards client messages to the backend with as little decoding as it can, and
// keeps, for every message that expects an answer, a request in a queue. Backend responses are
// matched against the head of the queue: that is how the proxy knows when a transaction ends,
// which answers are its own to swallow, and where to put answers it makes itself (a prepared
// statement that already exists on this backend, a refused statement).

type reqKind uint8

const (
	reqQuery          reqKind = iota // Query or FunctionCall: everything up to ReadyForQuery
	reqSync                          // ReadyForQuery
	reqParse                         // ParseComplete
	reqBind                          // BindComplete
	reqDescribeStmt                  // ParameterDescription, then RowDescription or NoData
	reqDescribePortal                // RowDescription or NoData
	reqExecute                       // rows, then CommandComplete, EmptyQueryResponse or PortalSuspended
	reqClose                         // CloseComplete
)

// request is one expected answer.
type request struct {
	kind reqKind
	// answer: nothing was sent; the proxy answers in the server's place (err, or the
	// success message of kind, or ReadyForQuery with status).
	answer bool
	// hide: the proxy sent this itself; the client does not see the server's answers to it,
	// except an error, which concerns the client's next message.
	hide bool
	// hideError: the client does not see even an error (housekeeping such as evictions).
	hideError bool
	// err replaces the server's error (or is the answer).
	err    *pgError
	status byte
	// stmt and name: a Parse (or Close) of the client's statement name; undone if the
	// server never carries it out.
	stmt *session.Statement
	name string
}

type relayState struct {
	queue []request
	head  int
	// awaiting counts requests at the front whose answers are sure to come: the client sent
	// Sync, Flush or a Query after them.
	awaiting int
	// skipping: an error ended the current extended-query group; the server ignores messages
	// until Sync, and so must the queue.
	skipping bool
	// localSkip: the proxy refused a message while holding no backend, and drops the client's
	// messages itself until Sync.
	localSkip bool
	// unsynced: extended-query messages went to the backend since the last Sync: an implicit
	// transaction may be open even though the last ReadyForQuery said idle.
	unsynced bool
	copyIn   bool
	// irregular: something happened (an error mid-group, COPY) after which, in transaction
	// mode, the backend is closed instead of going back to the pool.
	irregular bool
}

func (r *relayState) push(q request) { r.queue = append(r.queue, q) }

func (r *relayState) pending() int { return len(r.queue) - r.head }

func (r *relayState) front() *request { return &r.queue[r.head] }

func (r *relayState) pop() {
	r.queue[r.head] = request{}
	r.head++
	r.awaiting--
	if r.head == len(r.queue) {
		r.queue, r.head = r.queue[:0], 0
	}
}

// remove takes out the request at position i from the front (i > 0): the server will never
// answer it.
func (r *relayState) remove(i int) {
	at := r.head + i
	copy(r.queue[at:], r.queue[at+1:])
	r.queue[len(r.queue)-1] = request{}
	r.queue = r.queue[:len(r.queue)-1]
	if i < r.awaiting {
		r.awaiting--
	}
}

// flushPoint marks everything queued so far as sure to be answered.
func (r *relayState) flushPoint() { r.awaiting = r.pending() }

func (r *relayState) reset() { *r = relayState{queue: r.queue[:0]} }

// errProtocol wraps a client protocol violation.
func protocolViolation(format string, args ...any) *pgError {
	return fatal(codeProtocolViolation, fmt.Sprintf(format, args...))
}

// loop serves the client after startup until it leaves.
func (c *clientConn) loop() error {
	for {
		if _, _, err := c.in.PeekHeader(); err != nil {
			return c.readError(err)
		}
		// Take this message and every whole one already received, then answer them all:
		// pipelined messages go to the server together.
		for {
			if err := c.handle(); err != nil {
				return err
			}
			if !c.in.HasMessage() {
				break
			}
		}
		c.busy.Store(c.relay.awaiting > 0)
		if err := c.drain(); err != nil {
			return err
		}
		c.busy.Store(false)
		if err := c.settle(); err != nil {
			return err
		}
	}
}

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
	if typ == 'd' { // CopyData: stream it, whatever its size
		if !c.relay.copyIn || c.backend == nil {
			return c.in.Skip() // as the server does outside COPY
		}
		return c.in.CopyMessage(c.backend.Out)
	}
	typ, msg, err := c.in.Next()
	if err != nil {
		return c.readError(err)
	}
	if c.relay.localSkip && typ != 'S' && typ != 'X' {
		return nil
	}
	if c.relay.copyIn && typ != 'c' && typ != 'f' && typ != 'X' {
		return c.interruptCopy(typ)
	}
	switch typ {
	case 'Q':
		return c.handleQuery(msg)
	case 'P':
		return c.handleParse(msg)
	case 'B':
		return c.handleBind(msg)
	case 'D':
		return c.handleDescribe(msg)
	case 'E':
		return c.forwardExtended(msg, reqExecute)
	case 'C':
		return c.handleClose(msg)
	case 'H':
		if c.backend != nil {
			c.backend.Out.Write(msg)
		}
		c.relay.flushPoint()
		return nil
	case 'S':
		return c.handleSync(msg)
	case 'F':
		return c.refuse42501Simple("function-call", "tenantproxy: the FunctionCall protocol message is refused: it calls functions by OID, past the SQL guard")
	case 'c', 'f': // CopyDone, CopyFail
		if !c.relay.copyIn || c.backend == nil {
			return nil
		}
		c.backend.Out.Write(msg)
		c.relay.copyIn = false
		c.relay.flushPoint()
		return nil
	case 'X':
		return errClientTerminated
	default:
		return protocolViolation("invalid frontend message type %d", typ)
	}
}

var errClientTerminated = errors.New("client sent Terminate")

// interruptCopy handles a message other than copy data during copy-in. The server ignores Flush
// and Sync there; any other message ends the COPY with an error and is itself thrown away. The
// proxy throws it away too, and ends the COPY with CopyFail, so that nothing it did not check
// reaches the server.
func (c *clientConn) interruptCopy(typ byte) error {
	if typ == 'H' || typ == 'S' {
		return nil
	}
	buf, at := wire.BeginMessage(c.backend.Out.Bytes(), 'f')
	buf = fmt.Appendf(buf, "unexpected message type 0x%02X during COPY from stdin", typ)
	buf = append(buf, 0)
	c.backend.Out.Commit(wire.EndMessage(buf, at))
	c.relay.copyIn = false
	c.relay.flushPoint()
	return nil
}

// body returns a message's body, checking that it ends with NUL when it must.
func body(msg []byte) []byte { return msg[wire.HeaderSize:] }

// ensureBackend makes sure a backend serves the client before a message is forwarded.
func (c *clientConn) ensureBackend() (*session.Backend, *pgError) {
	if c.backend != nil {
		return c.backend, nil
	}
	return c.acquire()
}

// handleQuery checks a simple Query with the guard and forwards it.
func (c *clientConn) handleQuery(msg []byte) error {
	text, _, ok := wire.CString(body(msg))
	if !ok {
		return protocolViolation("invalid Query message")
	}
	v := c.srv.guard.Check(text)
	if v.Refused {
		c.logRefusal(v, text)
		return c.refuseSimple(&pgError{Severity: "ERROR", Code: v.Code, Message: v.Message, Hint: v.Hint})
	}
	b, perr := c.ensureBackend()
	if perr != nil {
		c.relay.push(request{kind: reqQuery, answer: true, err: perr, status: 'I'})
		c.relay.flushPoint()
		return nil
	}
	c.applyEffects(b, v)
	b.Out.Write(msg)
	c.relay.unsynced = false
	c.relay.push(request{kind: reqQuery})
	if b.Tenant != c.tenant {
		c.restoreContext(b)
	}
	c.relay.flushPoint()
	c.unnamed = nil // a Query drops the unnamed statement
	return nil
}

// applyEffects prepares for what an allowed statement will do to the session: a reset of the
// tenant context and settings, which must be put back; a change of settings, under which the
// server may parse the client's next statements before the proxy learns the new values.
func (c *clientConn) applyEffects(b *session.Backend, v policy.Verdict) {
	if v.ChangesSettings {
		c.settingsChanging = true
	}
	if v.ResetsContext {
		// Until the proxy has put it back and seen it committed, the backend's context is
		// unknown; "" makes sure it is set again, and never trusted meanwhile.
		b.Tenant = ""
		session.ForgetUnreported(b)
		c.resetPending = true
	}
}

// restoreContext sends, right behind a client's Query or Sync while the backend's context is
// unknown (after RESET ALL or DISCARD ALL), the statements that put the tenant context and the
// client's startup settings back, so the client's next messages run with them. Their answers are
// the proxy's own. Inside a transaction a ROLLBACK TO SAVEPOINT could undo them, so the context
// stays unknown, and is restored behind every message, until settle confirms it outside any
// transaction.
func (c *clientConn) restoreContext(b *session.Backend) {
	sql := session.SetStatement(c.srv.cfg.Tenancy.Setting, c.tenant)
	for _, name := range c.startupParams.Names() {
		value, _ := c.startupParams.Get(name)
		sql += "; " + session.SetStatement(name, value)
	}
	c.writeQuery(b, sql)
	c.relay.push(request{kind: reqQuery, hide: true, hideError: true})
}

// refuseSimple answers a refused Query (or FunctionCall) as the server answers an error: inside
// a transaction block the transaction fails, exactly as an error would make it.
func (c *clientConn) refuseSimple(e *pgError) error {
	b := c.backend
	if b == nil || (b.TxStatus == 'I' && c.relay.pending() == 0 && !c.relay.unsynced && !c.relay.skipping) {
		c.relay.push(request{kind: reqQuery, answer: true, err: e, status: 'I'})
		c.relay.flushPoint()
		return nil
	}
	// Make the server fail a statement, and show the client our error instead of its.
	c.writeQuery(b, "tenantproxy refused this statement")
	c.relay.unsynced = false
	c.relay.push(request{kind: reqQuery, err: e})
	c.relay.flushPoint()
	return nil
}

func (c *clientConn) refuse42501Simple(rule, message string) error {
	c.logRefusal(policy.Verdict{Refused: true, Code: codeInsufficientPriv, Rule: rule, Message: message}, nil)
	return c.refuseSimple(errorf(codeInsufficientPriv, message))
}

func (c *clientConn) writeQuery(b *session.Backend, sql string) {
	buf, at := wire.BeginMessage(b.Out.Bytes(), 'Q')
	buf = append(buf, sql...)
	buf = append(buf, 0)
	b.Out.Commit(wire.EndMessage(buf, at))
}

// failExtended answers an extended-query message with an error, as the server would: the
// rest of the group up to Sync is skipped and an open transaction fails.
func (c *clientConn) failExtended(e *pgError) error {
	if c.backend == nil {
		c.relay.push(request{kind: reqParse, answer: true, err: e})
		c.relay.localSkip = true
		return nil
	}
	// A Parse that cannot succeed puts the server into the same state an error of its own
	// would; the client sees our error in place of the server's.
	b := c.backend
	buf, at := wire.BeginMessage(b.Out.Bytes(), 'P')
	buf = append(buf, "tenantproxy_refused\x00tenantproxy refused this statement\x00\x00\x00"...)
	b.Out.Commit(wire.EndMessage(buf, at))
	c.relay.unsynced = true
	c.relay.push(request{kind: reqParse, err: e})
	return nil
}

// parseMessage splits a Parse body: statement name, query, and the parameter types.
func parseMessage(msg []byte) (name, query, types []byte, ok bool) {
	name, rest, ok := wire.CString(body(msg))
	if !ok {
		return nil, nil, nil, false
	}
	query, types, ok = wire.CString(rest)
	if !ok || len(types) < 2 {
		return nil, nil, nil, false
	}
	n := int(types[0])<<8 | int(types[1])
	if len(types) != 2+4*n {
		return nil, nil, nil, false
	}
	return name, query, types, true
}

func (c *clientConn) handleParse(msg []byte) error {
	name, query, types, ok := parseMessage(msg)
	if !ok {
		return protocolViolation("invalid Parse message")
	}
	v := c.srv.guard.Check(query)
	if v.Refused {
		c.logRefusal(v, query)
		return c.failExtended(&pgError{Severity: "ERROR", Code: v.Code, Message: v.Message, Hint: v.Hint})
	}
	b, perr := c.ensureBackend()
	if perr != nil {
		return c.failExtended(perr)
	}
	c.relay.unsynced = true
	// Its effects happen each time it is executed: remember the statements that have some.
	if v.ResetsContext || v.ChangesSettings {
		if c.effectful == nil {
			c.effectful = map[string]policy.Verdict{}
		}
		c.effectful[string(name)] = v
		c.applyEffects(b, v)
	} else if len(c.effectful) > 0 {
		delete(c.effectful, string(name))
	}
	if c.srv.mode == policy.SessionMode || len(name) == 0 {
		if len(name) == 0 && c.srv.mode == policy.TransactionMode {
			c.unnamed = append(c.unnamed[:0], body(msg)...)
			c.unnamedCheck = c.checkouts
		}
		b.Out.Write(msg)
		c.relay.push(request{kind: reqParse})
		return nil
	}

	// Transaction mode: statements live on the pool's backends under pool-wide names.
	if _, exists := c.statements[string(name)]; exists {
		return c.failExtended(errorf("42P05", fmt.Sprintf("prepared statement %q already exists", name)))
	}
	stmt := c.srv.pool.Statement(query, types, c.statementScope())
	clientName := string(name)
	c.statements[clientName] = stmt
	if b.Prepared.Has(stmt) {
		c.relay.push(request{kind: reqParse, answer: true, stmt: stmt, name: clientName})
		return nil
	}
	c.prepareOn(b, stmt, clientName, false)
	return nil
}

// prepareOn sends stmt's Parse to b, closing the least recently used statement first when b
// holds too many. hide: the proxy prepares it for the client's Bind or Describe, which the
// client believes prepared already, so only an error is shown.
func (c *clientConn) prepareOn(b *session.Backend, stmt *session.Statement, name string, hide bool) {
	if evict := b.Prepared.Add(stmt); evict != nil {
		buf, at := wire.BeginMessage(b.Out.Bytes(), 'C')
		buf = append(buf, 'S')
		buf = append(buf, evict.Name...)
		buf = append(buf, 0)
		b.Out.Commit(wire.EndMessage(buf, at))
		c.relay.push(request{kind: reqClose, hide: true, hideError: true})
	}
	b.Out.Write(stmt.Parse)
	c.relay.push(request{kind: reqParse, hide: hide, stmt: stmt, name: name})
}

// statementFor resolves the client's statement name for a Bind or Describe in transaction
// mode, preparing it on the backend if this backend has not seen it. It returns the name to
// send, or an error for the client.
func (c *clientConn) statementFor(b *session.Backend, name []byte) (string, *pgError) {
	if len(name) == 0 {
		if c.unnamed == nil {
			// Whatever unnamed statement the backend holds is another client's.
			return "", errorf("26000", "unnamed prepared statement does not exist")
		}
		if c.unnamedCheck != c.checkouts {
			// The unnamed statement was prepared on another backend (or replaced by a Query).
			buf, at := wire.BeginMessage(b.Out.Bytes(), 'P')
			buf = append(buf, c.unnamed...)
			b.Out.Commit(wire.EndMessage(buf, at))
			c.relay.push(request{kind: reqParse, hide: true})
			c.unnamedCheck = c.checkouts
		}
		return "", nil
	}
	stmt, ok := c.statements[string(name)]
	if !ok {
		return "", errorf("26000", fmt.Sprintf("prepared statement %q does not exist", name))
	}
	if !b.Prepared.Has(stmt) {
		if scope := c.statementScope(); scope != stmt.Scope {
			// Prepared anew here, it is parsed under the settings in force now.
			stmt = c.srv.pool.Statement([]byte(stmt.Query), stmt.Types(), scope)
			c.statements[string(name)] = stmt
		}
		if !b.Prepared.Has(stmt) {
			c.prepareOn(b, stmt, "", true)
		}
	}
	return stmt.Name, nil
}

// statementScope names the settings a statement the client prepares now is parsed under: the
// ones of its tracked settings that matter to parsing. While a change of settings may be in
// flight or in force only inside the transaction, the server may parse under settings the
// client's record does not show yet: the statement is then the client's own, shared with no one.
func (c *clientConn) statementScope() string {
	if c.settingsChanging {
		return "local " + strconv.FormatUint(c.srv.ownScopes.Add(1), 10)
	}
	return c.params.ParseKey()
}

func (c *clientConn) handleBind(msg []byte) error {
	b, perr := c.ensureBackend()
	if perr != nil {
		return c.failExtended(perr)
	}
	portal, rest, ok1 := wire.CString(body(msg))
	name, tail, ok2 := wire.CString(rest)
	if !ok1 || !ok2 {
		return protocolViolation("invalid Bind message")
	}
	if v, ok := c.effectful[string(name)]; ok {
		c.applyEffects(b, v)
	}
	if c.srv.mode == policy.SessionMode {
		return c.forwardExtended(msg, reqBind)
	}
	send, perr := c.statementFor(b, name)
	if perr != nil {
		return c.failExtended(perr)
	}
	if send == string(name) {
		return c.forwardExtended(msg, reqBind)
	}
	buf, at := wire.BeginMessage(b.Out.Bytes(), 'B')
	buf = append(buf, portal...)
	buf = append(buf, 0)
	buf = append(buf, send...)
	buf = append(buf, 0)
	buf = append(buf, tail...)
	b.Out.Commit(wire.EndMessage(buf, at))
	c.relay.unsynced = true
	c.relay.push(request{kind: reqBind})
	return nil
}

func (c *clientConn) handleDescribe(msg []byte) error {
	bd := body(msg)
	if len(bd) < 2 || (bd[0] != 'S' && bd[0] != 'P') {
		return protocolViolation("invalid Describe message")
	}
	kind := reqDescribePortal
	if bd[0] == 'S' {
		kind = reqDescribeStmt
	}
	b, perr := c.ensureBackend()
	if perr != nil {
		return c.failExtended(perr)
	}
	if c.srv.mode == policy.SessionMode || kind == reqDescribePortal {
		return c.forwardExtended(msg, kind)
	}
	name, _, ok := wire.CString(bd[1:])
	if !ok {
		return protocolViolation("invalid Describe message")
	}
	send, perr := c.statementFor(b, name)
	if perr != nil {
		return c.failExtended(perr)
	}
	buf, at := wire.BeginMessage(b.Out.Bytes(), 'D')
	buf = append(buf, 'S')
	buf = append(buf, send...)
	buf = append(buf, 0)
	b.Out.Commit(wire.EndMessage(buf, at))
	c.relay.unsynced = true
	c.relay.push(request{kind: kind})
	return nil
}

func (c *clientConn) handleClose(msg []byte) error {
	bd := body(msg)
	if len(bd) < 2 || (bd[0] != 'S' && bd[0] != 'P') {
		return protocolViolation("invalid Close message")
	}
	if c.srv.mode == policy.TransactionMode && bd[0] == 'S' && len(bd) > 2 {
		// The statement stays prepared on the backends for whoever else uses it: the
		// client just forgets its name, and gets the CloseComplete it expects.
		name, _, ok := wire.CString(bd[1:])
		if !ok {
			return protocolViolation("invalid Close message")
		}
		clientName := string(name)
		stmt := c.statements[clientName]
		delete(c.statements, clientName)
		c.relay.push(request{kind: reqClose, answer: true, stmt: stmt, name: clientName})
		return nil
	}
	if _, perr := c.ensureBackend(); perr != nil {
		return c.failExtended(perr)
	}
	return c.forwardExtended(msg, reqClose)
}

func (c *clientConn) forwardExtended(msg []byte, kind reqKind) error {
	b, perr := c.ensureBackend()
	if perr != nil {
		return c.failExtended(perr)
	}
	b.Out.Write(msg)
	c.relay.unsynced = true
	c.relay.push(request{kind: kind})
	return nil
}

func (c *clientConn) handleSync(msg []byte) error {
	if c.relay.localSkip || c.backend == nil {
		status := byte('I')
		if c.backend != nil {
			status = c.backend.TxStatus
		}
		c.relay.localSkip = false
		c.relay.push(request{kind: reqSync, answer: true, status: status})
		c.relay.flushPoint()
		return nil
	}
	c.backend.Out.Write(msg)
	c.relay.unsynced = false
	c.relay.push(request{kind: reqSync})
	if c.backend.Tenant != c.tenant {
		c.restoreContext(c.backend)
	}
	c.relay.flushPoint()
	return nil
}

func (c *clientConn) logRefusal(v policy.Verdict, text []byte) {
	c.srv.metrics.refusals.WithLabelValues(c.tenant, v.Rule).Inc()
	ev := c.log.Warn().Str("rule", v.Rule).Str("code", v.Code)
	if text != nil {
		ev = ev.Str("statement", policy.Fingerprint(string(text)))
	}
	ev.Msg("statement refused")
}

// drain relays the backend's answers to every request that is sure to be answered.
func (c *clientConn) drain() error {
	for c.relay.awaiting > 0 && !c.relay.copyIn {
		r := c.relay.front()
		if r.answer {
			c.answer(r)
			continue
		}
		if c.relay.skipping && r.kind != reqSync {
			// The server ignores every message up to Sync, a simple Query too: no answer.
			c.undo(r)
			c.relay.pop()
			continue
		}
		if err := c.relayOne(r); err != nil {
			return err
		}
	}
	return nil
}

// answer writes the proxy's own answer for r in its place in the stream.
func (c *clientConn) answer(r *request) {
	switch {
	case r.kind == reqSync || r.kind == reqQuery:
		if r.err != nil {
			writeError(c.out, r.err)
		}
		writeReady(c.out, r.status)
		c.relay.skipping = false
	case c.relay.skipping:
		// The server would have skipped this message: no answer, and no effect.
		c.undo(r)
	case r.err != nil:
		writeError(c.out, r.err)
		c.relay.skipping = true
	case r.kind == reqParse:
		c.out.Write([]byte{'1', 0, 0, 0, 4})
	case r.kind == reqClose:
		c.out.Write([]byte{'3', 0, 0, 0, 4})
	}
	c.relay.pop()
}

// undo reverses what the proxy assumed a request would do, when it failed or was skipped.
func (c *clientConn) undo(r *request) {
	switch r.kind {
	case reqParse:
		if r.stmt != nil && !r.answer && c.backend != nil {
			c.backend.Prepared.Remove(r.stmt)
		}
		if r.name != "" && c.statements[r.name] == r.stmt {
			delete(c.statements, r.name)
		}
	case reqClose:
		if r.name != "" && r.stmt != nil {
			c.statements[r.name] = r.stmt
		}
	}
}

// relayOne reads backend messages until r is answered, passing them to the client (or not).
func (c *clientConn) relayOne(r *request) error {
	b := c.backend
	for {
		typ, _, err := b.In.PeekHeader()
		if err != nil {
			return c.backendLost(err)
		}
		switch typ {
		case 'D', 'd', 'c', 'T', 'N', 'A', 'H', 'W': // rows, copy out, descriptions, notices
			if typ == 'T' && (r.kind == reqDescribeStmt || r.kind == reqDescribePortal) {
				if err := c.pass(r, b); err != nil {
					return err
				}
				c.relay.pop()
				return nil
			}
			if err := c.pass(r, b); err != nil {
				return err
			}
			continue
		}
		_, msg, err := b.In.Next()
		if err != nil {
			return c.backendLost(err)
		}
		switch typ {
		case 'S': // ParameterStatus: the client sees every change
			b.NoteParameter(msg)
			if !r.hide {
				c.noteClientParameter(msg)
			}
			c.out.Write(msg)
			continue
		case 'E':
			return c.relayError(r, msg)
		case 'Z':
			if r.kind != reqQuery && r.kind != reqSync {
				return c.desync(r, typ)
			}
			if len(msg) != 6 {
				return c.backendLost(errors.New("malformed ReadyForQuery"))
			}
			b.TxStatus = msg[5]
			c.relay.skipping = false
			if !r.hide {
				c.out.Write(msg)
			}
			c.relay.pop()
			return nil
		case 'C':
			c.noteCommand(msg)
			c.emit(r, msg)
			if r.kind == reqExecute {
				c.relay.pop()
				return nil
			}
			if r.kind != reqQuery {
				return c.desync(r, typ)
			}
			continue
		case 'I': // EmptyQueryResponse
			c.emit(r, msg)
			if r.kind == reqExecute {
				c.relay.pop()
				return nil
			}
			if r.kind != reqQuery {
				return c.desync(r, typ)
			}
			continue
		case 'G': // CopyInResponse: the client streams data next
			c.emit(r, msg)
			c.relay.irregular = true
			if c.swallowedByCopy(r) {
				continue // the server ends the COPY with an error: relay it
			}
			c.relay.copyIn = true
			return nil
		}
		var want reqKind
		switch typ {
		case '1':
			want = reqParse
		case '2':
			want = reqBind
		case '3':
			want = reqClose
		case 's':
			want = reqExecute
		case 'n':
			if r.kind != reqDescribeStmt {
				want = reqDescribePortal
			} else {
				want = reqDescribeStmt
			}
		case 't':
			if r.kind != reqDescribeStmt {
				return c.desync(r, typ)
			}
			c.emit(r, msg)
			continue
		default:
			return c.desync(r, typ)
		}
		if r.kind != want {
			return c.desync(r, typ)
		}
		c.emit(r, msg)
		c.relay.pop()
		return nil
	}
}

// pass streams a message the proxy never inspects, or drops it for a hidden request.
func (c *clientConn) pass(r *request, b *session.Backend) error {
	var err error
	if r.hide {
		err = b.In.Skip()
	} else {
		err = b.In.CopyMessage(c.out)
	}
	if err != nil {
		return c.backendLost(err)
	}
	return nil
}

func (c *clientConn) emit(r *request, msg []byte) {
	if !r.hide {
		c.out.Write(msg)
	}
}

// relayError passes (or replaces, or hides) an ErrorResponse. In an extended-query group it
// ends the group: the server skips to Sync.
func (c *clientConn) relayError(r *request, msg []byte) error {
	pgErr := session.DecodeError(msg)
	switch {
	case r.err != nil:
		writeError(c.out, r.err)
	case r.hideError:
		c.log.Debug().Str("code", pgErr.Code).Msg(pgErr.Message)
	default:
		c.out.Write(msg)
	}
	if pgErr.Severity == "FATAL" || pgErr.Severity == "PANIC" {
		c.out.Flush()
		c.discardBackend()
		return errBackendFatal
	}
	if r.kind == reqQuery {
		return nil // the Query goes on to ReadyForQuery
	}
	c.undo(r)
	c.relay.skipping = true
	c.relay.irregular = true
	c.relay.pop()
	return nil
}

var errBackendFatal = errors.New("the backend session ended with a fatal error")

// noteClientParameter follows the client's own change of a tracked setting.
func (c *clientConn) noteClientParameter(msg []byte) {
	name, rest, ok := wire.CString(body(msg))
	if !ok {
		return
	}
	value, _, _ := wire.CString(rest)
	if _, tracked := c.params.Get(string(name)); tracked || session.Tracked(string(name)) {
		c.params.Set(string(name), string(value))
	}
}

// noteCommand watches command tags that drop every prepared statement of the session.
func (c *clientConn) noteCommand(msg []byte) {
	tag, _, _ := wire.CString(body(msg))
	if len(tag) > 0 && tag[0] == 'D' && (bytes.Equal(tag, []byte("DISCARD ALL")) || bytes.Equal(tag, []byte("DEALLOCATE ALL"))) {
		if c.backend != nil {
			c.backend.Prepared.Clear()
		}
		if c.srv.mode == policy.TransactionMode {
			clear(c.statements)
			c.unnamed = nil
		}
	}
}

// swallowedByCopy forgets the messages the client sent behind a COPY before it learnt of it,
// as the server in copy-in reads them: it ignores Sync, so those Syncs are never answered (a COPY
// run by Execute then still needs a Sync the server sees, so its group is unsynced until the
// client sends one; a COPY run by a simple Query ends with its own ReadyForQuery), and the first
// other message ends the COPY with an error and is itself thrown away. It reports whether the
// COPY is ended that way, so that the relay passes on the server's error instead of waiting for
// copy data.
func (c *clientConn) swallowedByCopy(copyReq *request) (ended bool) {
	droppedSync := false
	for i := 1; i < c.relay.pending() && !ended; {
		r := &c.relay.queue[c.relay.head+i]
		switch {
		case r.answer:
			i++ // answered by the proxy: nothing went to the server
		case r.kind == reqSync:
			c.relay.remove(i)
			droppedSync = true
		default:
			c.undo(r)
			c.relay.remove(i)
			ended = true
		}
	}
	if droppedSync && copyReq.kind == reqExecute {
		c.relay.unsynced = true
	}
	return ended
}

// desync is a backend answer that matches no request: the proxy no longer knows what the
// session is doing, so it is closed, and so is the client's connection.
func (c *clientConn) desync(r *request, typ byte) error {
	c.log.Error().Str("message", string(typ)).Int("request", int(r.kind)).Msg("backend answer out of step with requests")
	c.discardBackend()
	return fatal(codeInternal, "tenantproxy lost track of the backend session; please reconnect")
}

// backendLost ends the client's connection after its backend failed mid-request.
func (c *clientConn) backendLost(err error) error {
	c.log.Warn().Err(err).Msg("backend session lost")
	c.discardBackend()
	return fatal(codeConnectionFailure, "tenantproxy: the database session was lost")
}

// settle runs once every answered request has been relayed: it puts the tenant context back
// if the client reset it, and in transaction mode returns an idle backend to the pool.
func (c *clientConn) settle() error {
	if c.relay.pending() > 0 || c.relay.copyIn {
		return nil
	}
	if c.resetPending {
		// RESET ALL and DISCARD ALL take a client back to its startup settings.
		c.resetPending = false
		c.params = c.startupParams.Clone()
	}
	b := c.backend
	if b == nil {
		c.settingsChanging = false
		return c.out.Flush()
	}
	// A server skipping to Sync after an error ignores everything but Sync: not idle either.
	idle := b.TxStatus == 'I' && !c.relay.unsynced && !c.relay.skipping
	if idle {
		c.settingsChanging = false // answered, and out of any transaction: c.params says it all
	}
	if !idle {
		// Inside a transaction the context is restored behind each message (restoreContext)
		// and confirmed once the transaction is over.
		return c.out.Flush()
	}
	if c.srv.mode == policy.TransactionMode {
		if c.relay.irregular {
			// After an error inside an extended-query group or a COPY, what the server skipped
			// (an eviction's Close, say) may differ from what the proxy believes it did: such a
			// session serves no one else. The cost is a new session after such errors.
			c.discardBackend()
			return c.out.Flush()
		}
		c.releaseBackend() // the next checkout sets the context if it must
		return c.out.Flush()
	}
	if b.Tenant != c.tenant || !c.srv.pool.SettingsMatch(b, c.params) {
		if err := c.srv.pool.Prepare(b, c.tenant, c.params); err != nil {
			c.log.Error().Err(err).Msg("restoring the tenant context")
			c.discardBackend()
			return fatal(codeInternal, "tenantproxy could not restore the tenant context; please reconnect")
		}
	}
	return c.out.Flush()
}

package proxy

import (
	"fmt"

	"github.com/tenantproxy/tenantproxy/internal/wire"
	"github.com/tenantproxy/tenantproxy/proxy/queue"
	"github.com/tenantproxy/tenantproxy/session"
)

// statements is how a client's prepared statements reach the backends, one strategy per pool
// mode: as they are when the backend is the client's own (session mode), or under pool-wide
// names on whichever backend serves the client (transaction mode). The serve loop has checked
// the message and made sure a backend serves the client.
type statements interface {
	parse(c *clientConn, b *session.Backend, msg, name, query, types []byte) error
	bind(c *clientConn, b *session.Backend, msg, portal, name, rest []byte) error
	describeStatement(c *clientConn, b *session.Backend, msg, name []byte) error
	// closeStatement handles a Close of a named statement.
	closeStatement(c *clientConn, msg, name []byte) error
	// dropAll follows DISCARD ALL or DEALLOCATE ALL, which drop every statement of the session.
	dropAll(b *session.Backend)
	// querySent follows a simple Query, which drops the unnamed statement.
	querySent()
	// deallocate answers a lone SQL DEALLOCATE name sent as a Query, when the strategy must
	// (reporting whether it did); otherwise it goes to the server. prepareDeallocate and
	// deallocateStep do the same for one sent through the extended protocol: its unnamed Parse,
	// then the Bind, Describe or Execute that concerns it.
	deallocate(c *clientConn, name string) bool
	prepareDeallocate(c *clientConn, name string) bool
	deallocateStep(c *clientConn, kind queue.Kind, portal, statement []byte) (bool, error)
	// checkedOut readies a backend just given to the client, before its first message.
	checkedOut(b *session.Backend)
	// closed follows a Close the proxy answered, once it takes effect.
	closed(r *queue.Request[undo])
	// undo reverses what a Parse or Close was assumed to do, when the server never did it.
	undo(r *queue.Request[undo])
	// leave lets go of everything the client held.
	leave()
}

// undo is what a request concerns, for what follows it: the pool's statement and the client's
// name for it, so that the client's name replaces the pool's in errors, and a Parse that never
// took effect (forget) or a Close that did not (restore) is reversed.
type undo struct {
	stmt *session.Statement
	name string
	// forget: a Parse under the client's name; if it fails, the client's name is gone too.
	forget bool
	// tag is the CommandComplete the proxy writes for a Query it answers itself.
	tag string
}

type request = queue.Request[undo]

// passThrough is session mode: the backend belongs to the client, so its statements are the
// client's own, under the client's names.
type passThrough struct{}

func (passThrough) parse(c *clientConn, b *session.Backend, msg, _, _, _ []byte) error {
	return c.forward(b, msg, queue.Parse)
}

func (passThrough) bind(c *clientConn, b *session.Backend, msg, _, _, _ []byte) error {
	return c.forward(b, msg, queue.Bind)
}

func (passThrough) describeStatement(c *clientConn, b *session.Backend, msg, _ []byte) error {
	return c.forward(b, msg, queue.DescribeStatement)
}

func (passThrough) closeStatement(c *clientConn, msg, _ []byte) error {
	b, perr := c.ensureBackend()
	if perr != nil {
		return c.failExtended(perr)
	}
	return c.forward(b, msg, queue.Close)
}

func (passThrough) dropAll(b *session.Backend)                 { b.Prepared.Clear() }
func (passThrough) querySent()                                 {}
func (passThrough) deallocate(*clientConn, string) bool        { return false }
func (passThrough) prepareDeallocate(*clientConn, string) bool { return false }
func (passThrough) deallocateStep(*clientConn, queue.Kind, []byte, []byte) (bool, error) {
	return false, nil
}
func (passThrough) checkedOut(*session.Backend) {}
func (passThrough) closed(*request)             {}
func (passThrough) undo(*request)               {}
func (passThrough) leave()                      {}

// shared is transaction mode: the client's statements live on the pool's backends under
// pool-wide names, prepared on whichever backend serves the client, shared by the clients of
// its tenant that prepare the same statement under the same settings.
type shared struct {
	c *clientConn
	// byName are the client's named statements, by its names; each holds a reference.
	byName map[string]*session.Statement
	// bytes is what the client's statements take, bounded by its limit.
	bytes int64
	// unnamed is the client's unnamed statement: its Parse body, and the backend checkout on
	// which it was last prepared.
	unnamed         []byte
	unnamedCheckout uint64
	// deallocStatement is set while the client's unnamed statement is SQL DEALLOCATE of this
	// name, and deallocPortal while its unnamed portal is: the proxy answers them itself.
	deallocStatement, deallocPortal string
}

func newShared(c *clientConn) *shared {
	return &shared{c: c, byName: map[string]*session.Statement{}}
}

func (s *shared) parse(c *clientConn, b *session.Backend, msg, name, query, types []byte) error {
	if len(name) == 0 {
		s.deallocStatement = ""
		s.unnamed = append(s.unnamed[:0], msg[wire.HeaderSize:]...)
		s.unnamedCheckout = c.checkouts
		return c.forward(b, msg, queue.Parse)
	}
	if _, exists := s.byName[string(name)]; exists {
		return c.failExtended(errorf("42P05", fmt.Sprintf("prepared statement %q already exists", name)))
	}
	if limit := int64(c.srv.Config().Limits.ClientStatementMemory); s.bytes+int64(len(msg)) > limit {
		return c.failExtended(&pgError{Severity: "ERROR", Code: codeProgramLimitExceeded,
			Message: fmt.Sprintf("tenantproxy: this connection's prepared statements would take more than %d bytes (limits.client_prepared_statement_memory)", limit),
			Hint:    "Close the prepared statements you no longer use, or use the unnamed statement for one-off queries."})
	}
	stmt, err := c.srv.pool.Statement(query, types, c.session.statementScope(&c.srv.ownScopes))
	if err != nil {
		return c.failExtended(&pgError{Severity: "ERROR", Code: codeOutOfMemory,
			Message: "tenantproxy: out of memory for prepared statements (limits.prepared_statement_memory)",
			Hint:    "Retry later; the proxy's clients hold as many prepared statements as it keeps."})
	}
	clientName := string(name)
	s.hold(clientName, stmt)
	if b.Prepared.Has(stmt) {
		c.queue.Push(request{Kind: queue.Parse, Answered: true, Undo: undo{stmt: stmt, name: clientName, forget: true}})
		return nil
	}
	s.prepareOn(b, stmt, clientName, false)
	return nil
}

// hold records the client's name for stmt, whose reference it now holds.
func (s *shared) hold(name string, stmt *session.Statement) {
	s.byName[name] = stmt
	s.bytes += int64(stmt.Size())
}

// take forgets the client's name and hands its statement's reference to the caller (nil when
// there is none).
func (s *shared) take(name string) *session.Statement {
	stmt, ok := s.byName[name]
	if !ok {
		return nil
	}
	delete(s.byName, name)
	s.bytes -= int64(stmt.Size())
	return stmt
}

// drop forgets the client's name and lets go of its statement.
func (s *shared) drop(name string) {
	if stmt := s.take(name); stmt != nil {
		s.c.srv.pool.ReleaseStatement(stmt)
	}
}

// prepareOn sends stmt's Parse to b, closing the least recently used statements first when b
// would hold too many. own: the proxy prepares it for the client's Bind or Describe, which the
// client believes prepared already, so only an error is shown, and a failure forgets nothing.
func (s *shared) prepareOn(b *session.Backend, stmt *session.Statement, name string, own bool) {
	s.closeOn(b, b.Prepared.Add(stmt))
	b.Out.Write(stmt.Parse)
	s.c.queue.Push(request{Kind: queue.Parse, Own: own, ShowError: own, Undo: undo{stmt: stmt, name: name, forget: !own}})
}

// closeOn closes statements on b, out of the client's sight (closing a statement the server does
// not have is no error).
func (s *shared) closeOn(b *session.Backend, stmts []*session.Statement) {
	for _, old := range stmts {
		b.Out.Commit(wire.AppendClose(b.Out.Bytes(), wire.TargetStatement, old.Name))
		s.c.queue.Push(request{Kind: queue.Close, Own: true})
	}
}

// checkedOut closes the statements no client holds any more on the backend, before the
// client's first message; a Sync of the proxy's own ends that group.
func (s *shared) checkedOut(b *session.Backend) {
	released := b.Prepared.Released(s.c.srv.pool)
	if len(released) == 0 {
		return
	}
	s.closeOn(b, released)
	b.Out.Commit(append(b.Out.Bytes(), wire.Sync, 0, 0, 0, 4))
	s.c.queue.Push(request{Kind: queue.Sync, Own: true})
}

// resolve finds the client's statement for a Bind or Describe, preparing it on b if b has not
// seen it. It returns the name to send, or an error for the client.
func (s *shared) resolve(b *session.Backend, name []byte) (*session.Statement, *pgError) {
	c := s.c
	if len(name) == 0 {
		if s.unnamed == nil {
			// Whatever unnamed statement the backend holds is another client's.
			return nil, errorf("26000", "unnamed prepared statement does not exist")
		}
		if s.unnamedCheckout != c.checkouts {
			// The unnamed statement was prepared on another backend.
			buf, at := wire.BeginMessage(b.Out.Bytes(), wire.Parse)
			buf = append(buf, s.unnamed...)
			b.Out.Commit(wire.EndMessage(buf, at))
			c.queue.Push(request{Kind: queue.Parse, Own: true, ShowError: true})
			s.unnamedCheckout = c.checkouts
		}
		return nil, nil
	}
	stmt, ok := s.byName[string(name)]
	if !ok {
		return nil, errNoStatement(string(name))
	}
	if b.Prepared.Has(stmt) {
		return stmt, nil
	}
	if scope := c.session.statementScope(&c.srv.ownScopes); scope != stmt.Scope {
		// Prepared anew here, it is parsed under the settings in force now.
		again, err := c.srv.pool.Statement(stmt.Query(), stmt.Types(), scope)
		if err != nil {
			return nil, &pgError{Severity: "ERROR", Code: codeOutOfMemory, Message: "tenantproxy: out of memory for prepared statements (limits.prepared_statement_memory)"}
		}
		s.drop(string(name))
		s.hold(string(name), again)
		stmt = again
	}
	if !b.Prepared.Has(stmt) {
		s.prepareOn(b, stmt, string(name), true)
	}
	return stmt, nil
}

func (s *shared) bind(c *clientConn, b *session.Backend, msg, portal, name, rest []byte) error {
	stmt, perr := s.resolve(b, name)
	if perr != nil {
		return c.failExtended(perr)
	}
	if stmt == nil {
		return c.forward(b, msg, queue.Bind)
	}
	b.Out.Commit(wire.AppendBind(b.Out.Bytes(), portal, stmt.Name, rest))
	c.queue.Push(request{Kind: queue.Bind, Undo: undo{stmt: stmt, name: string(name)}})
	return nil
}

func (s *shared) describeStatement(c *clientConn, b *session.Backend, msg, name []byte) error {
	stmt, perr := s.resolve(b, name)
	if perr != nil {
		return c.failExtended(perr)
	}
	if stmt == nil {
		return c.forward(b, msg, queue.DescribeStatement)
	}
	b.Out.Commit(wire.AppendDescribe(b.Out.Bytes(), wire.TargetStatement, stmt.Name))
	c.queue.Push(request{Kind: queue.DescribeStatement, Undo: undo{stmt: stmt, name: string(name)}})
	return nil
}

// closeStatement forgets the client's name at once (the client may prepare the name again in
// the same pipeline), and lets go of the statement once the answer is given (closed), unless the
// server would have skipped the Close (undo). The statement stays prepared on the backends while
// another client of its tenant holds it; the client gets the CloseComplete it expects.
func (s *shared) closeStatement(c *clientConn, _, name []byte) error {
	clientName := string(name)
	c.queue.Push(request{Kind: queue.Close, Answered: true, Undo: undo{stmt: s.take(clientName), name: clientName}})
	return nil
}

func (s *shared) closed(r *request) {
	if r.Undo.stmt != nil {
		s.c.srv.pool.ReleaseStatement(r.Undo.stmt)
	}
}

func (s *shared) dropAll(b *session.Backend) {
	b.Prepared.Clear()
	s.leave()
	s.unnamed, s.deallocStatement = nil, ""
}

func (s *shared) querySent() { s.unnamed, s.deallocStatement, s.deallocPortal = nil, "", "" }

func (s *shared) undo(r *request) {
	stmt := r.Undo.stmt
	if stmt == nil {
		return
	}
	switch r.Kind {
	case queue.Parse:
		if !r.Answered && s.c.backend != nil {
			s.c.backend.Prepared.Remove(stmt)
		}
		if r.Undo.forget && s.byName[r.Undo.name] == stmt {
			s.drop(r.Undo.name)
		}
	case queue.Close, queue.Execute:
		// A Close (or an Execute of DEALLOCATE) the server would have skipped never took
		// effect: the name is the client's again (a Parse of the name behind it in the same
		// group is undone too).
		s.drop(r.Undo.name)
		s.hold(r.Undo.name, stmt)
	}
}

func (s *shared) leave() {
	for name := range s.byName {
		s.drop(name)
	}
}

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
	// undo reverses what a Parse or Close was assumed to do, when the server never did it.
	undo(r *queue.Request[undo])
}

// undo is what a request must reverse if the server never carries it out: the statement a
// Parse prepared (or a Close forgot) under the client's name.
type undo struct {
	stmt *session.Statement
	name string
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

func (passThrough) dropAll(b *session.Backend) { b.Prepared.Clear() }
func (passThrough) querySent()                 {}
func (passThrough) undo(*request)              {}

// shared is transaction mode: the client's statements live on the pool's backends under
// pool-wide names, prepared on whichever backend serves the client, shared by every client that
// prepares the same statement under the same settings.
type shared struct {
	c *clientConn
	// byName are the client's named statements, by its names.
	byName map[string]*session.Statement
	// unnamed is the client's unnamed statement: its Parse body, and the backend checkout on
	// which it was last prepared.
	unnamed         []byte
	unnamedCheckout uint64
}

func newShared(c *clientConn) *shared {
	return &shared{c: c, byName: map[string]*session.Statement{}}
}

func (s *shared) parse(c *clientConn, b *session.Backend, msg, name, query, types []byte) error {
	if len(name) == 0 {
		s.unnamed = append(s.unnamed[:0], msg[wire.HeaderSize:]...)
		s.unnamedCheckout = c.checkouts
		return c.forward(b, msg, queue.Parse)
	}
	if _, exists := s.byName[string(name)]; exists {
		return c.failExtended(errorf("42P05", fmt.Sprintf("prepared statement %q already exists", name)))
	}
	stmt := c.srv.pool.Statement(query, types, c.session.statementScope(&c.srv.ownScopes))
	clientName := string(name)
	s.byName[clientName] = stmt
	if b.Prepared.Has(stmt) {
		c.queue.Push(request{Kind: queue.Parse, Answered: true, Undo: undo{stmt, clientName}})
		return nil
	}
	s.prepareOn(b, stmt, clientName, false)
	return nil
}

// prepareOn sends stmt's Parse to b, closing the least recently used statement first when b
// holds too many. own: the proxy prepares it for the client's Bind or Describe, which the
// client believes prepared already, so only an error is shown.
func (s *shared) prepareOn(b *session.Backend, stmt *session.Statement, name string, own bool) {
	if evict := b.Prepared.Add(stmt); evict != nil {
		b.Out.Commit(wire.AppendClose(b.Out.Bytes(), wire.TargetStatement, evict.Name))
		s.c.queue.Push(request{Kind: queue.Close, Own: true})
	}
	b.Out.Write(stmt.Parse)
	s.c.queue.Push(request{Kind: queue.Parse, Own: own, ShowError: own, Undo: undo{stmt, name}})
}

// resolve finds the client's statement for a Bind or Describe, preparing it on b if b has not
// seen it. It returns the name to send, or an error for the client.
func (s *shared) resolve(b *session.Backend, name []byte) (string, *pgError) {
	c := s.c
	if len(name) == 0 {
		if s.unnamed == nil {
			// Whatever unnamed statement the backend holds is another client's.
			return "", errorf("26000", "unnamed prepared statement does not exist")
		}
		if s.unnamedCheckout != c.checkouts {
			// The unnamed statement was prepared on another backend.
			buf, at := wire.BeginMessage(b.Out.Bytes(), wire.Parse)
			buf = append(buf, s.unnamed...)
			b.Out.Commit(wire.EndMessage(buf, at))
			c.queue.Push(request{Kind: queue.Parse, Own: true, ShowError: true})
			s.unnamedCheckout = c.checkouts
		}
		return "", nil
	}
	stmt, ok := s.byName[string(name)]
	if !ok {
		return "", errorf("26000", fmt.Sprintf("prepared statement %q does not exist", name))
	}
	if !b.Prepared.Has(stmt) {
		if scope := c.session.statementScope(&c.srv.ownScopes); scope != stmt.Scope {
			// Prepared anew here, it is parsed under the settings in force now.
			stmt = c.srv.pool.Statement([]byte(stmt.Query), stmt.Types(), scope)
			s.byName[string(name)] = stmt
		}
		if !b.Prepared.Has(stmt) {
			s.prepareOn(b, stmt, "", true)
		}
	}
	return stmt.Name, nil
}

func (s *shared) bind(c *clientConn, b *session.Backend, msg, portal, name, rest []byte) error {
	send, perr := s.resolve(b, name)
	if perr != nil {
		return c.failExtended(perr)
	}
	if send == string(name) {
		return c.forward(b, msg, queue.Bind)
	}
	b.Out.Commit(wire.AppendBind(b.Out.Bytes(), portal, send, rest))
	c.queue.Push(request{Kind: queue.Bind})
	return nil
}

func (s *shared) describeStatement(c *clientConn, b *session.Backend, _, name []byte) error {
	send, perr := s.resolve(b, name)
	if perr != nil {
		return c.failExtended(perr)
	}
	b.Out.Commit(wire.AppendDescribe(b.Out.Bytes(), wire.TargetStatement, send))
	c.queue.Push(request{Kind: queue.DescribeStatement})
	return nil
}

// closeStatement forgets the client's name. The statement stays prepared on the backends for
// whoever else uses it, and the client gets the CloseComplete it expects.
func (s *shared) closeStatement(c *clientConn, _, name []byte) error {
	clientName := string(name)
	stmt := s.byName[clientName]
	delete(s.byName, clientName)
	c.queue.Push(request{Kind: queue.Close, Answered: true, Undo: undo{stmt, clientName}})
	return nil
}

func (s *shared) dropAll(b *session.Backend) {
	b.Prepared.Clear()
	clear(s.byName)
	s.unnamed = nil
}

func (s *shared) querySent() { s.unnamed = nil }

func (s *shared) undo(r *request) {
	switch r.Kind {
	case queue.Parse:
		if r.Undo.stmt != nil && !r.Answered && s.c.backend != nil {
			s.c.backend.Prepared.Remove(r.Undo.stmt)
		}
		if r.Undo.name != "" && s.byName[r.Undo.name] == r.Undo.stmt {
			delete(s.byName, r.Undo.name)
		}
	case queue.Close:
		if r.Undo.name != "" && r.Undo.stmt != nil {
			s.byName[r.Undo.name] = r.Undo.stmt
		}
	}
}

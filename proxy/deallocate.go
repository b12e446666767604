package proxy

import (
	"fmt"

	"github.com/tenantproxy/tenantproxy/proxy/queue"
)

// SQL DEALLOCATE name, in transaction mode. The name is one the client gave a statement it
// prepared through the protocol, which no server knows (the backends hold the statement under
// a pool-wide name, maybe for other clients too), so the proxy answers DEALLOCATE itself, as the
// server would: the client's name is let go once the answer is given, and an error in front of
// it in the same group leaves the name in place. ActiveRecord sends DEALLOCATE as a Query;
// psycopg through the extended protocol (Parse, Bind, Describe, Execute of the unnamed
// statement) when its statement cache evicts.

// deallocate answers a lone DEALLOCATE name sent as a Query. Its errors behave as the
// server's (inside a failed transaction, it is refused).
func (s *shared) deallocate(c *clientConn, name string) bool {
	c.statements.querySent()
	if c.backend != nil && c.backend.TxStatus() == 'E' {
		c.refuseSimple(errorf(codeInFailedTransaction, "current transaction is aborted, commands ignored until end of transaction block"))
		return true
	}
	stmt := s.take(name)
	if stmt == nil {
		c.refuseSimple(errNoStatement(name))
		return true
	}
	c.queue.Push(request{Kind: queue.Query, Answered: true, Undo: undo{stmt: stmt, name: name, tag: "DEALLOCATE"}})
	c.queue.FlushPoint()
	return true
}

// prepareDeallocate answers the Parse of DEALLOCATE name as the unnamed statement. Inside a
// failed transaction it goes to the server, which refuses it.
func (s *shared) prepareDeallocate(c *clientConn, name string) bool {
	if c.backend != nil && c.backend.TxStatus() == 'E' {
		return false
	}
	s.unnamed, s.deallocStatement = nil, name
	c.queue.Push(request{Kind: queue.Parse, Answered: true})
	return true
}

// deallocateStep answers a Bind, Describe or Execute of the unnamed DEALLOCATE statement or
// its portal; the name is let go at Execute. Other messages are not its concern (false).
func (s *shared) deallocateStep(c *clientConn, kind queue.Kind, portal, statement []byte) (bool, error) {
	unnamedStatement := len(statement) == 0 && s.deallocStatement != ""
	unnamedPortal := len(portal) == 0 && s.deallocPortal != ""
	switch {
	case kind == queue.Bind && unnamedStatement:
		if len(portal) > 0 {
			return true, c.failExtended(&pgError{Severity: "ERROR", Code: codeFeatureNotSupported,
				Message: "tenantproxy: DEALLOCATE can be bound to the unnamed portal only",
				Hint:    "Bind it to the unnamed portal, or send DEALLOCATE as a simple Query."})
		}
		s.deallocPortal = s.deallocStatement
	case kind == queue.Bind:
		if len(portal) == 0 {
			s.deallocPortal = "" // the unnamed portal is another statement's now
		}
		return false, nil
	case kind == queue.DescribeStatement && unnamedStatement, kind == queue.DescribePortal && unnamedPortal:
	case kind == queue.Execute && unnamedPortal:
		name := s.deallocPortal
		stmt := s.take(name)
		if stmt == nil {
			return true, c.failExtended(errNoStatement(name))
		}
		c.queue.Push(request{Kind: queue.Execute, Answered: true, Undo: undo{stmt: stmt, name: name, tag: "DEALLOCATE"}})
		return true, nil
	default:
		return false, nil
	}
	c.queue.Push(request{Kind: kind, Answered: true})
	return true, nil
}

func errNoStatement(name string) *pgError {
	return errorf("26000", fmt.Sprintf("prepared statement %q does not exist", name))
}

package proxy

import (
	"bytes"
	"errors"
	"strings"

	"github.com/tenantproxy/tenantproxy/internal/wire"
	"github.com/tenantproxy/tenantproxy/proxy/queue"
	"github.com/tenantproxy/tenantproxy/session"
)

// The relay reads the backend's answers and passes them to the client as the queue of expected
// answers says (proxy/queue): rows and copy data stream through without being held whole;
// status, errors and completions are read whole, because the proxy acts on them.

// drain relays the backend's answers to every request that is sure to be answered, and writes
// the proxy's own answers in their place.
func (c *clientConn) drain() error {
	for {
		act, r := c.queue.Advance()
		switch act {
		case queue.Idle:
			return nil
		case queue.Answer:
			c.writeAnswer(r)
			continue
		}
		if err := c.relayOne(); err != nil {
			return err
		}
	}
}

// writeAnswer writes the proxy's own answer for a request it did not send. A Sync or Query
// answered without a status takes the backend's (or 'I' without one). Describe and Execute
// are answered for a statement without parameters or rows (DEALLOCATE).
func (c *clientConn) writeAnswer(r request) {
	if r.Err != nil {
		writeError(c.out, asPgError(r.Err))
	}
	switch r.Kind {
	case queue.Sync, queue.Query:
		if r.Err == nil && r.Undo.tag != "" {
			c.out.Commit(wire.AppendCommandComplete(c.out.Bytes(), r.Undo.tag))
			c.statements.closed(&r)
		}
		status := r.Status
		if status == 0 {
			status = 'I'
			if c.backend != nil {
				status = c.backend.TxStatus()
			}
		}
		writeReady(c.out, status)
	case queue.Parse:
		if r.Err == nil {
			c.out.Commit(wire.AppendParseComplete(c.out.Bytes()))
		}
	case queue.Close:
		if r.Err == nil {
			c.out.Commit(wire.AppendCloseComplete(c.out.Bytes()))
			c.statements.closed(&r)
		}
	case queue.Bind:
		if r.Err == nil {
			c.out.Commit(wire.AppendBindComplete(c.out.Bytes()))
		}
	case queue.DescribeStatement:
		if r.Err == nil {
			c.out.Commit(wire.AppendNoData(wire.AppendNoParameters(c.out.Bytes())))
		}
	case queue.DescribePortal:
		if r.Err == nil {
			c.out.Commit(wire.AppendNoData(c.out.Bytes()))
		}
	case queue.Execute:
		if r.Err == nil {
			c.out.Commit(wire.AppendCommandComplete(c.out.Bytes(), r.Undo.tag))
			c.statements.closed(&r)
		}
	}
}

// relayOne relays backend messages until the request at the head of the queue is answered.
func (c *clientConn) relayOne() error {
	b := c.backend
	for {
		if !b.In.HasMessage() {
			// About to wait for the server: what the client is owed so far goes out first.
			c.out.Flush()
		}
		if err := c.out.Err(); err != nil {
			// The client cannot be written to (gone, or it stopped reading past
			// client_write_timeout): relaying the rest would be for nobody.
			return err
		}
		typ, _, err := b.In.PeekHeader()
		if err != nil {
			return c.backendLost(err)
		}
		var st queue.Step
		switch typ {
		case wire.DataRow, wire.CopyData, wire.CopyDone, wire.NoticeResponse,
			wire.CopyOutResponse, wire.CopyBothResponse, wire.RowDescription:
			// Streamed, whatever its size.
			st = c.queue.Receive(queue.Message{Type: typ})
			mark := c.out.Mark()
			if st.Show == queue.Pass {
				err = b.In.CopyMessage(c.out)
			} else {
				err = b.In.Skip()
			}
			if err != nil {
				if !c.out.Rollback(mark) {
					// Part of the message reached the client: no error can follow it in
					// the stream, so the connection just ends.
					c.backendLost(err)
					return errLostMidMessage
				}
				return c.backendLost(err)
			}
		default:
			_, msg, err := b.In.Next()
			if err != nil {
				return c.backendLost(err)
			}
			if st, err = c.inspect(b, typ, msg); err != nil {
				return err
			}
		}
		switch {
		case st.Desync:
			return c.desync(typ)
		case st.CopyIn:
			return nil
		case st.Done:
			return nil
		}
	}
}

// inspect handles a backend message the proxy reads whole, and passes it on as the queue says.
func (c *clientConn) inspect(b *session.Backend, typ byte, msg []byte) (queue.Step, error) {
	m := queue.Message{Type: typ}
	var serverErr wire.Error
	switch typ {
	case wire.ParameterStatus:
		b.NoteParameter(msg)
		if !c.queue.Head().Own {
			c.session.noteParameter(msg)
		}
	case wire.ReadyForQuery:
		status, ok := wire.DecodeReadyForQuery(msg)
		if !ok {
			return queue.Step{}, c.backendLost(errors.New("malformed ReadyForQuery"))
		}
		m.Status = status
		c.readyForQuery(status)
	case wire.ErrorResponse:
		serverErr = session.DecodeError(msg)
		m.Fatal = session.Fatal(serverErr)
		if !c.queue.Head().Own {
			c.statementDone()
		}
		if u := c.queue.Head().Undo; u.stmt != nil && mentions(serverErr, u.stmt.Name) {
			// The pool's name for a statement never reaches the client: its own name does.
			msg = wire.AppendErrorResponse(nil, renamed(serverErr, u.stmt.Name, u.name))
		}
	case wire.CommandComplete:
		c.noteCommand(b, msg)
		if !c.queue.Head().Own {
			c.statementDone()
		}
	}
	st := c.queue.Receive(m)
	if st.Desync {
		return st, nil
	}
	if typ == wire.ReadyForQuery {
		b.NoteReady(m.Status)
	}
	if typ == wire.NotificationResponse && st.Show == queue.Pass {
		msg = c.clientNotification(msg)
	}
	switch st.Show {
	case queue.Pass:
		c.out.Write(msg)
		if serverErr != nil {
			c.countError(serverErr.Get(wire.FieldCode))
		}
	case queue.Replace:
		writeError(c.out, asPgError(st.Err))
	case queue.Drop:
		if serverErr != nil {
			c.log.Debug().Str("code", serverErr.Get(wire.FieldCode)).Msg(serverErr.Get(wire.FieldMessage))
		}
	}
	if st.End {
		c.out.Flush()
		c.discardBackend()
		return st, errBackendFatal
	}
	return st, nil
}

var errBackendFatal = errors.New("the backend session ended with a fatal error")

// mentions reports whether any field of e names the statement.
func mentions(e wire.Error, name string) bool {
	for _, f := range e {
		if strings.Contains(f.Value, name) {
			return true
		}
	}
	return false
}

// renamed is e with the pool's name for a statement replaced by the client's.
func renamed(e wire.Error, internal, client string) wire.Error {
	out := make(wire.Error, len(e))
	for i, f := range e {
		out[i] = wire.ErrorField{Code: f.Code, Value: strings.ReplaceAll(f.Value, internal, client)}
	}
	return out
}

// noteCommand watches command tags that drop every prepared statement of the session.
func (c *clientConn) noteCommand(b *session.Backend, msg []byte) {
	tag, _ := wire.DecodeCommandComplete(msg)
	if len(tag) > 0 && tag[0] == 'D' && (bytes.Equal(tag, []byte("DISCARD ALL")) || bytes.Equal(tag, []byte("DEALLOCATE ALL"))) {
		c.statements.dropAll(b)
	}
}

// desync is a backend answer that matches no request: the proxy no longer knows what the
// session is doing, so it is closed, and so is the client's connection.
func (c *clientConn) desync(typ byte) error {
	c.log.Error().Str("message", string(typ)).Str("request", c.queue.Head().Kind.String()).Msg("backend answer out of step with requests")
	c.discardBackend()
	return fatal(codeInternal, "tenantproxy lost track of the backend session; please reconnect")
}

// backendLost ends the client's connection after its backend failed mid-request.
func (c *clientConn) backendLost(err error) error {
	if e := c.ended.Load(); e != nil {
		c.discardBackend()
		return e
	}
	if c.abandoned.Load() {
		c.discardBackend()
		return errAbandoned
	}
	c.log.Warn().Err(err).Msg("backend session lost")
	c.discardBackend()
	return fatal(codeConnectionFailure, "tenantproxy: the database session was lost")
}

var (
	errLostMidMessage = errors.New("the database session was lost in the middle of a message to the client")
	errAbandoned      = errors.New("the client hung up while the database worked for it")
)

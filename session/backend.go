// Package session holds the backend side: server sessions opened with pgconn and taken over
// to speak the raw protocol, and the pool that hands them to clients with the client's tenant
// context already in place.
package session

import (
	"container/list"
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/tenantproxy/tenantproxy/internal/wire"
)

// backendMessageLimit bounds a backend message the proxy reads whole. Only small messages
// (status, errors, completions) are read whole; rows and copy data are streamed.
const backendMessageLimit = 256 << 20

// Backend is one server session. A client holds it between Acquire and Release; nothing else
// touches it meanwhile, so it needs no lock.
type Backend struct {
	conn net.Conn
	In   *wire.Reader
	Out  *wire.Writer

	// PID and Secret are the server's cancel key for this session.
	PID    uint32
	Secret []byte
	// Params are the server's current values of reported settings (ParameterStatus), and of
	// the unreported ones the pool set itself.
	Params map[string]string
	// Defaults are the reported settings as the session started: what a client that does not
	// choose a setting gets, whatever the session's previous client chose.
	Defaults map[string]string
	// Tenant is the tenant whose context is committed on this session; "" when none is.
	Tenant string
	// settingsKey is the key of the Settings last put in place, "" when unknown.
	settingsKey string
	// TxStatus is the status of the last ReadyForQuery: 'I', 'T' or 'E'.
	TxStatus byte
	// Prepared tracks the statements prepared on this session under pool-wide names.
	Prepared *PreparedSet

	created  time.Time
	lastUsed time.Time
	pool     *Pool
	// flushOwn is Out.Flush, taken once: taking a method value allocates.
	flushOwn func() error
}

// connect opens a server session with pgconn (which brings TLS and SCRAM) and takes it over.
func connect(ctx context.Context, cfg *pgconn.Config, maxPrepared int) (*Backend, error) {
	pc, err := pgconn.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, err
	}
	err = pc.SyncConn(ctx)
	var hc *pgconn.HijackedConn
	if err == nil {
		hc, err = pc.Hijack()
	}
	if err != nil {
		pc.Close(ctx)
		return nil, err
	}
	b := &Backend{
		conn:     hc.Conn,
		PID:      hc.PID,
		Secret:   hc.SecretKey,
		Params:   hc.ParameterStatuses,
		Defaults: maps.Clone(hc.ParameterStatuses),
		TxStatus: hc.TxStatus,
		Prepared: newPreparedSet(maxPrepared),
		created:  time.Now(),
		lastUsed: time.Now(),
	}
	b.In = wire.NewReader(hc.Conn, backendMessageLimit)
	b.Out = wire.NewWriter(hc.Conn)
	b.flushOwn = b.Out.Flush
	b.Detach()
	return b, nil
}

// Detach makes a read from the session flush only the session's own writes before it blocks,
// as it must once no client's writes are tied to it.
func (b *Backend) Detach() { b.In.BeforeBlock = b.flushOwn }

// Close ends the session politely (Terminate) and closes the connection.
func (b *Backend) Close() {
	b.conn.SetWriteDeadline(time.Now().Add(time.Second))
	b.Out.Write([]byte{'X', 0, 0, 0, 4})
	b.Out.Flush()
	b.conn.Close()
}

// SetDeadline bounds every read and write until cleared with the zero time.
func (b *Backend) SetDeadline(t time.Time) error { return b.conn.SetDeadline(t) }

// ServerError is an ErrorResponse the server sent for a statement of the pool's own.
type ServerError struct{ *pgconn.PgError }

func (e ServerError) Error() string { return "backend: " + e.PgError.Error() }

// Exec runs sql (one or more statements, simple protocol) and waits for ReadyForQuery. The
// server's ParameterStatus messages update Params; an ErrorResponse is returned as ServerError.
func (b *Backend) Exec(sql string) error {
	buf, at := wire.BeginMessage(b.Out.Bytes(), 'Q')
	buf = append(buf, sql...)
	buf = append(buf, 0)
	b.Out.Commit(wire.EndMessage(buf, at))
	return b.ReadUntilReady()
}

// ReadUntilReady consumes the responses to one Query or Sync, ending at ReadyForQuery.
func (b *Backend) ReadUntilReady() error {
	var failed error
	for {
		typ, msg, err := b.In.Next()
		if err != nil {
			return err
		}
		switch typ {
		case 'Z':
			if len(msg) < 6 {
				return errors.New("backend: malformed ReadyForQuery")
			}
			b.TxStatus = msg[5]
			return failed
		case 'E':
			if failed == nil {
				failed = ServerError{DecodeError(msg)}
			}
		case 'S':
			b.NoteParameter(msg)
		}
	}
}

// NoteParameter records a ParameterStatus message.
func (b *Backend) NoteParameter(msg []byte) {
	name, rest, ok := wire.CString(msg[wire.HeaderSize:])
	if !ok {
		return
	}
	value, _, ok := wire.CString(rest)
	if !ok {
		return
	}
	if old, ok := b.Params[string(name)]; !ok || old != string(value) {
		b.Params[string(name)] = string(value)
		b.settingsKey = ""
	}
}

// DecodeError reads an ErrorResponse or NoticeResponse message.
func DecodeError(msg []byte) *pgconn.PgError {
	var e pgproto3.ErrorResponse
	if err := e.Decode(msg[wire.HeaderSize:]); err != nil {
		return &pgconn.PgError{Severity: "ERROR", Code: "XX000", Message: "malformed error from the server"}
	}
	return pgconn.ErrorResponseToPgError(&e)
}

// Alive reports whether the server still has nothing to say and has not hung up: an idle
// session should have neither. It peeks without blocking or consuming.
func (b *Backend) Alive() bool {
	conn := b.conn
	if tc, ok := conn.(*tls.Conn); ok {
		conn = tc.NetConn()
	}
	sc, ok := conn.(syscall.Conn)
	if !ok {
		return true
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	var buf [1]byte
	var rerr error
	if err := raw.Read(func(fd uintptr) bool {
		_, _, rerr = syscall.Recvfrom(int(fd), buf[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		return true
	}); err != nil {
		return false
	}
	// Nothing to read yet: EAGAIN. A byte waiting, or the end of the stream, is no idle session.
	return errors.Is(rerr, syscall.EAGAIN)
}

// SetStatement builds "SET name = 'value'" for a setting name from the allow-list and a value
// the caller validated (no quotes or backslashes can reach here, but quote anyway).
func SetStatement(name, value string) string {
	return "SET " + name + " = '" + strings.ReplaceAll(value, "'", "''") + "'"
}

// cancelRequest sends a CancelRequest for pid and secret to the server at network/address and
// waits until the server closes the connection, which it does after signalling the session.
func cancelRequest(ctx context.Context, network, address string, pid uint32, secret []byte) error {
	var d net.Dialer
	conn, err := d.DialContext(ctx, network, address)
	if err != nil {
		return err
	}
	defer conn.Close()
	if deadline, ok := ctx.Deadline(); ok {
		conn.SetDeadline(deadline)
	}
	req := make([]byte, 12, 12+len(secret))
	binary.BigEndian.PutUint32(req[0:], uint32(12+len(secret)))
	binary.BigEndian.PutUint32(req[4:], 80877102)
	binary.BigEndian.PutUint32(req[8:], pid)
	req = append(req, secret...)
	if _, err := conn.Write(req); err != nil {
		return err
	}
	var sink [1]byte
	if _, err := conn.Read(sink[:]); err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("cancel request: %w", err)
	}
	return nil
}

// PreparedSet is the statements prepared on one backend, least recently used first.
type PreparedSet struct {
	max   int
	order *list.List // of *Statement
	by    map[*Statement]*list.Element
}

func newPreparedSet(max int) *PreparedSet {
	return &PreparedSet{max: max, order: list.New(), by: map[*Statement]*list.Element{}}
}

// Has reports whether s is prepared here, and marks it used.
func (p *PreparedSet) Has(s *Statement) bool {
	e, ok := p.by[s]
	if ok {
		p.order.MoveToBack(e)
	}
	return ok
}

// Add records s as prepared and returns a statement to close first, when the set is full.
func (p *PreparedSet) Add(s *Statement) (evict *Statement) {
	if _, ok := p.by[s]; ok {
		return nil
	}
	if p.order.Len() >= p.max {
		front := p.order.Front()
		evict = front.Value.(*Statement)
		p.order.Remove(front)
		delete(p.by, evict)
	}
	p.by[s] = p.order.PushBack(s)
	return evict
}

// Remove forgets s (its Parse failed, or was skipped after an error).
func (p *PreparedSet) Remove(s *Statement) {
	if e, ok := p.by[s]; ok {
		p.order.Remove(e)
		delete(p.by, s)
	}
}

// Clear forgets everything (DISCARD ALL or DEALLOCATE ALL ran).
func (p *PreparedSet) Clear() {
	p.order.Init()
	clear(p.by)
}

// Len is the number of statements prepared.
func (p *PreparedSet) Len() int { return p.order.Len() }

// Statement is a prepared statement as the pool knows it: one per distinct query text and
// parameter types, under a name of its own on every backend that prepares it.
type Statement struct {
	Name  string
	Query string
	// Parse is the whole Parse message, under Name, ready to send.
	Parse []byte
	// Scope names the settings it is parsed under (see Pool.Statement).
	Scope string
}

// Types are the statement's parameter types, as the Parse message carries them.
func (s *Statement) Types() []byte {
	return s.Parse[1+4+len(s.Name)+1+len(s.Query)+1:] // type, length, name, NUL, query, NUL
}

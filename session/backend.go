// Package session holds the backend side: server sessions opened with pgconn and taken over
// to speak the raw protocol, and the pool that hands them to clients with the client's tenant
// context already in place.
package session

import (
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

	"github.com/tenantproxy/tenantproxy/internal/guc"
	"github.com/tenantproxy/tenantproxy/internal/wire"
)

// backendMessageLimit bounds a backend message the proxy reads whole. Only small messages
// (status, errors, completions) are read whole; rows and copy data are streamed.
const backendMessageLimit = 256 << 20

// Backend is one server session. A client holds it between Acquire and Release; nothing else
// touches it meanwhile, so it needs no lock. The relay streams through In and Out; the state
// the pool relies on (tenant, settings, transaction status) changes only through methods.
type Backend struct {
	conn net.Conn
	In   *wire.Reader
	Out  *wire.Writer

	// pid and secret are the server's cancel key for this session.
	pid    uint32
	secret []byte
	// params are the server's current values of reported settings (ParameterStatus), and of
	// the unreported ones the pool set itself.
	params map[string]string
	// defaults are the reported settings as the session started: what a client that does not
	// choose a setting gets, whatever the session's previous client chose.
	defaults map[string]string
	// tenant is the tenant whose context is committed on this session; "" when none is.
	tenant string
	// settingsKey is the key of the Settings last put in place, "" when unknown.
	settingsKey string
	// txStatus is the status of the last ReadyForQuery: 'I', 'T' or 'E'.
	txStatus byte
	// Prepared tracks the statements prepared on this session under pool-wide names.
	Prepared *PreparedSet

	created  time.Time
	lastUsed time.Time
	// holder is the tenant whose client holds it (nil while idle); guarded by the pool's lock.
	holder *tenantState
	// used: it served a client before (it is not fresh from a dial).
	used bool
}

// connect opens a server session with pgconn (which brings TLS and SCRAM) and takes it over.
func connect(ctx context.Context, cfg *pgconn.Config, maxPrepared, maxPreparedBytes int) (*Backend, error) {
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
	return &Backend{
		conn:     hc.Conn,
		In:       wire.NewReader(hc.Conn, backendMessageLimit),
		Out:      wire.NewWriter(hc.Conn),
		pid:      hc.PID,
		secret:   hc.SecretKey,
		params:   hc.ParameterStatuses,
		defaults: maps.Clone(hc.ParameterStatuses),
		txStatus: hc.TxStatus,
		Prepared: newPreparedSet(maxPrepared, maxPreparedBytes),
		created:  time.Now(),
		lastUsed: time.Now(),
	}, nil
}

// PID is the server's process id for the session.
func (b *Backend) PID() uint32 { return b.pid }

// Created is when the session was opened.
func (b *Backend) Created() time.Time { return b.created }

// Flush sends everything written to Out.
func (b *Backend) Flush() error { return b.Out.Flush() }

// Close ends the session politely (Terminate) and closes the connection.
func (b *Backend) Close() {
	b.conn.SetWriteDeadline(time.Now().Add(time.Second))
	b.Out.Commit(wire.AppendTerminate(b.Out.Bytes()))
	b.Out.Flush()
	b.conn.Close()
}

// SetDeadline bounds every read and write until cleared with the zero time.
func (b *Backend) SetDeadline(t time.Time) error { return b.conn.SetDeadline(t) }

// SetReadDeadline bounds reads until cleared with the zero time; a read past it fails with
// os.ErrDeadlineExceeded and leaves what was read buffered.
func (b *Backend) SetReadDeadline(t time.Time) error { return b.conn.SetReadDeadline(t) }

// TxStatus is the transaction status of the last ReadyForQuery: 'I', 'T' or 'E'.
func (b *Backend) TxStatus() byte { return b.txStatus }

// NoteReady records the transaction status of a ReadyForQuery the relay passed on.
func (b *Backend) NoteReady(status byte) { b.txStatus = status }

// Tenant is the tenant whose context is committed on the session, "" when unknown.
func (b *Backend) Tenant() string { return b.tenant }

// ForgetContext records that the session's context and settings are unknown: the client sent
// RESET ALL or DISCARD ALL, which put the server's settings back to their defaults, the tenant
// context included. The next ApplyContext sets them again.
func (b *Backend) ForgetContext() {
	b.tenant = ""
	b.settingsKey = ""
	for name := range b.params {
		if _, reported := b.defaults[name]; !reported {
			delete(b.params, name)
		}
	}
}

// Param is the server's value of a reported setting, or the value the pool set for another.
func (b *Backend) Param(name string) string { return b.params[name] }

// ReportedParams are the settings the server reports, with their current values.
func (b *Backend) ReportedParams() map[string]string {
	reported := make(map[string]string, len(b.defaults))
	for name := range b.defaults {
		reported[name] = b.params[name]
	}
	return reported
}

// Reports says whether the server reports changes of name with ParameterStatus: it sent every
// such setting when the session started.
func (b *Backend) Reports(name string) bool {
	_, ok := b.defaults[name]
	return ok
}

// ServerError is an ErrorResponse the server sent for a statement of the pool's own.
type ServerError struct{ Fields wire.Error }

func (e ServerError) Error() string {
	return fmt.Sprintf("backend: %s: %s (SQLSTATE %s)", e.Fields.Get(wire.FieldSeverity), e.Fields.Get(wire.FieldMessage), e.Fields.Get(wire.FieldCode))
}

// SQLState is the error's SQLSTATE code.
func (e ServerError) SQLState() string { return e.Fields.Get(wire.FieldCode) }

// Fatal reports whether the server ended the session with it.
func (e ServerError) Fatal() bool { return Fatal(e.Fields) }

// Exec runs sql (one or more statements, simple protocol) and waits for ReadyForQuery. The
// server's ParameterStatus messages update the session's settings; an ErrorResponse is returned
// as ServerError.
func (b *Backend) Exec(sql string) error {
	b.Out.Commit(wire.AppendQuery(b.Out.Bytes(), sql))
	if err := b.Out.Flush(); err != nil {
		return err
	}
	return b.readUntilReady()
}

// QueryRows runs sql (simple protocol) and returns its rows as text, a NULL as nil.
func (b *Backend) QueryRows(sql string) ([][]*string, error) {
	b.Out.Commit(wire.AppendQuery(b.Out.Bytes(), sql))
	if err := b.Out.Flush(); err != nil {
		return nil, err
	}
	var rows [][]*string
	err := b.readUntilReadyWith(func(row []byte) error {
		values, err := decodeDataRow(row)
		rows = append(rows, values)
		return err
	})
	return rows, err
}

// decodeDataRow reads a DataRow's values as text.
func decodeDataRow(msg []byte) ([]*string, error) {
	body := msg[wire.HeaderSize:]
	if len(body) < 2 {
		return nil, errors.New("backend: malformed DataRow")
	}
	n := int(binary.BigEndian.Uint16(body))
	body = body[2:]
	values := make([]*string, n)
	for i := range values {
		if len(body) < 4 {
			return nil, errors.New("backend: malformed DataRow")
		}
		size := int32(binary.BigEndian.Uint32(body))
		body = body[4:]
		if size < 0 {
			continue
		}
		if int(size) > len(body) {
			return nil, errors.New("backend: malformed DataRow")
		}
		v := string(body[:size])
		values[i] = &v
		body = body[size:]
	}
	return values, nil
}

// readUntilReady consumes the responses to one Query, ending at ReadyForQuery.
func (b *Backend) readUntilReady() error { return b.readUntilReadyWith(nil) }

// readUntilReadyWith is readUntilReady passing each DataRow to row, when set.
func (b *Backend) readUntilReadyWith(row func([]byte) error) error {
	var failed error
	for {
		typ, msg, err := b.In.Next()
		if err != nil {
			var fatal ServerError
			if errors.As(failed, &fatal) && fatal.Fatal() {
				return failed // the server said why it closed the session
			}
			return err
		}
		switch typ {
		case wire.ReadyForQuery:
			status, ok := wire.DecodeReadyForQuery(msg)
			if !ok {
				return errors.New("backend: malformed ReadyForQuery")
			}
			b.txStatus = status
			return failed
		case wire.ErrorResponse:
			if failed == nil {
				failed = ServerError{DecodeError(msg)}
			}
		case wire.ParameterStatus:
			b.NoteParameter(msg)
		case wire.DataRow:
			if row != nil && failed == nil {
				failed = row(msg)
			}
		}
	}
}

// NoteSessionSettings records the unreported settings the session holds now, as the server
// listed them (a client changed some): what the pool knew of them is replaced.
func (b *Backend) NoteSessionSettings(values map[string]string) {
	for name := range b.params {
		if !b.Reports(name) {
			delete(b.params, name)
		}
	}
	for name, value := range values {
		if !b.Reports(name) {
			b.params[name] = value
		}
	}
	b.settingsKey = ""
}

// NoteParameter records a ParameterStatus message.
func (b *Backend) NoteParameter(msg []byte) {
	name, value, ok := wire.DecodeParameterStatus(msg)
	if !ok {
		return
	}
	if old, ok := b.params[string(name)]; !ok || old != string(value) {
		b.params[string(name)] = string(value)
		b.settingsKey = ""
	}
}

// DecodeError reads an ErrorResponse or NoticeResponse message; a malformed one becomes an
// internal error rather than nothing.
func DecodeError(msg []byte) wire.Error {
	e, ok := wire.DecodeError(msg)
	if !ok {
		return wire.NewError("ERROR", "XX000", "malformed error message from the server", "", "")
	}
	return e
}

// Fatal reports whether an error ends the session (severity FATAL or PANIC).
func Fatal(e wire.Error) bool {
	s := e.Get(wire.FieldSeverityUnlocalized)
	if s == "" {
		s = e.Get(wire.FieldSeverity)
	}
	return s == "FATAL" || s == "PANIC"
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

// SetStatement builds the statement that gives a setting a value: SET name = 'value', the value
// quoted; a list of identifiers as the server shows one (search_path) is written as it is, since
// SET would take a quoted list for one name. The name must be one the server accepted (a client's
// choice applied once, or the proxy's own), quoted as an identifier where it must be.
func SetStatement(name, value string) string {
	if setting, _ := guc.Lookup(name); setting.ListQuote && strings.TrimSpace(value) != "" && guc.ValidIdentifierList(value) {
		return "SET " + quoteSettingName(name) + " = " + value
	}
	return "SET " + quoteSettingName(name) + " = '" + strings.ReplaceAll(value, "'", "''") + "'"
}

// quoteSettingName quotes each part of a setting name as an identifier: the server finds a
// setting by its name in any case, and a name a client chose cannot change the statement.
func quoteSettingName(name string) string {
	parts := strings.Split(name, ".")
	for i, p := range parts {
		parts[i] = `"` + strings.ReplaceAll(p, `"`, `""`) + `"`
	}
	return strings.Join(parts, ".")
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

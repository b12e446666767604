package proxy

import (
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/tenantproxy/tenantproxy/internal/wire"
)

// pgError is an error for the client, in PostgreSQL's terms.
type pgError struct {
	Severity string // ERROR or FATAL
	Code     string
	Message  string
	Detail   string
	Hint     string
}

func (e *pgError) Error() string { return e.Severity + ": " + e.Message + " (SQLSTATE " + e.Code + ")" }

func fatal(code, message string) *pgError {
	return &pgError{Severity: "FATAL", Code: code, Message: message}
}

func errorf(code, message string) *pgError {
	return &pgError{Severity: "ERROR", Code: code, Message: message}
}

// SQLSTATEs the proxy itself answers with.
const (
	codeProtocolViolation   = "08P01"
	codeConnectionFailure   = "08006"
	codeInvalidAuthSpec     = "28000"
	codeInvalidPassword     = "28P01"
	codeInvalidCatalog      = "3D000"
	codeTooManyConnections  = "53300"
	codeFeatureNotSupported = "0A000"
	codeInsufficientPriv    = "42501"
	codeAdminShutdown       = "57P01"
	codeInternal            = "XX000"
)

// writeError appends an ErrorResponse to w.
func writeError(w *wire.Writer, e *pgError) {
	msg := pgproto3.ErrorResponse{
		Severity:            e.Severity,
		SeverityUnlocalized: e.Severity,
		Code:                e.Code,
		Message:             e.Message,
		Detail:              e.Detail,
		Hint:                e.Hint,
	}
	b, _ := msg.Encode(w.Bytes())
	w.Commit(b)
}

// writeReady appends ReadyForQuery with the given transaction status.
func writeReady(w *wire.Writer, status byte) {
	w.Write([]byte{'Z', 0, 0, 0, 5, status})
}

// encode appends any protocol message to w.
func encode(w *wire.Writer, m interface {
	Encode([]byte) ([]byte, error)
}) {
	b, _ := m.Encode(w.Bytes())
	w.Commit(b)
}

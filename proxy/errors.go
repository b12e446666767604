package proxy

import (
	"errors"
	"fmt"

	"github.com/tenantproxy/tenantproxy/internal/wire"
)

// pgError is an error for the client, in PostgreSQL's terms.
type pgError struct {
	Severity string // ERROR or FATAL
	Code     string
	Message  string
	Detail   string
	Hint     string
	// rule names a refusal of the proxy's in logs and metrics, when it is one.
	rule string
}

func (e *pgError) Error() string { return e.Severity + ": " + e.Message + " (SQLSTATE " + e.Code + ")" }

func fatal(code, message string) *pgError {
	return &pgError{Severity: "FATAL", Code: code, Message: message}
}

func errorf(code, message string) *pgError {
	return &pgError{Severity: "ERROR", Code: code, Message: message}
}

func protocolViolation(format string, args ...any) *pgError {
	return fatal(codeProtocolViolation, fmt.Sprintf(format, args...))
}

// SQLSTATEs the proxy itself answers with.
const (
	codeProtocolViolation    = "08P01"
	codeConnectionFailure    = "08006"
	codeInvalidAuthSpec      = "28000"
	codeInvalidPassword      = "28P01"
	codeInvalidCatalog       = "3D000"
	codeTooManyConnections   = "53300"
	codeOutOfMemory          = "53200"
	codeProgramLimitExceeded = "54000"
	codeFeatureNotSupported  = "0A000"
	codeInsufficientPriv     = "42501"
	codeSyntaxError          = "42601"
	codeAdminShutdown        = "57P01"
	codeQueryCanceled        = "57014"
	codeInFailedTransaction  = "25P02"
	codeInternal             = "XX000"
	codeConfigFile           = "F0000"
	codeObjectNotInState     = "55000"
)

// writeError appends an ErrorResponse to w.
func writeError(w *wire.Writer, e *pgError) {
	w.Commit(wire.AppendErrorResponse(w.Bytes(), wire.NewError(e.Severity, e.Code, e.Message, e.Detail, e.Hint)))
}

// writeReady appends ReadyForQuery with the given transaction status.
func writeReady(w *wire.Writer, status byte) {
	w.Commit(wire.AppendReadyForQuery(w.Bytes(), status))
}

// asPgError is err as an error for the client; any other error becomes an internal one.
func asPgError(err error) *pgError {
	var pe *pgError
	if errors.As(err, &pe) {
		return pe
	}
	return errorf(codeInternal, err.Error())
}

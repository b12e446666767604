package wire

import "encoding/binary"

// Frontend message types: what a client sends after startup.
const (
	Bind            byte = 'B'
	Close           byte = 'C'
	CopyData        byte = 'd' // both directions
	CopyDone        byte = 'c' // both directions
	CopyFail        byte = 'f'
	Describe        byte = 'D'
	Execute         byte = 'E'
	Flush           byte = 'H'
	FunctionCall    byte = 'F'
	Parse           byte = 'P'
	PasswordMessage byte = 'p' // also SASLInitialResponse and SASLResponse
	Query           byte = 'Q'
	Sync            byte = 'S'
	Terminate       byte = 'X'
)

// Backend message types: what a server sends.
const (
	Authentication           byte = 'R'
	BackendKeyData           byte = 'K'
	BindComplete             byte = '2'
	CloseComplete            byte = '3'
	CommandComplete          byte = 'C'
	CopyInResponse           byte = 'G'
	CopyOutResponse          byte = 'H'
	CopyBothResponse         byte = 'W'
	DataRow                  byte = 'D'
	EmptyQueryResponse       byte = 'I'
	ErrorResponse            byte = 'E'
	NegotiateProtocolVersion byte = 'v'
	NoData                   byte = 'n'
	NoticeResponse           byte = 'N'
	NotificationResponse     byte = 'A'
	ParameterDescription     byte = 't'
	ParameterStatus          byte = 'S'
	ParseComplete            byte = '1'
	PortalSuspended          byte = 's'
	ReadyForQuery            byte = 'Z'
	RowDescription           byte = 'T'
)

// Targets of Describe and Close.
const (
	TargetStatement byte = 'S'
	TargetPortal    byte = 'P'
)

// BeginMessage starts a message of type typ in b and returns b and the offset of its length.
func BeginMessage(b []byte, typ byte) ([]byte, int) {
	b = append(b, typ, 0, 0, 0, 0)
	return b, len(b) - 4
}

// EndMessage writes the length of the message begun at offset.
func EndMessage(b []byte, offset int) []byte {
	binary.BigEndian.PutUint32(b[offset:], uint32(len(b)-offset))
	return b
}

func appendCString[T ~string | ~[]byte](b []byte, s T) []byte {
	b = append(b, s...)
	return append(b, 0)
}

// AppendQuery appends a Query of sql.
func AppendQuery[T ~string | ~[]byte](b []byte, sql T) []byte {
	b, at := BeginMessage(b, Query)
	return EndMessage(appendCString(b, sql), at)
}

// AppendParse appends a Parse of query under name; types is the parameter type list as a Parse
// message carries it (an int16 count, then the OIDs).
func AppendParse[T ~string | ~[]byte](b []byte, name T, query, types []byte) []byte {
	b, at := BeginMessage(b, Parse)
	b = appendCString(b, name)
	b = appendCString(b, query)
	return EndMessage(append(b, types...), at)
}

// AppendBind appends a Bind of statement to portal; rest is everything a Bind carries after the
// statement name (formats, parameters, result formats), as DecodeBind returns it.
func AppendBind[T ~string | ~[]byte](b []byte, portal []byte, statement T, rest []byte) []byte {
	b, at := BeginMessage(b, Bind)
	b = appendCString(b, portal)
	b = appendCString(b, statement)
	return EndMessage(append(b, rest...), at)
}

// AppendDescribe appends a Describe of a statement or portal (TargetStatement, TargetPortal).
func AppendDescribe[T ~string | ~[]byte](b []byte, target byte, name T) []byte {
	b, at := BeginMessage(b, Describe)
	return EndMessage(appendCString(append(b, target), name), at)
}

// AppendClose appends a Close of a statement or portal.
func AppendClose[T ~string | ~[]byte](b []byte, target byte, name T) []byte {
	b, at := BeginMessage(b, Close)
	return EndMessage(appendCString(append(b, target), name), at)
}

// AppendCopyFail appends a CopyFail with its reason.
func AppendCopyFail(b []byte, reason string) []byte {
	b, at := BeginMessage(b, CopyFail)
	return EndMessage(appendCString(b, reason), at)
}

// AppendTerminate appends a Terminate.
func AppendTerminate(b []byte) []byte { return append(b, Terminate, 0, 0, 0, 4) }

// AppendReadyForQuery appends a ReadyForQuery with the transaction status ('I', 'T' or 'E').
func AppendReadyForQuery(b []byte, status byte) []byte {
	return append(b, ReadyForQuery, 0, 0, 0, 5, status)
}

// AppendParseComplete appends a ParseComplete.
func AppendParseComplete(b []byte) []byte { return append(b, ParseComplete, 0, 0, 0, 4) }

// AppendCloseComplete appends a CloseComplete.
func AppendCloseComplete(b []byte) []byte { return append(b, CloseComplete, 0, 0, 0, 4) }

// AppendBindComplete appends a BindComplete.
func AppendBindComplete(b []byte) []byte { return append(b, BindComplete, 0, 0, 0, 4) }

// AppendNoData appends a NoData: what Describe answers for a statement that returns no rows.
func AppendNoData(b []byte) []byte { return append(b, NoData, 0, 0, 0, 4) }

// AppendNoParameters appends the ParameterDescription of a statement without parameters.
func AppendNoParameters(b []byte) []byte { return append(b, ParameterDescription, 0, 0, 0, 6, 0, 0) }

// AppendCommandComplete appends a CommandComplete with its tag ("SELECT 1", "SHOW").
func AppendCommandComplete(b []byte, tag string) []byte {
	b, at := BeginMessage(b, CommandComplete)
	return EndMessage(appendCString(b, tag), at)
}

// AppendEmptyQueryResponse appends an EmptyQueryResponse.
func AppendEmptyQueryResponse(b []byte) []byte { return append(b, EmptyQueryResponse, 0, 0, 0, 4) }

// AppendParameterStatus appends a ParameterStatus.
func AppendParameterStatus(b []byte, name, value string) []byte {
	b, at := BeginMessage(b, ParameterStatus)
	return EndMessage(appendCString(appendCString(b, name), value), at)
}

// AppendBackendKeyData appends the cancel key a client uses in CancelRequest.
func AppendBackendKeyData(b []byte, pid uint32, secret []byte) []byte {
	b, at := BeginMessage(b, BackendKeyData)
	b = binary.BigEndian.AppendUint32(b, pid)
	return EndMessage(append(b, secret...), at)
}

// AppendAuthenticationOk appends AuthenticationOk.
func AppendAuthenticationOk(b []byte) []byte {
	return append(b, Authentication, 0, 0, 0, 8, 0, 0, 0, 0)
}

// Column is one column of a RowDescription the proxy writes itself: text, or a bigint.
type Column struct {
	Name   string
	Bigint bool
}

// AppendRowDescription appends a RowDescription of the given columns, all in text format.
func AppendRowDescription(b []byte, columns []Column) []byte {
	b, at := BeginMessage(b, RowDescription)
	b = binary.BigEndian.AppendUint16(b, uint16(len(columns)))
	for _, c := range columns {
		oid, size := uint32(25), uint16(0xffff) // text, variable length
		if c.Bigint {
			oid, size = 20, 8
		}
		b = appendCString(b, c.Name)
		b = binary.BigEndian.AppendUint32(b, 0) // table OID
		b = binary.BigEndian.AppendUint16(b, 0) // column number
		b = binary.BigEndian.AppendUint32(b, oid)
		b = binary.BigEndian.AppendUint16(b, size)
		b = binary.BigEndian.AppendUint32(b, 0xffffffff) // no type modifier
		b = binary.BigEndian.AppendUint16(b, 0)          // text format
	}
	return EndMessage(b, at)
}

// AppendDataRow appends a DataRow of text values.
func AppendDataRow(b []byte, values []string) []byte {
	b, at := BeginMessage(b, DataRow)
	b = binary.BigEndian.AppendUint16(b, uint16(len(values)))
	for _, v := range values {
		b = binary.BigEndian.AppendUint32(b, uint32(len(v)))
		b = append(b, v...)
	}
	return EndMessage(b, at)
}

// Fields of ErrorResponse and NoticeResponse the proxy reads or writes, by their code byte.
const (
	FieldSeverity            byte = 'S'
	FieldSeverityUnlocalized byte = 'V'
	FieldCode                byte = 'C'
	FieldMessage             byte = 'M'
	FieldDetail              byte = 'D'
	FieldHint                byte = 'H'
)

// maxErrorFields bounds the fields DecodeError accepts: PostgreSQL sends at most 18.
const maxErrorFields = 32

// ErrorField is one field of an ErrorResponse or NoticeResponse.
type ErrorField struct {
	Code  byte
	Value string
}

// Error is an ErrorResponse (or NoticeResponse) as a list of fields, in the order received.
type Error []ErrorField

// Get returns the value of a field, "" when absent.
func (e Error) Get(code byte) string {
	for _, f := range e {
		if f.Code == code {
			return f.Value
		}
	}
	return ""
}

// Set changes a field, adding it when absent.
func (e *Error) Set(code byte, value string) {
	for i := range *e {
		if (*e)[i].Code == code {
			(*e)[i].Value = value
			return
		}
	}
	*e = append(*e, ErrorField{code, value})
}

// NewError is an error with severity (ERROR, FATAL), SQLSTATE code and message; hint and detail
// are added when not empty.
func NewError(severity, code, message, detail, hint string) Error {
	e := Error{{FieldSeverity, severity}, {FieldSeverityUnlocalized, severity}, {FieldCode, code}, {FieldMessage, message}}
	if detail != "" {
		e = append(e, ErrorField{FieldDetail, detail})
	}
	if hint != "" {
		e = append(e, ErrorField{FieldHint, hint})
	}
	return e
}

// AppendErrorResponse appends e as an ErrorResponse.
func AppendErrorResponse(b []byte, e Error) []byte { return appendFields(b, ErrorResponse, e) }

// AppendNoticeResponse appends e as a NoticeResponse.
func AppendNoticeResponse(b []byte, e Error) []byte { return appendFields(b, NoticeResponse, e) }

func appendFields(b []byte, typ byte, e Error) []byte {
	b, at := BeginMessage(b, typ)
	for _, f := range e {
		b = append(b, f.Code)
		b = appendCString(b, f.Value)
	}
	return EndMessage(append(b, 0), at)
}

// DecodeError reads an ErrorResponse or NoticeResponse (the whole message).
func DecodeError(msg []byte) (Error, bool) {
	body, ok := bodyOf(msg)
	if !ok {
		return nil, false
	}
	var e Error
	for len(body) > 0 && body[0] != 0 {
		value, rest, ok := CString(body[1:])
		if !ok || len(e) == maxErrorFields {
			return nil, false
		}
		e = append(e, ErrorField{body[0], string(value)})
		body = rest
	}
	if len(body) != 1 {
		return nil, false
	}
	return e, true
}

// bodyOf returns a whole message's body, checking the length it declares.
func bodyOf(msg []byte) ([]byte, bool) {
	if len(msg) < HeaderSize || int(binary.BigEndian.Uint32(msg[1:])) != len(msg)-1 {
		return nil, false
	}
	return msg[HeaderSize:], true
}

// DecodeQuery returns the text of a Query message.
func DecodeQuery(msg []byte) (sql []byte, ok bool) {
	body, ok := bodyOf(msg)
	if !ok {
		return nil, false
	}
	sql, rest, ok := CString(body)
	return sql, ok && len(rest) == 0
}

// DecodeParse splits a Parse message: statement name, query, and the parameter types as the
// message carries them (an int16 count, then the OIDs).
func DecodeParse(msg []byte) (name, query, types []byte, ok bool) {
	body, ok := bodyOf(msg)
	if !ok {
		return nil, nil, nil, false
	}
	name, rest, ok := CString(body)
	if !ok {
		return nil, nil, nil, false
	}
	query, types, ok = CString(rest)
	if !ok || len(types) < 2 {
		return nil, nil, nil, false
	}
	if n := int(binary.BigEndian.Uint16(types)); len(types) != 2+4*n {
		return nil, nil, nil, false
	}
	return name, query, types, true
}

// DecodeBind splits a Bind message: portal, statement, and the rest (formats, parameters and
// result formats, which the proxy passes on unread).
func DecodeBind(msg []byte) (portal, statement, rest []byte, ok bool) {
	body, ok := bodyOf(msg)
	if !ok {
		return nil, nil, nil, false
	}
	portal, after, ok := CString(body)
	if !ok {
		return nil, nil, nil, false
	}
	statement, rest, ok = CString(after)
	return portal, statement, rest, ok
}

// DecodeTarget reads a Describe or Close message: TargetStatement or TargetPortal, and the name.
func DecodeTarget(msg []byte) (target byte, name []byte, ok bool) {
	body, ok := bodyOf(msg)
	if !ok || len(body) < 2 || (body[0] != TargetStatement && body[0] != TargetPortal) {
		return 0, nil, false
	}
	name, rest, ok := CString(body[1:])
	return body[0], name, ok && len(rest) == 0
}

// DecodeParameterStatus reads a ParameterStatus message.
func DecodeParameterStatus(msg []byte) (name, value []byte, ok bool) {
	body, ok := bodyOf(msg)
	if !ok {
		return nil, nil, false
	}
	name, rest, ok := CString(body)
	if !ok {
		return nil, nil, false
	}
	value, rest, ok = CString(rest)
	return name, value, ok && len(rest) == 0
}

// DecodeCommandComplete returns a CommandComplete's tag.
func DecodeCommandComplete(msg []byte) (tag []byte, ok bool) { return DecodeQuery(msg) }

// DecodeReadyForQuery returns a ReadyForQuery's transaction status.
func DecodeReadyForQuery(msg []byte) (status byte, ok bool) {
	body, ok := bodyOf(msg)
	if !ok || len(body) != 1 {
		return 0, false
	}
	switch body[0] {
	case 'I', 'T', 'E':
		return body[0], true
	}
	return 0, false
}

// CString returns the NUL-terminated string at the start of b and what follows it.
func CString(b []byte) (s []byte, rest []byte, ok bool) {
	for i, c := range b {
		if c == 0 {
			return b[:i], b[i+1:], true
		}
	}
	return nil, nil, false
}

package wire

import (
	"bytes"
	"testing"

	"github.com/jackc/pgx/v5/pgproto3"
)

// The builders must write what pgproto3, an independent implementation, reads.
func TestBuildersAgreeWithPgproto3(t *testing.T) {
	types := []byte{0, 2, 0, 0, 0, 23, 0, 0, 0, 25}
	frontend := []struct {
		name string
		msg  []byte
		want pgproto3.FrontendMessage
	}{
		{"Query", AppendQuery(nil, "SELECT 1"), &pgproto3.Query{String: "SELECT 1"}},
		{"Parse", AppendParse(nil, "s1", []byte("SELECT $1, $2"), types),
			&pgproto3.Parse{Name: "s1", Query: "SELECT $1, $2", ParameterOIDs: []uint32{23, 25}}},
		{"Describe", AppendDescribe(nil, TargetStatement, "s1"), &pgproto3.Describe{ObjectType: 'S', Name: "s1"}},
		{"Close", AppendClose(nil, TargetPortal, "p"), &pgproto3.Close{ObjectType: 'P', Name: "p"}},
		{"CopyFail", AppendCopyFail(nil, "stop"), &pgproto3.CopyFail{Message: "stop"}},
		{"Terminate", AppendTerminate(nil), &pgproto3.Terminate{}},
	}
	for _, tc := range frontend {
		want, err := tc.want.Encode(nil)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(tc.msg, want) {
			t.Errorf("%s: %q, pgproto3 writes %q", tc.name, tc.msg, want)
		}
	}
	backend := []struct {
		name string
		msg  []byte
		want pgproto3.BackendMessage
	}{
		{"ReadyForQuery", AppendReadyForQuery(nil, 'T'), &pgproto3.ReadyForQuery{TxStatus: 'T'}},
		{"ParseComplete", AppendParseComplete(nil), &pgproto3.ParseComplete{}},
		{"CloseComplete", AppendCloseComplete(nil), &pgproto3.CloseComplete{}},
		{"CommandComplete", AppendCommandComplete(nil, "SHOW"), &pgproto3.CommandComplete{CommandTag: []byte("SHOW")}},
		{"EmptyQueryResponse", AppendEmptyQueryResponse(nil), &pgproto3.EmptyQueryResponse{}},
		{"ParameterStatus", AppendParameterStatus(nil, "TimeZone", "UTC"), &pgproto3.ParameterStatus{Name: "TimeZone", Value: "UTC"}},
		{"BackendKeyData", AppendBackendKeyData(nil, 7, []byte{1, 2, 3, 4}), &pgproto3.BackendKeyData{ProcessID: 7, SecretKey: []byte{1, 2, 3, 4}}},
		{"AuthenticationOk", AppendAuthenticationOk(nil), &pgproto3.AuthenticationOk{}},
		{"DataRow", AppendDataRow(nil, []string{"a", ""}), &pgproto3.DataRow{Values: [][]byte{[]byte("a"), {}}}},
		{"ErrorResponse", AppendErrorResponse(nil, NewError("ERROR", "42501", "no", "", "try")),
			&pgproto3.ErrorResponse{Severity: "ERROR", SeverityUnlocalized: "ERROR", Code: "42501", Message: "no", Hint: "try"}},
	}
	for _, tc := range backend {
		want, err := tc.want.Encode(nil)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(tc.msg, want) {
			t.Errorf("%s: %q, pgproto3 writes %q", tc.name, tc.msg, want)
		}
	}

	var rd pgproto3.RowDescription
	msg := AppendRowDescription(nil, []Column{{Name: "name"}, {Name: "value", Bigint: true}})
	if err := rd.Decode(msg[HeaderSize:]); err != nil || len(rd.Fields) != 2 || string(rd.Fields[1].Name) != "value" ||
		rd.Fields[0].DataTypeOID != 25 || rd.Fields[1].DataTypeOID != 20 || rd.Fields[1].DataTypeSize != 8 {
		t.Errorf("RowDescription: %v %+v", err, rd.Fields)
	}
}

func TestDecodersRoundTrip(t *testing.T) {
	types := []byte{0, 1, 0, 0, 0, 23}
	name, query, gotTypes, ok := DecodeParse(AppendParse(nil, "s", []byte("SELECT $1"), types))
	if !ok || string(name) != "s" || string(query) != "SELECT $1" || !bytes.Equal(gotTypes, types) {
		t.Errorf("DecodeParse: %q %q %v %v", name, query, gotTypes, ok)
	}
	rest := []byte{0, 0, 0, 1, 0, 0, 0, 1, '7', 0, 0}
	portal, stmt, gotRest, ok := DecodeBind(AppendBind(nil, []byte("p"), "s", rest))
	if !ok || string(portal) != "p" || string(stmt) != "s" || !bytes.Equal(gotRest, rest) {
		t.Errorf("DecodeBind: %q %q %v %v", portal, stmt, gotRest, ok)
	}
	target, tname, ok := DecodeTarget(AppendDescribe(nil, TargetPortal, ""))
	if !ok || target != TargetPortal || len(tname) != 0 {
		t.Errorf("DecodeTarget: %c %q %v", target, tname, ok)
	}
	pname, value, ok := DecodeParameterStatus(AppendParameterStatus(nil, "DateStyle", "ISO, MDY"))
	if !ok || string(pname) != "DateStyle" || string(value) != "ISO, MDY" {
		t.Errorf("DecodeParameterStatus: %q %q %v", pname, value, ok)
	}
	if tag, ok := DecodeCommandComplete(AppendCommandComplete(nil, "DISCARD ALL")); !ok || string(tag) != "DISCARD ALL" {
		t.Errorf("DecodeCommandComplete: %q %v", tag, ok)
	}
	if status, ok := DecodeReadyForQuery(AppendReadyForQuery(nil, 'E')); !ok || status != 'E' {
		t.Errorf("DecodeReadyForQuery: %q %v", status, ok)
	}
	e, ok := DecodeError(AppendErrorResponse(nil, NewError("FATAL", "57P01", "terminating", "why", "")))
	if !ok || e.Get(FieldSeverity) != "FATAL" || e.Get(FieldCode) != "57P01" || e.Get(FieldDetail) != "why" || e.Get(FieldHint) != "" {
		t.Errorf("DecodeError: %v %v", e, ok)
	}
	e.Set(FieldMessage, "changed")
	e.Set(FieldHint, "added")
	again, ok := DecodeError(AppendErrorResponse(nil, e))
	if !ok || again.Get(FieldMessage) != "changed" || again.Get(FieldHint) != "added" {
		t.Errorf("after Set: %v %v", again, ok)
	}
}

func TestDecodersRejectMalformedBodies(t *testing.T) {
	query := func(m []byte) bool { _, ok := DecodeQuery(m); return ok }
	parse := func(m []byte) bool { _, _, _, ok := DecodeParse(m); return ok }
	target := func(m []byte) bool { _, _, ok := DecodeTarget(m); return ok }
	ready := func(m []byte) bool { _, ok := DecodeReadyForQuery(m); return ok }
	errorResponse := func(m []byte) bool { _, ok := DecodeError(m); return ok }
	status := func(m []byte) bool { _, _, ok := DecodeParameterStatus(m); return ok }
	cases := []struct {
		name   string
		decode func([]byte) bool
		msg    []byte
	}{
		{"short", query, []byte{Query, 0, 0}},
		{"length mismatch", query, []byte{Query, 0, 0, 0, 9, 'x', 0}},
		{"no terminator", query, []byte{Query, 0, 0, 0, 5, 'x'}},
		{"trailing bytes", query, []byte{Query, 0, 0, 0, 7, 'x', 0, 'y'}},
		{"parse type count", parse, AppendParse(nil, "s", []byte("q"), []byte{0, 2, 0, 0, 0, 23})},
		{"parse without types", parse, []byte{Parse, 0, 0, 0, 8, 's', 0, 'q', 0}},
		{"describe bad target", target, AppendDescribe(nil, 'X', "s")},
		{"describe trailing bytes", target, []byte{Describe, 0, 0, 0, 8, 'S', 's', 0, 'x'}},
		{"ready bad status", ready, AppendReadyForQuery(nil, 'Q')},
		{"error without terminator", errorResponse, []byte{ErrorResponse, 0, 0, 0, 7, 'S', 'x', 0}},
		{"status without value", status, []byte{ParameterStatus, 0, 0, 0, 6, 'x', 0}},
	}
	for _, tc := range cases {
		if tc.decode(tc.msg) {
			t.Errorf("%s: %q accepted", tc.name, tc.msg)
		}
	}
}

// FuzzDecoders checks that no body makes a decoder panic or return slices outside the message,
// and that what a decoder accepts, the matching builder writes back identically.
func FuzzDecoders(f *testing.F) {
	f.Add(AppendParse(nil, "s", []byte("SELECT $1"), []byte{0, 1, 0, 0, 0, 23}))
	f.Add(AppendBind(nil, []byte("p"), "s", []byte{0, 0, 0, 0, 0, 0}))
	f.Add(AppendDescribe(nil, TargetStatement, "s"))
	f.Add(AppendErrorResponse(nil, NewError("ERROR", "42601", "syntax", "d", "h")))
	f.Add(AppendParameterStatus(nil, "a", "b"))
	f.Add(AppendReadyForQuery(nil, 'I'))
	f.Fuzz(func(t *testing.T, msg []byte) {
		if len(msg) == 0 {
			return
		}
		if name, query, types, ok := DecodeParse(msg); ok {
			if again := AppendParse(nil, name, query, types); msg[0] == Parse && !bytes.Equal(again, msg) {
				t.Errorf("Parse round trip: %q -> %q", msg, again)
			}
		}
		if portal, stmt, rest, ok := DecodeBind(msg); ok {
			if again := AppendBind(nil, portal, stmt, rest); msg[0] == Bind && !bytes.Equal(again, msg) {
				t.Errorf("Bind round trip: %q -> %q", msg, again)
			}
		}
		if target, name, ok := DecodeTarget(msg); ok {
			if again := AppendDescribe(nil, target, name); msg[0] == Describe && !bytes.Equal(again, msg) {
				t.Errorf("Describe round trip: %q -> %q", msg, again)
			}
		}
		if e, ok := DecodeError(msg); ok {
			if again := AppendErrorResponse(nil, e); msg[0] == ErrorResponse && !bytes.Equal(again, msg) {
				t.Errorf("ErrorResponse round trip: %q -> %q", msg, again)
			}
		}
		if name, value, ok := DecodeParameterStatus(msg); ok {
			if again := AppendParameterStatus(nil, string(name), string(value)); msg[0] == ParameterStatus && !bytes.Equal(again, msg) {
				t.Errorf("ParameterStatus round trip: %q -> %q", msg, again)
			}
		}
		DecodeQuery(msg)
		DecodeReadyForQuery(msg)
	})
}

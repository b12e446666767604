package relaytest

import (
	"fmt"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/xdg-go/scram"

	"github.com/tenantproxy/tenantproxy/config"
)

func scramLogin(c *client) error {
	if _, ok := c.next().(*pgproto3.AuthenticationSASL); !ok {
		return fmt.Errorf("no SASL request")
	}
	sc, err := scram.SHA256.NewClient("alice", password, "")
	if err != nil {
		return err
	}
	conv := sc.NewConversation()
	first, err := conv.Step("")
	if err != nil {
		return err
	}
	c.send(&pgproto3.SASLInitialResponse{AuthMechanism: "SCRAM-SHA-256", Data: []byte(first)})
	cont, ok := c.next().(*pgproto3.AuthenticationSASLContinue)
	if !ok {
		return fmt.Errorf("no SASL continue")
	}
	final, err := conv.Step(string(cont.Data))
	if err != nil {
		return err
	}
	c.send(&pgproto3.SASLResponse{Data: []byte(final)})
	fin, ok := c.next().(*pgproto3.AuthenticationSASLFinal)
	if !ok {
		return fmt.Errorf("no SASL final")
	}
	if _, err := conv.Step(string(fin.Data)); err != nil {
		return err
	}
	if _, ok := c.next().(*pgproto3.AuthenticationOk); !ok {
		return fmt.Errorf("no AuthenticationOk")
	}
	return nil
}

// The pool's first session sets the tenant context before any client byte reaches it.
func TestContextIsSetBeforeTheClientsFirstMessage(t *testing.T) {
	f := startFake(t)
	c := connect(t, startProxy(t, f))
	c.send(&pgproto3.Query{String: "SELECT 1"})
	want(t, "answers", c.answers(1), "CommandComplete", "Z I")
	want(t, "the backend saw", f.session(0).log(),
		"Query SET \"app\".\"current_tenant_id\" = 'acme'", "Query SELECT 1")
}

// An error in the middle of an extended-query group: the server skips to Sync, and so does the
// relay; the client sees the error and one ReadyForQuery, and in transaction mode the session
// is not trusted again (what the server skipped may differ from what the proxy assumed).
func TestErrorMidGroupSkipsToSyncAndRetiresTheSession(t *testing.T) {
	f := startFake(t)
	f.answer = func(s *fakeSession, msg pgproto3.FrontendMessage) bool {
		if b, ok := msg.(*pgproto3.Bind); ok && b.PreparedStatement == "" {
			s.fail("22012", true)
			return true
		}
		return false
	}
	c := connect(t, startProxy(t, f))
	c.send(&pgproto3.Parse{Query: "SELECT 1/0"}, &pgproto3.Bind{}, &pgproto3.Describe{ObjectType: 'P'},
		&pgproto3.Execute{}, &pgproto3.Parse{Name: "next", Query: "SELECT 2"}, &pgproto3.Sync{})
	want(t, "answers", c.answers(1), "ParseComplete", "ERROR 22012", "Z I")

	waitFor(t, "the session to be closed", func() bool { return f.session(0).isClosed() })
	c.send(&pgproto3.Query{String: "SELECT 3"})
	want(t, "answers on a new session", c.answers(1), "CommandComplete", "Z I")
	if f.count() != 2 {
		t.Errorf("%d backend sessions, want 2", f.count())
	}
	// The skipped Parse of "next" was undone: the client may prepare it again.
	c.send(&pgproto3.Parse{Name: "next", Query: "SELECT 2"}, &pgproto3.Sync{})
	want(t, "Parse of the skipped name", c.answers(1), "ParseComplete", "Z I")
}

// COPY FROM STDIN with messages pipelined behind it: the server in copy-in ignores Sync and ends
// the COPY at the first other message, throwing it away. The relay must expect no answer for
// them, pass on the server's error, and not wait for copy data.
func TestMessagesPipelinedBehindACopyAreSwallowed(t *testing.T) {
	f := startFake(t)
	f.answer = func(s *fakeSession, msg pgproto3.FrontendMessage) bool {
		switch m := msg.(type) {
		case *pgproto3.Query:
			if strings.HasPrefix(m.String, "COPY") {
				s.be.Send(&pgproto3.CopyInResponse{})
				s.copyIn = true
				return true
			}
		case *pgproto3.Sync:
			return s.copyIn // ignored during copy-in
		case *pgproto3.Parse:
			if s.copyIn {
				s.copyIn = false
				s.fail("08P01", false)
				s.be.Send(&pgproto3.ReadyForQuery{TxStatus: 'I'})
				return true
			}
		}
		return false
	}
	c := connect(t, startProxy(t, f))
	c.send(&pgproto3.Query{String: "COPY t FROM STDIN"}, &pgproto3.Sync{},
		&pgproto3.Parse{Query: "SELECT 1"}, &pgproto3.Sync{})
	want(t, "answers", c.answers(2), "CopyInResponse", "ERROR 08P01", "Z I", "Z I")
}

// A client's copy data streams through; a message other than copy data during copy-in is
// replaced by CopyFail, so nothing the proxy did not check reaches the server.
func TestMessageDuringCopyBecomesCopyFail(t *testing.T) {
	f := startFake(t)
	f.answer = func(s *fakeSession, msg pgproto3.FrontendMessage) bool {
		switch m := msg.(type) {
		case *pgproto3.Query:
			if strings.HasPrefix(m.String, "COPY") {
				s.be.Send(&pgproto3.CopyInResponse{})
				return true
			}
		case *pgproto3.CopyData:
			return true
		case *pgproto3.CopyFail:
			s.fail("57014", false)
			s.be.Send(&pgproto3.ReadyForQuery{TxStatus: 'I'})
			return true
		}
		return false
	}
	c := connect(t, startProxy(t, f))
	c.send(&pgproto3.Query{String: "COPY t FROM STDIN"})
	if _, ok := c.next().(*pgproto3.CopyInResponse); !ok {
		t.Fatal("no CopyInResponse")
	}
	c.send(&pgproto3.CopyData{Data: []byte("1\n")}, &pgproto3.Query{String: "SET app.current_tenant_id = 'x'"})
	want(t, "answers", c.answers(1), "ERROR 57014", "Z I")
	// After a COPY the transaction-mode session is retired: a Terminate may follow.
	got := f.session(0).log()
	want(t, "the backend saw", got[1:min(len(got), 4)], "Query COPY t FROM STDIN", "CopyData",
		"CopyFail unexpected message type 0x51 during COPY from stdin")
}

// Transaction mode with room for one statement per backend: a second statement evicts the
// first with a Close the client never sees, and a Bind of the first prepares it again with a
// Parse the client never sees either.
func TestHiddenParseAndEvictionClose(t *testing.T) {
	f := startFake(t)
	c := connect(t, startProxy(t, f, func(c *config.Config) { c.Pool.MaxPreparedStatements = 1 }))
	c.send(&pgproto3.Parse{Name: "a", Query: "SELECT 'a'"}, &pgproto3.Sync{})
	want(t, "Parse a", c.answers(1), "ParseComplete", "Z I")
	c.send(&pgproto3.Parse{Name: "b", Query: "SELECT 'b'"}, &pgproto3.Sync{})
	want(t, "Parse b", c.answers(1), "ParseComplete", "Z I")
	c.send(&pgproto3.Bind{PreparedStatement: "a"}, &pgproto3.Execute{}, &pgproto3.Sync{})
	want(t, "Bind a", c.answers(1), "BindComplete", "CommandComplete", "Z I")

	got := f.session(0).log()[1:] // after the context's SET
	if len(got) != 10 {
		t.Fatalf("the backend saw %q", got)
	}
	internalA := strings.Fields(got[0])[1]
	internalB := strings.Fields(got[3])[1]
	want(t, "the backend saw", got,
		"Parse "+internalA+" SELECT 'a'", "Sync",
		"Close S "+internalA, "Parse "+internalB+" SELECT 'b'", "Sync",
		"Close S "+internalB, "Parse "+internalA+" SELECT 'a'", "Bind "+internalA, "Execute", "Sync")
	if internalA == "a" || internalA == internalB {
		t.Errorf("internal names %q and %q", internalA, internalB)
	}
}

// A backend answer that matches no request: the proxy no longer knows the session's state, so
// it closes it and ends the client with FATAL, instead of guessing.
func TestDesyncClosesSessionAndClient(t *testing.T) {
	f := startFake(t)
	f.answer = func(s *fakeSession, msg pgproto3.FrontendMessage) bool {
		if q, ok := msg.(*pgproto3.Query); ok && q.String == "SELECT 1" {
			s.be.Send(&pgproto3.BindComplete{})
			return true
		}
		return false
	}
	c := connect(t, startProxy(t, f))
	c.send(&pgproto3.Query{String: "SELECT 1"})
	want(t, "answers", c.answers(1), "FATAL XX000")
	waitFor(t, "the session to be closed", func() bool { return f.session(0).isClosed() })
}

// A fatal error from the server (a terminated backend) reaches the client, which is ended as a
// server crash would end it; the pool opens a new session for the next client.
func TestFatalErrorEndsTheClient(t *testing.T) {
	f := startFake(t)
	f.answer = func(s *fakeSession, msg pgproto3.FrontendMessage) bool {
		if q, ok := msg.(*pgproto3.Query); ok && q.String == "SELECT pg_sleep(10)" {
			s.be.Send(&pgproto3.ErrorResponse{Severity: "FATAL", SeverityUnlocalized: "FATAL", Code: "57P01", Message: "terminating connection due to administrator command"})
			s.be.Flush()
			s.conn.Close()
			return true
		}
		return false
	}
	addr := startProxy(t, f)
	c := connect(t, addr)
	c.send(&pgproto3.Query{String: "SELECT pg_sleep(10)"})
	want(t, "answers", c.answers(1), "FATAL 57P01")
	next := connect(t, addr)
	next.send(&pgproto3.Query{String: "SELECT 1"})
	want(t, "the next client", next.answers(1), "CommandComplete", "Z I")
}

// A statement no client holds any more is closed on every backend that has it, ahead of the
// next client's messages there, out of that client's sight: statements do not outlive their
// clients on the shared backends.
func TestReleasedStatementsAreClosedOnTheBackends(t *testing.T) {
	f := startFake(t)
	addr := startProxy(t, f)
	c := connect(t, addr)
	c.send(&pgproto3.Parse{Name: "a", Query: "SELECT 'a'"}, &pgproto3.Parse{Name: "b", Query: "SELECT 'b'"}, &pgproto3.Sync{})
	want(t, "Parse", c.answers(1), "ParseComplete", "ParseComplete", "Z I")
	c.send(&pgproto3.Close{ObjectType: 'S', Name: "a"}, &pgproto3.Sync{})
	want(t, "Close a", c.answers(1), "CloseComplete", "Z I")
	c.send(&pgproto3.Terminate{})

	next := connect(t, addr)
	next.send(&pgproto3.Query{String: "SELECT 1"})
	want(t, "the next client", next.answers(1), "CommandComplete", "Z I")
	got := f.session(0).log()
	internalA := strings.Fields(got[1])[1]
	internalB := strings.Fields(got[2])[1]
	closes := 0
	for _, line := range got[4:] {
		if line == "Close S "+internalA || line == "Close S "+internalB {
			closes++
		}
	}
	if closes != 2 {
		t.Errorf("the released statements were not both closed: %q", got)
	}
}

// A backend keeps statements within a size: a statement that would pass it evicts the least
// recently used first.
func TestPreparedStatementsBoundedBySize(t *testing.T) {
	f := startFake(t)
	c := connect(t, startProxy(t, f, func(c *config.Config) { c.Pool.MaxPreparedStatementMemory = 1 << 20 }))
	big := "SELECT '" + strings.Repeat("x", 600<<10) + "'"
	c.send(&pgproto3.Parse{Name: "a", Query: big + " AS a"}, &pgproto3.Parse{Name: "b", Query: big + " AS b"}, &pgproto3.Sync{})
	want(t, "Parse", c.answers(1), "ParseComplete", "ParseComplete", "Z I")
	got := f.session(0).log()
	if len(got) != 5 || !strings.HasPrefix(got[2], "Close S tenantproxy_") {
		t.Errorf("the second statement did not evict the first: %q", truncated(got))
	}
}

// One client cannot make the proxy hold its statements without bound.
func TestClientStatementMemoryIsBounded(t *testing.T) {
	f := startFake(t)
	c := connect(t, startProxy(t, f, func(c *config.Config) { c.Limits.ClientStatementMemory = 1 << 20 }))
	big := "SELECT '" + strings.Repeat("x", 600<<10) + "'"
	c.send(&pgproto3.Parse{Name: "a", Query: big + " AS a"}, &pgproto3.Sync{})
	want(t, "first", c.answers(1), "ParseComplete", "Z I")
	c.send(&pgproto3.Parse{Name: "b", Query: big + " AS b"}, &pgproto3.Sync{})
	want(t, "second", c.answers(1), "ERROR 54000", "Z I")
	c.send(&pgproto3.Close{ObjectType: 'S', Name: "a"}, &pgproto3.Parse{Name: "b", Query: big + " AS b"}, &pgproto3.Sync{})
	want(t, "after a Close", c.answers(1), "CloseComplete", "ParseComplete", "Z I")
}

func truncated(lines []string) []string {
	out := make([]string, len(lines))
	for i, l := range lines {
		out[i] = l[:min(len(l), 60)]
	}
	return out
}

// A login sends nothing to the backend it greets with: the closing of released statements waits
// for the client's first message, so no other client inherits it.
func TestLoginLeavesNothingOnTheBackend(t *testing.T) {
	f := startFake(t)
	addr := startProxy(t, f)
	a := connect(t, addr)
	a.send(&pgproto3.Parse{Name: "s", Query: "SELECT 's'"}, &pgproto3.Close{ObjectType: 'S', Name: "s"}, &pgproto3.Sync{})
	want(t, "Parse and Close", a.answers(1), "ParseComplete", "CloseComplete", "Z I")
	connect(t, addr) // logs in while a released statement waits to be closed, and stays idle
	c := connect(t, addr)
	c.send(&pgproto3.Query{String: "SELECT 1"})
	want(t, "a third client", c.answers(1), "CommandComplete", "Z I")
}

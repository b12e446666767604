package queue

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

// A script drives a queue the way the relay does and records what the queue says, one line per
// event, so that each case reads as the conversation it models.
type script struct {
	q      *Queue[string]
	undone []string
	log    []string
}

func newScript() *script {
	s := &script{}
	s.q = New(func(r *Request[string]) { s.undone = append(s.undone, r.Undo) })
	return s
}

var errRefused = errors.New("refused")

// push adds requests written as "Kind" with optional flags after a colon: a (answered),
// o (own), e (show error), x (Err set); and a name after "=" for Undo: "Parse:o=s1".
func (s *script) push(reqs ...string) {
	for _, spec := range reqs {
		spec, undo, _ := strings.Cut(spec, "=")
		name, flags, _ := strings.Cut(spec, ":")
		r := Request[string]{Kind: kindNamed(name), Undo: undo, Status: 'I'}
		r.Answered = strings.Contains(flags, "a")
		r.Own = strings.Contains(flags, "o")
		r.ShowError = strings.Contains(flags, "e")
		if strings.Contains(flags, "x") {
			r.Err = errRefused
		}
		s.q.Push(r)
	}
	s.q.FlushPoint()
}

func kindNamed(name string) Kind {
	for k, n := range kindNames {
		if n == name {
			return Kind(k)
		}
	}
	panic("no kind " + name)
}

// backend feeds backend messages (type bytes; 'E' non-fatal, 'F' stands for a fatal error, a
// 'Z' is idle) until the queue has nothing to wait for, answering the proxy's own requests on
// the way, and logs each event.
func (s *script) backend(types string) {
	for {
		act, r := s.q.Advance()
		switch act {
		case Answer:
			s.log = append(s.log, "answer "+r.Kind.String()+errNote(r.Err))
			continue
		case Idle:
			if types != "" {
				s.log = append(s.log, "unread "+types)
			}
			return
		}
		if types == "" {
			s.log = append(s.log, "waiting for "+s.q.Head().Kind.String())
			return
		}
		m := Message{Type: types[0], Status: 'I'}
		if m.Type == 'F' {
			m = Message{Type: 'E', Fatal: true}
		}
		types = types[1:]
		st := s.q.Receive(m)
		s.log = append(s.log, describe(m, st))
		if st.Desync || st.End || st.CopyIn {
			return
		}
	}
}

func errNote(err error) string {
	if err != nil {
		return " with error"
	}
	return ""
}

func describe(m Message, st Step) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%c", m.Type)
	switch st.Show {
	case Drop:
		b.WriteString(" dropped")
	case Replace:
		b.WriteString(" replaced")
	}
	for flag, on := range map[string]bool{" done": st.Done, " copy-in": st.CopyIn, " desync": st.Desync, " end": st.End} {
		if on {
			b.WriteString(flag)
		}
	}
	return b.String()
}

func (s *script) want(t *testing.T, log ...string) {
	t.Helper()
	if strings.Join(s.log, "\n") != strings.Join(log, "\n") {
		t.Errorf("events:\n  %s\nwant:\n  %s", strings.Join(s.log, "\n  "), strings.Join(log, "\n  "))
	}
	s.log = nil
}

func (s *script) wantUndone(t *testing.T, names ...string) {
	t.Helper()
	if strings.Join(s.undone, ",") != strings.Join(names, ",") {
		t.Errorf("undone %v, want %v", s.undone, names)
	}
	s.undone = nil
}

func TestSimpleQuery(t *testing.T) {
	s := newScript()
	s.push("Query")
	s.backend("TDDCZ")
	s.want(t, "T", "D", "D", "C", "Z done")
	if !s.q.Settled() {
		t.Error("not settled after ReadyForQuery")
	}
}

func TestExtendedGroup(t *testing.T) {
	s := newScript()
	s.push("Parse", "Bind", "DescribePortal", "Execute")
	if !s.q.Unsynced() || s.q.Settled() {
		t.Error("an extended group before Sync must be unsynced")
	}
	s.push("Sync")
	s.backend("12TDCZ")
	s.want(t, "1 done", "2 done", "T done", "D", "C done", "Z done")
	if !s.q.Settled() {
		t.Error("not settled")
	}
}

func TestOnlyAnswersSureToComeAreAwaited(t *testing.T) {
	s := newScript()
	s.q.Push(Request[string]{Kind: Parse})
	s.q.Push(Request[string]{Kind: Bind})
	s.backend("")
	s.want(t) // no Sync or Flush yet: nothing to wait for
	s.q.FlushPoint()
	s.backend("12")
	s.want(t, "1 done", "2 done")
}

func TestErrorMidGroupSkipsToSync(t *testing.T) {
	s := newScript()
	s.push("Parse=a", "Bind", "Execute", "Parse=b", "Sync")
	s.backend("EZ")
	s.want(t, "E done", "Z done")
	s.wantUndone(t, "a", "", "", "b")
	if !s.q.Irregular() || s.q.Skipping() || !s.q.Settled() {
		t.Errorf("irregular %v skipping %v settled %v", s.q.Irregular(), s.q.Skipping(), s.q.Settled())
	}
}

func TestQuerySkippedAfterAnErrorInTheGroup(t *testing.T) {
	// Parse error, then a simple Query, then Sync: the server skips the Query too.
	s := newScript()
	s.push("Parse", "Query", "Sync")
	s.backend("EZ")
	s.want(t, "E done", "Z done")
}

func TestErrorInAQueryGoesOnToReadyForQuery(t *testing.T) {
	s := newScript()
	s.push("Query")
	s.backend("CEZ")
	s.want(t, "C", "E", "Z done")
	if s.q.Irregular() {
		t.Error("an error in a simple Query is regular")
	}
}

func TestAnsweredRequestsTakeTheirPlace(t *testing.T) {
	s := newScript()
	s.push("Parse:a=s1", "Bind", "Execute", "Sync")
	s.backend("2CZ")
	s.want(t, "answer Parse", "2 done", "C done", "Z done")
}

func TestAnsweredErrorSkipsTheRest(t *testing.T) {
	// The proxy refuses a Parse while holding no backend: it drops the client's messages up to
	// Sync itself and answers the Sync.
	s := newScript()
	s.push("Parse:ax=s1")
	s.q.SkipLocally()
	if !s.q.SkippingLocally() {
		t.Fatal("not skipping locally")
	}
	s.push("Sync:a")
	if s.q.SkippingLocally() {
		t.Error("still skipping after Sync")
	}
	s.backend("")
	s.want(t, "answer Parse with error", "answer Sync")
	s.wantUndone(t)
}

func TestAnsweredRequestsWhileSkippingAreUndone(t *testing.T) {
	s := newScript()
	s.push("Bind", "Parse:a=s1", "Close:a=s2", "Sync")
	s.backend("EZ")
	s.want(t, "E done", "Z done")
	s.wantUndone(t, "", "s1", "s2")
}

func TestOwnRequestsAreHidden(t *testing.T) {
	s := newScript()
	// An eviction Close and a hidden Parse before the client's Bind, then a context restore
	// behind the Sync.
	s.push("Close:o", "Parse:o", "Bind", "Execute", "Sync", "Query:o")
	s.backend("312DCZCZ")
	s.want(t, "3 dropped done", "1 dropped done", "2 done", "D", "C done", "Z done", "C dropped", "Z dropped done")
}

func TestErrorsOfOwnRequests(t *testing.T) {
	s := newScript()
	s.push("Close:o", "Parse:oe=s", "Bind", "Sync")
	s.backend("3EZ")
	s.want(t, "3 dropped done", "E done", "Z done")

	s.push("Query:o")
	s.backend("EZ")
	s.want(t, "E dropped", "Z dropped done")
}

func TestReplacedError(t *testing.T) {
	s := newScript()
	s.push("Parse:x", "Sync")
	s.backend("EZ")
	s.want(t, "E replaced done", "Z done")
}

func TestParameterStatusAlwaysShown(t *testing.T) {
	s := newScript()
	s.push("Query:o")
	s.backend("SCZ")
	s.want(t, "S", "C dropped", "Z dropped done")
}

func TestDescribeStatement(t *testing.T) {
	s := newScript()
	s.push("DescribeStatement", "DescribeStatement", "Sync")
	s.backend("tTtnZ")
	s.want(t, "t", "T done", "t", "n done", "Z done")
}

func TestPortalSuspended(t *testing.T) {
	s := newScript()
	s.push("Execute", "Execute", "Sync")
	s.backend("DDsDCZ")
	s.want(t, "D", "D", "s done", "D", "C done", "Z done")
}

func TestDesync(t *testing.T) {
	for _, tc := range []struct {
		reqs  []string
		types string
	}{
		{[]string{"Parse", "Sync"}, "2"},
		{[]string{"Bind", "Sync"}, "Z"},
		{[]string{"Execute", "Sync"}, "1"},
		{[]string{"DescribePortal", "Sync"}, "t"},
		{[]string{"Parse", "Sync"}, "C"},
		{[]string{"Query"}, "?"},
	} {
		s := newScript()
		s.push(tc.reqs...)
		s.backend(tc.types)
		if got := s.log[len(s.log)-1]; !strings.HasSuffix(got, "desync") {
			t.Errorf("%v then %q: %v, want a desync", tc.reqs, tc.types, s.log)
		}
	}
}

func TestFatalErrorEnds(t *testing.T) {
	s := newScript()
	s.push("Parse", "Sync")
	s.backend("F")
	s.want(t, "E end")
}

func TestCopyInFromAQuery(t *testing.T) {
	s := newScript()
	s.push("Query")
	s.backend("G")
	s.want(t, "G copy-in")
	if s.q.Awaiting() || !s.q.CopyIn() {
		t.Fatal("copy-in must hand the turn to the client")
	}
	s.q.EndCopy()
	s.backend("CZ")
	s.want(t, "C", "Z done")
	if !s.q.Irregular() {
		t.Error("a COPY makes the session irregular")
	}
}

func TestMessagesPipelinedBehindACopyAreSwallowed(t *testing.T) {
	// The server in copy-in ignores Sync and ends the COPY at the first other message, which
	// it throws away: the queue must expect no answer for them.
	s := newScript()
	s.push("Query", "Sync", "Parse:a=answered", "Parse=thrown", "Sync")
	s.backend("GEZZ")
	s.want(t, "G", "E", "Z done", "answer Parse", "Z done")
	s.wantUndone(t, "thrown")
}

func TestSyncsSwallowedByAnExtendedCopyLeaveTheGroupOpen(t *testing.T) {
	s := newScript()
	s.push("Parse", "Bind", "Execute", "Sync")
	s.backend("12G")
	s.want(t, "1 done", "2 done", "G copy-in")
	if !s.q.Unsynced() {
		t.Error("the Sync the server ignored in copy-in must not close the group")
	}
	s.q.EndCopy()
	s.backend("C")
	s.want(t, "C done")
	s.push("Sync")
	s.backend("Z")
	s.want(t, "Z done")
	if !s.q.Settled() {
		t.Error("not settled")
	}
}

func TestReset(t *testing.T) {
	s := newScript()
	s.push("Parse", "Bind")
	s.backend("E")
	s.log = nil
	s.q.Reset()
	if s.q.Pending() != 0 || s.q.Skipping() || s.q.Unsynced() || s.q.Irregular() {
		t.Error("Reset left state behind")
	}
	s.push("Query")
	s.backend("Z")
	s.want(t, "Z done")
}

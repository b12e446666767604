package queue

import (
	"errors"
	"fmt"
	"slices"
	"testing"
)

// FuzzQueue checks the queue against a model of PostgreSQL. The input is a stream of client
// messages, each with the outcome the server gives it (success, error, rows); a model server
// answers them as PostgreSQL does, skipping to Sync after an error in an extended-query group,
// and the queue must follow every answer: never a desync, never waiting for an answer that will
// not come, every answer shown as it should be, and exactly the requests the server did not carry
// out undone.
func FuzzQueue(f *testing.F) {
	// Each byte is one client message: bits 0-2 its Kind, bit 3 the server fails it, bit 4 it is
	// the proxy's own, bit 5 the proxy refused it (Err; the server then fails it too), bits 6-7
	// how many rows an Execute or a Query returns.
	f.Add([]byte{byte(Query)})
	f.Add([]byte{byte(Parse), byte(Bind), byte(DescribePortal), byte(Execute) | 2<<6, byte(Sync)})
	f.Add([]byte{byte(Parse), byte(Bind) | 1<<3, byte(Execute), byte(Close), byte(Sync), byte(Query) | 1<<3})
	f.Add([]byte{byte(Parse) | 1<<5, byte(DescribeStatement), byte(Sync)})
	f.Add([]byte{byte(Query) | 1<<4, byte(Parse), byte(Bind), byte(Execute), byte(Query), byte(Sync)})
	f.Add([]byte{byte(Close) | 1<<4, byte(Parse) | 1<<4 | 1<<3, byte(Sync), byte(DescribeStatement) | 1<<3, byte(Query), byte(Sync)})
	f.Fuzz(func(t *testing.T, input []byte) {
		if len(input) > 200 {
			return
		}
		var undone []int
		q := New(func(r *Request[int]) { undone = append(undone, r.Undo) })
		srv := &modelServer{}
		var notCarriedOut []int
		for i, b := range input {
			r := Request[int]{Kind: Kind(b & 7), Own: b&(1<<4) != 0, Undo: i, Status: 'I'}
			fails := b&(1<<3) != 0
			if b&(1<<5) != 0 {
				r.Err = errors.New("refused by the proxy")
				fails = true
			}
			r.ShowError = r.Own && fails && r.Err == nil
			q.Push(r)
			switch srv.receive(r, fails, int(b>>6)) {
			case skipped:
				notCarriedOut = append(notCarriedOut, i)
			case failed:
				if r.Kind != Query { // a failed Query is over; nothing to undo
					notCarriedOut = append(notCarriedOut, i)
				}
			}
			if r.Kind != Query && r.Kind != Sync {
				continue
			}
			// The client sent Sync or a Query: every answer is sure to come.
			q.FlushPoint()
			if err := drain(q, srv); err != nil {
				t.Fatalf("after message %d of %v: %v", i, kindsOf(input[:i+1]), err)
			}
			if q.Pending() != 0 || q.Skipping() != srv.skipping {
				t.Fatalf("after message %d of %v: %d request(s) pending, skipping %v, the server skipping %v",
					i, kindsOf(input[:i+1]), q.Pending(), q.Skipping(), srv.skipping)
			}
			// The proxy's own Query does not end the client's extended-query group.
			if !r.Own && !srv.skipping && !q.Settled() {
				t.Fatalf("after message %d of %v: not settled", i, kindsOf(input[:i+1]))
			}
		}
		if len(input) > 0 && Kind(input[len(input)-1]&7).extended() && q.Settled() {
			t.Fatalf("%v: settled with an extended-query group open", kindsOf(input))
		}
		// Requests still waiting for a Sync are neither done nor undone yet.
		undone = slices.DeleteFunc(undone, func(i int) bool { return i >= lastFlush(input) })
		notCarriedOut = slices.DeleteFunc(notCarriedOut, func(i int) bool { return i >= lastFlush(input) })
		if !slices.Equal(undone, notCarriedOut) {
			t.Fatalf("%v: undone %v, want the requests the server did not carry out: %v", kindsOf(input), undone, notCarriedOut)
		}
	})
}

// drain runs the relay's loop until the queue waits for nothing, feeding it the model server's
// answers, and checks what the queue says of each.
func drain(q *Queue[int], srv *modelServer) error {
	for {
		act, _ := q.Advance()
		switch act {
		case Idle:
			if len(srv.out) > 0 {
				return fmt.Errorf("the queue waits for nothing, but the server sent %d more message(s), the first %q", len(srv.out), srv.out[0].typ)
			}
			return nil
		case Answer:
			return fmt.Errorf("the queue answered a request itself that went to the server")
		}
		if len(srv.out) == 0 {
			return fmt.Errorf("the queue waits for an answer to %v that the server will never send", q.Head().Kind)
		}
		head := *q.Head()
		m := srv.out[0]
		srv.out = srv.out[1:]
		st := q.Receive(Message{Type: m.typ, Status: 'I'})
		if st.Desync {
			return fmt.Errorf("%q for %v: desync", m.typ, head.Kind)
		}
		want := Pass
		switch {
		case m.typ == 'E' && head.Err != nil:
			want = Replace
		case head.Own && !(m.typ == 'E' && head.ShowError):
			want = Drop
		}
		if st.Show != want {
			return fmt.Errorf("%q for %v (own %v, err %v): shown %v, want %v", m.typ, head.Kind, head.Own, head.Err != nil, st.Show, want)
		}
		if st.Done != m.last {
			return fmt.Errorf("%q for %v: done %v, want %v", m.typ, head.Kind, st.Done, m.last)
		}
	}
}

// modelServer answers client messages as PostgreSQL does.
type modelServer struct {
	skipping bool // an error ended an extended-query group: ignore everything up to Sync
	out      []answer
}

// answer is one backend message; last: it completes its request.
type answer struct {
	typ  byte
	last bool
}

// outcome is what the server made of a message.
type outcome int

const (
	carriedOut outcome = iota
	failed
	skipped
)

// receive takes one message and queues its answers.
func (s *modelServer) receive(r Request[int], fails bool, rows int) outcome {
	send := func(types string) {
		for i := range len(types) {
			s.out = append(s.out, answer{typ: types[i], last: i == len(types)-1})
		}
	}
	if r.Kind == Sync {
		s.skipping = false
		send("Z")
		return carriedOut
	}
	if s.skipping {
		return skipped // a simple Query too
	}
	if fails {
		if r.Kind == Query {
			send("EZ")
			return failed
		}
		send("E")
		s.skipping = true
		return failed
	}
	switch r.Kind {
	case Query:
		send("T" + repeat('D', rows) + "CZ")
	case Parse:
		send("1")
	case Bind:
		send("2")
	case DescribeStatement:
		send("tT")
	case DescribePortal:
		send("n")
	case Execute:
		send(repeat('D', rows) + "C")
	case Close:
		send("3")
	}
	return carriedOut
}

func repeat(b byte, n int) string { return string(slices.Repeat([]byte{b}, n)) }

// lastFlush is the index just past the last Sync or Query of input: what comes after it was not
// answered yet.
func lastFlush(input []byte) int {
	for i := len(input) - 1; i >= 0; i-- {
		if k := Kind(input[i] & 7); k == Query || k == Sync {
			return i + 1
		}
	}
	return 0
}

func kindsOf(input []byte) []string {
	var out []string
	for _, b := range input {
		s := Kind(b & 7).String()
		if b&(1<<3) != 0 || b&(1<<5) != 0 {
			s += "!"
		}
		if b&(1<<4) != 0 {
			s += "(own)"
		}
		out = append(out, s)
	}
	return out
}

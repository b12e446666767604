// Package queue is the protocol state of one client's traffic with its backend: the queue of
// answers the client waits for. It does no I/O. The relay pushes a request for every message
// that gets an answer (the client's, and the proxy's own), then reads backend messages and asks
// the queue what each one means: pass it to the client or not, which request it completes, when
// the server waits for copy data, and when an answer matches nothing (a desync). Requests the
// proxy answers itself are handed back in their place in the stream.
//
// This is how the proxy knows where a transaction ends, which answers are its own to swallow,
// what the server skips after an error in an extended-query group (everything up to Sync), and
// which assumptions to undo for requests the server never carried out.
package queue

// Kind is what a request waits for.
type Kind uint8

const (
	Query             Kind = iota // a Query (or FunctionCall): everything up to ReadyForQuery
	Sync                          // ReadyForQuery
	Parse                         // ParseComplete
	Bind                          // BindComplete
	DescribeStatement             // ParameterDescription, then RowDescription or NoData
	DescribePortal                // RowDescription or NoData
	Execute                       // rows, then CommandComplete, EmptyQueryResponse or PortalSuspended
	Close                         // CloseComplete
)

var kindNames = [...]string{"Query", "Sync", "Parse", "Bind", "DescribeStatement", "DescribePortal", "Execute", "Close"}

func (k Kind) String() string { return kindNames[k] }

// extended reports whether k is a message of the extended query protocol that Sync ends.
func (k Kind) extended() bool { return k != Query && k != Sync }

// Request is one expected answer. U is what the relay needs to undo the request's assumed
// effects when the server never carries it out (the statement a Parse prepared, say).
type Request[U any] struct {
	Kind Kind
	// Answered: nothing went to the server; the proxy answers in its place: Err, else the
	// success message of Kind, or for Sync and Query, Err (if any) then ReadyForQuery(Status).
	Answered bool
	// Own: the proxy sent this itself; the client sees none of the server's answers to it,
	// except an error when ShowError is set (the error then concerns the client's next message).
	Own       bool
	ShowError bool
	// Err, when set, is the error the client sees instead of the server's (or the answer).
	Err    error
	Status byte
	Undo   U
}

// Show says what the client sees of a backend message.
type Show uint8

const (
	Pass    Show = iota // the message itself
	Drop                // nothing: the proxy's own
	Replace             // the request's Err instead of the server's error
)

// Message is what the queue needs to know of a backend message: its type, and for some types
// a detail the relay decodes.
type Message struct {
	Type   byte
	Status byte // ReadyForQuery: the transaction status
	Fatal  bool // ErrorResponse: severity FATAL or PANIC
}

// Step is what a backend message means.
type Step struct {
	Show Show
	Err  error // with Replace
	// Done: the message completed a request; the next one (if any) is answered next.
	Done bool
	// CopyIn: the server now waits for the client's copy data: the client's side takes over.
	CopyIn bool
	// Desync: the message answers no request, so the proxy no longer knows the session's state.
	Desync bool
	// End: a fatal error; the server closes the session after it.
	End bool
}

// Action is what the relay does next for the request at the head of the queue.
type Action uint8

const (
	Idle   Action = iota // nothing it must wait for: read the client
	Read                 // the server answers next: read the backend
	Answer               // write the proxy's own answer (the request returned)
)

// Queue holds one client's expected answers in order.
type Queue[U any] struct {
	reqs []Request[U]
	head int
	// awaiting counts requests at the front whose answers are sure to come: the client sent
	// Sync, Flush or a Query after them.
	awaiting int
	// skipping: an error ended the current extended-query group; the server ignores messages
	// until Sync, and so must the queue.
	skipping bool
	// localSkip: the proxy refused a message while holding no backend, and drops the client's
	// messages itself until Sync.
	localSkip bool
	// unsynced: extended-query messages went to the backend since the last Sync: an implicit
	// transaction may be open even though the last ReadyForQuery said idle.
	unsynced bool
	copyIn   bool
	// irregular: an error mid-group or a COPY happened since the last Reset; what the server
	// skipped then may differ from what the proxy assumed.
	irregular bool
	// onUndo reverses a request's assumed effects.
	onUndo func(*Request[U])
}

// New returns an empty queue that calls onUndo for each request the server will never carry
// out (it failed, or was skipped after an error, or swallowed by a COPY).
func New[U any](onUndo func(*Request[U])) *Queue[U] { return &Queue[U]{onUndo: onUndo} }

// Push adds a request. A request forwarded to the server opens an extended-query group or
// closes it, which decides whether the session can be idle.
func (q *Queue[U]) Push(r Request[U]) {
	q.reqs = append(q.reqs, r)
	if r.Answered {
		if r.Kind == Sync {
			q.localSkip = false
		}
		return
	}
	switch {
	case r.Kind.extended():
		q.unsynced = true
	case r.Kind == Sync || !r.Own:
		q.unsynced = false // a Sync, or the client's Query (the proxy's own Query follows one)
	}
}

// FlushPoint marks everything queued so far as sure to be answered (after Sync, Flush or a
// Query).
func (q *Queue[U]) FlushPoint() { q.awaiting = q.Pending() }

// Pending is the number of requests not yet answered.
func (q *Queue[U]) Pending() int { return len(q.reqs) - q.head }

// Awaiting reports whether the relay must wait for answers now.
func (q *Queue[U]) Awaiting() bool { return q.awaiting > 0 && !q.copyIn }

// Unsynced reports whether extended-query messages reached the server since the last Sync.
func (q *Queue[U]) Unsynced() bool { return q.unsynced }

// Skipping reports whether the server is skipping messages up to Sync after an error.
func (q *Queue[U]) Skipping() bool { return q.skipping }

// SkipLocally makes the proxy drop the client's messages up to Sync itself: it refused one
// while holding no backend. The refusal must be pushed first.
func (q *Queue[U]) SkipLocally() { q.localSkip = true }

// SkippingLocally reports whether the client's messages are dropped until Sync.
func (q *Queue[U]) SkippingLocally() bool { return q.localSkip }

// CopyIn reports whether the server waits for the client's copy data.
func (q *Queue[U]) CopyIn() bool { return q.copyIn }

// EndCopy records that the client ended copy-in (CopyDone, CopyFail, or a message the proxy
// replaced with CopyFail): the server answers the COPY next.
func (q *Queue[U]) EndCopy() {
	q.copyIn = false
	q.FlushPoint()
}

// Irregular reports whether an error mid-group or a COPY happened since the last Reset.
func (q *Queue[U]) Irregular() bool { return q.irregular }

// Settled reports whether nothing is in flight: no request pending, no COPY, no extended-query
// group left open, and the server not skipping to Sync.
func (q *Queue[U]) Settled() bool {
	return q.Pending() == 0 && !q.copyIn && !q.unsynced && !q.skipping
}

// Reset empties the queue: the backend is gone, or a new one serves the client.
func (q *Queue[U]) Reset() {
	clear(q.reqs)
	*q = Queue[U]{reqs: q.reqs[:0], onUndo: q.onUndo}
}

// Release lets go of the queue's storage while nothing is pending (a client idle for long).
func (q *Queue[U]) Release() {
	if q.Pending() == 0 {
		q.reqs, q.head = nil, 0
	}
}

// ResetIrregular starts watching a new backend checkout.
func (q *Queue[U]) ResetIrregular() { q.irregular = false }

// Advance returns what to do for the head of the queue. For Answer it returns the request,
// already taken off the queue: write Err (if any), then, for Sync and Query, ReadyForQuery
// with Status; else, without Err, the success message of its Kind (ParseComplete,
// CloseComplete). Requests the server skips are undone and dropped on the way.
func (q *Queue[U]) Advance() (Action, Request[U]) {
	for q.Awaiting() {
		r := &q.reqs[q.head]
		switch {
		case r.Answered && !r.Kind.extended():
			q.skipping = false
			return Answer, q.pop()
		case r.Answered && q.skipping:
			// The server would have skipped this message: no answer, and no effect.
			q.undo(r)
			q.pop()
		case r.Answered:
			if r.Err != nil {
				q.skipping = true
			}
			return Answer, q.pop()
		case q.skipping && r.Kind != Sync:
			// The server ignores every message up to Sync, a simple Query too: no answer.
			q.undo(r)
			q.pop()
		default:
			return Read, Request[U]{}
		}
	}
	return Idle, Request[U]{}
}

// Head is the request the next backend message answers. Call it only after Advance said Read.
func (q *Queue[U]) Head() *Request[U] { return &q.reqs[q.head] }

// Receive says what a backend message means for the request at the head (after Advance said
// Read), and moves the queue on.
func (q *Queue[U]) Receive(m Message) Step {
	r := &q.reqs[q.head]
	show := Pass
	if r.Own {
		show = Drop
	}
	switch m.Type {
	case 'D', 'd', 'c', 'N', 'A', 'H', 'W': // rows, copy out, notices, notifications
		return Step{Show: show}
	case 'S': // ParameterStatus: the client sees every change, even one the proxy made
		return Step{Show: Pass}
	case 'T': // RowDescription
		if r.Kind == DescribeStatement || r.Kind == DescribePortal {
			return q.done(show)
		}
		return Step{Show: show}
	case 'E':
		return q.error(r, m.Fatal)
	case 'Z':
		if r.Kind != Query && r.Kind != Sync {
			return Step{Desync: true}
		}
		q.skipping = false
		return q.done(show)
	case 'C', 'I': // CommandComplete, EmptyQueryResponse
		switch r.Kind {
		case Execute:
			return q.done(show)
		case Query:
			return Step{Show: show}
		}
		return Step{Desync: true}
	case 'G': // CopyInResponse
		q.irregular = true
		if q.swallowedByCopy(r) {
			return Step{Show: show} // the server ends the COPY with an error: relay it
		}
		q.copyIn = true
		return Step{Show: show, CopyIn: true}
	case 't': // ParameterDescription
		if r.Kind != DescribeStatement {
			return Step{Desync: true}
		}
		return Step{Show: show}
	}
	var want Kind
	switch m.Type {
	case '1':
		want = Parse
	case '2':
		want = Bind
	case '3':
		want = Close
	case 's':
		want = Execute
	case 'n': // NoData
		want = DescribePortal
		if r.Kind == DescribeStatement {
			want = DescribeStatement
		}
	default:
		return Step{Desync: true}
	}
	if r.Kind != want {
		return Step{Desync: true}
	}
	return q.done(show)
}

// error handles an ErrorResponse. In an extended-query group it ends the group: the server
// skips to Sync. A Query goes on to ReadyForQuery.
func (q *Queue[U]) error(r *Request[U], fatal bool) Step {
	st := Step{Show: Pass, End: fatal}
	switch {
	case r.Err != nil:
		st.Show, st.Err = Replace, r.Err
	case r.Own && !r.ShowError:
		st.Show = Drop
	}
	if fatal || r.Kind == Query {
		return st
	}
	q.undo(r)
	q.skipping = true
	q.irregular = true
	q.pop()
	st.Done = true
	return st
}

func (q *Queue[U]) done(show Show) Step {
	q.pop()
	return Step{Show: show, Done: true}
}

func (q *Queue[U]) undo(r *Request[U]) {
	if q.onUndo != nil {
		q.onUndo(r)
	}
}

// pop takes the head off and returns it.
func (q *Queue[U]) pop() Request[U] {
	r := q.reqs[q.head]
	q.reqs[q.head] = Request[U]{}
	q.head++
	q.awaiting--
	if q.head == len(q.reqs) {
		q.reqs, q.head = q.reqs[:0], 0
	}
	return r
}

// remove takes out the request at position i from the head (i > 0): the server will never
// answer it.
func (q *Queue[U]) remove(i int) {
	at := q.head + i
	copy(q.reqs[at:], q.reqs[at+1:])
	q.reqs[len(q.reqs)-1] = Request[U]{}
	q.reqs = q.reqs[:len(q.reqs)-1]
	if i < q.awaiting {
		q.awaiting--
	}
}

// swallowedByCopy forgets the messages the client sent behind a COPY before it learnt of it, as
// the server in copy-in reads them: it ignores Sync, so those Syncs are never answered (a COPY run
// by Execute then still needs a Sync the server sees, so its group is unsynced until the client
// sends one; a COPY run by a simple Query ends with its own ReadyForQuery), and the first other
// message ends the COPY with an error and is itself thrown away. It reports whether the COPY is
// ended that way, so that the relay passes on the server's error instead of waiting for copy data.
func (q *Queue[U]) swallowedByCopy(copyReq *Request[U]) (ended bool) {
	droppedSync := false
	for i := 1; i < q.Pending() && !ended; {
		r := &q.reqs[q.head+i]
		switch {
		case r.Answered:
			i++ // answered by the proxy: nothing went to the server
		case r.Kind == Sync:
			q.remove(i)
			droppedSync = true
		default:
			q.undo(r)
			q.remove(i)
			ended = true
		}
	}
	if droppedSync && copyReq.Kind == Execute {
		q.unsynced = true
	}
	return ended
}

package wire

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"testing"
	"testing/iotest"
)

func message(typ byte, body []byte) []byte {
	m := []byte{typ, 0, 0, 0, 0}
	binary.BigEndian.PutUint32(m[1:], uint32(4+len(body)))
	return append(m, body...)
}

func TestNextReadsWholeMessagesOneByteAtATime(t *testing.T) {
	var stream []byte
	for i := range 50 {
		stream = append(stream, message('Q', bytes.Repeat([]byte{byte(i)}, i*97))...)
	}
	r := NewReader(iotest.OneByteReader(bytes.NewReader(stream)), 1<<20)
	for i := range 50 {
		typ, msg, err := r.Next()
		if err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
		if typ != 'Q' || len(msg) != 5+i*97 || (i > 0 && msg[5] != byte(i)) {
			t.Fatalf("message %d: type %q, %d bytes", i, typ, len(msg))
		}
	}
	if _, _, err := r.Next(); !errors.Is(err, io.EOF) {
		t.Errorf("after the last message: %v", err)
	}
}

func TestLimitsAndMalformedLengths(t *testing.T) {
	r := NewReader(bytes.NewReader(message('Q', make([]byte, 100))), 50)
	if _, _, err := r.Next(); !errors.Is(err, ErrTooLarge) {
		t.Errorf("over the limit: %v", err)
	}
	r = NewReader(bytes.NewReader([]byte{'Q', 0, 0, 0, 3}), 50)
	if _, _, err := r.Next(); !errors.Is(err, ErrMalformed) {
		t.Errorf("length 3: %v", err)
	}
	r = NewReader(bytes.NewReader([]byte{'Q', 0, 0, 0, 9, 'x'}), 50)
	if _, _, err := r.Next(); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("truncated: %v", err)
	}
	r = NewReader(bytes.NewReader([]byte{0, 0, 0, 4}), 50)
	if _, err := r.NextStartup(); !errors.Is(err, ErrMalformed) {
		t.Errorf("startup length 4: %v", err)
	}
}

func TestHasMessageNeverBlocks(t *testing.T) {
	pr, pw := io.Pipe()
	r := NewReader(pr, 1<<20)
	if r.HasMessage() {
		t.Fatal("HasMessage with nothing read")
	}
	go pw.Write(append(message('S', nil), message('Q', []byte("partial"))[:7]...))
	if _, _, err := r.Next(); err != nil {
		t.Fatal(err)
	}
	if r.HasMessage() {
		t.Error("HasMessage with half a message buffered")
	}
}

// A message bigger than any buffer streams through byte for byte, and the reader gives its
// borrowed buffer back afterwards.
func TestCopyMessageStreamsLargeMessages(t *testing.T) {
	big := make([]byte, 3<<20)
	for i := range big {
		big[i] = byte(i * 7)
	}
	stream := append(message('D', big), message('C', []byte("SELECT 1\x00"))...)
	r := NewReader(iotest.HalfReader(bytes.NewReader(stream)), 1024)
	var out bytes.Buffer
	w := NewWriter(&out)
	if err := r.CopyMessage(w); err != nil {
		t.Fatal(err)
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(out.Bytes(), message('D', big)) {
		t.Fatal("the streamed message differs")
	}
	typ, msg, err := r.Next()
	if err != nil || typ != 'C' || string(msg[5:]) != "SELECT 1\x00" {
		t.Fatalf("next: %q %q %v", typ, msg, err)
	}
	if _, _, err := r.Next(); !errors.Is(err, io.EOF) {
		t.Fatal(err)
	}
	if len(r.buf) != homeSize || r.big != nil {
		t.Errorf("after draining, buffer of %d bytes (borrowed %v)", len(r.buf), r.big != nil)
	}
}

func TestSkip(t *testing.T) {
	stream := append(message('D', make([]byte, 200000)), message('Z', []byte{'I'})...)
	r := NewReader(bytes.NewReader(stream), 10)
	if err := r.Skip(); err != nil {
		t.Fatal(err)
	}
	typ, msg, err := r.Next()
	if err != nil || typ != 'Z' || msg[5] != 'I' {
		t.Fatalf("after skip: %q %v", typ, err)
	}
}

type failingWriter struct{ n int }

func (f *failingWriter) Write(p []byte) (int, error) {
	f.n++
	return 0, errors.New("broken pipe")
}

func TestWriterBorrowsOnlyWhileHolding(t *testing.T) {
	var out bytes.Buffer
	w := NewWriter(&out)
	if w.buf != nil {
		t.Fatal("a new writer holds a buffer")
	}
	b, at := BeginMessage(w.Bytes(), 'Q')
	b = append(b, "SELECT 1\x00"...)
	w.Commit(EndMessage(b, at))
	if w.Buffered() != 14 {
		t.Fatalf("buffered %d", w.Buffered())
	}
	if err := w.Flush(); err != nil || w.buf != nil {
		t.Fatalf("flush: %v, still holding %v", err, w.buf != nil)
	}
	if !bytes.Equal(out.Bytes(), message('Q', []byte("SELECT 1\x00"))) {
		t.Errorf("wrote %q", out.Bytes())
	}

	fw := &failingWriter{}
	w = NewWriter(fw)
	w.Write([]byte("x"))
	if err := w.Flush(); err == nil {
		t.Fatal("no error from a failing destination")
	}
	w.Write([]byte("y"))
	if err := w.Flush(); err == nil || fw.n != 1 {
		t.Errorf("after an error: %v, %d writes attempted", err, fw.n)
	}
}

func TestCString(t *testing.T) {
	s, rest, ok := CString([]byte("abc\x00def"))
	if !ok || string(s) != "abc" || string(rest) != "def" {
		t.Errorf("got %q %q %v", s, rest, ok)
	}
	if _, _, ok := CString([]byte("abc")); ok {
		t.Error("a string without NUL")
	}
}

// A reader borrowing the buffer a writer just gave back must see its whole capacity: the
// writer returns it cut to length zero.
func TestReaderBorrowsAWritersBuffer(t *testing.T) {
	for range 3 {
		w := NewWriter(io.Discard)
		w.Write(make([]byte, 100))
		if err := w.Flush(); err != nil {
			t.Fatal(err)
		}
	}
	for _, size := range []int{homeSize + 1, 3000, 10 << 10, bigSize - 5} {
		stream := message('Q', bytes.Repeat([]byte{'x'}, size))
		r := NewReader(bytes.NewReader(stream), 1<<20)
		_, msg, err := r.Next()
		if err != nil || len(msg) != len(stream) {
			t.Fatalf("a %d-byte message: %d bytes, %v", size, len(msg), err)
		}
	}
}

// Readers sharing a Budget: a large message takes from it while held and gives back once read
// past; one that does not fit fails with ErrNoMemory, can be skipped without being held, and the
// reader goes on.
func TestBudgetBoundsLargeMessages(t *testing.T) {
	budget := NewBudget(1 << 20)
	big := func(n int) []byte { return message('Q', bytes.Repeat([]byte{'x'}, n)) }
	a := NewReader(bytes.NewReader(append(big(700<<10), message('S', nil)...)), 4<<20)
	b := NewReader(bytes.NewReader(append(append(big(600<<10), message('S', nil)...), big(600<<10)...)), 4<<20)
	a.Budget, b.Budget = budget, budget

	if _, msg, err := a.Next(); err != nil || len(msg) != 5+700<<10 {
		t.Fatalf("a's large message: %d bytes, %v", len(msg), err)
	}
	if used := budget.Used(); used < 700<<10 || used > 1<<20 {
		t.Errorf("held while a holds its message: %d", used)
	}
	if _, _, err := b.Next(); !errors.Is(err, ErrNoMemory) {
		t.Fatalf("b's message while a holds its own: %v, want ErrNoMemory", err)
	}
	if err := b.Skip(); err != nil {
		t.Fatalf("skipping b's message: %v", err)
	}
	if typ, _, err := b.Next(); err != nil || typ != 'S' {
		t.Fatalf("b's next message: %q, %v", typ, err)
	}
	if typ, _, err := a.Next(); err != nil || typ != 'S' {
		t.Fatalf("a's next message: %q, %v", typ, err)
	}
	if used := budget.Used(); used != 0 {
		t.Errorf("held once a read past its message: %d", used)
	}
	if _, msg, err := b.Next(); err != nil || len(msg) != 5+600<<10 {
		t.Fatalf("b's large message once a let go: %d bytes, %v", len(msg), err)
	}
	b.Release()
	if used := budget.Used(); used != 0 {
		t.Errorf("held after Release: %d", used)
	}
}

// A sub-budget takes from its parent too: each is bounded by its own limit and by what the
// others left of the parent's.
func TestSubBudgets(t *testing.T) {
	parent := NewBudget(1 << 20)
	acme, globex := parent.Sub(600<<10), parent.Sub(600<<10)
	big := message('Q', bytes.Repeat([]byte{'x'}, 500<<10))
	reader := func(b *Budget) *Reader {
		r := NewReader(bytes.NewReader(append(append([]byte{}, big...), big...)), 4<<20)
		r.Budget = b
		return r
	}
	a1, a2, g := reader(acme), reader(acme), reader(globex)
	if _, _, err := a1.Next(); err != nil {
		t.Fatalf("acme's first: %v", err)
	}
	if _, _, err := a2.Next(); !errors.Is(err, ErrNoMemory) {
		t.Fatalf("acme's second, past its own limit: %v, want ErrNoMemory", err)
	}
	if _, _, err := g.Next(); err != nil {
		t.Fatalf("globex's, within its limit and the parent's: %v", err)
	}
	if parent.Used() != acme.Used()+globex.Used() || acme.Used() == 0 || globex.Used() == 0 {
		t.Errorf("parent %d, acme %d, globex %d", parent.Used(), acme.Used(), globex.Used())
	}
	a1.Release()
	g.Release()
	if parent.Used() != 0 {
		t.Errorf("parent %d after every reader let go", parent.Used())
	}
}

// writeRecorder keeps each Write's slice as it was given.
type writeRecorder struct{ writes [][]byte }

func (w *writeRecorder) Write(p []byte) (int, error) {
	w.writes = append(w.writes, p)
	return len(p), nil
}

// A large message goes out as it is, after what was buffered, never copied into the buffer.
func TestWriterWritesLargeMessagesThrough(t *testing.T) {
	dst := &writeRecorder{}
	w := NewWriter(dst)
	w.Write([]byte("small"))
	large := bytes.Repeat([]byte{'x'}, 100<<10)
	w.Write(large)
	if w.Buffered() != 0 || len(dst.writes) != 2 {
		t.Fatalf("buffered %d, %d writes", w.Buffered(), len(dst.writes))
	}
	if string(dst.writes[0]) != "small" || &dst.writes[1][0] != &large[0] {
		t.Errorf("writes: %q first, and the large one copied: %v", dst.writes[0], &dst.writes[1][0] != &large[0])
	}
}

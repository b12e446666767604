package wire

// A message is a type byte, a big-endian int32 length that counts itself but not the type byte,
// and a body. Reader hands out whole messages as slices of its own buffer, valid until the next
// call, so relaying a message costs one copy into the other side's Writer and no allocation.
// Messages larger than the buffer can be streamed through (CopyMessage) without ever being held
// whole in memory.

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"
)

// HeaderSize is the type byte and the length.
const HeaderSize = 5

// ErrTooLarge is returned for a message whose declared length exceeds the limit.
var ErrTooLarge = errors.New("message too large")

// ErrMalformed is returned for a length that cannot be right (less than 4).
var ErrMalformed = errors.New("malformed message length")

// ErrNoMemory is returned when a message larger than a borrowed buffer would take more than
// the Reader's Budget allows.
var ErrNoMemory = errors.New("no memory left for the message")

// Budget bounds the memory that messages larger than a borrowed buffer take, for every Reader
// that shares it; a budget made by Sub also takes from its parent.
type Budget struct {
	mu          sync.Mutex
	used, limit int64
	parent      *Budget
}

// NewBudget returns a Budget of limit bytes.
func NewBudget(limit int64) *Budget { return &Budget{limit: limit} }

// Sub returns a Budget of at most limit bytes of b.
func (b *Budget) Sub(limit int64) *Budget { return &Budget{limit: limit, parent: b} }

func (b *Budget) take(n int64) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.used+n > b.limit || b.parent != nil && !b.parent.take(n) {
		return false
	}
	b.used += n
	return true
}

func (b *Budget) give(n int64) {
	b.mu.Lock()
	b.used -= n
	b.mu.Unlock()
	if b.parent != nil {
		b.parent.give(n)
	}
}

// Used is the memory taken now.
func (b *Budget) Used() int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.used
}

// homeSize is each Reader's own buffer: large enough for the messages of ordinary OLTP traffic,
// small enough that ten thousand idle clients cost little. Larger messages borrow from bigPool.
const homeSize = 2048

// bigSize is the size of a borrowed buffer.
const bigSize = 64 << 10

var bigPool = sync.Pool{New: func() any { b := make([]byte, bigSize); return &b }}

// homePool holds the home buffers of readers that released theirs (Release).
var homePool = sync.Pool{New: func() any { return new([homeSize]byte) }}

// Reader reads messages from an io.Reader.
type Reader struct {
	src  io.Reader
	home *[homeSize]byte // nil once released, until the next read
	buf  []byte          // home[:], a borrowed big buffer, or an exact-size allocation for a huge message
	big  *[]byte
	r, w int
	// huge is the size of buf when it is an allocation of its own, taken from Budget.
	huge int

	// Limit is the largest message (header included) Next accepts.
	Limit int
	// Budget, when set, bounds the allocations for messages larger than a borrowed buffer,
	// together with every other Reader of the Budget: past it, reads fail with ErrNoMemory.
	Budget *Budget
}

// NewReader returns a Reader of src that accepts messages up to limit bytes. A plain socket is
// read with raw non-blocking calls (rawio.go).
func NewReader(src io.Reader, limit int) *Reader {
	r := &Reader{Limit: limit}
	r.Reset(src)
	r.buf = r.homeBuffer()
	return r
}

func (r *Reader) homeBuffer() []byte {
	if r.home == nil {
		r.home = homePool.Get().(*[homeSize]byte)
	}
	return r.home[:]
}

// Release gives the reader's buffers back, when nothing is buffered, until the next read: a
// connection that waits long for its next message then holds no buffer.
func (r *Reader) Release() {
	if r.r != r.w {
		return
	}
	r.r, r.w = 0, 0
	if r.big != nil {
		bigPool.Put(r.big)
		r.big = nil
	}
	if r.home != nil {
		homePool.Put(r.home)
		r.home = nil
	}
	r.buf = nil
	r.dropHuge()
}

// Buffered is the number of bytes read but not yet consumed.
func (r *Reader) Buffered() int { return r.w - r.r }

// HasMessage reports whether a whole message is already buffered, so Next will not block.
func (r *Reader) HasMessage() bool {
	if r.w-r.r < HeaderSize {
		return false
	}
	n := int(binary.BigEndian.Uint32(r.buf[r.r+1:]))
	return n >= 4 && r.w-r.r >= n+1
}

// fill reads until at least n bytes are buffered, growing the buffer as the bytes arrive: room
// doubles towards n each time the buffer fills, so a message that announces a large size costs
// what was actually sent, not what it announced.
func (r *Reader) fill(n int) error {
	if r.w-r.r >= n {
		return nil
	}
	if r.r == r.w {
		r.r, r.w = 0, 0
		r.shrink()
	}
	for empty := 0; r.w-r.r < n; {
		if r.w == len(r.buf) {
			if err := r.grow(min(n, max(2*(r.w-r.r), homeSize))); err != nil {
				return err
			}
		}
		m, err := r.src.Read(r.buf[r.w:])
		r.w += m
		if m == 0 && err == nil {
			if empty++; empty == 100 { // as bufio: a source that never makes progress
				return io.ErrNoProgress
			}
		}
		if err != nil {
			if r.w-r.r >= n {
				return nil
			}
			if err == io.EOF && r.w > r.r {
				return io.ErrUnexpectedEOF
			}
			return err
		}
	}
	return nil
}

// grow makes room for n unconsumed bytes from r.r.
func (r *Reader) grow(n int) error {
	var next []byte
	var big *[]byte
	huge := 0
	switch {
	case n <= homeSize:
		next = r.homeBuffer()
	case n <= bigSize && r.Limit > bigSize:
		// Borrowed only by readers that accept large messages: a reader limited to less (a
		// client that has not logged in) gets an exact allocation, never 64 KiB.
		if r.big != nil {
			big = r.big
		} else {
			big = bigPool.Get().(*[]byte)
		}
		// Writers return their buffers cut to length zero: use the whole capacity.
		next = (*big)[:cap(*big)]
	default:
		// The budget counts the allocation the reader keeps: what it grows by (the one it
		// replaces goes at once).
		if r.Budget != nil && n > r.huge && !r.Budget.take(int64(n-r.huge)) {
			return ErrNoMemory
		}
		next, huge = make([]byte, n), n
	}
	// next may be the buffer we already use: copy is a move to the front then.
	used := copy(next, r.buf[r.r:r.w])
	if r.big != nil && big != r.big {
		bigPool.Put(r.big)
	}
	if r.Budget != nil && huge < r.huge {
		r.Budget.give(int64(r.huge - huge))
	}
	r.buf, r.big, r.huge = next, big, huge
	r.r, r.w = 0, used
	return nil
}

// dropHuge gives the budget back for an allocation of its own the reader lets go of.
func (r *Reader) dropHuge() {
	if r.huge > 0 && r.Budget != nil {
		r.Budget.give(int64(r.huge))
	}
	r.huge = 0
}

// shrink returns a borrowed buffer once nothing is buffered.
func (r *Reader) shrink() {
	if r.big != nil || len(r.buf) != homeSize {
		if r.big != nil {
			bigPool.Put(r.big)
			r.big = nil
		}
		r.dropHuge()
		r.buf = r.homeBuffer()
	}
}

// PeekHeader waits for the next message's header and returns its type and whole length
// (header included) without consuming anything.
func (r *Reader) PeekHeader() (typ byte, size int, err error) {
	if err := r.fill(HeaderSize); err != nil {
		return 0, 0, err
	}
	n := int(binary.BigEndian.Uint32(r.buf[r.r+1:]))
	if n < 4 {
		return 0, 0, ErrMalformed
	}
	return r.buf[r.r], n + 1, nil
}

// Next returns the next whole message, header included.
func (r *Reader) Next() (typ byte, msg []byte, err error) {
	typ, size, err := r.PeekHeader()
	if err != nil {
		return 0, nil, err
	}
	if size > r.Limit {
		return typ, nil, fmt.Errorf("%w: %d bytes, limit %d", ErrTooLarge, size, r.Limit)
	}
	if err := r.fill(size); err != nil {
		return 0, nil, err
	}
	msg = r.buf[r.r : r.r+size]
	r.r += size
	return typ, msg, nil
}

// CopyMessage streams the next message, whatever its size, to w without holding it whole.
func (r *Reader) CopyMessage(w *Writer) error {
	_, size, err := r.PeekHeader()
	if err != nil {
		return err
	}
	for size > 0 {
		if r.r == r.w {
			if err := r.fill(1); err != nil {
				return err
			}
		}
		chunk := min(size, r.w-r.r)
		w.Write(r.buf[r.r : r.r+chunk])
		r.r += chunk
		size -= chunk
	}
	return nil
}

// Skip discards the next message, whatever its size.
func (r *Reader) Skip() error {
	_, size, err := r.PeekHeader()
	if err != nil {
		return err
	}
	for size > 0 {
		if r.r == r.w {
			if err := r.fill(1); err != nil {
				return err
			}
		}
		chunk := min(size, r.w-r.r)
		r.r += chunk
		size -= chunk
	}
	return nil
}

// NextStartup returns the next untyped message (startup, SSL, GSS and cancel requests), which
// begins with its length instead of a type byte.
func (r *Reader) NextStartup() ([]byte, error) {
	if err := r.fill(4); err != nil {
		return nil, err
	}
	n := int(binary.BigEndian.Uint32(r.buf[r.r:]))
	if n < 8 {
		return nil, ErrMalformed
	}
	if n > r.Limit {
		return nil, fmt.Errorf("%w: startup packet of %d bytes", ErrTooLarge, n)
	}
	if err := r.fill(n); err != nil {
		return nil, err
	}
	msg := r.buf[r.r : r.r+n]
	r.r += n
	return msg, nil
}

// Reset points the Reader at a new source (after a TLS handshake). Nothing may be buffered.
func (r *Reader) Reset(src io.Reader) {
	r.src = src
	if raw := rawConn(src); raw != nil {
		r.src = newRawReader(raw)
	}
}

// Writer buffers messages for one Flush. Its buffer is borrowed when the first byte is
// written and returned when a Flush empties it, so an idle connection holds none. A write error
// sticks: later writes are dropped and every Flush returns it.
type Writer struct {
	dst io.Writer
	buf *[]byte
	err error
	// flushes counts the Flushes that wrote something, for Rollback.
	flushes int
	// block, when set, bounds how long a Flush may wait for the peer to read (LimitBlocking).
	block       time.Duration
	setDeadline func(time.Time) error
	raw         *rawWriter
}

// NewWriter returns a Writer to dst. A plain socket is written with raw non-blocking calls.
func NewWriter(dst io.Writer) *Writer {
	if raw := rawConn(dst); raw != nil {
		rw := newRawWriter(raw)
		return &Writer{dst: rw, raw: rw}
	}
	return &Writer{dst: dst}
}

// LimitBlocking makes a Flush that cannot go on for d, because conn's peer stopped reading, fail
// with os.ErrDeadlineExceeded. A Flush that never waits costs nothing more.
func (w *Writer) LimitBlocking(conn net.Conn, d time.Duration) {
	w.block, w.setDeadline = d, conn.SetWriteDeadline
	if w.raw != nil {
		w.raw.block, w.raw.setDeadline = d, conn.SetWriteDeadline
	}
}

// Err is the write error that stuck, if any.
func (w *Writer) Err() error { return w.err }

// Mark is a point in what a Writer was given, to roll back to.
type Mark struct{ flushes, buffered int }

// Mark returns the point the Writer is at.
func (w *Writer) Mark() Mark { return Mark{w.flushes, w.Buffered()} }

// Rollback drops what was written since m, and reports whether it could: not if some of it
// went out already.
func (w *Writer) Rollback(m Mark) bool {
	if w.flushes != m.flushes {
		return false
	}
	if w.buf != nil {
		*w.buf = (*w.buf)[:m.buffered]
	}
	return true
}

// Buffered is the number of bytes waiting for Flush.
func (w *Writer) Buffered() int {
	if w.buf == nil {
		return 0
	}
	return len(*w.buf)
}

// Write appends p. Errors surface at Flush. Once a bigSize worth is buffered it is written out,
// so relaying a large result holds at most about that much.
func (w *Writer) Write(p []byte) {
	if len(p) >= bigSize {
		// A large message goes out as it is, after what is buffered, rather than through a copy.
		w.Flush()
		w.send(p)
		return
	}
	if w.buf == nil {
		w.buf = bigPool.Get().(*[]byte)
		*w.buf = (*w.buf)[:0]
	}
	*w.buf = append(*w.buf, p...)
	if len(*w.buf) >= bigSize {
		w.Flush()
	}
}

// Bytes gives room to build a message in place: append to the returned slice and pass it to
// Commit.
func (w *Writer) Bytes() []byte {
	if w.buf == nil {
		w.buf = bigPool.Get().(*[]byte)
		*w.buf = (*w.buf)[:0]
	}
	return *w.buf
}

// Commit keeps what was appended to the slice Bytes returned.
func (w *Writer) Commit(b []byte) { *w.buf = b }

// Flush writes everything buffered.
func (w *Writer) Flush() error {
	if w.buf == nil {
		return w.err
	}
	b := *w.buf
	w.send(b)
	// A buffer that grew far beyond the usual size is dropped rather than pooled.
	if cap(b) <= 4*bigSize {
		*w.buf = b[:0]
		bigPool.Put(w.buf)
	}
	w.buf = nil
	return w.err
}

// send writes b to the destination, within the blocking limit; an error sticks.
func (w *Writer) send(b []byte) {
	if len(b) == 0 || w.err != nil {
		return
	}
	w.flushes++
	if w.block > 0 && w.raw == nil {
		w.setDeadline(time.Now().Add(w.block))
		_, w.err = w.dst.Write(b)
		w.setDeadline(time.Time{})
	} else {
		_, w.err = w.dst.Write(b)
	}
}

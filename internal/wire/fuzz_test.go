package wire

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"testing"
)

// chunkedReader hands out its stream a few bytes at a time, as a socket does, and counts reads.
type chunkedReader struct {
	data  []byte
	sizes []byte // the size of each read, in turn (0 means 1)
	reads int
}

func (c *chunkedReader) Read(p []byte) (int, error) {
	if len(c.data) == 0 {
		return 0, io.EOF
	}
	n := 1
	if len(c.sizes) > 0 {
		n = max(1, int(c.sizes[c.reads%len(c.sizes)])*37)
	}
	c.reads++
	n = min(n, len(p), len(c.data))
	copy(p, c.data[:n])
	c.data = c.data[n:]
	return n, nil
}

// FuzzReader drives a Reader with an arbitrary stream, read in arbitrary pieces, through an
// arbitrary sequence of calls, and checks that every message it hands out is exactly the next
// bytes of the stream with the length their header declares, that nothing larger than the
// limit is handed out whole, that PeekHeader and HasMessage consume nothing, that HasMessage
// is true only when Next needs no further read, and that errors are the documented ones.
func FuzzReader(f *testing.F) {
	msg := func(typ byte, body string) []byte {
		m := []byte{typ, 0, 0, 0, 0}
		binary.BigEndian.PutUint32(m[1:], uint32(4+len(body)))
		return append(m, body...)
	}
	startup := []byte{0, 0, 0, 8, 4, 210, 22, 47} // SSLRequest
	pipeline := append(append(msg('P', "s1\x00SELECT 1\x00\x00\x00"), msg('B', "\x00s1\x00\x00\x00\x00\x00\x00\x00")...), msg('S', "")...)
	f.Add(msg('Q', "SELECT 1\x00"), []byte{0, 0, 0}, []byte{1}, uint16(100))
	f.Add(pipeline, []byte{0, 2, 3, 1, 0, 0}, []byte{1, 2, 3}, uint16(64))
	f.Add(append(startup, msg('Q', "x\x00")...), []byte{4, 0}, []byte{0}, uint16(1024))
	f.Add(msg('d', string(bytes.Repeat([]byte("copy data "), 500))), []byte{2, 0}, []byte{200, 1}, uint16(3000))
	f.Add([]byte{'Q', 0, 0, 0, 3}, []byte{0}, []byte{}, uint16(100))
	f.Add([]byte{'Q', 0x7f, 0xff, 0xff, 0xff, 'x'}, []byte{1, 0, 2, 3}, []byte{}, uint16(100))
	f.Add([]byte{0, 0, 0, 4}, []byte{4}, []byte{}, uint16(100))

	f.Fuzz(func(t *testing.T, stream, ops, sizes []byte, limit uint16) {
		if len(ops) > 64 {
			ops = ops[:64]
		}
		src := &chunkedReader{data: stream, sizes: sizes}
		r := NewReader(src, max(16, int(limit)))
		consumed := 0
		rest := func() []byte { return stream[consumed:] }
		// declared is the whole length the next message's header claims, if a header is there.
		declared := func(startup bool) (int, bool) {
			if startup {
				if len(rest()) < 4 {
					return 0, false
				}
				return int(binary.BigEndian.Uint32(rest())), true
			}
			if len(rest()) < HeaderSize {
				return 0, false
			}
			return int(binary.BigEndian.Uint32(rest()[1:])) + 1, true
		}
		expected := func(err error) {
			if !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrTooLarge) {
				t.Fatalf("unexpected error %v", err)
			}
		}
		for _, op := range ops {
			if b := r.Buffered(); b < 0 || b > len(rest()) {
				t.Fatalf("Buffered() = %d with %d bytes left", b, len(rest()))
			}
			switch op % 7 {
			case 0: // Next
				typ, m, err := r.Next()
				if err != nil {
					expected(err)
					return
				}
				size, ok := declared(false)
				if !ok || len(m) != size || size > r.Limit || typ != m[0] || !bytes.Equal(m, rest()[:size]) {
					t.Fatalf("Next = %q (%d bytes) but the stream holds %q (limit %d)", typ, len(m), rest()[:min(len(rest()), 16)], r.Limit)
				}
				consumed += size
			case 1: // PeekHeader
				typ, size, err := r.PeekHeader()
				if err != nil {
					expected(err)
					return
				}
				want, ok := declared(false)
				if !ok || typ != rest()[0] || size != want {
					t.Fatalf("PeekHeader = %q, %d; the stream declares %d", typ, size, want)
				}
			case 2: // CopyMessage
				var out bytes.Buffer
				w := NewWriter(&out)
				err := r.CopyMessage(w)
				if ferr := w.Flush(); ferr != nil {
					t.Fatal(ferr)
				}
				size, ok := declared(false)
				if err != nil {
					expected(err)
					if ok && out.Len() > 0 && !bytes.Equal(out.Bytes(), rest()[:out.Len()]) {
						t.Fatalf("a failed CopyMessage passed on bytes that are not the stream's")
					}
					return
				}
				if !ok || out.Len() != size || !bytes.Equal(out.Bytes(), rest()[:size]) {
					t.Fatalf("CopyMessage passed on %d bytes; the message has %d", out.Len(), size)
				}
				consumed += size
			case 3: // Skip
				if err := r.Skip(); err != nil {
					expected(err)
					return
				}
				size, _ := declared(false)
				consumed += size
			case 4: // NextStartup
				m, err := r.NextStartup()
				if err != nil {
					expected(err)
					return
				}
				size, ok := declared(true)
				if !ok || size < 8 || size > r.Limit || !bytes.Equal(m, rest()[:size]) {
					t.Fatalf("NextStartup = %d bytes; the stream declares %d (limit %d)", len(m), size, r.Limit)
				}
				consumed += size
			case 5: // HasMessage: true only when Next reads nothing more
				if !r.HasMessage() {
					continue
				}
				reads := src.reads
				_, m, err := r.Next()
				if err != nil && !errors.Is(err, ErrTooLarge) {
					t.Fatalf("HasMessage was true, then Next failed: %v", err)
				}
				if src.reads != reads {
					t.Fatalf("HasMessage was true, yet Next had to read more")
				}
				if err != nil {
					return
				}
				consumed += len(m)
			case 6: // Release: never loses a buffered byte
				buffered := r.Buffered()
				r.Release()
				if r.Buffered() != buffered {
					t.Fatalf("Release changed Buffered from %d to %d", buffered, r.Buffered())
				}
			}
		}
	})
}

package compat

import (
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"regexp"
	"strings"
	"sync"
	"testing"
)

// Startup request codes that precede or replace a startup message.
const (
	cancelRequestCode = 80877102
	sslRequestCode    = 80877103
	gssRequestCode    = 80877104
)

// recorder relays connections to PostgreSQL and notes what each client sends: its startup
// parameters, every query, every statement it prepares or closes. It declines TLS and GSS
// encryption (as tenantproxy does without TLS) so that it can read the messages, and notes no
// authentication message, so no password reaches a log.
type recorder struct {
	ln      net.Listener
	backend string

	mu    sync.Mutex
	lines []string
	conns []net.Conn
}

func startRecorder(t testing.TB, backend string) *recorder {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &recorder{ln: ln, backend: backend}
	go r.serve()
	t.Cleanup(func() {
		ln.Close()
		r.mu.Lock()
		defer r.mu.Unlock()
		for _, c := range r.conns {
			c.Close()
		}
	})
	return r
}

func (r *recorder) serve() {
	for {
		c, err := r.ln.Accept()
		if err != nil {
			return
		}
		r.mu.Lock()
		r.conns = append(r.conns, c)
		n := len(r.conns)
		r.mu.Unlock()
		go r.relay(n, c)
	}
}

func (r *recorder) note(conn int, line string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.lines = append(r.lines, fmt.Sprintf("conn %d: %s", conn, line))
}

// trace is what was noted, a run of identical lines written once with its count.
func (r *recorder) trace() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for i := 0; i < len(r.lines); {
		j := i
		for j < len(r.lines) && r.lines[j] == r.lines[i] {
			j++
		}
		if j-i > 1 {
			out = append(out, fmt.Sprintf("%s  (x%d)", r.lines[i], j-i))
		} else {
			out = append(out, r.lines[i])
		}
		i = j
	}
	return out
}

// preparedNames are the named statements clients prepared, in order.
func (r *recorder) preparedNames() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var names []string
	for _, l := range r.lines {
		if m := parseLine.FindStringSubmatch(l); m != nil && m[1] != "" {
			names = append(names, m[1])
		}
	}
	return names
}

var parseLine = regexp.MustCompile(`^conn \d+: Parse "([^"]*)"`)

func (r *recorder) relay(n int, client net.Conn) {
	defer client.Close()
	startup, err := readStartup(client)
	if err != nil {
		return
	}
	server, err := net.Dial("tcp", r.backend)
	if err != nil {
		return
	}
	defer server.Close()
	r.note(n, describeStartup(startup))
	if _, err := server.Write(startup); err != nil {
		return
	}
	go func() {
		io.Copy(client, server)
		client.Close()
	}()
	for {
		raw, err := readMessage(client)
		if err != nil {
			return
		}
		if line := describe(raw[0], raw[5:]); line != "" {
			r.note(n, line)
		}
		if _, err := server.Write(raw); err != nil {
			return
		}
	}
}

// readStartup reads the startup message (or cancel request), answering "N" to each request
// for encryption before it.
func readStartup(c net.Conn) ([]byte, error) {
	for {
		var head [4]byte
		if _, err := io.ReadFull(c, head[:]); err != nil {
			return nil, err
		}
		size := binary.BigEndian.Uint32(head[:])
		if size < 8 || size > 10000 {
			return nil, fmt.Errorf("startup message of %d bytes", size)
		}
		msg := make([]byte, size)
		copy(msg, head[:])
		if _, err := io.ReadFull(c, msg[4:]); err != nil {
			return nil, err
		}
		switch binary.BigEndian.Uint32(msg[4:8]) {
		case sslRequestCode, gssRequestCode:
			if _, err := c.Write([]byte{'N'}); err != nil {
				return nil, err
			}
		default:
			return msg, nil
		}
	}
}

// readMessage reads one message: type byte, length, body.
func readMessage(c net.Conn) ([]byte, error) {
	var head [5]byte
	if _, err := io.ReadFull(c, head[:]); err != nil {
		return nil, err
	}
	size := binary.BigEndian.Uint32(head[1:])
	if size < 4 {
		return nil, fmt.Errorf("message length %d", size)
	}
	msg := make([]byte, 1+size)
	copy(msg, head[:])
	_, err := io.ReadFull(c, msg[5:])
	return msg, err
}

func describeStartup(msg []byte) string {
	code := binary.BigEndian.Uint32(msg[4:8])
	if code == cancelRequestCode {
		return "CancelRequest"
	}
	fields := cstrings(msg[8:])
	params := []string{fmt.Sprintf("protocol %d.%d:", code>>16, code&0xffff)}
	for i := 0; i+1 < len(fields); i += 2 {
		params = append(params, fmt.Sprintf("%s=%q", fields[i], fields[i+1]))
	}
	return "startup " + strings.Join(params, " ")
}

// describe is the line noted for one client message, or "" for those not worth noting (binds,
// executes, syncs, copy data, authentication).
func describe(typ byte, body []byte) string {
	s := cstrings(body)
	switch typ {
	case 'Q':
		return "Query: " + oneLine(s[0])
	case 'P':
		return fmt.Sprintf("Parse %q: %s", s[0], oneLine(s[1]))
	case 'C':
		kind := map[byte]string{'S': "statement", 'P': "portal"}[body[0]]
		return fmt.Sprintf("Close %s %q", kind, cstrings(body[1:])[0])
	case 'F':
		return "FunctionCall"
	case 'f':
		return "CopyFail"
	case 'X':
		return "Terminate"
	}
	return ""
}

// cstrings splits NUL-terminated strings; there is always at least one, maybe empty.
func cstrings(b []byte) []string {
	parts := strings.Split(string(b), "\x00")
	if len(parts) > 1 && parts[len(parts)-1] == "" {
		parts = parts[:len(parts)-1]
	}
	for len(parts) < 2 {
		parts = append(parts, "")
	}
	return parts
}

func oneLine(sql string) string {
	return strings.Join(strings.Fields(sql), " ")
}

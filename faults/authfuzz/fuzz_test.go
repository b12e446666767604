// Package authfuzz fuzzes what an unauthenticated client can send to a running proxy: startup
// packets, and the two messages of a SCRAM exchange. The proxy runs in this process, so a
// panic anywhere in it fails the fuzz target; each input must end in a clean FATAL (or the
// proxy's usual answers) and a closed connection, within auth_timeout. No database is needed:
// nothing here gets past authentication.
package authfuzz

import (
	"encoding/binary"
	"errors"
	"io"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/rs/zerolog"

	"github.com/tenantproxy/tenantproxy/config"
	"github.com/tenantproxy/tenantproxy/internal/scramsecret"
	"github.com/tenantproxy/tenantproxy/proxy"
)

// fatalCodes are the SQLSTATEs of the proxy's refusals before a client is logged in.
var fatalCodes = []string{"08P01", "0A000", "28000", "28P01", "3D000", "42501", "42601", "53300", "57014"}

// authTimeout bounds every exchange.
const authTimeout = 2 * time.Second

// proxyAddr starts one proxy per process (per fuzz worker), whose backend is a port nobody
// listens on: no input may ever get that far.
var proxyAddr = sync.OnceValues(func() (string, error) {
	v, err := scramsecret.New("secret")
	if err != nil {
		return "", err
	}
	cfg := config.Defaults()
	cfg.Listen = "127.0.0.1:0"
	cfg.Backend.Port = 1
	cfg.Backend.SSLMode = "disable"
	cfg.AuthTimeout = config.Duration{Duration: authTimeout}
	cfg.Tenancy.Tenants = []string{"acme", "globex"}
	cfg.Users = map[string]config.User{
		"alice": {Password: v, Tenant: "acme"},
		"carol": {Password: v, Tenants: []string{"acme", "globex"}},
	}
	srv, err := proxy.New(&cfg, zerolog.Nop())
	if err != nil {
		return "", err
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return "", err
	}
	go srv.Serve(ln)
	return ln.Addr().String(), nil
})

func dial(t *testing.T) net.Conn {
	addr, err := proxyAddr()
	if err != nil {
		t.Fatalf("starting the proxy: %v", err)
	}
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	conn.SetDeadline(time.Now().Add(authTimeout + 3*time.Second))
	return conn
}

// checkAnswers reads everything the proxy sends until it closes the connection, and fails t
// unless it is well-framed, refusals are FATAL with a known SQLSTATE, nothing says the client
// is logged in, and the connection is closed in time.
func checkAnswers(t *testing.T, answers []byte, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("the proxy did not close the connection within auth_timeout: %v (after %q)", err, answers)
	}
	// SSLRequest and GSSENCRequest are answered with a bare 'N'.
	for len(answers) > 0 && answers[0] == 'N' && (len(answers) < 5 || binary.BigEndian.Uint32(answers[1:]) > 1<<20) {
		answers = answers[1:]
	}
	for len(answers) > 0 {
		if len(answers) < 5 {
			t.Fatalf("a truncated message: %q", answers)
		}
		typ, n := answers[0], int(binary.BigEndian.Uint32(answers[1:]))
		if n < 4 || len(answers) < 1+n {
			t.Fatalf("a malformed message %q of length %d", typ, n)
		}
		body := answers[5 : 1+n]
		switch typ {
		case 'E':
			var e pgproto3.ErrorResponse
			if err := e.Decode(body); err != nil {
				t.Fatalf("a malformed ErrorResponse: %v", err)
			}
			if e.Severity != "FATAL" || !slices.Contains(fatalCodes, e.Code) {
				t.Fatalf("refused with %s %s (%s), want FATAL and one of %v", e.Severity, e.Code, e.Message, fatalCodes)
			}
		case 'R':
			if len(body) < 4 {
				t.Fatalf("a malformed authentication request")
			}
			if kind := binary.BigEndian.Uint32(body); kind == 0 || kind == 12 {
				t.Fatalf("the proxy accepted a fuzzed login (authentication message %d)", kind)
			}
		case 'v': // NegotiateProtocolVersion
		default:
			t.Fatalf("unexpected message %q before login", typ)
		}
		answers = answers[1+n:]
	}
}

// readAll reads until the proxy closes the connection.
func readAll(conn net.Conn) ([]byte, error) {
	b, err := io.ReadAll(conn)
	var ne net.Error
	if errors.As(err, &ne) && !ne.Timeout() || errors.Is(err, net.ErrClosed) {
		err = nil // a reset after the proxy closed with unread input: closed all the same
	}
	return b, err
}

// FuzzStartupPacket sends arbitrary bytes as the first thing on a connection, then half-closes
// it.
func FuzzStartupPacket(f *testing.F) {
	startup := func(params ...string) []byte {
		b := []byte{0, 0, 0, 0, 0, 3, 0, 0}
		for _, p := range params {
			b = append(append(b, p...), 0)
		}
		b = append(b, 0)
		binary.BigEndian.PutUint32(b, uint32(len(b)))
		return b
	}
	f.Add(startup("user", "alice", "database", "app"))
	f.Add(startup("user", "carol", "database", "app", "options", "-c tenant=globex"))
	f.Add(startup("user", "alice", "database", "app", "app.current_tenant_id", "globex"))
	f.Add(startup("user", "alice", "database", "other"))
	f.Add(startup("user", "alice", "database", "app", "replication", "true"))
	f.Add(startup("user", "alice", "database", "app", "_pq_.x", "1"))
	f.Add(startup("user", "alice", "database", "app", "options", "-c 00000000000000"))
	f.Add(append([]byte{0, 0, 0, 8, 4, 210, 22, 47}, startup("user", "alice")...)) // SSLRequest first
	f.Add([]byte{0, 0, 0, 8, 4, 210, 22, 48})                                      // GSSENCRequest
	f.Add([]byte{0, 0, 0, 16, 4, 210, 22, 46, 0, 0, 0, 1, 0, 0, 0, 2})             // CancelRequest
	f.Add([]byte{0, 0, 0, 4})
	f.Add([]byte{0x7f, 0xff, 0xff, 0xff, 0, 3, 0, 0})
	f.Fuzz(func(t *testing.T, data []byte) {
		conn := dial(t)
		defer conn.Close()
		conn.Write(data)
		conn.(*net.TCPConn).CloseWrite()
		answers, err := readAll(conn)
		checkAnswers(t, answers, err)
	})
}

// FuzzSCRAMExchange logs in with a real startup packet, then sends arbitrary bodies as the
// SASLInitialResponse and, if the proxy asks for more, the SASLResponse.
func FuzzSCRAMExchange(f *testing.F) {
	initial := func(mechanism, data string) []byte {
		b := append([]byte(mechanism), 0)
		b = binary.BigEndian.AppendUint32(b, uint32(len(data)))
		return append(b, data...)
	}
	f.Add("alice", initial("SCRAM-SHA-256", "n,,n=,r=fyko+d2lbbFgONRv9qkxdawL"), []byte("c=biws,r=fyko+d2lbbFgONRv9qkxdawL,p=v0X8v3Bz2T0CJGbJQyF0X+HI4Ts="))
	f.Add("nobody", initial("SCRAM-SHA-256", "n,,n=,r=abc"), []byte("c=biws,r=abc,p="))
	f.Add("alice", initial("SCRAM-SHA-256-PLUS", "p=tls-server-end-point,,n=,r=abc"), []byte{})
	f.Add("alice", initial("SCRAM-SHA-256", "y,,n=,r=abc"), []byte("c=eSws,r=abc,p=AAAA"))
	f.Add("carol", initial("SCRAM-SHA-256", "n,a=alice,n=alice,r=abc"), []byte("c=biws,r=abcdef,p=AAAA,x=1"))
	f.Add("alice", []byte("SCRAM-SHA-256\x00\xff\xff\xff\xff"), []byte{})
	f.Add("alice", []byte{}, []byte{})
	f.Fuzz(func(t *testing.T, user string, first, second []byte) {
		user, _, _ = strings.Cut(user, "\x00") // a startup packet cannot carry a NUL in a value
		if len(user) > 64 {
			user = user[:64]
		}
		conn := dial(t)
		defer conn.Close()
		fe := pgproto3.NewFrontend(conn, conn)
		fe.Send(&pgproto3.StartupMessage{ProtocolVersion: pgproto3.ProtocolVersionNumber,
			Parameters: map[string]string{"user": user, "database": "app"}})
		if err := fe.Flush(); err != nil {
			t.Fatal(err)
		}
		m, err := fe.Receive()
		if err != nil {
			t.Fatalf("no answer to a startup packet: %v", err)
		}
		if e, ok := m.(*pgproto3.ErrorResponse); ok {
			// A user name the proxy refuses before authentication (empty, say).
			if e.Severity != "FATAL" || !slices.Contains(fatalCodes, e.Code) {
				t.Fatalf("startup refused with %s %s (%s)", e.Severity, e.Code, e.Message)
			}
			return
		}
		if _, ok := m.(*pgproto3.AuthenticationSASL); !ok {
			t.Fatalf("want AuthenticationSASL, got %T", m)
		}
		conn.Write(message('p', first))
		// Either a challenge, to which the fuzzed second message answers, or a refusal.
		header := make([]byte, 5)
		if _, err := io.ReadFull(conn, header); err != nil {
			t.Fatalf("no answer to the SASLInitialResponse: %v", err)
		}
		rest := make([]byte, max(0, int(binary.BigEndian.Uint32(header[1:]))-4))
		if _, err := io.ReadFull(conn, rest); err != nil {
			t.Fatalf("a truncated answer to the SASLInitialResponse: %v", err)
		}
		answer := append(header, rest...)
		if header[0] == 'R' && len(rest) >= 4 && binary.BigEndian.Uint32(rest) == 11 { // AuthenticationSASLContinue
			conn.Write(message('p', second))
			answers, err := readAll(conn)
			checkAnswers(t, answers, err)
			return
		}
		more, err := readAll(conn)
		checkAnswers(t, append(answer, more...), err)
	})
}

func message(typ byte, body []byte) []byte {
	b := binary.BigEndian.AppendUint32([]byte{typ}, uint32(4+len(body)))
	return append(b, body...)
}

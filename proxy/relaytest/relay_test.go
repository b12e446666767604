// Package relaytest drives the real proxy against a scripted fake backend, so that the hard cases
// of the relay (an error in the middle of an extended-query group, a COPY that swallows what
// was pipelined behind it, the proxy's own hidden Parse and eviction Close, a desync) are tested
// exactly, and without PostgreSQL.
package relaytest

import (
	"context"
	"fmt"
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

const password = "secret"

// fakeServer accepts the pool's connections and answers them as PostgreSQL would, as far as
// each test scripts it. It records every message each session received.
type fakeServer struct {
	ln net.Listener
	// answer, when set, answers a message the default script does not; it returns the messages
	// to send and whether it handled the message.
	answer func(s *fakeSession, msg pgproto3.FrontendMessage) bool

	mu       sync.Mutex
	sessions []*fakeSession
}

type fakeSession struct {
	be     *pgproto3.Backend
	conn   net.Conn
	copyIn bool
	// skipping: an error ended the current extended-query group; ignore up to Sync.
	skipping bool

	mu       sync.Mutex
	received []string
	closed   bool
}

func startFake(t *testing.T) *fakeServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeServer{ln: ln}
	t.Cleanup(func() { ln.Close() })
	go f.accept()
	return f
}

func (f *fakeServer) accept() {
	for {
		conn, err := f.ln.Accept()
		if err != nil {
			return
		}
		s := &fakeSession{be: pgproto3.NewBackend(conn, conn), conn: conn}
		f.mu.Lock()
		f.sessions = append(f.sessions, s)
		f.mu.Unlock()
		go f.serve(s)
	}
}

func (f *fakeServer) serve(s *fakeSession) {
	defer func() {
		s.mu.Lock()
		s.closed = true
		s.mu.Unlock()
		s.conn.Close()
	}()
	if _, err := s.be.ReceiveStartupMessage(); err != nil {
		return
	}
	s.be.Send(&pgproto3.AuthenticationOk{})
	for name, value := range map[string]string{
		"server_version": "15.0", "client_encoding": "UTF8", "server_encoding": "UTF8",
		"DateStyle": "ISO, MDY", "IntervalStyle": "postgres", "TimeZone": "UTC",
		"integer_datetimes": "on", "standard_conforming_strings": "on", "application_name": "",
		"default_transaction_read_only": "off", "is_superuser": "off", "in_hot_standby": "off",
		"session_authorization": "tenantproxy_app",
	} {
		s.be.Send(&pgproto3.ParameterStatus{Name: name, Value: value})
	}
	s.be.Send(&pgproto3.BackendKeyData{ProcessID: 1, SecretKey: []byte{0, 0, 0, 1}})
	s.be.Send(&pgproto3.ReadyForQuery{TxStatus: 'I'})
	if s.be.Flush() != nil {
		return
	}
	for {
		msg, err := s.be.Receive()
		if err != nil {
			return
		}
		s.record(msg)
		if _, ok := msg.(*pgproto3.Terminate); ok {
			return
		}
		if s.skipping {
			if _, ok := msg.(*pgproto3.Sync); !ok {
				continue
			}
			s.skipping = false
		}
		if f.answer == nil || !f.answer(s, msg) {
			s.defaultAnswer(msg)
		}
		if s.be.Flush() != nil {
			return
		}
	}
}

// defaultAnswer answers as PostgreSQL does for statements that return nothing.
func (s *fakeSession) defaultAnswer(msg pgproto3.FrontendMessage) {
	switch m := msg.(type) {
	case *pgproto3.Query:
		for range strings.Count(m.String, ";") + 1 {
			s.be.Send(&pgproto3.CommandComplete{CommandTag: []byte("SET")})
		}
		s.be.Send(&pgproto3.ReadyForQuery{TxStatus: 'I'})
	case *pgproto3.Parse:
		if m.Query == "tenantproxy refused this statement" { // as PostgreSQL: not SQL
			s.fail("42601", true)
			return
		}
		s.be.Send(&pgproto3.ParseComplete{})
	case *pgproto3.Bind:
		s.be.Send(&pgproto3.BindComplete{})
	case *pgproto3.Describe:
		s.be.Send(&pgproto3.NoData{})
	case *pgproto3.Execute:
		s.be.Send(&pgproto3.CommandComplete{CommandTag: []byte("SELECT 0")})
	case *pgproto3.Close:
		s.be.Send(&pgproto3.CloseComplete{})
	case *pgproto3.Sync:
		s.be.Send(&pgproto3.ReadyForQuery{TxStatus: 'I'})
	}
}

// fail answers with an error and, in an extended-query group, skips to Sync as the server does.
func (s *fakeSession) fail(code string, extended bool) {
	s.be.Send(&pgproto3.ErrorResponse{Severity: "ERROR", SeverityUnlocalized: "ERROR", Code: code, Message: "scripted error"})
	s.skipping = extended
}

func (s *fakeSession) record(msg pgproto3.FrontendMessage) {
	var line string
	switch m := msg.(type) {
	case *pgproto3.Query:
		line = "Query " + m.String
	case *pgproto3.Parse:
		line = "Parse " + m.Name + " " + m.Query
	case *pgproto3.Bind:
		line = "Bind " + m.PreparedStatement
	case *pgproto3.Describe:
		line = fmt.Sprintf("Describe %c %s", m.ObjectType, m.Name)
	case *pgproto3.Execute:
		line = "Execute"
	case *pgproto3.Close:
		line = fmt.Sprintf("Close %c %s", m.ObjectType, m.Name)
	case *pgproto3.Sync:
		line = "Sync"
	case *pgproto3.CopyData:
		line = "CopyData"
	case *pgproto3.CopyDone:
		line = "CopyDone"
	case *pgproto3.CopyFail:
		line = "CopyFail " + m.Message
	case *pgproto3.Terminate:
		line = "Terminate"
	default:
		line = fmt.Sprintf("%T", msg)
	}
	s.mu.Lock()
	s.received = append(s.received, line)
	s.mu.Unlock()
}

func (s *fakeSession) log() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.received)
}

func (s *fakeSession) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

func (f *fakeServer) session(i int) *fakeSession {
	f.mu.Lock()
	defer f.mu.Unlock()
	if i >= len(f.sessions) {
		return nil
	}
	return f.sessions[i]
}

func (f *fakeServer) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.sessions)
}

// startProxy serves the fake backend in transaction mode with a pool of one session.
func startProxy(t *testing.T, f *fakeServer, edit ...func(*config.Config)) string {
	t.Helper()
	v, err := scramsecret.New(password)
	if err != nil {
		t.Fatal(err)
	}
	cfg := config.Defaults()
	addr := f.ln.Addr().(*net.TCPAddr)
	cfg.Backend.Host, cfg.Backend.Port, cfg.Backend.SSLMode = "127.0.0.1", addr.Port, "disable"
	cfg.Backend.Password = "unused"
	cfg.Pool.Size = 1
	cfg.Tenancy.Tenants = []string{"acme"}
	cfg.Users = map[string]config.User{"alice": {Password: v, Tenant: "acme"}}
	for _, e := range edit {
		e(&cfg)
	}
	srv, err := proxy.New(&cfg, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	t.Cleanup(srv.Close)
	return ln.Addr().String()
}

// client is a raw protocol client of the proxy.
type client struct {
	t    *testing.T
	conn net.Conn
	fe   *pgproto3.Frontend
}

func connect(t *testing.T, addr string) *client {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	c := &client{t: t, conn: conn, fe: pgproto3.NewFrontend(conn, conn)}
	c.fe.Send(&pgproto3.StartupMessage{ProtocolVersion: pgproto3.ProtocolVersionNumber,
		Parameters: map[string]string{"user": "alice", "database": "app"}})
	c.flush()
	if err := scramLogin(c); err != nil {
		t.Fatal(err)
	}
	for {
		if _, ok := c.next().(*pgproto3.ReadyForQuery); ok {
			return c
		}
	}
}

func (c *client) send(msgs ...pgproto3.FrontendMessage) {
	c.t.Helper()
	for _, m := range msgs {
		c.fe.Send(m)
	}
	c.flush()
}

func (c *client) flush() {
	c.t.Helper()
	if err := c.fe.Flush(); err != nil {
		c.t.Fatal(err)
	}
}

func (c *client) next() pgproto3.BackendMessage {
	c.t.Helper()
	m, err := c.fe.Receive()
	if err != nil {
		c.t.Fatalf("reading the proxy's answers: %v", err)
	}
	return m
}

// answers reads until the n-th ReadyForQuery (or a FATAL error) and names each message.
func (c *client) answers(n int) []string {
	c.t.Helper()
	var got []string
	for n > 0 {
		switch m := c.next().(type) {
		case *pgproto3.ReadyForQuery:
			got = append(got, "Z "+string(m.TxStatus))
			n--
		case *pgproto3.ErrorResponse:
			got = append(got, m.Severity+" "+m.Code)
			if m.Severity == "FATAL" {
				return got
			}
		default:
			got = append(got, strings.TrimPrefix(fmt.Sprintf("%T", m), "*pgproto3."))
		}
	}
	return got
}

func want(t *testing.T, what string, got []string, want ...string) {
	t.Helper()
	if !slices.Equal(got, want) {
		t.Errorf("%s:\n  got  %q\n  want %q", what, got, want)
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for !cond() {
		if ctx.Err() != nil {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// Package proxy is tenantproxy's front end: it speaks the PostgreSQL protocol to clients,
// authenticates them itself, maps each to a tenant, and relays its traffic to pooled backend
// sessions that carry the tenant's context. One goroutine serves each client, as net/http does.
package proxy

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/rs/zerolog"

	"github.com/tenantproxy/tenantproxy/accounts"
	"github.com/tenantproxy/tenantproxy/config"
	"github.com/tenantproxy/tenantproxy/directory"
	"github.com/tenantproxy/tenantproxy/guard"
	"github.com/tenantproxy/tenantproxy/internal/wire"
	"github.com/tenantproxy/tenantproxy/session"
)

// ErrServerClosed is returned by Serve after Shutdown or Close.
var ErrServerClosed = errors.New("tenantproxy: server closed")

// Server accepts clients and serves each on its own goroutine.
type Server struct {
	config       atomic.Pointer[config.Config]
	log          zerolog.Logger
	pool         *session.Pool
	guard        *guard.Guard
	messages     *wire.Budget // what clients' large messages take, together (limits.message_memory)
	tenantMemory sync.Map     // tenant → its *wire.Budget, half of messages
	accounts     *accounts.Book
	directory    *directory.Directory // nil without a [directory]
	tls          atomic.Pointer[tls.Config]
	mode         poolMode
	startupRules startupRules
	metrics      *Metrics
	pauses       pauses
	// reloading serialises reloads.
	reloading sync.Mutex

	// mockSalt makes the fake verifier of unknown users stable, so probing cannot tell an
	// unknown user from a wrong password.
	mockSalt [16]byte

	mu        sync.Mutex
	clients   map[uint32]*clientConn // by the cancel key's process id
	conns     connectionCounts
	pacer     loginPacer
	pins      pinCounts
	listeners []net.Listener
	closing   bool
	drain     atomic.Bool
	nclients  atomic.Int64
	wg        sync.WaitGroup // open client connections
	parker    *parker
	// ticks counts the sweeper's rounds (watch.go); stopSweep ends it, swept is closed after.
	ticks     atomic.Uint64
	stopSweep chan struct{}
	sweepOnce sync.Once
	swept     chan struct{}
	// ownScopes numbers the statements parsed under SET LOCAL, which no one else shares.
	ownScopes atomic.Uint64
	// shutdownAsked is closed when the console's SHUTDOWN asks for a drain.
	shutdownAsked chan struct{}
	askShutdown   sync.Once
	// accountsWatched ends when the directory's changes are all handled.
	accountsWatched chan struct{}
	// ready is the last answer of the database to Ready.
	ready struct {
		mu  sync.Mutex
		at  time.Time
		err error
	}
}

// New builds a Server from a validated configuration. With a [directory], it connects to the
// tenant directory and fails when it cannot read it.
func New(cfg *config.Config, log zerolog.Logger) (*Server, error) {
	conn, err := cfg.Backend.ConnConfig()
	if err != nil {
		return nil, err
	}
	var mode poolMode = transactionMode{}
	if cfg.Pool.Mode == "session" {
		mode = sessionMode{}
	}
	s := &Server{
		log:             log,
		mode:            mode,
		startupRules:    startupRules{reserved: cfg.Tenancy.ReservedPrefixes},
		clients:         map[uint32]*clientConn{},
		conns:           connectionCounts{byTenant: map[string]int{}, byUser: map[string]int{}},
		shutdownAsked:   make(chan struct{}),
		accountsWatched: make(chan struct{}),
	}
	s.config.Store(cfg)
	if _, err := rand.Read(s.mockSalt[:]); err != nil {
		return nil, err
	}
	tlsConfig, err := loadTLS(cfg.TLS)
	if err != nil {
		return nil, err
	}
	s.tls.Store(tlsConfig)
	if cfg.Directory != nil {
		ctx, cancel := context.WithTimeout(context.Background(), cfg.Directory.ConnectTimeout.Duration+5*time.Second)
		s.directory, err = directory.OpenConfig(ctx, cfg.Directory, log.With().Str("component", "directory").Logger())
		cancel()
		if err != nil {
			return nil, err
		}
	}
	if s.accounts, err = accounts.New(cfg, s.directory); err != nil {
		if s.directory != nil {
			s.directory.Close()
		}
		return nil, err
	}
	s.guard = guard.New(guard.Config{
		ReservedPrefixes: cfg.Tenancy.ReservedPrefixes,
		Mode:             mode.guardMode(),
		Memory:           int64(cfg.Limits.GuardMemory),
	})
	s.messages = wire.NewBudget(int64(cfg.Limits.MessageMemory))
	s.metrics = newMetrics()
	if s.parker, err = newParker(); err != nil {
		if s.directory != nil {
			s.directory.Close()
		}
		return nil, err
	}
	s.pool = session.NewPool(session.Config{
		Conn:                       &conn.Config,
		Setting:                    cfg.Tenancy.Setting,
		Size:                       cfg.Pool.Size,
		MinIdle:                    cfg.Pool.MinIdle,
		MaxLifetime:                cfg.Pool.MaxLifetime.Duration,
		IdleTimeout:                cfg.Pool.IdleTimeout.Duration,
		CheckoutTimeout:            cfg.Pool.CheckoutTimeout.Duration,
		MaxPreparedStatements:      cfg.Pool.MaxPreparedStatements,
		Weight:                     func(tenant string) int { return s.Config().TenantLimits(tenant).Weight },
		Reserve:                    mode.reserve(cfg.Pool.Size),
		Headroom:                   cfg.Pool.Mode == "transaction",
		MaxPreparedStatementMemory: int(cfg.Pool.MaxPreparedStatementMemory),
		StatementMemory:            int64(cfg.Limits.StatementMemory),
	}, log.With().Str("component", "pool").Logger())
	s.metrics.watch(s)
	s.stopSweep, s.swept = make(chan struct{}), make(chan struct{})
	go s.sweep(s.stopSweep)
	if s.directory != nil {
		go s.watchAccounts()
	}
	return s, nil
}

// loadTLS reads the certificate for clients' TLS; nil when TLS is off.
func loadTLS(c config.TLS) (*tls.Config, error) {
	if c.Mode == "disable" {
		return nil, nil
	}
	cert, err := tls.LoadX509KeyPair(c.Cert, c.Key)
	if err != nil {
		return nil, fmt.Errorf("tls: %w", err)
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}, nil
}

// Pool is the server's backend pool.
func (s *Server) Pool() *session.Pool { return s.pool }

// Serve accepts clients on ln until Shutdown or Close, and then returns ErrServerClosed.
func (s *Server) Serve(ln net.Listener) error {
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		return ErrServerClosed
	}
	s.listeners = append(s.listeners, ln)
	s.mu.Unlock()

	var delay time.Duration
	for {
		conn, err := ln.Accept()
		if err != nil {
			s.mu.Lock()
			closing := s.closing
			s.mu.Unlock()
			if closing {
				return ErrServerClosed
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || errors.Is(err, syscall.EMFILE) {
				delay = min(max(2*delay, 5*time.Millisecond), time.Second)
				s.log.Warn().Err(err).Dur("retry_in", delay).Msg("accept")
				time.Sleep(delay)
				continue
			}
			return err
		}
		delay = 0
		if tc, ok := conn.(*net.TCPConn); ok {
			tc.SetNoDelay(true)
			tc.SetKeepAlive(true)
		}
		c := newClientConn(s, conn)
		s.wg.Add(1) // done when the client is closed, whichever goroutine serves it then
		go c.serve()
	}
}

// stopAccepting closes the listeners; Serve returns ErrServerClosed.
func (s *Server) stopAccepting() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closing = true
	for _, ln := range s.listeners {
		ln.Close()
	}
}

// Close stops accepting, disconnects every client at once and closes the pool and the
// directory.
func (s *Server) Close() {
	s.stopAccepting()
	s.pauses.resumeAll()
	s.parker.close()
	for _, c := range s.clientList() {
		c.conn.Close()
	}
	s.wg.Wait()
	s.sweepOnce.Do(func() { close(s.stopSweep) })
	<-s.swept
	s.pool.Close()
	s.closeDirectory()
}

func (s *Server) closeDirectory() {
	if s.directory != nil {
		s.directory.Close()
		<-s.accountsWatched
	}
}

// Shutdown drains the server: it stops accepting, ends idle clients with FATAL 57P01 (as a
// PostgreSQL shutdown does) and lets clients inside a transaction finish it, each ended as soon
// as it is idle. When ctx ends first, the rest are disconnected. It returns ctx's error if any
// client was still connected then, nil when all left in time; either way the pool is closed.
func (s *Server) Shutdown(ctx context.Context) error {
	s.drain.Store(true)
	s.stopAccepting()
	s.pauses.resumeAll()
	s.parker.resumeAll()
	// A client waiting for its next message is woken to see the drain; one elsewhere sees
	// it when it next waits.
	for _, c := range s.clientList() {
		if c.idle.Load() {
			c.conn.SetReadDeadline(time.Now())
		}
	}
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	var err error
	select {
	case <-done:
	case <-ctx.Done():
		err = ctx.Err()
	}
	s.Close()
	return err
}

// draining reports whether Shutdown has begun.
func (s *Server) draining() bool { return s.drain.Load() }

func (s *Server) clientList() []*clientConn {
	s.mu.Lock()
	defer s.mu.Unlock()
	list := make([]*clientConn, 0, len(s.clients))
	for _, c := range s.clients {
		list = append(list, c)
	}
	return list
}

// register gives c a cancel key no other client holds. With peers, the key's process id
// carries this instance's peer id (bits 24 to 30), so that a peer can route a cancel request.
func (s *Server) register(c *clientConn) {
	peer := uint32(s.Config().PeerID)
	s.mu.Lock()
	defer s.mu.Unlock()
	for {
		var b [8]byte
		rand.Read(b[:])
		pid := binary.BigEndian.Uint32(b[:4]) & 0x7fffffff
		if peer != 0 {
			pid = peer<<peerShift | pid&(1<<peerShift-1)
		}
		if _, taken := s.clients[pid]; pid == 0 || taken {
			continue
		}
		c.keyPID = pid
		copy(c.keySecret[:], b[4:])
		s.clients[pid] = c
		return
	}
}

func (s *Server) unregister(c *clientConn) {
	s.mu.Lock()
	if s.clients[c.keyPID] == c {
		delete(s.clients, c.keyPID)
	}
	s.mu.Unlock()
}

func (s *Server) lookup(pid uint32) *clientConn {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.clients[pid]
}

// ShutdownAsked is closed when the admin console's SHUTDOWN asks for a graceful shutdown; the
// program serving should then call Shutdown, as it does on SIGTERM.
func (s *Server) ShutdownAsked() <-chan struct{} { return s.shutdownAsked }

// Ready says why the server cannot serve new clients now, or nil: it is shutting down, or the
// database does not take new sessions. The database is asked at most once a second, however
// often Ready is called.
func (s *Server) Ready(ctx context.Context) error {
	if s.draining() {
		return errors.New("shutting down")
	}
	s.ready.mu.Lock()
	defer s.ready.mu.Unlock()
	if time.Since(s.ready.at) > time.Second {
		s.ready.err = s.pool.Ping(ctx)
		if s.ready.err != nil {
			s.ready.err = fmt.Errorf("the database does not take new sessions: %w", s.ready.err)
		}
		s.ready.at = time.Now()
	}
	return s.ready.err
}

// Config is the configuration in force (a reload replaces it whole). It must not be changed.
func (s *Server) Config() *config.Config { return s.config.Load() }

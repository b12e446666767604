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
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/rs/zerolog"
	"github.com/xdg-go/scram"

	"github.com/tenantproxy/tenantproxy/config"
	"github.com/tenantproxy/tenantproxy/internal/scramsecret"
	"github.com/tenantproxy/tenantproxy/policy"
	"github.com/tenantproxy/tenantproxy/session"
)

// Server accepts clients and serves each on its own goroutine.
type Server struct {
	cfg     *config.Config
	log     zerolog.Logger
	pool    *session.Pool
	guard   *policy.Guard
	tenants *policy.Tenants
	users   map[string]userAuth
	tls     *tls.Config
	mode    policy.PoolMode
	metrics *Metrics

	// mockSalt makes the fake verifier of unknown users stable, so probing cannot tell an
	// unknown user from a wrong password.
	mockSalt [16]byte

	mu        sync.Mutex
	clients   map[uint32]*clientConn // by the cancel key's process id
	listeners []net.Listener
	closing   bool
	nclients  atomic.Int64
	wg        sync.WaitGroup
	// ownScopes numbers the statements parsed under SET LOCAL, which no one else shares.
	ownScopes atomic.Uint64
}

type userAuth struct {
	scram *scram.StoredCredentials
	md5   string // "md5" + hex, when the verifier is md5
}

// New builds a Server from a validated configuration.
func New(cfg *config.Config, log zerolog.Logger) (*Server, error) {
	conn, err := backendConfig(cfg)
	if err != nil {
		return nil, err
	}
	mode := policy.TransactionMode
	if cfg.Pool.Mode == "session" {
		mode = policy.SessionMode
	}
	s := &Server{
		cfg:     cfg,
		log:     log,
		tenants: policy.NewTenants(),
		users:   map[string]userAuth{},
		mode:    mode,
		clients: map[uint32]*clientConn{},
	}
	if _, err := rand.Read(s.mockSalt[:]); err != nil {
		return nil, err
	}
	for name, u := range cfg.Users {
		var a userAuth
		if strings.HasPrefix(u.Password, "SCRAM-SHA-256$") {
			creds, err := scramsecret.Parse(u.Password)
			if err != nil {
				return nil, fmt.Errorf("users.%s.password: %w", name, err)
			}
			a.scram = &creds
		} else {
			a.md5 = u.Password
		}
		s.users[name] = a
		if u.Tenant != "" {
			s.tenants.AddFixed(name, u.Tenant)
		} else {
			s.tenants.AddChoice(name, u.Tenants, u.DefaultTenant)
		}
	}
	if cfg.TLS.Mode != "disable" {
		cert, err := tls.LoadX509KeyPair(cfg.TLS.Cert, cfg.TLS.Key)
		if err != nil {
			return nil, fmt.Errorf("tls: %w", err)
		}
		s.tls = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	}
	s.guard = policy.NewGuard(policy.GuardConfig{
		ReservedPrefixes: cfg.Tenancy.ReservedPrefixes,
		Mode:             mode,
		TrackedSettings:  trackedSettingNames(),
	})
	s.metrics = newMetrics()
	s.pool = session.NewPool(session.Config{
		Conn:                  conn,
		Setting:               cfg.Tenancy.Setting,
		Size:                  cfg.Pool.Size,
		MinIdle:               cfg.Pool.MinIdle,
		MaxLifetime:           cfg.Pool.MaxLifetime.Duration,
		IdleTimeout:           cfg.Pool.IdleTimeout.Duration,
		CheckoutTimeout:       cfg.Pool.CheckoutTimeout.Duration,
		MaxPreparedStatements: cfg.Pool.MaxPreparedStatements,
	}, log.With().Str("component", "pool").Logger())
	s.metrics.watch(s)
	return s, nil
}

// backendConfig turns the [backend] section into pgconn's configuration.
func backendConfig(cfg *config.Config) (*pgconn.Config, error) {
	c, err := pgconn.ParseConfig(cfg.Backend.DSN())
	if err != nil {
		return nil, fmt.Errorf("backend: %w", err)
	}
	if cfg.Backend.Password != "" {
		c.Password = cfg.Backend.Password
	}
	return c, nil
}

// Pool is the server's backend pool.
func (s *Server) Pool() *session.Pool { return s.pool }

// Guard is the server's SQL guard.
func (s *Server) Guard() *policy.Guard { return s.guard }

// Serve accepts clients on ln until Close. It returns nil after Close.
func (s *Server) Serve(ln net.Listener) error {
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		return errors.New("server closed")
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
				return nil
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
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			c.serve()
		}()
	}
}

// Close stops accepting, disconnects every client and closes the pool.
func (s *Server) Close() {
	s.mu.Lock()
	s.closing = true
	for _, ln := range s.listeners {
		ln.Close()
	}
	clients := make([]*clientConn, 0, len(s.clients))
	for _, c := range s.clients {
		clients = append(clients, c)
	}
	s.mu.Unlock()
	for _, c := range clients {
		c.conn.Close()
	}
	s.wg.Wait()
	s.pool.Close()
}

// Shutdown stops accepting and waits, up to ctx, for clients to leave; then it closes the rest.
func (s *Server) Shutdown(ctx context.Context) {
	s.mu.Lock()
	s.closing = true
	for _, ln := range s.listeners {
		ln.Close()
	}
	s.mu.Unlock()
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
	}
	s.Close()
}

// register gives c a cancel key no other client holds.
func (s *Server) register(c *clientConn) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for {
		var b [8]byte
		rand.Read(b[:])
		pid := binary.BigEndian.Uint32(b[:4]) & 0x7fffffff
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

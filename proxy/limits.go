package proxy

import (
	"fmt"
	"strconv"
	"time"

	"github.com/tenantproxy/tenantproxy/config"
	"github.com/tenantproxy/tenantproxy/internal/wire"
)

// What one tenant or user may take: client connections (counted here), logins (pace.go), its
// share of the pool (session/share.go), memory for large messages (half of
// limits.message_memory), and time: each statement (statement_timeout, which the proxy also
// enforces itself) and each transaction left open and idle.

// limits are what the client is held to, fixed at login.
type limits struct {
	statementTimeout  time.Duration
	idleInTransaction time.Duration
}

// connectionCounts counts client connections by tenant and by user. Guarded by Server.mu.
type connectionCounts struct {
	byTenant, byUser map[string]int
}

// admit counts a new client of tenant and user, or says which limit it would pass. Its refusal
// is FATAL 53300, as PostgreSQL's for a role's connection limit.
func (s *Server) admit(c *clientConn, userLimit int) *pgError {
	cfg := s.Config()
	tl := cfg.TenantLimits(c.session.tenant)
	if userLimit == 0 {
		userLimit = cfg.Limits.MaxConnectionsPerUser
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var refused, limit string
	switch {
	case s.conns.byTenant[c.session.tenant] >= tl.MaxConnections:
		refused, limit = fmt.Sprintf("too many connections for tenant %q", c.session.tenant), "max_connections_per_tenant"
	case s.conns.byUser[c.user] >= userLimit:
		refused, limit = fmt.Sprintf("too many connections for user %q", c.user), "max_connections_per_user"
	default:
		s.conns.byTenant[c.session.tenant]++
		s.conns.byUser[c.user]++
		c.admitted = true
		return nil
	}
	s.metrics.limitRefusals.WithLabelValues(s.metrics.tenantLabel(c.session.tenant), limit).Inc()
	c.log.Warn().Str("limit", limit).Msg("client refused: " + refused)
	e := fatal(codeTooManyConnections, refused)
	e.Hint = "Close connections you do not use, or ask the operator to raise " + limit + " (or the tenant's or user's own)."
	return e
}

// leave uncounts a client that was admitted.
func (s *Server) leave(c *clientConn) {
	if !c.admitted {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	decrement(s.conns.byTenant, c.session.tenant)
	decrement(s.conns.byUser, c.user)
	s.metrics.tenantClients.WithLabelValues(s.metrics.tenantLabel(c.session.tenant)).Dec()
}

func decrement(m map[string]int, key string) {
	if m[key]--; m[key] <= 0 {
		delete(m, key)
	}
}

// messageBudget is the memory the tenant's large messages may take: half of
// limits.message_memory, so that one tenant's cannot take it all.
func (s *Server) messageBudget(tenant string) *wire.Budget {
	if b, ok := s.tenantMemory.Load(tenant); ok {
		return b.(*wire.Budget)
	}
	b, _ := s.tenantMemory.LoadOrStore(tenant, s.messages.Sub(int64(s.Config().Limits.MessageMemory)/2))
	return b.(*wire.Budget)
}

// tenantLimits fixes the client's time limits, and makes the tenant's statement_timeout the
// client's own setting unless it chose one (so that PostgreSQL enforces it, and RESET ALL puts
// it back).
func tenantLimits(tl config.Tenant, settings map[string]string) limits {
	if d := tl.StatementTimeout.Duration; d > 0 {
		if _, chosen := settings["statement_timeout"]; !chosen {
			settings["statement_timeout"] = strconv.FormatInt(d.Milliseconds(), 10)
		}
	}
	return limits{statementTimeout: tl.StatementTimeout.Duration, idleInTransaction: tl.IdleInTransactionTimeout.Duration}
}

// statementGrace is how long past the tenant's statement_timeout the proxy waits for the server
// to cancel a statement itself before it sends the cancel: the client may have raised its own.
const statementGrace = time.Second

// errIdleInTransaction ends a client that left its transaction open and idle past the limit.
var errIdleInTransaction = fatal("25P03", "terminating connection due to idle-in-transaction timeout")

package proxy

import (
	"fmt"
	"sync"
	"time"
)

// Logins are paced per tenant (limits.login_rate): a tenant that opens connections faster than
// its rate waits its turn, so that a storm of logins (each costs the proxy a SCRAM exchange and
// a goroutine) cannot take the CPU from other tenants' statements. A second's worth of logins
// goes through at once, so an application opening its pool does not wait. Pacing comes after
// authentication: no one can spend another tenant's turns by claiming its users. A login whose
// turn would come after auth_timeout is refused at once (53300) rather than held.

// loginPacer is a generic cell rate algorithm per tenant: each login moves the tenant's due time
// on by 1/rate; a login may go once the due time is within a second of now.
type loginPacer struct {
	mu  sync.Mutex
	due map[string]time.Time
	// swept is when tenants whose due time had passed were last forgotten.
	swept time.Time
}

// turn reserves the tenant's next login and returns when it may proceed; ok is false (and
// nothing is reserved) when that is after deadline.
func (p *loginPacer) turn(tenant string, rate int, now, deadline time.Time) (at time.Time, ok bool) {
	interval := time.Second / time.Duration(rate)
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.due == nil {
		p.due = map[string]time.Time{}
	}
	due := p.due[tenant]
	if due.Before(now) {
		due = now
	}
	at = due.Add(-time.Second + interval)
	if at.After(deadline) {
		return at, false
	}
	p.due[tenant] = due.Add(interval)
	if now.Sub(p.swept) > time.Minute {
		// A tenant whose due time has passed starts afresh anyway: the map keeps only the
		// tenants logging in lately.
		for t, d := range p.due {
			if d.Before(now) {
				delete(p.due, t)
			}
		}
		p.swept = now
	}
	return at, true
}

// paceLogin holds the client until its tenant's turn, or refuses it when the turn would come
// after its authentication deadline.
func (s *Server) paceLogin(c *clientConn, rate int, deadline time.Time) *pgError {
	if rate <= 0 {
		return nil
	}
	now := time.Now()
	at, ok := s.pacer.turn(c.session.tenant, rate, now, deadline)
	if !ok {
		limit := "login_rate"
		s.metrics.limitRefusals.WithLabelValues(c.metrics.label, limit).Inc()
		c.log.Warn().Str("limit", limit).Int("rate", rate).Msg("client refused: its tenant logs in faster than its login rate")
		e := fatal(codeTooManyConnections, fmt.Sprintf("too many logins for tenant %q: more than %d per second", c.session.tenant, rate))
		e.Hint = "Reuse connections (a connection pool in the application), or ask the operator to raise login_rate for the tenant."
		return e
	}
	if wait := at.Sub(now); wait > 0 {
		s.metrics.loginWait.WithLabelValues(c.metrics.label).Observe(wait.Seconds())
		time.Sleep(wait)
	}
	return nil
}

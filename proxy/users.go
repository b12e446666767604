package proxy

import (
	"context"
	"fmt"
	"time"
)

// A client keeps its session only while its user may still act for its tenant: a user removed
// or disabled in the tenant directory, removed from the file by a reload, or no longer allowed
// its tenant, has its clients ended (FATAL 57P01). A new password leaves open sessions alone,
// as PostgreSQL does.

// watchAccounts rechecks the clients of each directory user that changed, until the directory
// is closed.
func (s *Server) watchAccounts() {
	defer close(s.accountsWatched)
	for name := range s.accounts.Changes() {
		s.recheckUsers(map[string]bool{name: true})
	}
}

// recheckUsers ends the clients of the named users (every user when names is nil) that may no
// longer act for their tenant. A user the directory cannot be asked about keeps its clients.
func (s *Server) recheckUsers(names map[string]bool) {
	byUser := map[string][]*clientConn{}
	for _, c := range s.clientList() {
		if names == nil || names[c.user] {
			byUser[c.user] = append(byUser[c.user], c)
		}
	}
	for name, clients := range byUser {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		a, err := s.accounts.User(ctx, name)
		cancel()
		if err != nil {
			s.log.Warn().Err(err).Str("user", name).Msg("cannot recheck the user's clients")
			continue
		}
		for _, c := range clients {
			switch {
			case c.console && s.accounts.Admin(name) == nil:
				c.end(endedByAdmin(fmt.Sprintf("%q is no longer an admin", name)))
			case !c.console && (a == nil || !a.MayActFor(c.session.tenant)):
				c.end(endedByAdmin(fmt.Sprintf("user %q may no longer act for tenant %q", name, c.session.tenant)))
			}
		}
	}
}

// endedByAdmin is the FATAL error of a client ended by the operator's decision.
func endedByAdmin(detail string) *pgError {
	e := fatal(codeAdminShutdown, "terminating connection due to administrator command")
	e.Detail = detail
	return e
}

// end ends the client c from another goroutine with e: at once when it waits for its next
// message or for a backend; a request in flight is abandoned and its backend closed.
func (c *clientConn) end(e *pgError) {
	if !c.ended.CompareAndSwap(nil, e) {
		return
	}
	c.log.Warn().Str("code", e.Code).Str("reason", e.Detail).Msg("client ended by the operator")
	c.conn.SetReadDeadline(time.Now())
	c.srv.parker.unpark(c)
	c.mu.Lock()
	if b := c.backend; b != nil && c.busy.Load() {
		b.SetReadDeadline(time.Now())
	}
	c.mu.Unlock()
}

package proxy

import (
	"fmt"

	"github.com/tenantproxy/tenantproxy/guard"
)

// A WITH HOLD cursor outlives the transaction that declared it, on that transaction's backend
// (Django's iterator() declares one outside any transaction). In transaction pooling the client
// then keeps that backend, pinned, until the server says it holds none of its holdable cursors
// any more: each time the backend falls idle, the proxy asks (tenantproxy.holdable_cursors(),
// migrations/sql/009_holdable_cursors.sql). A pinned backend never serves anyone else: if the
// client leaves, or anything goes wrong, it is closed rather than returned to the pool, so no
// cursor (and no row in one) outlives its client.
//
// Pinned backends are bounded so that cursors cannot take the pool from other tenants: a tenant
// may pin a quarter of it, all tenants together half (so a pool of fewer than four pins none).

// pinCounts counts pinned clients by tenant, and in all. Guarded by Server.mu.
type pinCounts struct {
	byTenant map[string]int
	total    int
}

// pinForCursor pins the client's backends, in transaction pooling, before a statement that
// declares a WITH HOLD cursor goes to the server; it refuses (53400) past the bounds.
func (c *clientConn) pinForCursor() *pgError {
	if c.pinned || c.srv.mode.guardMode() != guard.TransactionMode {
		return nil
	}
	s := c.srv
	size := s.Config().Pool.Size
	perTenant, total := size/4, size/2
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.pins.byTenant == nil {
		s.pins.byTenant = map[string]int{}
	}
	tenant := c.session.tenant
	if s.pins.byTenant[tenant] >= perTenant || s.pins.total >= total {
		c.log.Warn().Int("pinned", s.pins.byTenant[tenant]).Int("pinned_all", s.pins.total).Msg("WITH HOLD cursor refused: too many backends pinned")
		return &pgError{Severity: "ERROR", Code: "53400",
			Message: fmt.Sprintf("tenantproxy: too many backend sessions kept for WITH HOLD cursors (tenant %q: %d of %d; all tenants: %d of %d)", tenant, s.pins.byTenant[tenant], perTenant, s.pins.total, total),
			Hint:    "Close WITH HOLD cursors once read, or declare cursors inside a transaction without WITH HOLD (Django: DISABLE_SERVER_SIDE_CURSORS = True), or connect to a proxy in session pooling."}
	}
	s.pins.byTenant[tenant]++
	s.pins.total++
	c.pinned = true
	return nil
}

// unpin lets the client's backends go back to the pool again.
func (c *clientConn) unpin() {
	if !c.pinned {
		return
	}
	s := c.srv
	s.mu.Lock()
	decrement(s.pins.byTenant, c.session.tenant)
	s.pins.total--
	s.mu.Unlock()
	c.pinned = false
}

// holdsCursors asks the idle backend whether any of its holdable cursors is still open.
func (c *clientConn) holdsCursors() (bool, error) {
	rows, err := c.queryBackend("SELECT tenantproxy.holdable_cursors()")
	if err != nil {
		return false, err
	}
	if len(rows) != 1 || len(rows[0]) != 1 || rows[0][0] == nil {
		return false, fmt.Errorf("tenantproxy.holdable_cursors() answered %d rows", len(rows))
	}
	return *rows[0][0] != "0", nil
}

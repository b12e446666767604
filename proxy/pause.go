package proxy

import (
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// The console's PAUSE stops handing backends to a tenant's clients (or everyone's): what they
// hold they keep and finish; new requests wait until RESUME, with no checkout timeout. It lets an
// operator quiesce a tenant (a migration, a restore) without dropping its clients.

// pauses are the tenants paused now. The zero value is ready to use.
type pauses struct {
	mu      sync.Mutex
	all     bool
	tenants map[string]bool
	// resumed is closed (and replaced) at each RESUME, waking the clients that wait.
	resumed chan struct{}
	// waiters counts the clients waiting for a RESUME, by tenant.
	waiters map[string]int
	// some: anything is paused. Every checkout asks; without a pause it takes no lock.
	some atomic.Bool
}

// waiting counts the clients waiting for a RESUME, by tenant.
func (p *pauses) waiting() map[string]int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return maps.Clone(p.waiters)
}

// wait adds n to tenant's count of waiting clients.
func (p *pauses) wait(tenant string, n int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.waiters == nil {
		p.waiters = map[string]int{}
	}
	if p.waiters[tenant] += n; p.waiters[tenant] == 0 {
		delete(p.waiters, tenant)
	}
}

// state says whether tenant is paused, and the channel a RESUME closes.
func (p *pauses) state(tenant string) (bool, <-chan struct{}) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.resumed == nil {
		p.resumed = make(chan struct{})
	}
	return p.all || p.tenants[tenant], p.resumed
}

// pause pauses tenant, or every tenant when it is "".
func (p *pauses) pause(tenant string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.some.Store(true)
	if tenant == "" {
		p.all = true
		return
	}
	if p.tenants == nil {
		p.tenants = map[string]bool{}
	}
	p.tenants[tenant] = true
}

// resume resumes tenant, or everything when it is "". It reports false when tenant was not
// paused on its own.
func (p *pauses) resume(tenant string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	was := p.tenants[tenant]
	if tenant == "" {
		was = p.all || len(p.tenants) > 0
		p.all = false
		clear(p.tenants)
	}
	delete(p.tenants, tenant)
	p.some.Store(p.all || len(p.tenants) > 0)
	if p.resumed != nil {
		close(p.resumed)
		p.resumed = nil
	}
	return was
}

func (p *pauses) resumeAll() { p.resume("") }

// list is what is paused: everything, or these tenants.
func (p *pauses) list() (all bool, tenants []string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for t := range p.tenants {
		tenants = append(tenants, t)
	}
	slices.Sort(tenants)
	return p.all, tenants
}

// waitWhilePaused holds a client of a paused tenant until RESUME, or until it hangs up or is
// ended.
func (c *clientConn) waitWhilePaused() *pgError {
	if !c.srv.pauses.some.Load() {
		return nil
	}
	paused, resumed := c.srv.pauses.state(c.session.tenant)
	if !paused {
		return nil
	}
	c.log.Debug().Msg("tenant paused: waiting for RESUME")
	c.srv.pauses.wait(c.session.tenant, 1)
	defer c.srv.pauses.wait(c.session.tenant, -1)
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for paused {
		select {
		case <-resumed:
			paused, resumed = c.srv.pauses.state(c.session.tenant)
		case <-tick.C:
			if c.hungUp() {
				return fatal(codeConnectionFailure, "tenantproxy: the client left while its tenant was paused")
			}
		}
	}
	return nil
}

package session

import "time"

// The fair share of the pool. Tenants share one pool, and one tenant must not starve the others:
// holding every session while they wait, or queueing ahead of them.
//
//   - A tenant is active while it holds sessions, waits for one, or used one within
//     activeWindow. Its share is the pool's size times its weight over the weights of the active
//     tenants (at least 1).
//   - Each active tenant keeps a reservation: what it holds and, in transaction pooling (where
//     its clients check sessions out again and again), what it used lately, plus one, up to its
//     share (a tenant that needs two sessions at a time keeps three; one that needs more, its
//     share). A tenant may take a session while it holds less than its share, or while the
//     sessions it would hold stay clear of the other tenants' reservations. Alone, a tenant may
//     use the whole pool; with others active, it cannot take what they are about to need.
//   - Waiting clients queue by tenant. A session that frees up goes to the waiting tenant that
//     holds the least for its weight among those allowed to take one; within a tenant, first
//     come, first served.
//   - Reserve sessions (session pooling) are never taken by one tenant alone, nor by a tenant
//     beyond its share: there a client keeps its session for its whole connection, and a tenant
//     must not pin every one, so that another tenant's client can always connect.

// activeWindow is how long a tenant stays active after it last used a session.
const activeWindow = 2 * time.Second

// tenantState is what the pool knows of one tenant. Guarded by Pool.mu.
type tenantState struct {
	name   string
	weight int
	held   int // sessions its clients hold, or are opening
	// peak is the most it held at once since the last upkeep: what it needs lately.
	peak    int
	waiters []*waiter
	last    time.Time
	active  bool
}

// waiter is one client waiting for a session.
type waiter struct {
	// ch gets the session handed over (held for the waiter's tenant already), or nil when a slot
	// freed up and the waiter may open a session itself.
	ch     chan *Backend
	tenant *tenantState
}

// shares is the pool's accounting of who holds what and who waits. Guarded by Pool.mu.
type shares struct {
	size, reserve int
	headroom      bool
	weightOf      func(string) int
	tenants       map[string]*tenantState
	activeWeight  int
	// held is what every tenant holds together.
	held int
	// waiting are the tenants with waiters, in the order they began to wait.
	waiting  []*tenantState
	nwaiting int
}

func newShares(cfg Config) shares {
	return shares{size: cfg.Size, reserve: cfg.Reserve, headroom: cfg.Headroom, weightOf: cfg.Weight, tenants: map[string]*tenantState{}}
}

// tenant returns a tenant's state, active as of now.
func (s *shares) tenant(name string) *tenantState {
	t, ok := s.tenants[name]
	if !ok {
		t = &tenantState{name: name, weight: 1}
		if s.weightOf != nil {
			t.weight = max(1, s.weightOf(name))
		}
		s.tenants[name] = t
	}
	t.last = time.Now()
	if !t.active {
		t.active = true
		s.activeWeight += t.weight
	}
	return t
}

// share is the sessions a tenant is entitled to while every active tenant wants its own.
func (s *shares) share(t *tenantState) int {
	return max(1, s.size*t.weight/max(1, s.activeWeight))
}

// reservation is what an active tenant keeps from the others: what it holds, and, with
// headroom, what it needed lately plus one, within its share.
func (s *shares) reservation(t *tenantState) int {
	if !s.headroom {
		return t.held
	}
	return max(t.held, min(s.share(t), t.peak+1))
}

// allowed reports whether t may take one more session now.
func (s *shares) allowed(t *tenantState) bool {
	if t.held >= s.size-s.reserve {
		return false
	}
	if t.held < s.share(t) {
		return true
	}
	if s.size-s.held-1 < s.reserve {
		return false // beyond its share, a tenant leaves the reserve to the others
	}
	others := 0
	for _, o := range s.tenants {
		if o != t && o.active {
			others += s.reservation(o)
		}
	}
	return t.held < s.size-others
}

// hold records that t's client holds b.
func (s *shares) hold(t *tenantState, b *Backend) {
	s.reserveFor(t)
	b.holder = t
}

// reserveFor counts a session t holds (or is opening).
func (s *shares) reserveFor(t *tenantState) {
	t.held++
	s.held++
	t.peak = max(t.peak, t.held)
	t.last = time.Now()
}

// unreserveFor forgets a session t was opening and could not.
func (s *shares) unreserveFor(t *tenantState) {
	t.held--
	s.held--
}

// unhold records that b's client let go of it.
func (s *shares) unhold(b *Backend) {
	if t := b.holder; t != nil {
		s.unreserveFor(t)
		t.last = time.Now()
		b.holder = nil
	}
}

// enqueue puts a waiter in t's queue.
func (s *shares) enqueue(t *tenantState) *waiter {
	w := &waiter{ch: make(chan *Backend, 1), tenant: t}
	if len(t.waiters) == 0 {
		s.waiting = append(s.waiting, t)
	}
	t.waiters = append(t.waiters, w)
	s.nwaiting++
	return w
}

// dequeue takes w out of its tenant's queue, if it is still there.
func (s *shares) dequeue(w *waiter) {
	t := w.tenant
	for i, x := range t.waiters {
		if x == w {
			t.waiters = append(t.waiters[:i], t.waiters[i+1:]...)
			s.nwaiting--
			break
		}
	}
	if len(t.waiters) == 0 {
		s.stopWaiting(t)
	}
}

func (s *shares) stopWaiting(t *tenantState) {
	for i, x := range s.waiting {
		if x == t {
			s.waiting = append(s.waiting[:i], s.waiting[i+1:]...)
			return
		}
	}
}

// nextWaiter takes the waiter to serve next: the first of the waiting tenant, among those
// allowed to take a session, that holds the least for its weight (the one that began to wait
// first on a tie). Nil when no waiter may take one.
func (s *shares) nextWaiter() *waiter {
	var best *tenantState
	for _, t := range s.waiting {
		if !s.allowed(t) {
			continue
		}
		if best == nil || t.held*best.weight < best.held*t.weight {
			best = t
		}
	}
	if best == nil {
		return nil
	}
	w := best.waiters[0]
	best.waiters = best.waiters[1:]
	s.nwaiting--
	if len(best.waiters) == 0 {
		s.stopWaiting(best)
	} else {
		// Round robin among tenants that hold alike: it waits again from the back.
		s.stopWaiting(best)
		s.waiting = append(s.waiting, best)
	}
	return w
}

// wakeAll tells every waiter that the pool closed.
func (s *shares) wakeAll() {
	for _, t := range s.waiting {
		for _, w := range t.waiters {
			w.ch <- nil
		}
		t.waiters = nil
	}
	s.waiting = nil
	s.nwaiting = 0
}

// Reweigh takes each tenant's weight afresh (after a reload changed them).
func (p *Pool) Reweigh() {
	if p.weightOf == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	for name, t := range p.tenants {
		weight := max(1, p.weightOf(name))
		if t.active {
			p.activeWeight += weight - t.weight
		}
		t.weight = weight
	}
	p.handOver()
}

// forgetQuiet starts a new window: tenants that used no session lately are no longer active,
// and every tenant's need is measured afresh. Long-quiet tenants are forgotten.
func (s *shares) forgetQuiet(now time.Time) {
	for name, t := range s.tenants {
		busy := t.held > 0 || len(t.waiters) > 0
		if t.active && !busy && now.Sub(t.last) > activeWindow {
			t.active = false
			s.activeWeight -= t.weight
		}
		t.peak = t.held
		if !t.active && now.Sub(t.last) > 30*activeWindow {
			delete(s.tenants, name)
		}
	}
}

// TenantStats is what one tenant holds of the pool and how many of its clients wait.
type TenantStats struct {
	Held, Waiting, Share int
	Active               bool
}

// TenantStats reports every tenant the pool knows.
func (p *Pool) TenantStats() map[string]TenantStats {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make(map[string]TenantStats, len(p.tenants))
	for name, t := range p.tenants {
		out[name] = TenantStats{Held: t.held, Waiting: len(t.waiters), Share: p.share(t), Active: t.active}
	}
	return out
}

package session_test

import (
	"errors"
	"testing"
	"time"

	"github.com/tenantproxy/tenantproxy/internal/pgtest"
	"github.com/tenantproxy/tenantproxy/session"
)

func acquire(t *testing.T, p *session.Pool, tenant string) *session.Backend {
	t.Helper()
	b, err := p.Acquire(ctx, session.Client{Tenant: tenant})
	if err != nil {
		t.Fatalf("%s: %v", tenant, err)
	}
	return b
}

// acquireLater starts a checkout that must wait, and waits until it does.
func acquireLater(t *testing.T, p *session.Pool, tenant string) <-chan *session.Backend {
	t.Helper()
	waiting := p.Stats().Waiting
	got := make(chan *session.Backend, 1)
	go func() {
		b, err := p.Acquire(ctx, session.Client{Tenant: tenant})
		if err != nil {
			t.Errorf("%s: %v", tenant, err)
		}
		got <- b
	}()
	pgtest.WaitFor(t, tenant+"'s checkout to wait", func() bool { return p.Stats().Waiting == waiting+1 })
	return got
}

// A tenant alone may use the whole pool: the share bites only when others are active.
func TestTenantAloneUsesTheWholePool(t *testing.T) {
	p := newPool(t, pgtest.New(t), func(c *session.Config) { c.Size = 3 })
	var held []*session.Backend
	for range 3 {
		held = append(held, acquire(t, p, "acme"))
	}
	if s := p.TenantStats()["acme"]; s.Held != 3 {
		t.Errorf("acme holds %d", s.Held)
	}
	for _, b := range held {
		p.Release(b)
	}
}

// While another tenant is active, a tenant cannot take the sessions the other is about to need:
// the other gets one at once, however hard the first pushes.
func TestActiveTenantKeepsItsReservation(t *testing.T) {
	p := newPool(t, pgtest.New(t), func(c *session.Config) {
		c.Size = 4
		c.CheckoutTimeout = 300 * time.Millisecond
		c.Headroom = true
	})
	p.Release(acquire(t, p, "globex")) // globex is active, and needed one session lately
	var acme []*session.Backend
	for range 2 { // its share of 4 between two tenants
		acme = append(acme, acquire(t, p, "acme"))
	}
	if _, err := p.Acquire(ctx, session.Client{Tenant: "acme"}); !errors.Is(err, session.ErrCheckoutTimeout) {
		t.Fatalf("acme took more than the sessions globex keeps allow: %v", err)
	}
	g := acquire(t, p, "globex") // at once: one is kept for it
	p.Release(g)
	for _, b := range acme {
		p.Release(b)
	}
}

// Waiting clients are served by tenant: a session that frees up goes to the waiting tenant that
// holds the least, not to whoever queued first.
func TestWaitersAreServedByTenant(t *testing.T) {
	p := newPool(t, pgtest.New(t), func(c *session.Config) { c.Size = 2 })
	a1, a2 := acquire(t, p, "acme"), acquire(t, p, "acme") // alone: the whole pool
	acmeWaiter := acquireLater(t, p, "acme")
	globexWaiter := acquireLater(t, p, "globex")
	p.Release(a1)
	g := <-globexWaiter
	if g == nil || g.Tenant() != "globex" {
		t.Fatalf("the freed session went to %v", g)
	}
	select {
	case b := <-acmeWaiter:
		t.Fatalf("acme's earlier waiter got %v first", b)
	default:
	}
	p.Release(a2)
	if b := <-acmeWaiter; b == nil {
		t.Fatal("acme's waiter got nothing")
	} else {
		p.Release(b)
	}
	p.Release(g)
}

// In session pooling a tenant alone still leaves the reserve: a client of another tenant can
// connect.
func TestReserveIsNeverTakenByOneTenant(t *testing.T) {
	p := newPool(t, pgtest.New(t), func(c *session.Config) {
		c.Size = 3
		c.Reserve = 1
		c.CheckoutTimeout = 300 * time.Millisecond
	})
	a1, a2 := acquire(t, p, "acme"), acquire(t, p, "acme")
	if _, err := p.Acquire(ctx, session.Client{Tenant: "acme"}); !errors.Is(err, session.ErrCheckoutTimeout) {
		t.Fatalf("acme took the reserve: %v", err)
	}
	g := acquire(t, p, "globex")
	for _, b := range []*session.Backend{a1, a2, g} {
		p.Release(b)
	}
}

// A tenant's weight gives it a larger share.
func TestWeightedShares(t *testing.T) {
	p := newPool(t, pgtest.New(t), func(c *session.Config) {
		c.Size = 6
		c.Weight = func(tenant string) int {
			if tenant == "big" {
				return 2
			}
			return 1
		}
	})
	p.Release(acquire(t, p, "small"))
	acquire(t, p, "big")
	stats := p.TenantStats()
	if stats["big"].Share != 4 || stats["small"].Share != 2 {
		t.Errorf("shares %+v, want big 4 and small 2 of 6", stats)
	}
}

package session

import (
	"context"
	"errors"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/rs/zerolog"
)

// Config shapes a Pool.
type Config struct {
	// Conn is how to reach and log in to the server.
	Conn *pgconn.Config
	// Setting is the session setting that carries the tenant (app.current_tenant_id).
	Setting         string
	Size, MinIdle   int
	MaxLifetime     time.Duration
	IdleTimeout     time.Duration
	CheckoutTimeout time.Duration
	// MaxPreparedStatements and MaxPreparedStatementMemory bound the statements one backend
	// keeps prepared (count, and bytes of their Parse messages).
	MaxPreparedStatements      int
	MaxPreparedStatementMemory int
	// StatementMemory bounds the statements clients hold in the registry, in bytes.
	StatementMemory int64
	// CheckAfter is how long a session may sit idle before it is checked for a hang-up on
	// its way out of the pool (0: at every checkout, one non-blocking peek).
	CheckAfter time.Duration
	// Weight gives a tenant's weight in the fair share of the pool (1 when nil or 0).
	Weight func(tenant string) int
	// Reserve is how many sessions no one tenant may take even when it is alone: in session
	// pooling, where a client holds a session for its whole connection, so that a tenant cannot
	// pin every session.
	Reserve int
	// Headroom keeps, for each active tenant, one session more than it needed lately (within
	// its share), so that its next checkout finds one at once: in transaction pooling, where an
	// active tenant's clients check out sessions again and again. In session pooling a tenant
	// keeps what it holds.
	Headroom bool
}

// ErrPoolClosed is returned by Acquire after Close.
var ErrPoolClosed = errors.New("pool closed")

// ErrCheckoutTimeout is returned when no session frees up within the checkout timeout.
var ErrCheckoutTimeout = errors.New("no backend session free within the checkout timeout")

// ErrClientGone is returned when the client that waited for a session hung up.
var ErrClientGone = errors.New("the client left while waiting for a backend session")

// Client is who asks for a session.
type Client struct {
	// Tenant is the tenant whose context the session must carry.
	Tenant string
	// Settings are the client's settings the session must hold (nil for none).
	Settings *Settings
	// Gone, when set, reports whether the client hung up. A checkout that has to wait asks it
	// now and then, and gives up its place when the client left.
	Gone func() bool
}

// goneCheck is how often a waiting checkout asks whether its client is gone.
const goneCheck = 100 * time.Millisecond

// Pool hands out server sessions. A session goes to a client with the client's tenant context
// and settings in place; it comes back as it is, and the next client of the same tenant gets
// it without any extra work. Tenants share the pool fairly (share.go): while others are active,
// none holds more than its share, and waiting clients are served by tenant, not first come.
type Pool struct {
	cfg Config
	log zerolog.Logger

	mu   sync.Mutex
	idle []*Backend // most recently released last
	open int        // idle, in use, and being dialled
	// dialing counts the sessions being opened now, at most maxDials().
	dialing int
	// fullUntil: the server refused a session for lack of room while the pool held others;
	// until then the pool opens none, and clients wait for the ones it has.
	fullUntil time.Time
	shares
	closed bool
	done   chan struct{}

	statements statementRegistry
	// serverVersion is the server_version the last session opened reported.
	serverVersion atomic.Pointer[string]

	stats struct {
		acquires, waits, timeouts, dials, dialErrors, switches, discards atomic.Int64
	}
}

// NewPool starts a pool and its upkeep (idle and lifetime limits, MinIdle sessions, who is
// active).
func NewPool(cfg Config, log zerolog.Logger) *Pool {
	p := &Pool{cfg: cfg, log: log, done: make(chan struct{})}
	p.shares = newShares(cfg)
	p.statements.byKey = map[string]*Statement{}
	p.statements.limit = cfg.StatementMemory
	go p.upkeep()
	return p
}

// Acquire returns a session whose tenant context is the client's tenant and whose settings
// match the client's. It waits up to the checkout timeout for a free session.
func (p *Pool) Acquire(ctx context.Context, c Client) (*Backend, error) {
	p.stats.acquires.Add(1)
	retries := 0
	for {
		// Most checkouts find an idle session at once: the deadline is only armed to wait.
		b := p.takeIdleNow(c.Tenant)
		if b == nil {
			var err error
			if b, err = p.takeWithin(ctx, c); err != nil {
				return nil, err
			}
		}
		if b.lastUsed.Before(time.Now().Add(-p.cfg.CheckAfter)) && !b.Alive() {
			// The server closed it while it sat in the pool (a restart, a failover,
			// idle_session_timeout): the client never sees that.
			p.Discard(b)
			continue
		}
		if err := p.ApplyContext(b, c.Tenant, c.Settings); err != nil {
			var refused ServerError
			switch {
			case errors.As(err, &refused) && !refused.Fatal() && b.txStatus == 'I':
				// The server refused a setting of the client's: the statements ran in one
				// implicit transaction, so none took effect, and the session is as good as
				// before.
				p.Release(b)
				return nil, err
			case b.used && retries < p.cfg.Size:
				// A session that died in the pool after the peek (the server ended it): the
				// client never sees that, it gets another.
				retries++
				p.Discard(b)
				continue
			}
			p.Discard(b)
			return nil, err
		}
		b.used = true
		return b, nil
	}
}

// takeWithin is take bounded by the checkout timeout.
func (p *Pool) takeWithin(ctx context.Context, c Client) (*Backend, error) {
	ctx, cancel := context.WithTimeout(ctx, p.cfg.CheckoutTimeout)
	defer cancel()
	return p.take(ctx, c)
}

// takeIdleNow takes an idle session for tenant without waiting, if its share allows, or
// returns nil.
func (p *Pool) takeIdleNow(tenant string) *Backend {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil
	}
	t := p.tenant(tenant)
	if len(t.waiters) > 0 || !p.allowed(t) {
		return nil
	}
	b := p.takeIdle(tenant)
	if b != nil {
		p.hold(t, b)
	}
	return b
}

// take finds an idle session (one of the client's tenant first) or opens one, as the tenant's
// share allows, or waits in the tenant's queue.
func (p *Pool) take(ctx context.Context, c Client) (*Backend, error) {
	var gone <-chan time.Time
	if c.Gone != nil {
		tick := time.NewTicker(goneCheck)
		defer tick.Stop()
		gone = tick.C
	}
	p.mu.Lock()
	// chosen: the pool handed this checkout a free slot; it goes ahead of its tenant's queue.
	chosen := false
	for {
		if p.closed {
			p.mu.Unlock()
			return nil, ErrPoolClosed
		}
		t := p.tenant(c.Tenant)
		if chosen || len(t.waiters) == 0 && p.allowed(t) {
			chosen = false
			if b := p.takeIdle(c.Tenant); b != nil {
				p.hold(t, b)
				p.mu.Unlock()
				return b, nil
			}
			if p.canOpen() {
				p.startDial()
				p.reserveFor(t)
				p.mu.Unlock()
				b, err := p.dial(ctx)
				p.mu.Lock()
				if err == nil {
					b.holder = t
					p.mu.Unlock()
					return b, nil
				}
				p.open--
				p.unreserveFor(t)
				if !p.noteFull(err) {
					p.handOver()
					p.mu.Unlock()
					return nil, err
				}
				// The server is full: the client waits for one of the pool's sessions.
			}
		}
		w := p.enqueue(t)
		p.stats.waits.Add(1)
		p.mu.Unlock()

		b, err := p.wait(ctx, w, gone, c.Gone)
		if b != nil || err != nil {
			return b, err
		}
		// A slot freed up, for this checkout to open a session in.
		chosen = true
		p.mu.Lock()
	}
}

// wait waits for a session (given with its hold counted), or a free slot (nil, nil), handed to
// w.
func (p *Pool) wait(ctx context.Context, w *waiter, tick <-chan time.Time, gone func() bool) (*Backend, error) {
	var err error
	for err == nil {
		select {
		case b := <-w.ch:
			return b, nil
		case <-tick:
			if gone() {
				err = ErrClientGone
			}
		case <-ctx.Done():
			err = ctx.Err()
			if errors.Is(err, context.DeadlineExceeded) {
				p.stats.timeouts.Add(1)
				err = ErrCheckoutTimeout
			}
		}
	}
	p.mu.Lock()
	p.dequeue(w)
	p.mu.Unlock()
	select {
	case b := <-w.ch: // handed over as we gave up: pass it on
		if b != nil {
			p.Release(b)
		} else {
			p.mu.Lock()
			p.handOver()
			p.mu.Unlock()
		}
	default:
	}
	return nil, err
}

// takeIdle pops the most recently used idle session of tenant, else the most recent of any.
// Called with p.mu held.
func (p *Pool) takeIdle(tenant string) *Backend {
	n := len(p.idle)
	if n == 0 {
		return nil
	}
	i := n - 1
	for j := n - 1; j >= 0; j-- {
		if p.idle[j].tenant == tenant {
			i = j
			break
		}
	}
	b := p.idle[i]
	copy(p.idle[i:], p.idle[i+1:])
	p.idle[n-1] = nil
	p.idle = p.idle[:n-1]
	return b
}

// handOver gives idle sessions and free slots to the waiters whose tenants may take them, as
// long as there are some. Called with p.mu held.
func (p *Pool) handOver() {
	for len(p.idle) > 0 || p.canOpen() {
		w := p.nextWaiter()
		if w == nil {
			return
		}
		if b := p.takeIdle(w.tenant.name); b != nil {
			p.hold(w.tenant, b)
			w.ch <- b
			continue
		}
		w.ch <- nil // a free slot: the waiter opens a session itself
		return
	}
}

// serverFullRetry is how long the pool waits, after the server refused a session for lack of
// room, before it tries to open one again (while clients wait for those it has).
const serverFullRetry = time.Second

// canOpen reports whether the pool may open a session now: it has room, it is not opening as
// many as it may at once, and the server had room at the last try (or the pool has no session
// to wait for). Called with p.mu held.
func (p *Pool) canOpen() bool {
	return p.open < p.cfg.Size && p.dialing < p.maxDials() && (p.open == 0 || time.Now().After(p.fullUntil))
}

// maxDials bounds the sessions opened at once. When every session dies together (a failover,
// a restart), the clients that need a new one then wait for a few dials at a time instead of
// all dialling at once and timing out together on a server busy accepting them.
func (p *Pool) maxDials() int { return max(2, p.cfg.Size/4) }

// startDial counts a session about to be opened (dial). Called with p.mu held.
func (p *Pool) startDial() {
	p.open++
	p.dialing++
}

// noteFull reports whether err is the server refusing a session for lack of room (53300: its
// max_connections, or the role's connection limit) while the pool holds sessions a client can
// wait for, and if so, stops opening sessions for a while. Called with p.mu held.
func (p *Pool) noteFull(err error) bool {
	var pgErr *pgconn.PgError
	if p.open == 0 || !errors.As(err, &pgErr) || pgErr.Code != "53300" {
		return false
	}
	if time.Now().After(p.fullUntil) {
		p.log.Warn().Err(err).Int("open", p.open).Msg("the server is full: clients wait for the pool's open sessions")
	}
	p.fullUntil = time.Now().Add(serverFullRetry)
	return true
}

// dial opens a session counted by startDial; a waiter may open the next once it is done.
func (p *Pool) dial(ctx context.Context) (*Backend, error) {
	p.stats.dials.Add(1)
	b, err := connect(ctx, p.cfg.Conn, p.cfg.MaxPreparedStatements, p.cfg.MaxPreparedStatementMemory)
	p.mu.Lock()
	p.dialing--
	p.handOver()
	p.mu.Unlock()
	if err != nil {
		p.stats.dialErrors.Add(1)
		return nil, err
	}
	version := b.defaults["server_version"]
	p.serverVersion.Store(&version)
	return b, nil
}

// Ping checks that the server takes sessions: it opens one, kept idle for the next client, when
// the pool has room; when it has none, sessions are open and in use, which is answer enough.
func (p *Pool) Ping(ctx context.Context) error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return ErrPoolClosed
	}
	if !p.canOpen() {
		p.mu.Unlock()
		return nil
	}
	p.startDial()
	p.mu.Unlock()
	b, err := p.dial(ctx)
	if err != nil {
		p.mu.Lock()
		p.open--
		p.handOver()
		p.mu.Unlock()
		return err
	}
	p.Release(b)
	return nil
}

// ServerVersion is the server's version as its sessions report it; "" before the first.
func (p *Pool) ServerVersion() string {
	if v := p.serverVersion.Load(); v != nil {
		return *v
	}
	return ""
}

// IdleSession describes a session idle in the pool.
type IdleSession struct {
	PID uint32
	// Tenant is the tenant whose context it carries ("" for none yet).
	Tenant            string
	Created, LastUsed time.Time
}

// IdleSessions lists the sessions idle in the pool.
func (p *Pool) IdleSessions() []IdleSession {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]IdleSession, len(p.idle))
	for i, b := range p.idle {
		out[i] = IdleSession{PID: b.pid, Tenant: b.tenant, Created: b.created, LastUsed: b.lastUsed}
	}
	return out
}

// Release returns a session whose client is done with it. It must be idle (ReadyForQuery 'I',
// nothing pending); the caller discards it otherwise.
func (p *Pool) Release(b *Backend) {
	b.lastUsed = time.Now()
	if time.Since(b.created) > p.cfg.MaxLifetime {
		p.Discard(b)
		return
	}
	p.mu.Lock()
	p.unhold(b)
	if p.closed {
		p.mu.Unlock()
		p.Discard(b)
		return
	}
	p.idle = append(p.idle, b)
	p.handOver()
	p.mu.Unlock()
}

// Discard closes a session that cannot be trusted or reused.
func (p *Pool) Discard(b *Backend) {
	p.stats.discards.Add(1)
	b.Close()
	p.mu.Lock()
	p.unhold(b)
	p.open--
	p.handOver()
	p.mu.Unlock()
}

// Cancel asks the server to cancel whatever b is running.
func (p *Pool) Cancel(ctx context.Context, b *Backend) error {
	network, address := p.address()
	return cancelRequest(ctx, network, address, b.pid, b.secret)
}

func (p *Pool) address() (network, address string) {
	c := p.cfg.Conn
	if len(c.Host) > 0 && c.Host[0] == '/' {
		return "unix", c.Host + "/.s.PGSQL." + strconv.Itoa(int(c.Port))
	}
	return "tcp", net.JoinHostPort(c.Host, strconv.Itoa(int(c.Port)))
}

// Close closes idle sessions and refuses new checkouts. Sessions in use are closed on release.
func (p *Pool) Close() {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	p.closed = true
	close(p.done)
	idle := p.idle
	p.idle = nil
	p.wakeAll()
	p.mu.Unlock()
	for _, b := range idle {
		p.Discard(b)
	}
}

// upkeep enforces idle timeout and lifetime on idle sessions and keeps MinIdle open.
func (p *Pool) upkeep() {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-p.done:
			return
		case <-tick.C:
		}
		var expired []*Backend
		p.mu.Lock()
		keep := p.idle[:0]
		for _, b := range p.idle {
			tooOld := time.Since(b.created) > p.cfg.MaxLifetime
			tooIdle := time.Since(b.lastUsed) > p.cfg.IdleTimeout && p.open-len(expired) > p.cfg.MinIdle
			if tooOld || tooIdle {
				expired = append(expired, b)
			} else {
				keep = append(keep, b)
			}
		}
		clear(p.idle[len(keep):])
		p.idle = keep
		missing := min(p.cfg.MinIdle-len(p.idle), p.cfg.Size-p.open+len(expired))
		// Tenants quiet for a while give their reservations back: waiters may take them.
		p.forgetQuiet(time.Now())
		p.handOver()
		p.mu.Unlock()
		for _, b := range expired {
			p.Discard(b)
		}
		for range max(missing, 0) {
			p.mu.Lock()
			if p.closed || !p.canOpen() {
				p.mu.Unlock()
				break
			}
			p.startDial()
			p.mu.Unlock()
			ctx, cancel := context.WithTimeout(context.Background(), p.cfg.CheckoutTimeout)
			b, err := p.dial(ctx)
			cancel()
			if err != nil {
				p.log.Warn().Err(err).Msg("opening an idle backend session")
				p.mu.Lock()
				p.open--
				p.mu.Unlock()
				break
			}
			p.Release(b)
		}
	}
}

// Stats is a snapshot of the pool.
type Stats struct {
	Open, Idle, Waiting                                              int
	Acquires, Waits, Timeouts, Dials, DialErrors, Switches, Discards int64
}

// Stats reports counters and gauges.
func (p *Pool) Stats() Stats {
	p.mu.Lock()
	s := Stats{Open: p.open, Idle: len(p.idle), Waiting: p.nwaiting}
	p.mu.Unlock()
	s.Acquires = p.stats.acquires.Load()
	s.Waits = p.stats.waits.Load()
	s.Timeouts = p.stats.timeouts.Load()
	s.Dials = p.stats.dials.Load()
	s.DialErrors = p.stats.dialErrors.Load()
	s.Switches = p.stats.switches.Load()
	s.Discards = p.stats.discards.Load()
	return s
}

package session

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/rs/zerolog"

	"github.com/tenantproxy/tenantproxy/internal/guc"
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
	// its way out of the pool.
	CheckAfter time.Duration
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
// it without any extra work.
type Pool struct {
	cfg Config
	log zerolog.Logger

	mu      sync.Mutex
	idle    []*Backend // most recently released last
	open    int        // idle, in use, and being dialled
	waiters []chan *Backend
	closed  bool
	done    chan struct{}

	statements statementRegistry

	stats struct {
		acquires, waits, timeouts, dials, dialErrors, switches, discards atomic.Int64
	}
}

// NewPool starts a pool and its upkeep (idle and lifetime limits, MinIdle sessions).
func NewPool(cfg Config, log zerolog.Logger) *Pool {
	if cfg.CheckAfter == 0 {
		cfg.CheckAfter = 5 * time.Second
	}
	p := &Pool{cfg: cfg, log: log, done: make(chan struct{})}
	p.statements.byKey = map[string]*Statement{}
	p.statements.limit = cfg.StatementMemory
	go p.upkeep()
	return p
}

// Acquire returns a session whose tenant context is the client's tenant and whose settings
// match the client's. It waits up to the checkout timeout for a free session.
func (p *Pool) Acquire(ctx context.Context, c Client) (*Backend, error) {
	p.stats.acquires.Add(1)
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
			p.Discard(b)
			continue
		}
		if err := p.ApplyContext(b, c.Tenant, c.Settings); err != nil {
			// The server refused a setting of the client's: the statements ran in one implicit
			// transaction, so none took effect, and the session is as good as before.
			var refused ServerError
			if errors.As(err, &refused) && b.txStatus == 'I' {
				p.Release(b)
			} else {
				p.Discard(b)
			}
			return nil, err
		}
		return b, nil
	}
}

// takeWithin is take bounded by the checkout timeout.
func (p *Pool) takeWithin(ctx context.Context, c Client) (*Backend, error) {
	ctx, cancel := context.WithTimeout(ctx, p.cfg.CheckoutTimeout)
	defer cancel()
	return p.take(ctx, c)
}

// takeIdleNow pops an idle session without waiting, or returns nil.
func (p *Pool) takeIdleNow(tenant string) *Backend {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil
	}
	return p.takeIdle(tenant)
}

// take finds an idle session (one of the client's tenant first), opens one if the pool has
// room, or waits.
func (p *Pool) take(ctx context.Context, c Client) (*Backend, error) {
	tenant := c.Tenant
	var gone <-chan time.Time
	if c.Gone != nil {
		tick := time.NewTicker(goneCheck)
		defer tick.Stop()
		gone = tick.C
	}
	p.mu.Lock()
	for {
		if p.closed {
			p.mu.Unlock()
			return nil, ErrPoolClosed
		}
		if b := p.takeIdle(tenant); b != nil {
			p.mu.Unlock()
			return b, nil
		}
		if p.open < p.cfg.Size {
			p.open++
			p.mu.Unlock()
			b, err := p.dial(ctx)
			if err != nil {
				p.mu.Lock()
				p.open--
				p.wakeOne(nil)
				p.mu.Unlock()
				return nil, err
			}
			return b, nil
		}
		ch := make(chan *Backend, 1)
		p.waiters = append(p.waiters, ch)
		p.stats.waits.Add(1)
		p.mu.Unlock()

		b, err := p.wait(ctx, ch, gone, c.Gone)
		if b != nil || err != nil {
			return b, err
		}
		// A slot freed up: try again.
		p.mu.Lock()
	}
}

// wait waits for a session (or a free slot: nil, nil) handed to ch.
func (p *Pool) wait(ctx context.Context, ch chan *Backend, tick <-chan time.Time, gone func() bool) (*Backend, error) {
	var err error
	for err == nil {
		select {
		case b := <-ch:
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
	p.removeWaiter(ch)
	p.mu.Unlock()
	select {
	case b := <-ch: // handed over as we gave up: pass it on
		if b != nil {
			p.Release(b)
		} else {
			p.mu.Lock()
			p.wakeOne(nil)
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

func (p *Pool) removeWaiter(ch chan *Backend) {
	for i, w := range p.waiters {
		if w == ch {
			p.waiters = append(p.waiters[:i], p.waiters[i+1:]...)
			return
		}
	}
}

// wakeOne gives b (or, with nil, a free slot) to the oldest waiter. Called with p.mu held;
// reports whether anyone was waiting.
func (p *Pool) wakeOne(b *Backend) bool {
	if len(p.waiters) == 0 {
		return false
	}
	ch := p.waiters[0]
	p.waiters = p.waiters[1:]
	ch <- b
	return true
}

func (p *Pool) dial(ctx context.Context) (*Backend, error) {
	p.stats.dials.Add(1)
	b, err := connect(ctx, p.cfg.Conn, p.cfg.MaxPreparedStatements, p.cfg.MaxPreparedStatementMemory)
	if err != nil {
		p.stats.dialErrors.Add(1)
		return nil, err
	}
	return b, nil
}

// ApplyContext puts the tenant context and the client's settings (want) in place on b, in one
// round trip, and only when they differ from what b holds. Settings the client did not choose go
// back to the session's defaults, so nothing one client set reaches the next. Acquire calls it
// before the client's messages are sent, so a failure can never let them run under another
// tenant's context; the proxy calls it again after a client's RESET ALL or DISCARD ALL.
//
// Inside a transaction the statements join it, and a later ROLLBACK TO SAVEPOINT could undo
// them: the session's tenant is then left unknown (""), so the proxy sets it again after each
// of the client's batches until the transaction ends.
func (p *Pool) ApplyContext(b *Backend, tenant string, want *Settings) error {
	if want == nil {
		want = NewSettings(nil)
	}
	if b.tenant == tenant && b.settingsKey == want.key {
		return nil
	}
	sql := p.settingsSQL(b, tenant, want.values)
	if sql == "" {
		b.settingsKey = want.key
		return nil
	}
	if b.tenant != tenant {
		p.stats.switches.Add(1)
		b.tenant = ""
	}
	b.settingsKey = ""
	before := b.txStatus
	b.SetDeadline(time.Now().Add(p.cfg.CheckoutTimeout))
	err := b.Exec(sql)
	b.SetDeadline(time.Time{})
	if err != nil {
		return fmt.Errorf("setting the tenant context: %w", err)
	}
	if b.txStatus != before {
		return fmt.Errorf("setting the tenant context: transaction state went from %q to %q", before, b.txStatus)
	}
	if b.txStatus != 'I' {
		return nil
	}
	b.tenant = tenant
	// Settings the server does not report are known by what was set.
	for name, value := range want.values {
		if !b.Reports(name) {
			b.params[name] = value
		}
	}
	for name := range b.params {
		if _, wanted := want.values[name]; !wanted && !b.Reports(name) {
			delete(b.params, name)
		}
	}
	b.settingsKey = want.key
	return nil
}

// settingsSQL is what ApplyContext must send, or "".
func (p *Pool) settingsSQL(b *Backend, tenant string, want map[string]string) string {
	var parts []string
	if b.tenant != tenant {
		parts = append(parts, SetStatement(p.cfg.Setting, tenant))
	}
	// The reported settings are known from the server; a client that did not choose one gets
	// the session's default, whatever the backend's previous client chose.
	for name, def := range b.defaults {
		value, wanted := want[name]
		if !wanted {
			value = def
		}
		switch setting, _ := guc.Lookup(name); {
		case b.params[name] == value || setting.ReadOnly:
		case wanted:
			parts = append(parts, SetStatement(name, value))
		default:
			parts = append(parts, "RESET "+name)
		}
	}
	for name, value := range want {
		if !b.Reports(name) && b.params[name] != value {
			parts = append(parts, SetStatement(name, value))
		}
	}
	for name := range b.params {
		if _, wanted := want[name]; !wanted && !b.Reports(name) {
			parts = append(parts, "RESET "+name)
		}
	}
	return strings.Join(parts, "; ")
}

// SettingsMatch reports whether b holds exactly the settings of want, and the defaults for the
// rest.
func (p *Pool) SettingsMatch(b *Backend, want *Settings) bool {
	return b.settingsKey == want.key || p.settingsSQL(b, b.tenant, want.values) == ""
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
	if p.closed {
		p.mu.Unlock()
		p.Discard(b)
		return
	}
	if !p.wakeOne(b) {
		p.idle = append(p.idle, b)
	}
	p.mu.Unlock()
}

// Discard closes a session that cannot be trusted or reused.
func (p *Pool) Discard(b *Backend) {
	p.stats.discards.Add(1)
	b.Close()
	p.mu.Lock()
	p.open--
	p.wakeOne(nil)
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
	for _, w := range p.waiters {
		w <- nil
	}
	p.waiters = nil
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
		p.mu.Unlock()
		for _, b := range expired {
			p.Discard(b)
		}
		for range max(missing, 0) {
			p.mu.Lock()
			if p.closed || p.open >= p.cfg.Size {
				p.mu.Unlock()
				break
			}
			p.open++
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
	s := Stats{Open: p.open, Idle: len(p.idle), Waiting: len(p.waiters)}
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

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
)

// Config shapes a Pool.
type Config struct {
	// Conn is how to reach and log in to the server.
	Conn *pgconn.Config
	// Setting is the session setting that carries the tenant (app.current_tenant_id).
	Setting               string
	Size, MinIdle         int
	MaxLifetime           time.Duration
	IdleTimeout           time.Duration
	CheckoutTimeout       time.Duration
	MaxPreparedStatements int
	// CheckAfter is how long a session may sit idle before it is checked for a hang-up on
	// its way out of the pool.
	CheckAfter time.Duration
}

// ErrPoolClosed is returned by Acquire after Close.
var ErrPoolClosed = errors.New("pool closed")

// ErrCheckoutTimeout is returned when no session frees up within the checkout timeout.
var ErrCheckoutTimeout = errors.New("no backend session free within the checkout timeout")

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
	p.statements.m = map[string]*Statement{}
	go p.upkeep()
	return p
}

// Acquire returns a session whose tenant context is tenant and whose settings match want (the
// client's tracked settings). It waits up to the checkout timeout for a free session.
func (p *Pool) Acquire(ctx context.Context, tenant string, want *Settings) (*Backend, error) {
	p.stats.acquires.Add(1)
	for {
		// Most checkouts find an idle session at once: the deadline is only armed to wait.
		b := p.takeIdleNow(tenant)
		if b == nil {
			var err error
			if b, err = p.takeWithin(ctx, tenant); err != nil {
				return nil, err
			}
		}
		if b.lastUsed.Before(time.Now().Add(-p.cfg.CheckAfter)) && !b.Alive() {
			p.Discard(b)
			continue
		}
		if err := p.Prepare(b, tenant, want); err != nil {
			p.Discard(b)
			return nil, err
		}
		return b, nil
	}
}

// takeWithin is take bounded by the checkout timeout.
func (p *Pool) takeWithin(ctx context.Context, tenant string) (*Backend, error) {
	ctx, cancel := context.WithTimeout(ctx, p.cfg.CheckoutTimeout)
	defer cancel()
	return p.take(ctx, tenant)
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

// take finds an idle session (one of tenant first), opens one if the pool has room, or waits.
func (p *Pool) take(ctx context.Context, tenant string) (*Backend, error) {
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

		select {
		case b := <-ch:
			if b != nil {
				return b, nil
			}
			// A slot freed up: try again.
			p.mu.Lock()
		case <-ctx.Done():
			p.mu.Lock()
			p.removeWaiter(ch)
			p.mu.Unlock()
			select {
			case b := <-ch: // handed over as we gave up: put it back
				if b != nil {
					p.Release(b)
				}
			default:
			}
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				p.stats.timeouts.Add(1)
				return nil, ErrCheckoutTimeout
			}
			return nil, ctx.Err()
		}
	}
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
		if p.idle[j].Tenant == tenant {
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
	b, err := connect(ctx, p.cfg.Conn, p.cfg.MaxPreparedStatements)
	if err != nil {
		p.stats.dialErrors.Add(1)
		return nil, err
	}
	b.pool = p
	return b, nil
}

// Prepare puts the tenant context and the client's settings in place, in one round trip, only
// when they differ. Settings the client did not choose go back to the session's defaults, so
// nothing one client set reaches the next. Acquire calls it before the client's messages are
// sent, so a failure can never let them run under another tenant's context; the proxy calls it
// again after a client's RESET ALL or DISCARD ALL.
//
// Inside a transaction the statements join it, and a later ROLLBACK TO SAVEPOINT could undo
// them: the session's tenant is then left unknown (""), so the proxy sets it again after each
// of the client's batches until the transaction ends.
func (p *Pool) Prepare(b *Backend, tenant string, want *Settings) error {
	if want == nil {
		want = NewSettings(nil)
	}
	if b.Tenant == tenant && b.settingsKey == want.key {
		return nil
	}
	sql := p.settingsSQL(b, tenant, want.values)
	if sql == "" {
		b.settingsKey = want.key
		return nil
	}
	if b.Tenant != tenant {
		p.stats.switches.Add(1)
		b.Tenant = ""
	}
	b.settingsKey = ""
	before := b.TxStatus
	b.SetDeadline(time.Now().Add(p.cfg.CheckoutTimeout))
	err := b.Exec(sql)
	b.SetDeadline(time.Time{})
	if err != nil {
		return fmt.Errorf("setting the tenant context: %w", err)
	}
	if b.TxStatus != before {
		return fmt.Errorf("setting the tenant context: transaction state went from %q to %q", before, b.TxStatus)
	}
	if b.TxStatus != 'I' {
		return nil
	}
	b.Tenant = tenant
	// Settings the server does not report are known by what was set; those it reports take
	// the server's spelling (TimeZone 'utc' comes back as 'UTC'), so the next checkout of
	// this client compares equal.
	for name, value := range want.values {
		if reportedSettings[name] {
			want.Set(name, b.Params[name])
		} else {
			b.Params[name] = value
		}
	}
	for name := range b.Params {
		if _, wanted := want.values[name]; !wanted && !reportedSettings[name] {
			delete(b.Params, name)
		}
	}
	b.settingsKey = want.key
	return nil
}

// settingsSQL is what Prepare must send, or "".
func (p *Pool) settingsSQL(b *Backend, tenant string, want map[string]string) string {
	var parts []string
	if b.Tenant != tenant {
		parts = append(parts, SetStatement(p.cfg.Setting, tenant))
	}
	for name := range trackedSettings {
		value, wanted := want[name]
		if !wanted {
			value = b.Defaults[name]
		}
		switch {
		case b.Params[name] == value:
		case wanted:
			parts = append(parts, SetStatement(name, value))
		default:
			parts = append(parts, "RESET "+name)
		}
	}
	for name, value := range want {
		if !reportedSettings[name] && b.Params[name] != value {
			parts = append(parts, SetStatement(name, value))
		}
	}
	for name := range b.Params {
		if _, wanted := want[name]; !wanted && !reportedSettings[name] {
			parts = append(parts, "RESET "+name)
		}
	}
	return strings.Join(parts, "; ")
}

// SettingsMatch reports whether b holds exactly the settings of want, and the defaults for the
// rest.
func (p *Pool) SettingsMatch(b *Backend, want *Settings) bool {
	return b.settingsKey == want.key || p.settingsSQL(b, b.Tenant, want.values) == ""
}

// ForgetUnreported drops what the pool knows of settings the server does not report: after a
// RESET ALL or DISCARD ALL they are back to their defaults, whatever was set.
func ForgetUnreported(b *Backend) {
	b.settingsKey = ""
	for name := range b.Params {
		if !reportedSettings[name] {
			delete(b.Params, name)
		}
	}
}

// Reported says whether the server reports name with ParameterStatus.
func Reported(name string) bool { return reportedSettings[name] }

// Tracked says whether a client may change name at session level in transaction mode: the
// server reports it, so the pool follows it and puts it back on the next backend.
func Tracked(name string) bool { return trackedSettings[name] }

var trackedSettings = map[string]bool{
	"application_name": true, "client_encoding": true, "DateStyle": true, "IntervalStyle": true,
	"TimeZone": true, "standard_conforming_strings": true, "default_transaction_read_only": true,
}

// reportedSettings are the settings the server reports with ParameterStatus (PostgreSQL 15).
var reportedSettings = map[string]bool{
	"application_name": true, "client_encoding": true, "DateStyle": true, "IntervalStyle": true,
	"TimeZone": true, "standard_conforming_strings": true, "default_transaction_read_only": true,
	"in_hot_standby": true, "integer_datetimes": true, "is_superuser": true,
	"server_encoding": true, "server_version": true, "session_authorization": true,
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
	return cancelRequest(ctx, network, address, b.PID, b.Secret)
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

// statementRegistry names statements pool-wide: the same query and parameter types get the
// same name on every backend. It is bounded; a statement dropped from it keeps working for
// whoever holds it, and a later Parse of the same text simply gets a new name.
type statementRegistry struct {
	mu   sync.Mutex
	m    map[string]*Statement
	next atomic.Uint64
}

const maxRegistered = 10000

// Statement returns the pool-wide statement for a query and its parameter types, parsed under
// scope: clients share a statement only when they parse it under the same settings, because
// the server turns literals into values as it parses (a date under DateStyle, a timestamp
// under TimeZone) and a prepared statement keeps them.
func (p *Pool) Statement(query, types []byte, scope string) *Statement {
	// What the statement means: its text, its parameter types, the settings it is parsed under.
	key := string(query) + "\x00" + string(types) + "\x00" + scope
	r := &p.statements
	r.mu.Lock()
	defer r.mu.Unlock()
	if s, ok := r.m[key]; ok {
		return s
	}
	if len(r.m) >= maxRegistered {
		for k := range r.m { // drop an arbitrary one
			delete(r.m, k)
			break
		}
	}
	name := "tenantproxy_" + strconv.FormatUint(r.next.Add(1), 10)
	msg := make([]byte, 0, 5+len(name)+1+len(query)+1+len(types))
	msg = append(msg, 'P', 0, 0, 0, 0)
	msg = append(msg, name...)
	msg = append(msg, 0)
	msg = append(msg, query...)
	msg = append(msg, 0)
	msg = append(msg, types...)
	n := len(msg) - 1
	msg[1], msg[2], msg[3], msg[4] = byte(n>>24), byte(n>>16), byte(n>>8), byte(n)
	s := &Statement{Name: name, Query: string(query), Parse: msg, Scope: scope}
	r.m[key] = s
	return s
}

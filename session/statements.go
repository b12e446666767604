package session

import (
	"container/list"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"sync"
	"sync/atomic"

	"github.com/tenantproxy/tenantproxy/internal/wire"
)

// In transaction pooling a client's prepared statements live on the pool's backends under names
// of the pool's own, and are prepared on whichever backend serves the client. The registry gives
// one Statement to every client that prepares the same text and parameter types in the same
// scope (its tenant and the settings it parses under), so that a backend prepares it once for
// all of them; a statement is released when the last client holding it lets go, and every
// backend then closes it. A backend's set is bounded by count and by size.

// Statement is a prepared statement as the pool knows it, under a name of its own on every
// backend that prepares it.
type Statement struct {
	// Name is random: it says nothing of when, or by whom, the statement was first prepared.
	Name string
	// Parse is the whole Parse message, under Name, ready to send.
	Parse []byte
	// Scope is what it is parsed under: the tenant, and the settings that matter to parsing.
	Scope string

	key string
	// refs counts the clients holding it; guarded by the registry's lock.
	refs int
	// released: no client holds it any more; backends close it.
	released atomic.Bool
}

// Query is the statement's text.
func (s *Statement) Query() []byte {
	_, query, _, _ := wire.DecodeParse(s.Parse)
	return query
}

// Types are the statement's parameter types, as the Parse message carries them.
func (s *Statement) Types() []byte {
	_, _, types, _ := wire.DecodeParse(s.Parse)
	return types
}

// Size is what holding the statement costs: its Parse message.
func (s *Statement) Size() int { return len(s.Parse) }

// ErrStatementMemory is returned when a statement does not fit the pool's budget for them.
var ErrStatementMemory = errors.New("prepared statements of the pool exceed their memory budget")

// statementRegistry holds the statements some client holds, by what they mean.
type statementRegistry struct {
	mu    sync.Mutex
	byKey map[string]*Statement
	bytes int64
	limit int64
	// releases counts statements released so far: a backend that saw fewer has some to close.
	releases atomic.Uint64
}

// Statement returns the statement for a query and its parameter types parsed in scope, and
// holds it for the caller, who must release it (ReleaseStatement). Clients share a statement only within one
// scope: one tenant (no state a tenant can observe is shared with another), and the same settings
// for parsing, because the server turns literals into values as it parses (a date under DateStyle,
// a timestamp under TimeZone) and a prepared statement keeps them.
func (p *Pool) Statement(query, types []byte, scope string) (*Statement, error) {
	// What the statement means: its text, its parameter types, its scope.
	key := string(query) + "\x00" + string(types) + "\x00" + scope
	r := &p.statements
	r.mu.Lock()
	defer r.mu.Unlock()
	if s, ok := r.byKey[key]; ok {
		s.refs++
		return s, nil
	}
	var random [8]byte
	rand.Read(random[:])
	name := "tenantproxy_" + hex.EncodeToString(random[:])
	s := &Statement{Name: name, Parse: wire.AppendParse(nil, name, query, types), Scope: scope, key: key, refs: 1}
	if r.bytes+int64(s.Size()) > r.limit {
		return nil, ErrStatementMemory
	}
	r.byKey[key] = s
	r.bytes += int64(s.Size())
	return s, nil
}

// ReleaseStatement lets go of a statement the caller held. The last release drops it from the
// registry, and backends close it.
func (p *Pool) ReleaseStatement(s *Statement) {
	r := &p.statements
	r.mu.Lock()
	defer r.mu.Unlock()
	if s.refs--; s.refs > 0 {
		return
	}
	delete(r.byKey, s.key)
	r.bytes -= int64(s.Size())
	s.released.Store(true)
	r.releases.Add(1)
}

// StatementMemory is what the statements clients hold take, in bytes.
func (p *Pool) StatementMemory() int64 {
	r := &p.statements
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.bytes
}

// PreparedSet is the statements prepared on one backend, least recently used first, bounded by
// count and by size.
type PreparedSet struct {
	max, maxBytes int
	bytes         int
	order         *list.List // of *Statement
	by            map[*Statement]*list.Element
	// releases is the registry's count of releases when the set was last swept.
	releases uint64
}

func newPreparedSet(max, maxBytes int) *PreparedSet {
	return &PreparedSet{max: max, maxBytes: maxBytes, order: list.New(), by: map[*Statement]*list.Element{}}
}

// Has reports whether s is prepared here, and marks it used.
func (p *PreparedSet) Has(s *Statement) bool {
	e, ok := p.by[s]
	if ok {
		p.order.MoveToBack(e)
	}
	return ok
}

// Add records s as prepared and returns the statements to close first, least recently used,
// so that the set stays within its bounds.
func (p *PreparedSet) Add(s *Statement) (evict []*Statement) {
	if _, ok := p.by[s]; ok {
		return nil
	}
	for p.order.Len() > 0 && (p.order.Len() >= p.max || p.bytes+s.Size() > p.maxBytes) {
		old := p.order.Front().Value.(*Statement)
		p.Remove(old)
		evict = append(evict, old)
	}
	p.by[s] = p.order.PushBack(s)
	p.bytes += s.Size()
	return evict
}

// Remove forgets s (its Parse failed, was skipped after an error, or it was closed).
func (p *PreparedSet) Remove(s *Statement) {
	if e, ok := p.by[s]; ok {
		p.order.Remove(e)
		delete(p.by, s)
		p.bytes -= s.Size()
	}
}

// Clear forgets everything (DISCARD ALL or DEALLOCATE ALL ran).
func (p *PreparedSet) Clear() {
	p.order.Init()
	clear(p.by)
	p.bytes = 0
}

// Len is the number of statements prepared.
func (p *PreparedSet) Len() int { return p.order.Len() }

// Released takes out of the set the statements no client holds any more, to be closed on the
// backend. It looks only when some were released since it last looked.
func (p *PreparedSet) Released(pool *Pool) []*Statement {
	now := pool.statements.releases.Load()
	if now == p.releases {
		return nil
	}
	p.releases = now
	var gone []*Statement
	for e := p.order.Front(); e != nil; {
		next := e.Next()
		if s := e.Value.(*Statement); s.released.Load() {
			p.Remove(s)
			gone = append(gone, s)
		}
		e = next
	}
	return gone
}

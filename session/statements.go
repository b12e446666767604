package session

import (
	"container/list"
	"strconv"
	"sync"
	"sync/atomic"
)

// PreparedSet is the statements prepared on one backend, least recently used first.
type PreparedSet struct {
	max   int
	order *list.List // of *Statement
	by    map[*Statement]*list.Element
}

func newPreparedSet(max int) *PreparedSet {
	return &PreparedSet{max: max, order: list.New(), by: map[*Statement]*list.Element{}}
}

// Has reports whether s is prepared here, and marks it used.
func (p *PreparedSet) Has(s *Statement) bool {
	e, ok := p.by[s]
	if ok {
		p.order.MoveToBack(e)
	}
	return ok
}

// Add records s as prepared and returns a statement to close first, when the set is full.
func (p *PreparedSet) Add(s *Statement) (evict *Statement) {
	if _, ok := p.by[s]; ok {
		return nil
	}
	if p.order.Len() >= p.max {
		front := p.order.Front()
		evict = front.Value.(*Statement)
		p.order.Remove(front)
		delete(p.by, evict)
	}
	p.by[s] = p.order.PushBack(s)
	return evict
}

// Remove forgets s (its Parse failed, or was skipped after an error).
func (p *PreparedSet) Remove(s *Statement) {
	if e, ok := p.by[s]; ok {
		p.order.Remove(e)
		delete(p.by, s)
	}
}

// Clear forgets everything (DISCARD ALL or DEALLOCATE ALL ran).
func (p *PreparedSet) Clear() {
	p.order.Init()
	clear(p.by)
}

// Len is the number of statements prepared.
func (p *PreparedSet) Len() int { return p.order.Len() }

// Statement is a prepared statement as the pool knows it: one per distinct query text and
// parameter types, under a name of its own on every backend that prepares it.
type Statement struct {
	Name  string
	Query string
	// Parse is the whole Parse message, under Name, ready to send.
	Parse []byte
	// Scope names the settings it is parsed under (see Pool.Statement).
	Scope string
}

// Types are the statement's parameter types, as the Parse message carries them.
func (s *Statement) Types() []byte {
	return s.Parse[1+4+len(s.Name)+1+len(s.Query)+1:] // type, length, name, NUL, query, NUL
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

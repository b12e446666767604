package directory

import "sync"

// cache holds the answers Lookup gave: users found, and names found to be unknown. Known users
// are bounded by the directory's size; unknown names by maxUnknown, since clients choose them.
//
// The generation makes a lookup that raced with an invalidation harmless: Lookup reads it before
// asking the database and stores its answer only if no invalidation happened meanwhile. An answer
// read before a change commits is then either refused here or invalidated by the watcher, which
// sees every change committed after the answer was read.
type cache struct {
	mu         sync.RWMutex
	known      map[string]User
	unknown    map[string]struct{}
	maxUnknown int
	gen        uint64
}

func newCache(maxUnknown int) *cache {
	return &cache{known: map[string]User{}, unknown: map[string]struct{}{}, maxUnknown: maxUnknown}
}

// get returns the cached answer for name: the user and whether it exists, and hit when there is
// an answer at all.
func (c *cache) get(name string) (u User, found, hit bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	if u, ok := c.known[name]; ok {
		return u, true, true
	}
	_, ok := c.unknown[name]
	return User{}, false, ok
}

func (c *cache) generation() uint64 {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.gen
}

// put stores an answer read while the cache was at generation gen, unless it has moved on.
func (c *cache) put(name string, u User, found bool, gen uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.gen != gen {
		return
	}
	if found {
		c.known[name] = u
		return
	}
	if len(c.unknown) >= c.maxUnknown {
		clear(c.unknown)
	}
	c.unknown[name] = struct{}{}
}

// invalidate forgets the answers for names.
func (c *cache) invalidate(names []string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gen++
	for _, name := range names {
		delete(c.known, name)
		delete(c.unknown, name)
	}
}

// flush forgets every answer and returns the names of the users it knew.
func (c *cache) flush() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gen++
	names := make([]string, 0, len(c.known))
	for name := range c.known {
		names = append(names, name)
	}
	clear(c.known)
	clear(c.unknown)
	return names
}

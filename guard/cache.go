package guard

import (
	"hash/maphash"
	"sync"
)

// maxCachedText keeps huge texts (bulk INSERTs) out of the cache, which would otherwise hold
// up to CacheSize of them.
const maxCachedText = 8 << 10

// verdictCache maps statement texts to verdicts. It is split in shards, each a map behind its
// own lock, so that goroutines checking different texts rarely wait for each other; a full
// shard drops an arbitrary entry.
type verdictCache struct {
	seed   maphash.Seed
	shards []cacheShard
}

type cacheShard struct {
	mu      sync.RWMutex
	entries map[string]Verdict
	limit   int
	_       [40]byte // keep shards' locks on different cache lines
}

func newVerdictCache(size int) *verdictCache {
	n := min(16, size)
	c := &verdictCache{seed: maphash.MakeSeed(), shards: make([]cacheShard, n)}
	for i := range c.shards {
		c.shards[i].limit = (size + n - 1) / n
		c.shards[i].entries = make(map[string]Verdict)
	}
	return c
}

func (c *verdictCache) shard(sql []byte) *cacheShard {
	return &c.shards[maphash.Bytes(c.seed, sql)%uint64(len(c.shards))]
}

func (c *verdictCache) get(sql []byte) (Verdict, bool) {
	s := c.shard(sql)
	s.mu.RLock()
	v, ok := s.entries[string(sql)] // no allocation: the compiler looks the bytes up in place
	s.mu.RUnlock()
	return v, ok
}

func (c *verdictCache) put(sql []byte, v Verdict) {
	if len(sql) > maxCachedText {
		return
	}
	s := c.shard(sql)
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.entries[string(sql)]; !ok && len(s.entries) >= s.limit {
		for old := range s.entries {
			delete(s.entries, old)
			break
		}
	}
	s.entries[string(sql)] = v
}

package routes

import (
	"sync"
	"sync/atomic"
)

// matchCache remembers, per topic, which other nodes want it, so that a
// publish does not walk the trie. Every change to the remote filters bumps
// a generation that invalidates all entries: a change made before a
// publish is looked up is always seen.
type matchCache struct {
	gen atomic.Uint64
	// entries maps topic -> cached; replaced when it grows past
	// maxCached so memory stays bounded with many distinct topics.
	entries atomic.Pointer[sync.Map]
	size    atomic.Int64
}

type cached struct {
	gen     uint64
	targets []string
}

const maxCached = 100_000

func (c *matchCache) init() { c.entries.Store(new(sync.Map)) }

func (c *matchCache) invalidate() { c.gen.Add(1) }

func (c *matchCache) generation() uint64 { return c.gen.Load() }

func (c *matchCache) get(topic string) ([]string, bool) {
	v, ok := c.entries.Load().Load(topic)
	if !ok {
		return nil, false
	}
	e := v.(cached)
	return e.targets, e.gen == c.gen.Load()
}

// put stores the targets computed at generation gen (read before the
// lookup, so an invalidation during it makes the entry stale at once).
func (c *matchCache) put(topic string, gen uint64, targets []string) {
	m := c.entries.Load()
	if _, loaded := m.Swap(topic, cached{gen: gen, targets: targets}); !loaded {
		if c.size.Add(1) > maxCached {
			c.entries.Store(new(sync.Map))
			c.size.Store(0)
		}
	}
}

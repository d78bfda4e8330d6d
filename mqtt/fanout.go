package mqtt

import (
	"sync"
	"sync/atomic"
)

// subscriberCache remembers, per topic, whether any subscription matches it,
// so that a stored message nobody subscribed to skips the re-publish
// machinery. Every change to the subscription index bumps a generation that
// invalidates all entries; the bump happens after mochi has changed its
// index and before it acknowledges the change to the client, so a topic that
// gains a subscriber is never skipped for a message published after SUBACK.
type subscriberCache struct {
	sel *selector
	// ignoreShared: shared subscriptions are served by consumer groups from
	// the streams, so they are not fan-out targets.
	ignoreShared bool
	gen          atomic.Uint64
	// entries maps topic -> cacheEntry; it is replaced when it grows past
	// maxCacheEntries so memory stays bounded with many distinct topics.
	entries atomic.Pointer[sync.Map]
	size    atomic.Int64
}

type cacheEntry struct {
	gen uint64
	has bool
}

const maxCacheEntries = 100_000

func newSubscriberCache(sel *selector, ignoreShared bool) *subscriberCache {
	c := &subscriberCache{sel: sel, ignoreShared: ignoreShared}
	c.entries.Store(new(sync.Map))
	return c
}

// invalidate forgets every cached answer.
func (c *subscriberCache) invalidate() { c.gen.Add(1) }

// hasSubscribers reports whether any subscription (plain, shared or inline)
// matches topic.
func (c *subscriberCache) hasSubscribers(topic string) bool {
	gen := c.gen.Load()
	m := c.entries.Load()
	if v, ok := m.Load(topic); ok {
		if e := v.(cacheEntry); e.gen == gen {
			return e.has
		}
	}
	subs := c.sel.subscribers(topic, "")
	has := len(subs.Subscriptions) > 0 || len(subs.InlineSubscriptions) > 0 || (len(subs.Shared) > 0 && !c.ignoreShared)
	if _, loaded := m.Swap(topic, cacheEntry{gen: gen, has: has}); !loaded {
		if c.size.Add(1) > maxCacheEntries {
			c.entries.Store(new(sync.Map))
			c.size.Store(0)
		}
	}
	return has
}

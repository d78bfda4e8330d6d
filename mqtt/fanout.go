package mqtt

import (
	"sync"
	"sync/atomic"

	mochi "github.com/mochi-mqtt/server/v2"
)

// subscriberCache remembers, per topic, whether any subscription matches it,
// so that a stored message nobody subscribed to skips the re-publish
// machinery, and the corrected selection of its subscribers, so that
// ingest's fan-out does not scan mochi's index for every message. Every change to the subscription index bumps a generation that
// invalidates all entries; the bump happens after mochi has changed its
// index and before it acknowledges the change to the client, so a topic that
// gains a subscriber is never skipped for a message published after SUBACK.
type subscriberCache struct {
	sel *selector
	// Shared subscriptions are served by consumer groups from the
	// streams, so they are not fan-out targets.
	gen atomic.Uint64
	// entries maps topic -> cacheEntry; it is replaced when it grows past
	// maxCacheEntries so memory stays bounded with many distinct topics.
	entries atomic.Pointer[sync.Map]
	size    atomic.Int64
}

type cacheEntry struct {
	gen uint64
	has bool
	// subs is the corrected selection (No Local not yet applied), shared by
	// every reader and never modified; nil when too large to keep.
	subs *mochi.Subscribers
}

const (
	maxCacheEntries = 100_000
	// maxCachedSelection bounds the subscriptions kept per topic; larger
	// selections are looked up again for each message (their cost is
	// spread over that many deliveries).
	maxCachedSelection = 256
)

func newSubscriberCache(sel *selector) *subscriberCache {
	c := &subscriberCache{sel: sel}
	c.entries.Store(new(sync.Map))
	return c
}

// invalidate forgets every cached answer.
func (c *subscriberCache) invalidate() { c.gen.Add(1) }

// hasSubscribers reports whether any subscription (plain, shared or inline)
// matches topic.
func (c *subscriberCache) hasSubscribers(topic string) bool {
	_, has := c.entry(topic)
	return has.has
}

// lookup returns the corrected selection of topic's subscribers and
// whether any subscription matches. The selection may be shared: the
// caller must not modify it.
func (c *subscriberCache) lookup(topic string) (*mochi.Subscribers, bool) {
	subs, e := c.entry(topic)
	if subs == nil && e.has {
		subs = c.sel.subscribers(topic, "")
	}
	return subs, e.has
}

// entry returns topic's cache entry, computing it on a miss (and then the
// fresh selection too).
func (c *subscriberCache) entry(topic string) (*mochi.Subscribers, cacheEntry) {
	gen := c.gen.Load()
	m := c.entries.Load()
	if v, ok := m.Load(topic); ok {
		if e := v.(cacheEntry); e.gen == gen {
			return e.subs, e
		}
	}
	subs := c.sel.subscribers(topic, "")
	e := cacheEntry{gen: gen}
	e.has = len(subs.Subscriptions) > 0 || len(subs.InlineSubscriptions) > 0
	if e.has && len(subs.Subscriptions)+len(subs.Shared) <= maxCachedSelection {
		e.subs = subs
	}
	if _, loaded := m.Swap(topic, e); !loaded {
		if c.size.Add(1) > maxCacheEntries {
			c.entries.Store(new(sync.Map))
			c.size.Store(0)
		}
	}
	return subs, e
}

package mqtt

import (
	"maps"
	"strings"
	"sync"
	"sync/atomic"

	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// routeIndex is the selector's own index of the plain (not shared)
// subscriptions: the same (filter, client) pairs as mochi's topic index,
// each with the subscription the client holds, so that ingest's fan-out
// finds a topic's subscribers without mochi's lookup. mochi's
// TopicsIndex.Subscribers copies every map it visits and allocates four
// maps per call; with many distinct topics (more than the per-topic cache
// that used to sit in front of it held) it was most of a publish's CPU
// (docs/performance.md, round two). Here a lookup walks the topic's
// levels under a read lock and, when the matching subscriptions end at
// one node (the usual case), returns that node's selection, made once per
// change and shared: no allocation per publish, and no per-topic cache
// to miss.
//
// It changes wherever mochi's index changes for a plain subscription:
// SUBSCRIBE and UNSUBSCRIBE (selectionHook, before the SUBACK and before
// the catch-up reads its sequence number), a session ended by a clean start, a clean disconnect or expiry
// (mochi's UnsubscribeClient calls OnUnsubscribed), restored and moved
// sessions (staterestore.go), a session handed to another node
// (claims.go) and a changed Retain Handling (retained.go). A session taken
// over keeps its id and its subscriptions, so the index does not change.
//
// Matching follows the specification rather than mochi where they
// differ: "#" also matches the parent level however it was reached
// [MQTT-4.7.1-2], and no filter starting with a wildcard matches a topic
// starting with '$' [MQTT-4.7.2-1].
type routeIndex struct {
	mu   sync.RWMutex // guards root and every node below it
	root *routeNode
}

// routeNode is one level of a filter.
type routeNode struct {
	// children holds the next levels by name; plus and hash the "+" and
	// "#" ones, which every lookup asks for, outside the map.
	children   map[string]*routeNode
	plus, hash *routeNode
	// subs holds, by client id, the subscriptions whose filter ends here.
	subs map[string]packets.Subscription
	// inline holds the identifiers of the inline subscriptions (mochi's
	// Server.Subscribe) whose filter ends here.
	inline map[int]struct{}
	// selection is subs as a selection, shared by the lookups until subs
	// changes (nil: not made since).
	selection atomic.Pointer[mochi.Subscribers]
	// subsShared says a selection handed out holds subs itself (not a
	// copy), so subs is copied before it changes.
	subsShared atomic.Bool
}

func newRouteIndex() *routeIndex { return &routeIndex{root: &routeNode{}} }

// add records (or replaces) client's subscription sub.
func (x *routeIndex) add(client string, sub packets.Subscription) {
	if mochi.IsSharedFilter(sub.Filter) {
		return
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	x.node(sub.Filter).changeSubs()[client] = sub
}

// changeSubs returns n.subs to be changed (copied first if a selection
// handed out holds it) and forgets n's selection. The caller holds the
// write lock.
func (n *routeNode) changeSubs() map[string]packets.Subscription {
	if n.subsShared.Load() {
		n.subs = maps.Clone(n.subs)
		n.subsShared.Store(false)
	}
	if n.subs == nil {
		n.subs = map[string]packets.Subscription{}
	}
	n.selection.Store(nil)
	return n.subs
}

// addInline records an inline subscription: lookups report it (without
// its handler, which only mochi has) so that ingest lets mochi route the
// messages it matches.
func (x *routeIndex) addInline(sub packets.Subscription) {
	x.mu.Lock()
	defer x.mu.Unlock()
	n := x.node(sub.Filter)
	if n.inline == nil {
		n.inline = map[int]struct{}{}
	}
	n.inline[sub.Identifier] = struct{}{}
	n.selection.Store(nil)
}

// node returns filter's node, made if needed (the caller holds the write
// lock).
func (x *routeIndex) node(filter string) *routeNode {
	n := x.root
	for level := range strings.SplitSeq(filter, "/") {
		next := n.child(level)
		if next == nil {
			next = &routeNode{}
			n.setChild(level, next)
		}
		n = next
	}
	return n
}

// remove forgets client's subscription to filter, and the nodes left empty.
func (x *routeIndex) remove(filter, client string) {
	if mochi.IsSharedFilter(filter) {
		return
	}
	x.forget(filter, func(n *routeNode) {
		if _, ok := n.subs[client]; ok {
			delete(n.changeSubs(), client)
		}
	})
}

// removeInline forgets the inline subscription id to filter.
func (x *routeIndex) removeInline(filter string, id int) {
	x.forget(filter, func(n *routeNode) { delete(n.inline, id) })
}

// forget applies drop to filter's node, if there is one, then removes the
// nodes left empty.
func (x *routeIndex) forget(filter string, drop func(n *routeNode)) {
	x.mu.Lock()
	defer x.mu.Unlock()
	type step struct {
		parent *routeNode
		level  string
	}
	var path []step
	n := x.root
	for level := range strings.SplitSeq(filter, "/") {
		next := n.child(level)
		if next == nil {
			return
		}
		path = append(path, step{n, level})
		n = next
	}
	drop(n)
	n.selection.Store(nil)
	for i := len(path) - 1; i >= 0 && n.empty(); i-- {
		path[i].parent.setChild(path[i].level, nil)
		n = path[i].parent
	}
}

// child returns the node of the next level named level (nil: none).
func (n *routeNode) child(level string) *routeNode {
	switch level {
	case "+":
		return n.plus
	case "#":
		return n.hash
	}
	return n.children[level]
}

// setChild makes c the node of the next level named level (nil: removes it).
func (n *routeNode) setChild(level string, c *routeNode) {
	switch {
	case level == "+":
		n.plus = c
	case level == "#":
		n.hash = c
	case c == nil:
		delete(n.children, level)
	default:
		if n.children == nil {
			n.children = map[string]*routeNode{}
		}
		n.children[level] = c
	}
}

// empty reports whether n holds no subscription and no next level.
func (n *routeNode) empty() bool {
	return len(n.subs) == 0 && len(n.inline) == 0 && len(n.children) == 0 && n.plus == nil && n.hash == nil
}

// len returns the number of subscriptions in the index.
func (x *routeIndex) len() int {
	x.mu.RLock()
	defer x.mu.RUnlock()
	var count func(n *routeNode) int
	count = func(n *routeNode) int {
		c := len(n.subs)
		for _, child := range n.children {
			c += count(child)
		}
		for _, child := range [2]*routeNode{n.plus, n.hash} {
			if child != nil {
				c += count(child)
			}
		}
		return c
	}
	return count(x.root)
}

// lookup returns the selection of topic's plain subscribers (nil if none)
// and whether there is any. The selection may be shared: the caller must
// not modify it.
func (x *routeIndex) lookup(topic string) (*mochi.Subscribers, bool) {
	subs := x.subscribers(topic)
	return subs, subs != nil
}

// hasSubscribers reports whether any plain subscription matches topic.
func (x *routeIndex) hasSubscribers(topic string) bool {
	_, has := x.lookup(topic)
	return has
}

// subscribers returns the selection of topic's plain subscribers, each
// client's matching subscriptions merged (as selector.subscribers would
// return them for a publish by the broker itself); nil if there is none.
// When the subscriptions matching topic all end at one node, the node's
// selection is returned, shared with every other caller; otherwise a new
// one merges theirs.
func (x *routeIndex) subscribers(topic string) *mochi.Subscribers {
	if topic == "" {
		return nil // not a topic (an alias is resolved before)
	}
	var stack [4]*routeNode
	found := stack[:0]
	x.mu.RLock()
	defer x.mu.RUnlock()
	x.root.match(topic, true, topic[0] == '$', &found)
	switch len(found) {
	case 0:
		return nil
	case 1:
		return found[0].selected()
	}
	n := 0
	for _, node := range found {
		n += len(node.subs)
	}
	subs := &mochi.Subscribers{Subscriptions: make(map[string]packets.Subscription, n)}
	for _, node := range found {
		node.addInline(subs)
		for id, sub := range node.subs {
			have, ok := subs.Subscriptions[id]
			if !ok {
				subs.Subscriptions[id] = sub // alone, its Identifier says what Identifiers would
				continue
			}
			if have.Identifiers == nil {
				have = mergeSubscription(packets.Subscription{}, false, have)
			}
			subs.Subscriptions[id] = mergeSubscription(have, true, sub)
		}
	}
	return subs
}

// selected returns the selection of the subscriptions ending at n, made
// on first use after a change (the caller holds the index's read lock;
// every change clears it under the write lock). It holds n.subs itself,
// not a copy: a later change copies the map first (changeSubs).
func (n *routeNode) selected() *mochi.Subscribers {
	if subs := n.selection.Load(); subs != nil {
		return subs
	}
	subs := &mochi.Subscribers{Subscriptions: n.subs}
	if n.subs == nil {
		subs.Subscriptions = map[string]packets.Subscription{}
	} else {
		n.subsShared.Store(true) // callers racing here share it too
	}
	n.addInline(subs)
	n.selection.Store(subs) // callers racing here store equal selections
	return subs
}

// match appends to *found the nodes below n holding subscriptions that
// match topic (the levels left; first: n is the root; dollar: the topic
// starts with '$').
func (n *routeNode) match(topic string, first, dollar bool, found *[]*routeNode) {
	level, rest, more := strings.Cut(topic, "/")
	wild := !(first && dollar) // [MQTT-4.7.2-1]
	if wild && n.hash != nil {
		n.hash.found(found)
	}
	exact := n.children[level]
	if level == "+" || level == "#" {
		exact = nil // not a topic level
	}
	for _, child := range [2]*routeNode{exact, n.plus} {
		if child == nil || (child == n.plus && !wild) {
			continue
		}
		if more {
			child.match(rest, false, dollar, found)
			continue
		}
		child.found(found)
		if child.hash != nil {
			child.hash.found(found) // "#" matches the parent level [MQTT-4.7.1-2]
		}
	}
}

// addInline adds n's inline subscriptions to subs, without handlers.
func (n *routeNode) addInline(subs *mochi.Subscribers) {
	for id := range n.inline {
		if subs.InlineSubscriptions == nil {
			subs.InlineSubscriptions = map[int]mochi.InlineSubscription{}
		}
		subs.InlineSubscriptions[id] = mochi.InlineSubscription{Subscription: packets.Subscription{Identifier: id}}
	}
}

// found appends n to *found if it holds subscriptions.
func (n *routeNode) found(found *[]*routeNode) {
	if len(n.subs) > 0 || len(n.inline) > 0 {
		*found = append(*found, n)
	}
}

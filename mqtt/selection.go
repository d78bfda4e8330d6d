package mqtt

import (
	"strings"
	"sync"
	"sync/atomic"

	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/mqstream/mqstream/topic"
)

// selector corrects the subscribers mochi's topic index finds for a
// published topic, where mochi v2.7.9 deviates from the specification:
//
//   - "+/#" and any filter whose '#' follows a '+' do not match the parent
//     level when that level was reached through the '+' ("+/#" misses "foo",
//     "a/+/#" misses "a/b") [MQTT-4.7.1-2]. mochi's index cannot be asked for
//     them, so the selector keeps its own small index of such filters and
//     adds the subscriptions that match.
//   - Shared subscriptions whose filter starts with a wildcard match topics
//     starting with '$' [MQTT-4.7.2-1]; they are removed.
//   - Overlapping subscriptions of one client are merged and No Local wins,
//     so a client subscribed to "t" with No Local and to "#" without gets
//     nothing when it publishes on "t" [MQTT-3.8.3-3]; the publisher's own
//     subscriptions are merged again without the No Local ones.
//
// mochi calls OnSelectSubscribers only for topics some shared subscription
// matches, so the selector keeps one shared subscription on "#" (the
// sentinel, which no client holds) in the index to be called for every
// topic, and removes it again from every selection.
type selector struct {
	server *mochi.Server
	// routes indexes the plain subscriptions for ingest's fan-out, which
	// selects from it instead of from mochi's index (routes.go).
	routes *routeIndex

	// plusHashN is the number of filters in plusHash; the selection skips
	// the index while it is 0.
	plusHashN atomic.Int64
	mu        sync.Mutex // guards plusHash
	// plusHash maps filters ending in "+/#" to the ids of the clients that
	// subscribed to them. An entry can outlive its subscription (a session
	// that expired): it is checked against the client's session before use
	// and removed if stale.
	plusHash map[string]map[string]struct{}
}

// The sentinel's filter and client id; a real client never has an empty id
// (mochi assigns one).
const (
	sentinelFilter = "$share/mqstream.sentinel/#"
	sentinelClient = ""
)

func newSelector(s *mochi.Server) *selector {
	sel := &selector{server: s, routes: newRouteIndex(), plusHash: map[string]map[string]struct{}{}}
	s.Topics.Subscribe(sentinelClient, packets.Subscription{Filter: sentinelFilter})
	return sel
}

// subscribers returns the corrected subscribers of topic for a publish by
// origin ("" for the broker itself).
func (s *selector) subscribers(topic, origin string) *mochi.Subscribers {
	return s.correct(s.server.Topics.Subscribers(topic), topic, origin)
}

// correct fixes subs, mochi's selection for topic, in place.
func (s *selector) correct(subs *mochi.Subscribers, topic, origin string) *mochi.Subscribers {
	if m := subs.Shared[sentinelFilter]; m != nil {
		delete(m, sentinelClient)
		if len(m) == 0 {
			delete(subs.Shared, sentinelFilter)
		}
	}
	if topic != "" && topic[0] == '$' {
		for filter := range subs.Shared {
			if f := shareFilter(filter); f != "" && (f[0] == '+' || f[0] == '#') { // [MQTT-4.7.2-1]
				delete(subs.Shared, filter)
			}
		}
	}
	if s.plusHashN.Load() > 0 {
		s.addParentMatches(subs, topic)
	}
	if sub, ok := subs.Subscriptions[origin]; ok && sub.NoLocal && origin != "" {
		s.withoutNoLocal(subs, topic, origin)
	}
	return subs
}

// addParentMatches adds the "+/#" subscriptions mochi missed: those whose
// '#' stands for the parent level, i.e. with one level more than topic.
func (s *selector) addParentMatches(subs *mochi.Subscribers, name string) {
	levels := strings.Count(name, "/") + 1
	type hit struct{ filter, client string }
	var hits []hit
	s.mu.Lock()
	for filter, clients := range s.plusHash {
		if strings.Count(filter, "/") == levels && topic.Match(filter, name) {
			for id := range clients {
				hits = append(hits, hit{filter, id})
			}
		}
	}
	s.mu.Unlock()
	for _, h := range hits {
		cl, ok := s.server.Clients.Get(h.client)
		if !ok {
			s.forget(h.filter, h.client)
			continue
		}
		sub, ok := cl.State.Subscriptions.Get(h.filter)
		if !ok {
			s.forget(h.filter, h.client)
			continue
		}
		have, ok := subs.Subscriptions[h.client]
		subs.Subscriptions[h.client] = mergeSubscription(have, ok, sub)
	}
}

// withoutNoLocal merges the publisher's matching subscriptions again,
// leaving out those with No Local; if none is left it gets no copy.
func (s *selector) withoutNoLocal(subs *mochi.Subscribers, topic, origin string) {
	delete(subs.Subscriptions, origin)
	if sub, ok := s.ownSubscription(topic, origin); ok {
		subs.Subscriptions[origin] = sub
	}
}

// ownSubscription merges the subscriptions of the publisher (origin) that
// match topic and do not have No Local; ok is false if there is none.
func (s *selector) ownSubscription(name, origin string) (merged packets.Subscription, ok bool) {
	cl, found := s.server.Clients.Get(origin)
	if !found {
		return merged, false
	}
	for filter, sub := range cl.State.Subscriptions.GetAll() {
		if sub.NoLocal || mochi.IsSharedFilter(filter) || !topic.Match(filter, name) {
			continue
		}
		merged, ok = mergeSubscription(merged, ok, sub), true
	}
	return merged, ok
}

// mergeSubscription folds sub into acc (have says whether acc holds one
// yet) the way mochi represents a client's matching subscriptions: highest
// QoS, every subscription identifier by filter [MQTT-3.3.4-3].
func mergeSubscription(acc packets.Subscription, have bool, sub packets.Subscription) packets.Subscription {
	if !have {
		acc = sub
		acc.Identifiers = map[string]int{sub.Filter: sub.Identifier}
		return acc
	}
	ids := make(map[string]int, len(acc.Identifiers)+1)
	for k, v := range acc.Identifiers {
		ids[k] = v
	}
	if sub.Identifier > 0 {
		ids[sub.Filter] = sub.Identifier
	}
	acc.Identifiers = ids
	acc.Qos = max(acc.Qos, sub.Qos)
	acc.NoLocal = acc.NoLocal || sub.NoLocal
	acc.RetainAsPublished = acc.RetainAsPublished || sub.RetainAsPublished
	return acc
}

// isInlineSubscriber reports whether cl is mochi's inline client, which
// subscribes for the inline subscriptions (Server.Subscribe).
func isInlineSubscriber(cl *mochi.Client) bool {
	return cl.Net.Inline && cl.ID == mochi.InlineClientId
}

// isPlusHash reports filters whose last two levels are "+/#".
func isPlusHash(filter string) bool {
	return filter == "+/#" || strings.HasSuffix(filter, "/+/#")
}

// shareFilter returns the filter part of "$share/<group>/<filter>" ("" if
// filter is not shared).
func shareFilter(filter string) string {
	if !mochi.IsSharedFilter(filter) {
		return ""
	}
	_, rest, _ := strings.Cut(filter, "/")
	_, f, _ := strings.Cut(rest, "/")
	return f
}

func (s *selector) remember(filter, client string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	clients := s.plusHash[filter]
	if clients == nil {
		clients = map[string]struct{}{}
		s.plusHash[filter] = clients
		s.plusHashN.Add(1)
	}
	clients[client] = struct{}{}
}

func (s *selector) forget(filter, client string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	clients := s.plusHash[filter]
	if clients == nil {
		return
	}
	delete(clients, client)
	if len(clients) == 0 {
		delete(s.plusHash, filter)
		s.plusHashN.Add(-1)
	}
}

// selectionHook applies the selector to every publish mochi fans out and
// keeps the selector's indexes: of "+/#" subscriptions and of routes.
type selectionHook struct {
	mochi.HookBase
	sel *selector
}

func (h *selectionHook) ID() string { return "mqstream-selection" }

func (h *selectionHook) Provides(b byte) bool {
	return b == mochi.OnSelectSubscribers || b == mochi.OnSubscribed || b == mochi.OnUnsubscribed
}

func (h *selectionHook) OnSelectSubscribers(subs *mochi.Subscribers, pk packets.Packet) *mochi.Subscribers {
	return h.sel.correct(subs, pk.TopicName, pk.Origin)
}

// OnSubscribed runs before the other hooks' OnSubscribed (the catch-up's
// relies on it) and before the SUBACK, so a publish routed after the
// SUBACK finds the new subscriptions.
func (h *selectionHook) OnSubscribed(cl *mochi.Client, pk packets.Packet, codes []byte) {
	for i, sub := range pk.Filters {
		if i >= len(codes) || codes[i] > 2 || mochi.IsSharedFilter(sub.Filter) {
			continue
		}
		if isInlineSubscriber(cl) {
			h.sel.routes.addInline(sub)
			continue
		}
		if isPlusHash(sub.Filter) {
			h.sel.remember(sub.Filter, cl.ID)
		}
		if stored, ok := cl.State.Subscriptions.Get(sub.Filter); ok {
			sub = stored // as mochi indexed it
		}
		h.sel.routes.add(cl.ID, sub)
	}
}

func (h *selectionHook) OnUnsubscribed(cl *mochi.Client, pk packets.Packet) {
	for _, sub := range pk.Filters {
		if isInlineSubscriber(cl) {
			h.sel.routes.removeInline(sub.Filter, sub.Identifier)
			continue
		}
		if isPlusHash(sub.Filter) {
			h.sel.forget(sub.Filter, cl.ID)
		}
		h.sel.routes.remove(sub.Filter, cl.ID)
	}
}

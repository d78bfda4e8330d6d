package mqtt

import (
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/mqstream/mqstream/topic"
)

// Catch-up on SUBSCRIBE (issue 13).
//
// mochi reads every connection on its own goroutine. When client B sends
// SUBSCRIBE and client A sends PUBLISH a fraction of a millisecond later,
// the two goroutines can read them in the opposite order (the runtime
// wakes them in one batch, or B's goroutine waits for a CPU), and A's
// message is routed before B's subscription exists: B misses a message
// that reached the server after its SUBSCRIBE. A single-threaded broker
// (mosquitto) handles them in arrival order. The Eclipse Paho suite's
// test_request_response and test_subscribe_options publish right after
// the other client's SUBSCRIBE and lose their message this way about one
// run in two. (subscriptionOrder, order.go, covers the case where B's
// SUBSCRIBE was read first.)
//
// So a new subscription also gets the messages other clients published in
// the catch-up window (Options.CatchUpWindow, 20 ms) before it took
// effect, after the subscriber's CONNACK, and that did not reach the
// client. (A client that connects just after a burst of messages does
// not get them: it could not have subscribed before them.) The specification orders
// messages only per connection, so a message another client published
// concurrently with the SUBSCRIBE may be delivered or not; delivering it
// is what a client that sent SUBSCRIBE first expects. Not caught up: the
// subscriber's own publishes (their order relative to its SUBSCRIBE is
// known), messages the client got through another subscription, retained
// messages (sent on SUBSCRIBE anyway, unless Retain Handling says not to:
// then they are caught up like the others), shared subscriptions
// (consumer groups start at their own position), and messages with a
// payload over recentMaxPayload or beyond recentMaxBytes in the window.
//
// How it is exact: every routed message takes a sequence number before
// its subscribers are looked up and is then recorded, with the set of
// clients it was delivered to, in a ring. The catch-up runs in
// OnSubscribed, after the subscription is in mochi's index and the
// selector's route index (routes.go): it reads the sequence number S, and
// takes the recorded messages up to S that did not go to the client.
// Messages numbered after S were looked up after the subscription was in
// the index and reach the client live. The catch-up is queued before the
// SUBSCRIBE's ticket is returned (order.go), so no message routed after it
// overtakes it. (Messages routed by mochi itself, not by ingest, are
// numbered after mochi's lookup: one routed at the same instant as the
// subscription is inserted can still be missed.)

const (
	// recentSlots is the ring's size: at 200k messages/s it holds 20 ms.
	recentSlots = 4096
	// recentMaxPayload: larger messages are not kept for catch-up.
	recentMaxPayload = 64 << 10
	// recentMaxBytes bounds the payload bytes the ring holds.
	recentMaxBytes = 8 << 20
	// defaultCatchUpWindow is Options.CatchUpWindow's default.
	defaultCatchUpWindow = 20 * time.Millisecond
)

// recentPublishes is the ring of recently routed messages.
type recentPublishes struct {
	window time.Duration
	seq    atomic.Uint64
	bytes  atomic.Int64
	slots  [recentSlots]atomic.Pointer[recentPublish]
}

// recentPublish is one routed message. pk is the packet its deliveries
// share (never changed once routed; nil unless kept); kept says whether
// it may be caught up at all.
type recentPublish struct {
	seq  uint64
	at   int64 // unix nanoseconds
	kept bool
	size int64 // the bytes of pk counted in recentMaxBytes, when kept
	pk   *packets.Packet
	// The clients it was queued for: the selection (read-only) or, when
	// mochi routed it, their ids.
	subs *mochi.Subscribers
	ids  []string
}

func newRecentPublishes(window time.Duration) *recentPublishes {
	if window == 0 {
		window = defaultCatchUpWindow
	}
	if window < 0 {
		return nil
	}
	return &recentPublishes{window: window}
}

// reserve numbers a message about to be routed; call it before looking up
// its subscribers and then always call put with the number. 0 when off.
func (r *recentPublishes) reserve() uint64 {
	if r == nil {
		return 0
	}
	return r.seq.Add(1)
}

// put records message seq: pk as routed, with its origin, which its
// deliveries share and nobody changes any more (the ring keeps the
// pointer, not a copy: a copy of every message routed was a fifth of the
// allocations of a node at full load).
func (r *recentPublishes) put(seq uint64, pk *packets.Packet, subs *mochi.Subscribers, ids []string) {
	if r == nil || seq == 0 {
		return
	}
	e := &recentPublish{seq: seq, at: time.Now().UnixNano(), subs: subs, ids: ids}
	if size := int64(len(pk.Payload) + len(pk.TopicName)); len(pk.Payload) <= recentMaxPayload {
		if r.bytes.Add(size) <= recentMaxBytes {
			e.kept, e.size = true, size
			e.pk = pk
		} else {
			r.bytes.Add(-size)
		}
	}
	r.store(e)
}

// skip records message seq as one that is not caught up.
func (r *recentPublishes) skip(seq uint64) {
	if r != nil && seq != 0 {
		r.store(&recentPublish{seq: seq, at: time.Now().UnixNano()})
	}
}

func (r *recentPublishes) store(e *recentPublish) {
	slot := &r.slots[e.seq%recentSlots]
	for {
		old := slot.Load()
		if old != nil && old.seq > e.seq {
			e.release(r) // overtaken by a message a whole ring later
			return
		}
		if slot.CompareAndSwap(old, e) {
			old.release(r)
			return
		}
	}
}

// release gives back e's share of the byte budget.
func (e *recentPublish) release(r *recentPublishes) {
	if e != nil && e.kept {
		r.bytes.Add(-e.size) // not read off e.pk: a cold cache line by now
	}
}

// reached reports whether the message was queued for client id.
func (e *recentPublish) reached(id string) bool {
	if e.subs != nil {
		_, ok := e.subs.Subscriptions[id]
		return ok
	}
	return slices.Contains(e.ids, id)
}

// upTo returns the kept messages numbered up to seq and routed within the
// window, oldest first. It waits briefly for numbers reserved but not yet
// recorded.
func (r *recentPublishes) upTo(seq uint64) []*recentPublish {
	cutoff := time.Now().Add(-r.window).UnixNano()
	var out []*recentPublish
	var deadline time.Time
	for s := seq; s > 0 && s+recentSlots > seq; s-- {
		e := r.slots[s%recentSlots].Load()
		for e == nil || e.seq < s {
			// Reserved, about to be recorded (a lookup takes
			// microseconds); give up after a few milliseconds.
			if deadline.IsZero() {
				deadline = time.Now().Add(5 * time.Millisecond)
			} else if time.Now().After(deadline) {
				break
			}
			runtime.Gosched()
			e = r.slots[s%recentSlots].Load()
		}
		if e == nil || e.seq != s {
			if e != nil && e.seq > s {
				break // the ring went round: older ones are gone
			}
			continue
		}
		if e.at < cutoff {
			break
		}
		if e.kept {
			out = append(out, e)
		}
	}
	slices.Reverse(out)
	return out
}

// catchUpHook gives new subscriptions the messages of the catch-up window
// they missed. It runs after the delivery hook's and ingest's OnSubscribed.
type catchUpHook struct {
	mochi.HookBase
	recent   *recentPublishes
	subs     *routeIndex
	delivery *deliveryHook
	// fresh holds, per client, the filters of the SUBSCRIBE being
	// processed that the client did not hold yet, from OnSubscribe to
	// OnSubscribed (only the client's read goroutine touches its entry).
	fresh sync.Map // *mochi.Client -> []string
	// since holds, per connection, the last message number routed before
	// its CONNACK: older messages were published before the client could
	// have subscribed and are never caught up.
	since sync.Map // *mochi.Client -> uint64
}

func (h *catchUpHook) ID() string { return "mqstream-catch-up" }

func (h *catchUpHook) Provides(b byte) bool {
	switch b {
	case mochi.OnSubscribe, mochi.OnSubscribed, mochi.OnSessionEstablish, mochi.OnDisconnect:
		return true
	}
	return false
}

// OnSessionEstablish notes where the connection's catch-ups may start.
// It runs before mochi sends the CONNACK: OnSessionEstablished runs after
// it, and a client that got its CONNACK could have another client publish
// (and the message be routed) before that goroutine got a CPU, so its
// subscription missed the message for good (seen in CI under load).
func (h *catchUpHook) OnSessionEstablish(cl *mochi.Client, _ packets.Packet) {
	if !cl.Net.Inline {
		h.since.Store(cl, h.recent.seq.Load())
	}
}

func (h *catchUpHook) OnDisconnect(cl *mochi.Client, _ error, _ bool) {
	h.since.Delete(cl)
	h.fresh.Delete(cl)
}

// OnSubscribe notes the new filters: messages matching a subscription the
// client held already reached it (live, or caught up when it was made).
func (h *catchUpHook) OnSubscribe(cl *mochi.Client, pk packets.Packet) packets.Packet {
	if cl.Net.Inline {
		return pk
	}
	var fresh []string
	for _, f := range pk.Filters {
		if _, ok := cl.State.Subscriptions.Get(f.Filter); !ok && !mochi.IsSharedFilter(f.Filter) {
			fresh = append(fresh, f.Filter)
		}
	}
	if len(fresh) > 0 {
		h.fresh.Store(cl, fresh)
	}
	return pk
}

// OnSubscribed queues the missed messages for the new subscriptions (as
// mochi keeps them: the delivery hook has put their Retain Handling back
// by now).
func (h *catchUpHook) OnSubscribed(cl *mochi.Client, pk packets.Packet, codes []byte) {
	v, ok := h.fresh.LoadAndDelete(cl)
	if !ok {
		return
	}
	fresh := v.([]string)
	// Lookups numbered after seq see the new subscriptions (the
	// selection hook put them in the route index).
	seq := h.recent.seq.Load()
	// Only the new filters are looked at here, not every subscription the
	// client holds: a client subscribing 100,000 filters 100 at a time
	// would copy them all at each SUBSCRIBE (docs/performance.md).
	var subs []packets.Subscription
	for i, filter := range fresh {
		if slices.Contains(fresh[:i], filter) || !accepted(pk, codes, filter) {
			continue
		}
		if sub, ok := cl.State.Subscriptions.Get(filter); ok {
			subs = append(subs, sub)
		}
	}
	if len(subs) == 0 {
		return
	}
	var since uint64
	if v, ok := h.since.Load(cl); ok {
		since = v.(uint64)
	}
	var held []packets.Subscription // read on the first message to catch up
	heldRead := false
	for _, e := range h.recent.upTo(seq) {
		if e.seq <= since || e.pk.Origin == cl.ID || e.reached(cl.ID) {
			continue
		}
		if !heldRead {
			held, heldRead = heldSubscriptions(cl, fresh), true
		}
		if matchesAny(held, e.pk.TopicName) {
			continue
		}
		var merged packets.Subscription
		matched := false
		for _, sub := range subs {
			if !topic.Match(sub.Filter, e.pk.TopicName) {
				continue
			}
			if e.pk.FixedHeader.Retain && sub.RetainHandling != 2 {
				continue // sent on SUBSCRIBE as the retained message
			}
			merged, matched = mergeSubscription(merged, matched, sub), true
		}
		if matched {
			msg := e.pk
			h.delivery.deliver(cl.ID, merged, e.pk, &msg, false)
		}
	}
}

// heldSubscriptions returns cl's plain subscriptions other than those to
// the fresh filters: messages matching them reached the client already.
func heldSubscriptions(cl *mochi.Client, fresh []string) []packets.Subscription {
	var held []packets.Subscription
	for filter, sub := range cl.State.Subscriptions.GetAll() {
		if !slices.Contains(fresh, filter) && !mochi.IsSharedFilter(filter) {
			held = append(held, sub)
		}
	}
	return held
}

// accepted reports whether the SUBACK granted filter.
func accepted(pk packets.Packet, codes []byte, filter string) bool {
	for i, f := range pk.Filters {
		if f.Filter == filter && i < len(codes) && codes[i] <= 2 {
			return true
		}
	}
	return false
}

func matchesAny(subs []packets.Subscription, name string) bool {
	for _, sub := range subs {
		if topic.Match(sub.Filter, name) {
			return true
		}
	}
	return false
}

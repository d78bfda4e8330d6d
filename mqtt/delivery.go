package mqtt

import (
	"log/slog"
	"math"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/mochi-mqtt/server/v2/system"

	"github.com/mqstream/mqstream/streams"
)

// deliveryHook takes every message mochi fans out to ordinary subscribers
// and queues it on the subscribers' sessions (outbound.go), delivers
// retained messages on SUBSCRIBE (retained.go), follows acknowledgements and
// the sessions' life, and publishes the delivery counters in $SYS.
type deliveryHook struct {
	mochi.HookBase
	server *mochi.Server
	sel    *selector
	out    *outbound
	st     *stateStore // nil: no broker state on disk
	log    *slog.Logger
	// acl says whether cl may receive messages on topic.
	acl func(cl *mochi.Client, topic string) bool
	sys *mochi.Client // publishes the $SYS counters
	// retained keeps retained messages (statehook.go).
	retained *retainer
	// recent keeps routed messages for catch-up (catchup.go; nil: off).
	recent *recentPublishes
	// remote carries messages to other nodes' subscribers (remote.go; nil:
	// standalone).
	remote Remote

	// subscribing holds, per client, the subscriptions of the SUBSCRIBE
	// being processed (retained.go), from OnSubscribe to OnSubscribed. Only
	// the client's read goroutine touches its entry.
	subscribing sync.Map // *mochi.Client -> []retainedRequest
	// selected, if set (tests), is called first by OnSelectSubscribers:
	// mochi has looked the message's subscribers up.
	selected atomic.Pointer[func(pk *packets.Packet)]
}

func (h *deliveryHook) ID() string { return "mqstream-delivery" }

func (h *deliveryHook) Provides(b byte) bool {
	switch b {
	case mochi.OnSelectSubscribers, mochi.OnQosComplete, mochi.OnQosDropped,
		mochi.OnSessionEstablish, mochi.OnSessionEstablished, mochi.OnDisconnect, mochi.OnClientExpired,
		mochi.OnSubscribe, mochi.OnSubscribed, mochi.OnSysInfoTick, mochi.OnRetainMessage:
		return true
	}
	return false
}

// OnSelectSubscribers queues the message for every selected subscriber
// and leaves mochi nobody to send it to. Shared subscriptions are served by
// consumer groups from the streams (groups.go), never live.
func (h *deliveryHook) OnSelectSubscribers(subs *mochi.Subscribers, pk packets.Packet) *mochi.Subscribers {
	if f := h.selected.Load(); f != nil {
		(*f)(&pk)
	}
	var msg *packets.Packet // one copy shared by every delivery
	if delayedWill(&pk) {
		pk.Expiry = 0 // mochi's due time, not an expiry (will.go)
		if pk.FixedHeader.Retain {
			h.retained.retain(&pk) // before it is delivered (will.go)
		}
	}
	h.forward(&pk, pk.Origin)
	if h.recent != nil {
		ids := make([]string, 0, len(subs.Subscriptions))
		for id := range subs.Subscriptions {
			ids = append(ids, id)
		}
		shared := pk // pk itself stays this hook's to change
		msg = &shared
		h.recent.put(h.recent.reserve(), msg, nil, ids)
	}
	for id, sub := range subs.Subscriptions {
		h.deliver(id, sub, &pk, &msg, false)
	}
	clear(subs.Subscriptions)
	clear(subs.Shared)
	return subs
}

// publish delivers a message ingest accepted from client origin, as mochi
// does when the message is injected again but without a second pass
// through mochi's publish processing: retained if flagged [MQTT-3.3.1-5],
// then queued for every subscriber in subs (the corrected selection of its
// topic, from ingest's cache; nil if none; looked up after seq was
// reserved for catch-up, catchup.go). mochi's OnRetainMessage and
// OnPublished hooks are not called (the retained message is written to
// disk here); messages for inline subscriptions still go through mochi
// (ingest checks). It returns the broker-state submission that must be
// durable before the publisher is acknowledged (0: none). pk is shared
// from then on (deliverAll): the caller does not change it any more.
func (h *deliveryHook) publish(pk *packets.Packet, origin string, subs *mochi.Subscribers, seq uint64) uint64 {
	if pk.Origin != origin || pk.Created == 0 { // mochi sets them as it reads a publish
		pk.Origin = origin
		pk.Created = time.Now().Unix()
		if pk.Properties.MessageExpiryInterval > 0 {
			pk.Expiry = pk.Created + int64(pk.Properties.MessageExpiryInterval)
		}
	}
	var mark uint64
	if pk.FixedHeader.Retain {
		mark = h.retained.retain(pk)
	}
	h.forward(pk, origin)
	return max(mark, h.deliverAll(pk, origin, subs, seq))
}

// deliverAll queues pk, published by client origin, for every subscriber
// in subs (may be nil) and records it for catch-up under seq. It returns
// the broker-state submission of the deliveries (0: none). The deliveries
// and the catch-up ring share pk: nobody changes it afterwards.
func (h *deliveryHook) deliverAll(pk *packets.Packet, origin string, subs *mochi.Subscribers, seq uint64) uint64 {
	h.recent.put(seq, pk, subs, nil)
	msg := pk // shared by every delivery
	if subs == nil {
		return 0
	}
	var mark uint64
	for id, sub := range subs.Subscriptions {
		if id == origin && sub.NoLocal {
			own, ok := h.sel.ownSubscription(pk.TopicName, origin) // [MQTT-3.8.3-3]
			if !ok {
				continue
			}
			sub = own
		}
		mark = max(mark, h.deliver(id, sub, pk, &msg, false))
	}
	return mark
}

// deliver queues pk for client id under subscription sub (the merge of the
// client's matching subscriptions). retained says the message is sent
// because of a new subscription. *msg is the shared copy of pk, made on
// first use. It returns the broker-state submission of the delivery (0:
// none; see session.enqueue).
func (h *deliveryHook) deliver(id string, sub packets.Subscription, pk *packets.Packet, msg **packets.Packet, retained bool) uint64 {
	if sub.NoLocal && pk.Origin == id && !retained {
		// [MQTT-3.8.3-3] No Local is about forwarding a connection's
		// publishes back to it; a retained message sent because of a new
		// SUBSCRIBE is not forwarded, so the client gets its own retained
		// message like any other (as mosquitto does; compatibility.md).
		return 0
	}
	cl, ok := h.server.Clients.Get(id)
	if !ok || !h.acl(cl, pk.TopicName) {
		return 0
	}
	if pk.Expiry > 0 && pk.Expiry <= time.Now().Unix() {
		return 0 // [MQTT-3.3.2-5]
	}
	if *msg == nil {
		c := *pk
		*msg = &c
	}
	d := &delivery{pk: *msg, qos: min(pk.FixedHeader.Qos, sub.Qos), subIDs: subscriptionIDs(sub)}
	// The RETAIN flag goes out as published only for retained messages sent
	// on SUBSCRIBE [MQTT-3.3.1-9] or to MQTT 5 subscriptions with Retain As
	// Published [MQTT-3.3.1-12] [MQTT-3.3.1-13].
	d.retain = pk.FixedHeader.Retain && (retained || (cl.Properties.ProtocolVersion == 5 && sub.RetainAsPublished))
	if s := h.out.session(cl); s != nil {
		return s.enqueue(d)
	}
	return 0
}

// subscriptionIDs lists the subscription identifiers of the matching
// subscriptions, ascending; 0 means none and is never sent.
func subscriptionIDs(sub packets.Subscription) []int {
	var ids []int
	if sub.Identifiers == nil && sub.Identifier > 0 {
		return []int{sub.Identifier}
	}
	for _, id := range sub.Identifiers {
		if id > 0 {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	return ids
}

// OnQosComplete: the client acknowledged a delivery (PUBACK, PUBCOMP).
func (h *deliveryHook) OnQosComplete(cl *mochi.Client, pk packets.Packet) {
	if v, ok := h.out.sessions.Load(cl.ID); ok {
		v.(*session).acked(cl, pk.PacketID, pk.ReasonCode)
	}
}

// OnQosDropped: a delivery's flow ended without completion (a PUBREC with
// an error code, or mochi clearing the session).
func (h *deliveryHook) OnQosDropped(cl *mochi.Client, pk packets.Packet) {
	h.OnQosComplete(cl, pk)
}

// OnSessionEstablish runs before mochi moves a session to a new
// connection: the old connection's deliveries in flight leave its
// in-flight map (mochi would resend them all at once, unordered); a clean
// start ends the session. The session of a persistent client is written
// to disk before its CONNACK (statehook.go).
//
// Connections with one client id are established one at a time
// (takeover.go): the previous connection's OnSessionEstablished has run, so
// the session is not attached to it again after this.
func (h *deliveryHook) OnSessionEstablish(cl *mochi.Client, pk packets.Packet) {
	old, found := h.server.Clients.Get(cl.ID)
	if found && old != cl {
		// mochi writes a DISCONNECT to the old connection before it
		// closes it; a client that stopped reading must not hold that up.
		unblockWrites(old)
	}
	// mochi hands the session over unless this is a clean start or the
	// previous connection's MQTT 3.1.1 session was clean [MQTT-3.1.2-4];
	// otherwise it ends here, not when the previous connection's
	// disconnect is processed (which may come later).
	handedOver := found && old != cl && inherits(pk, old)
	var s *session
	if v, ok := h.out.sessions.Load(cl.ID); ok {
		s = v.(*session)
	} else if handedOver {
		s = h.out.handover(cl)
	} else {
		return
	}
	s.detach(nil)
	if handedOver {
		s.setOwner(cl)
	} else {
		h.end(s)
	}
}

// OnSessionEstablished attaches a resumed session to its new connection,
// after the CONNACK: what was in flight is resent first, in order.
//
// It also takes flow control away from mochi's quotas. The send quota is
// zeroed: mqstream limits deliveries itself, and with a quota left mochi
// looks for parked messages after every packet it reads, in a way that
// deadlocks (Inflight.NextImmediate read-locks the in-flight map twice; a
// writer queued in between, e.g. a delivery reserving an id, blocks both
// forever). The receive quota is made unlimited: mochi lowers it for every
// QoS 2 delivery past PUBREC, and disconnects a client whose deliveries
// wait for PUBCOMP when it publishes [MQTT-3.3.4-7]; ingest bounds the
// client's own publishes (Options.ReceiveMaximum).
func (h *deliveryHook) OnSessionEstablished(cl *mochi.Client, pk packets.Packet) {
	cl.State.Inflight.ResetSendQuota(0)
	cl.State.Inflight.ResetReceiveQuota(math.MaxInt32)
	v, ok := h.out.sessions.Load(cl.ID)
	if !ok {
		return
	}
	s := v.(*session)
	if prev := s.currentOwner(); prev != nil && prev != cl {
		// Made for the previous connection while this one was being
		// established (a delivery found it in mochi's client list).
		if !inherits(pk, prev) {
			// Not this client's: it has no subscriptions yet, so none of
			// the session's deliveries, here or on disk, are for it.
			h.end(s)
			if h.st != nil {
				h.st.submit([]streams.KVWrite{
					{Key: clientKey(keyQueue, cl.ID, 0), DeletePrefix: true},
					{Key: clientKey(keySent, cl.ID, 0), DeletePrefix: true},
				}, false, nil)
			}
			return
		}
		s.setOwner(cl)
	}
	s.attach(cl)
}

// inherits says, as mochi decides, whether a connection with CONNECT pk
// takes over the session of the previous connection prev: not on a clean
// start, nor from an MQTT 3.1.1 clean session [MQTT-3.1.2-4].
func inherits(pk packets.Packet, prev *mochi.Client) bool {
	return !pk.Connect.Clean && !(prev.Properties.Clean && prev.Properties.ProtocolVersion < 5)
}

// OnDisconnect ends the session or keeps it for the client's return.
func (h *deliveryHook) OnDisconnect(cl *mochi.Client, _ error, expire bool) {
	ends := expire && !cl.IsTakenOver()
	if v, ok := h.out.sessions.Load(cl.ID); ok {
		s := v.(*session)
		if ends {
			if s.ownedBy(cl) { // not handed over to a newer connection
				h.end(s)
			} else {
				s.detach(cl)
			}
		} else {
			s.detach(cl)
		}
	}
}

// OnClientExpired ends an absent client's session, subscriptions
// included: mochi forgets the client but leaves its subscriptions in the
// topic index, where the next client with that id would inherit their
// messages [MQTT-3.1.2-23].
func (h *deliveryHook) OnClientExpired(cl *mochi.Client) {
	h.server.UnsubscribeClient(cl)
	if v, ok := h.out.sessions.Load(cl.ID); ok && v.(*session).ownedBy(cl) {
		h.end(v.(*session))
	}
}

// end forgets a session that ended (the caller deletes it from disk).
func (h *deliveryHook) end(s *session) {
	h.out.sessions.CompareAndDelete(s.id, s)
	s.discard()
	if h.st != nil {
		h.st.p.purge(s)
	}
}

// OnSysInfoTick publishes the delivery counters next to mochi's $SYS
// topics (retained, like them).
func (h *deliveryHook) OnSysInfoTick(*system.Info) {
	for topic, v := range map[string]int64{
		mochi.SysPrefix + "/broker/publish/messages/dropped": h.out.dropped.Load(),
		mochi.SysPrefix + "/broker/messages/queued":          h.out.queued.Load(),
	} {
		err := h.server.InjectPacket(h.sys, packets.Packet{
			FixedHeader: packets.FixedHeader{Type: packets.Publish, Retain: true},
			TopicName:   topic,
			Payload:     []byte(strconv.FormatInt(v, 10)),
		})
		if err == nil {
			// mochi counts injected packets as received; its own $SYS
			// messages are not.
			atomic.AddInt64(&h.server.Info.PacketsReceived, -1)
			atomic.AddInt64(&h.server.Info.MessagesReceived, -1)
		}
	}
}

// takeoverWriteGrace bounds how long a write to a connection being taken
// over or shut down may block (a client that stopped reading).
const takeoverWriteGrace = time.Second

// unblockWrites makes writes to cl's connection, the one blocked now
// included, fail after takeoverWriteGrace: its session's writer and mochi's
// own writes hold the client's lock while they write, and mochi takes that
// lock to send DISCONNECT before it closes a connection.
func unblockWrites(cl *mochi.Client) {
	if conn := cl.Net.Conn; conn != nil {
		_ = conn.SetWriteDeadline(time.Now().Add(takeoverWriteGrace))
	}
}

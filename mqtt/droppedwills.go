package mqtt

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// Wills mochi drops.
//
// mochi v2.7.9 publishes a client's will only when reading its connection
// fails (Server.attachClient). When the server closes a connection whose
// read goroutine is not blocked reading, cl.Read finds the client closed
// and returns nil, as after a DISCONNECT from the client, and mochi
// deletes the will unpublished. That happens to a client stopped while its
// session is being established (the OnSessionEstablished hooks run after
// the CONNACK and before the first read: a broker that stopped just then
// lost the wills of the clients connecting, seen in
// TestWillsOfAStoppingNodeAreStoredAndDelivered) and to one stopped while
// a packet of its is processed (a publisher disconnected by a stopping
// broker, a protocol error found by ingest). mochi also deletes the will
// after any DISCONNECT from the client but one of reason 0x04 (Disconnect
// with Will Message), while MQTT discards it only for reason 0x00: a
// client that ends with another reason (an error, 0x80 and above) has its
// will published. And mochi reads no reason code from a DISCONNECT whose
// Remaining Length is 1, the reason code alone (libmosquitto and the
// Paho test client send a reason other than 0x00 so when they have no
// properties to add), taking it for 0x00: such a DISCONNECT counts as
// one with a reason other than 0x00, as MQTT lets a client leave out the
// reason code when it is 0x00 and no properties follow (3.14.2.1).
// MQTT wants the will published whenever the connection closes without a
// DISCONNECT of reason 0x00 from the client [MQTT-3.1.2-8]
// [MQTT-3.14.4-3].
//
// droppedWillsHook keeps each connection's will from its session's
// establishment on, and when mochi ends a connection without having
// published or discarded the will for a reason MQTT allows, publishes it
// through Broker.Publish (stored, retained and delivered cluster-wide, as
// the wills of a failed node's clients are; clusterwills.go). A will with
// a Will Delay Interval is published at once when the session ends with
// the connection; otherwise it is handed back to the session, whose record
// then keeps it with its due time (a restarted node publishes it when
// due, staterestore.go), and a running broker publishes it when due
// unless the client connected again first, here or on another node
// [MQTT-3.1.3-9] (scheduleWill).
type droppedWillsHook struct {
	mochi.HookBase
	b *Broker

	// wills holds the will of each connection that has one, from
	// OnSessionEstablished to OnDisconnect.
	wills sync.Map // *mochi.Client -> *keptWill

	// published counts the wills published at once here (tests).
	published atomic.Int64
}

// keptWill is a connection's will, and whether the client's DISCONNECT
// asked for it to be published.
type keptWill struct {
	will mochi.Will
	// publish: the client's DISCONNECT (MQTT 5) had a reason code other
	// than 0x00. Set on the client's read goroutine before mochi
	// processes the packet, read on that goroutine in OnDisconnect.
	publish bool
}

func newDroppedWillsHook(b *Broker) *droppedWillsHook {
	return &droppedWillsHook{b: b}
}

func (h *droppedWillsHook) ID() string { return "mqstream-dropped-wills" }

func (h *droppedWillsHook) Provides(b byte) bool {
	return b == mochi.OnSessionEstablished || b == mochi.OnDisconnect || b == mochi.OnPacketRead
}

// OnSessionEstablished keeps cl's will.
func (h *droppedWillsHook) OnSessionEstablished(cl *mochi.Client, _ packets.Packet) {
	if !cl.Net.Inline && atomic.LoadUint32(&cl.Properties.Will.Flag) == 1 && cl.Properties.Will.TopicName != "" {
		h.wills.Store(cl, &keptWill{will: cl.Properties.Will})
	}
}

// OnPacketRead notes a DISCONNECT whose reason code is not 0x00,
// including one of Remaining Length 1, whose reason code mochi does not
// read.
func (h *droppedWillsHook) OnPacketRead(cl *mochi.Client, pk packets.Packet) (packets.Packet, error) {
	if pk.FixedHeader.Type == packets.Disconnect && (pk.ReasonCode != packets.CodeSuccess.Code ||
		pk.ProtocolVersion == 5 && pk.FixedHeader.Remaining == 1) {
		if v, ok := h.wills.Load(cl); ok {
			v.(*keptWill).publish = true
		}
	}
	return pk, nil
}

// OnDisconnect publishes the will mochi dropped, if it did. It runs on the
// client's goroutine before mochi forgets the client, so a stopping broker
// waits for it (ClientsWg) before its store closes.
func (h *droppedWillsHook) OnDisconnect(cl *mochi.Client, err error, expire bool) {
	v, ok := h.wills.LoadAndDelete(cl)
	if !ok || err != nil {
		return // mochi published it (a failed read), or there was none
	}
	kept := v.(*keptWill)
	cause := cl.StopCause()
	if cause == nil || (errors.Is(cause, packets.CodeDisconnect) && !kept.publish) {
		return // the client's DISCONNECT 0x00 deleted it [MQTT-3.1.2-10] [MQTT-3.14.4-3]
	}
	will := kept.will
	if will.WillDelayInterval > 0 && !expire {
		h.delay(cl, will)
		return
	}
	h.publish(cl.ID, will)
}

// delay hands a delayed will back to cl's persistent session and
// schedules it.
func (h *droppedWillsHook) delay(cl *mochi.Client, will mochi.Will) {
	if errors.Is(cl.StopCause(), packets.ErrSessionTakenOver) || cl.IsTakenOver() {
		return // a newer connection resumes the session: no will [MQTT-3.1.3-9]
	}
	// The state hook (after this one) writes it into the session record.
	cl.Properties.Will = will
	delay := time.Duration(will.WillDelayInterval) * time.Second
	if exp := time.Duration(cl.Properties.Props.SessionExpiryInterval) * time.Second; cl.Properties.ProtocolVersion == 5 && exp < delay {
		delay = exp // the session ends first
	}
	// Not scheduled once the broker stops: the record keeps it.
	h.b.scheduleWill(pendingWill{id: cl.ID, cl: cl, will: will, due: time.Now().Add(delay)})
}

// publish publishes client's will.
func (h *droppedWillsHook) publish(client string, will mochi.Will) {
	m := willMessage(will)
	m.ClientID = client // stored as its client's
	ctx, cancel := context.WithTimeout(context.Background(), drainTimeout)
	defer cancel()
	if _, err := h.b.Publish(ctx, m); err != nil {
		h.b.log.Warn("will not published", "client", client, "topic", will.TopicName, "error", err)
		return
	}
	h.published.Add(1)
}

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
// broker, a protocol error found by ingest). MQTT wants the will
// published whenever the connection closes without a DISCONNECT of reason
// 0x00 from the client [MQTT-3.1.2-8] [MQTT-3.14.4-3].
//
// droppedWillsHook keeps each connection's will from its session's
// establishment on, and when mochi ends a connection without having
// published or discarded the will for a reason MQTT allows, publishes it
// through Broker.Publish (stored, retained and delivered cluster-wide, as
// the wills of a failed node's clients are; clusterwills.go). A will with
// a Will Delay Interval is handed back to the session instead: a stopping
// broker keeps it with the persistent session (published on restart,
// staterestore.go) as it does the delayed wills mochi holds; a running
// broker publishes it after its delay unless the client connects again
// first [MQTT-3.1.3-9].
type droppedWillsHook struct {
	mochi.HookBase
	b *Broker

	// wills holds the will of each connection that has one, from
	// OnSessionEstablished to OnDisconnect.
	wills sync.Map // *mochi.Client -> mochi.Will

	mu sync.Mutex // guards delayed and closed
	// delayed holds, by client id, the timers of delayed wills this hook
	// publishes itself.
	delayed map[string]*time.Timer
	closed  bool

	// published counts the wills published here (tests).
	published atomic.Int64
}

func newDroppedWillsHook(b *Broker) *droppedWillsHook {
	return &droppedWillsHook{b: b, delayed: map[string]*time.Timer{}}
}

func (h *droppedWillsHook) ID() string { return "mqstream-dropped-wills" }

func (h *droppedWillsHook) Provides(b byte) bool {
	return b == mochi.OnSessionEstablished || b == mochi.OnDisconnect
}

// OnSessionEstablished keeps cl's will, and cancels a delayed will of an
// earlier connection of the client.
func (h *droppedWillsHook) OnSessionEstablished(cl *mochi.Client, _ packets.Packet) {
	if cl.Net.Inline {
		return
	}
	h.mu.Lock()
	if t := h.delayed[cl.ID]; t != nil {
		t.Stop()
		delete(h.delayed, cl.ID)
	}
	h.mu.Unlock()
	if atomic.LoadUint32(&cl.Properties.Will.Flag) == 1 && cl.Properties.Will.TopicName != "" {
		h.wills.Store(cl, cl.Properties.Will)
	}
}

// OnDisconnect publishes the will mochi dropped, if it did. It runs on the
// client's goroutine before mochi forgets the client, so a stopping broker
// waits for it (ClientsWg) before its store closes.
func (h *droppedWillsHook) OnDisconnect(cl *mochi.Client, err error, _ bool) {
	v, ok := h.wills.LoadAndDelete(cl)
	if !ok || err != nil {
		return // mochi published it (a failed read), or there was none
	}
	if cause := cl.StopCause(); cause == nil || errors.Is(cause, packets.CodeDisconnect) {
		return // the client's DISCONNECT deleted it [MQTT-3.1.2-10]
	}
	will := v.(mochi.Will)
	if will.WillDelayInterval > 0 {
		h.delay(cl, will)
		return
	}
	h.publish(cl.ID, will)
}

// delay hands a delayed will back to a stopping broker's session record,
// or publishes it after its delay.
func (h *droppedWillsHook) delay(cl *mochi.Client, will mochi.Will) {
	if errors.Is(cl.StopCause(), packets.ErrSessionTakenOver) {
		return // a newer connection resumes the session: no will [MQTT-3.1.3-9]
	}
	if h.b.closing.Load() {
		// The state hook (after this one) keeps it with the session.
		cl.Properties.Will = will
		return
	}
	delay := time.Duration(will.WillDelayInterval) * time.Second
	if exp := cl.Properties.Props.SessionExpiryInterval; cl.Properties.ProtocolVersion == 5 && time.Duration(exp)*time.Second < delay {
		delay = time.Duration(exp) * time.Second // the session ends first
	}
	id := cl.ID
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return
	}
	if t := h.delayed[id]; t != nil {
		t.Stop()
	}
	var t *time.Timer
	t = time.AfterFunc(delay, func() {
		h.mu.Lock()
		ok := h.delayed[id] == t && !h.closed
		delete(h.delayed, id)
		h.mu.Unlock()
		if ok {
			h.publish(id, will)
		}
	})
	h.delayed[id] = t
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

// close stops the delayed wills not yet due (as mochi's own are when the
// broker stops).
func (h *droppedWillsHook) close() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.closed = true
	for id, t := range h.delayed {
		t.Stop()
		delete(h.delayed, id)
	}
}

package mqtt

import (
	"hash/fnv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/mqstream/mqstream/streams"
)

// Writing sessions, subscriptions and retained messages to disk
// (state.go): the deliveryHook's part when Options.State is set.

// saveSession runs before the CONNACK of cl: a clean start deletes what
// was kept for the client id; a persistent session (MQTT 3.1.1 clean
// session 0, MQTT 5 session expiry > 0) is written and durable before the
// client is told it exists, and cl becomes its owner. A kept session
// resumed by a connection that does not persist (MQTT 5 clean start 0,
// expiry 0) is rewritten with expiry 0, so a restart drops it.
func (h *deliveryHook) saveSession(cl *mochi.Client, clean bool) {
	var writes []streams.KVWrite
	kept := h.st.owner(cl.ID) != nil
	if clean && kept {
		h.st.disown(cl.ID, nil)
		writes = endWrites(cl.ID)
		kept = false
	}
	if !endsWithConnection(cl) || kept {
		writes = append(writes, streams.KVWrite{Key: clientKey(keySession, cl.ID, 0), Value: encodeSession(sessionOf(cl, 0))})
		h.st.own(cl.ID, cl)
	}
	if len(writes) == 0 {
		return
	}
	if err := h.st.write(writes...); err != nil {
		h.log.Warn("session not saved: it may not survive a restart", "client", cl.ID, "error", err)
	}
}

// sessionOf is what is kept of cl's session; left is when it disconnected
// (unix seconds, 0 while connected).
func sessionOf(cl *mochi.Client, left int64) *sessionRecord {
	p := cl.Properties
	r := &sessionRecord{
		ProtocolVersion:   p.ProtocolVersion,
		Username:          p.Username,
		Listener:          cl.Net.Listener,
		ReceiveMaximum:    p.Props.ReceiveMaximum,
		MaximumPacketSize: p.Props.MaximumPacketSize,
		TopicAliasMaximum: p.Props.TopicAliasMaximum,
		DisconnectedAt:    left,
	}
	if p.ProtocolVersion == 5 {
		r.Expiry = p.Props.SessionExpiryInterval
	}
	if left > 0 && atomic.LoadUint32(&p.Will.Flag) == 1 && p.Will.WillDelayInterval > 0 {
		// mochi holds the will back until the delay (or the session's
		// expiry) has passed: if the node restarts meanwhile, it is
		// published on restart (staterestore.go).
		w := p.Will
		r.Will = &w
		delay := w.WillDelayInterval
		if r.Expiry > 0 {
			delay = min(delay, r.Expiry)
		}
		r.WillDue = left + int64(delay)
	}
	return r
}

// leftSession records (in the background) when a persistent session's
// client left, and its will if one is pending, unless another connection
// took the session over (and owns it now).
func (h *deliveryHook) leftSession(cl *mochi.Client) {
	if h.st.owner(cl.ID) != cl || cl.IsTakenOver() {
		return
	}
	left := cl.StopTime()
	if left == 0 {
		left = time.Now().Unix()
	}
	h.st.submit([]streams.KVWrite{{Key: clientKey(keySession, cl.ID, 0), Value: encodeSession(sessionOf(cl, left))}}, false, nil)
}

// OnWillSent: a delayed will was published; the session no longer has one.
func (h *deliveryHook) OnWillSent(cl *mochi.Client, _ packets.Packet) {
	if cl.Closed() {
		h.leftSession(cl)
	}
}

// saveSubscriptions writes the subscriptions a persistent session was
// granted; they are durable before the SUBACK.
func (h *deliveryHook) saveSubscriptions(cl *mochi.Client, pk packets.Packet, codes []byte) {
	if h.st == nil || cl.Net.Inline || h.st.owner(cl.ID) != cl {
		return
	}
	var writes []streams.KVWrite
	for i, f := range pk.Filters {
		if i >= len(codes) || codes[i] > 2 {
			continue
		}
		if sub, ok := cl.State.Subscriptions.Get(f.Filter); ok {
			writes = append(writes, streams.KVWrite{Key: subscriptionKey(cl.ID, sub.Filter), Value: encodeSubscription(sub)})
		}
	}
	if len(writes) == 0 {
		return
	}
	if err := h.st.write(writes...); err != nil {
		h.log.Warn("subscription not saved: it may not survive a restart", "client", cl.ID, "error", err)
	}
}

// OnUnsubscribed deletes a persistent session's subscriptions; they are
// gone from disk before the UNSUBACK.
func (h *deliveryHook) OnUnsubscribed(cl *mochi.Client, pk packets.Packet) {
	if cl.Net.Inline || cl.IsTakenOver() || h.st.owner(cl.ID) != cl {
		return
	}
	writes := make([]streams.KVWrite, 0, len(pk.Filters))
	for _, f := range pk.Filters {
		writes = append(writes, streams.KVWrite{Key: subscriptionKey(cl.ID, f.Filter), Delete: true})
	}
	if pk.PacketID == 0 {
		h.st.submit(writes, false, nil) // mochi clearing a session, no UNSUBACK
		return
	}
	if err := h.st.write(writes...); err != nil {
		h.log.Warn("unsubscribe not saved: the subscription may come back after a restart", "client", cl.ID, "error", err)
	}
}

// retain retains pk (an empty payload clears the topic [MQTT-3.3.1-6])
// and writes the topic's retained message to disk; it returns the
// submission.
func (h *deliveryHook) retain(pk *packets.Packet) uint64 {
	mu := h.retainLock(pk.TopicName)
	mu.Lock()
	defer mu.Unlock()
	h.server.Topics.RetainMessage(pk.Copy(false))
	atomic.StoreInt64(&h.server.Info.Retained, int64(h.server.Topics.Retained.Len()))
	return h.storeRetainedLocked(pk.TopicName)
}

func (h *deliveryHook) retainLock(topic string) *sync.Mutex {
	f := fnv.New32a()
	_, _ = f.Write([]byte(topic))
	return &h.retainMu[f.Sum32()%uint32(len(h.retainMu))]
}

// storeRetainedLocked writes what memory holds for topic now (the message,
// or its absence) and returns the submission; the topic's retain lock is
// held, so writes for one topic reach the disk in the order memory
// changed. $SYS topics are not kept: the broker publishes them again.
func (h *deliveryHook) storeRetainedLocked(topic string) uint64 {
	if h.st == nil || strings.HasPrefix(topic, mochi.SysPrefix) {
		return 0
	}
	w := streams.KVWrite{Key: retainedKey(topic)}
	if pk, ok := h.server.Topics.Retained.Get(topic); ok {
		w.Value = encodeRetained(&pk)
	} else {
		w.Delete = true
	}
	return h.st.submit([]streams.KVWrite{w}, false, nil)
}

// storeRetained writes topic's retained message as memory holds it.
func (h *deliveryHook) storeRetained(topic string) uint64 {
	mu := h.retainLock(topic)
	mu.Lock()
	defer mu.Unlock()
	return h.storeRetainedLocked(topic)
}

// OnRetainMessage writes a message mochi retained itself (a QoS 0 publish
// it handled, a will).
func (h *deliveryHook) OnRetainMessage(_ *mochi.Client, pk packets.Packet, _ int64) {
	h.storeRetained(pk.TopicName)
}

// OnRetainedExpired deletes a retained message whose expiry passed (unless
// a newer one took its place meanwhile).
func (h *deliveryHook) OnRetainedExpired(topic string) {
	h.storeRetained(topic)
}

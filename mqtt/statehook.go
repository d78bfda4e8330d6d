package mqtt

import (
	"hash/fnv"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/mqstream/mqstream/streams"
)

// stateHook writes broker state to disk (state.go) when Options.State is
// set: a persistent session before its CONNACK, its subscriptions before
// the SUBACK or UNSUBACK, when its client left and its pending will, and
// the retained messages mochi retains or expires itself. It runs after the
// delivery hook for the same events. The queues of persistent sessions are
// kept on disk by their sessions themselves (sessionstore.go).
type stateHook struct {
	mochi.HookBase
	st       *stateStore
	retained *retainer
	log      *slog.Logger
}

func (h *stateHook) ID() string { return "mqstream-state" }

func (h *stateHook) Provides(b byte) bool {
	switch b {
	case mochi.OnSessionEstablish, mochi.OnDisconnect, mochi.OnClientExpired, mochi.OnSubscribed,
		mochi.OnUnsubscribed, mochi.OnWillSent, mochi.OnRetainMessage, mochi.OnRetainedExpired:
		return true
	}
	return false
}

// OnSessionEstablish saves the session before its CONNACK.
func (h *stateHook) OnSessionEstablish(cl *mochi.Client, pk packets.Packet) {
	h.saveSession(cl, pk.Connect.Clean)
}

// OnDisconnect deletes a session that ends with its connection, or records
// when a persistent session's client left.
func (h *stateHook) OnDisconnect(cl *mochi.Client, _ error, expire bool) {
	if expire && !cl.IsTakenOver() {
		h.st.endSession(cl.ID, cl)
	} else {
		h.leftSession(cl)
	}
}

// OnClientExpired deletes an absent client's expired session.
func (h *stateHook) OnClientExpired(cl *mochi.Client) { h.st.endSession(cl.ID, cl) }

// OnSubscribed saves the subscriptions of a persistent session (after the
// delivery hook restored their Retain Handling).
func (h *stateHook) OnSubscribed(cl *mochi.Client, pk packets.Packet, codes []byte) {
	h.saveSubscriptions(cl, pk, codes)
}

// saveSession runs before the CONNACK of cl: a clean start deletes what
// was kept for the client id; a persistent session (MQTT 3.1.1 clean
// session 0, MQTT 5 session expiry > 0) is written and durable before the
// client is told it exists, and cl becomes its owner. A kept session
// resumed by a connection that does not persist (MQTT 5 clean start 0,
// expiry 0) is rewritten with expiry 0, so a restart drops it.
func (h *stateHook) saveSession(cl *mochi.Client, clean bool) {
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
func (h *stateHook) leftSession(cl *mochi.Client) {
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
func (h *stateHook) OnWillSent(cl *mochi.Client, _ packets.Packet) {
	if cl.Closed() {
		h.leftSession(cl)
	}
}

// saveSubscriptions writes the subscriptions a persistent session was
// granted; they are durable before the SUBACK.
func (h *stateHook) saveSubscriptions(cl *mochi.Client, pk packets.Packet, codes []byte) {
	if cl.Net.Inline || h.st.owner(cl.ID) != cl {
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
func (h *stateHook) OnUnsubscribed(cl *mochi.Client, pk packets.Packet) {
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

// retainer keeps retained messages, in memory (mochi's index) and on disk.
type retainer struct {
	server *mochi.Server
	st     *stateStore // nil: memory only
	// mu serialises retaining a message and writing it to disk, per topic
	// (striped), so that disk ends with what memory holds.
	mu [64]sync.Mutex
}

// retain retains pk (an empty payload clears the topic [MQTT-3.3.1-6])
// and writes the topic's retained message to disk; it returns the
// submission.
func (r *retainer) retain(pk *packets.Packet) uint64 {
	mu := r.lock(pk.TopicName)
	mu.Lock()
	defer mu.Unlock()
	r.server.Topics.RetainMessage(pk.Copy(false))
	atomic.StoreInt64(&r.server.Info.Retained, int64(r.server.Topics.Retained.Len()))
	return r.storeLocked(pk.TopicName)
}

func (r *retainer) lock(topic string) *sync.Mutex {
	f := fnv.New32a()
	_, _ = f.Write([]byte(topic))
	return &r.mu[f.Sum32()%uint32(len(r.mu))]
}

// storeLocked writes what memory holds for topic now (the message, or its
// absence) and returns the submission; the topic's lock is held, so writes
// for one topic reach the disk in the order memory changed. $SYS topics
// are not kept: the broker publishes them again.
func (r *retainer) storeLocked(topic string) uint64 {
	if r.st == nil || strings.HasPrefix(topic, mochi.SysPrefix) {
		return 0
	}
	w := streams.KVWrite{Key: retainedKey(topic)}
	if pk, ok := r.server.Topics.Retained.Get(topic); ok {
		w.Value = encodeRetained(&pk)
	} else {
		w.Delete = true
	}
	return r.st.submit([]streams.KVWrite{w}, false, nil)
}

// store writes topic's retained message as memory holds it.
func (r *retainer) store(topic string) uint64 {
	mu := r.lock(topic)
	mu.Lock()
	defer mu.Unlock()
	return r.storeLocked(topic)
}

// OnRetainMessage writes a message mochi retained itself (a QoS 0 publish
// it handled, a will).
func (h *stateHook) OnRetainMessage(_ *mochi.Client, pk packets.Packet, _ int64) {
	h.retained.store(pk.TopicName)
}

// OnRetainedExpired deletes a retained message whose expiry passed (unless
// a newer one took its place meanwhile).
func (h *stateHook) OnRetainedExpired(topic string) {
	h.retained.store(topic)
}

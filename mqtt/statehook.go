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
// the retained messages mochi expires itself (those it retains itself are
// written by the delivery hook, retained.changed). It runs after the
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
		mochi.OnUnsubscribed, mochi.OnWillSent, mochi.OnRetainedExpired:
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
	// The claim hook stamped the session this connection holds (claims.go):
	// ending the old one below must not take that stamp with it.
	stamp := h.st.stamp(cl.ID)
	if clean && kept {
		h.st.disown(cl.ID, nil)
		writes = endWrites(cl.ID)
		kept = false
	}
	if !endsWithConnection(cl) || kept {
		h.st.setStamp(cl.ID, stamp)
		writes = append(writes, streams.KVWrite{Key: clientKey(keySession, cl.ID, 0), Value: encodeSession(h.st.record(cl, 0))})
		h.st.own(cl.ID, cl)
	} else {
		h.st.setStamp(cl.ID, rversion{}) // nothing kept: no stamp either
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
	h.st.submit([]streams.KVWrite{{Key: clientKey(keySession, cl.ID, 0), Value: encodeSession(h.st.record(cl, left))}}, false, nil)
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

// retainer keeps retained messages, in memory (mochi's index) and on disk,
// and in a cluster keeps them the same on every node (retainsync.go).
type retainer struct {
	server *mochi.Server
	st     *stateStore // nil: memory only
	// sync versions retained topics and sends them to the other nodes
	// (nil: standalone).
	sync *retainedSync
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
	return r.changedLocked(pk.TopicName)
}

// changedLocked writes what memory holds for topic now and, in a cluster,
// gives the topic a new version and sends its state to the other nodes.
// The topic's lock is held.
func (r *retainer) changedLocked(topic string) uint64 {
	v := r.sync.stamp(topic)
	mark := r.storeLocked(topic, v)
	if v.ts != 0 {
		r.sendLocked(topic, v, nil)
	}
	return mark
}

func (r *retainer) lock(topic string) *sync.Mutex {
	f := fnv.New32a()
	_, _ = f.Write([]byte(topic))
	return &r.mu[f.Sum32()%uint32(len(r.mu))]
}

// storeLocked writes what memory holds for topic now (the message, or its
// absence) and, if v is not zero, the topic's version, and returns the
// submission; the topic's lock is held, so writes for one topic reach the
// disk in the order memory changed. $SYS topics are not kept: the broker
// publishes them again.
func (r *retainer) storeLocked(topic string, v rversion) uint64 {
	atomic.StoreInt64(&r.server.Info.Retained, int64(r.server.Topics.Retained.Len()))
	if r.st == nil || strings.HasPrefix(topic, mochi.SysPrefix) {
		return 0
	}
	w := []streams.KVWrite{{Key: retainedKey(topic)}}
	if pk, ok := r.server.Topics.Retained.Get(topic); ok {
		w[0].Value = encodeRetained(&pk)
	} else {
		w[0].Delete = true
	}
	if v.ts != 0 {
		w = append(w, streams.KVWrite{Key: versionKey(topic), Value: encodeVersion(v)})
	}
	return r.st.submit(w, false, nil)
}

// changed records a change mochi made itself to topic's retained message
// (a QoS 0 publish it handled, a will, an API publish): on disk and, in a
// cluster, on the other nodes.
func (r *retainer) changed(topic string) {
	mu := r.lock(topic)
	mu.Lock()
	defer mu.Unlock()
	r.changedLocked(topic)
}

// OnRetainedExpired deletes a retained message whose expiry passed (unless
// a newer one took its place meanwhile).
func (h *stateHook) OnRetainedExpired(topic string) {
	r := h.retained
	mu := r.lock(topic)
	mu.Lock()
	defer mu.Unlock()
	r.storeLocked(topic, rversion{}) // every node expires it on its own
}

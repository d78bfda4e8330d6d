package mqtt

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"strings"
	"sync"
	"time"

	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/mqstream/mqstream/streams"
)

// Retained messages in a cluster.
//
// Every node keeps every retained message (so they survive losing nodes,
// and a new subscription anywhere finds them locally). A node that
// retains or clears a message stamps the topic with a version, a hybrid
// logical clock reading (wall-clock nanoseconds, moved past every version
// seen) and the node's id, and sends the topic's new state to every other
// node; a node applies a state only if its version is newer than the one
// it holds, so nodes that receive updates in different orders end with the
// same message (last writer wins). A cleared topic keeps its version as a
// tombstone, so an older copy cannot come back; tombstones older than a
// day are forgotten when the node starts and every 10 minutes. A node that joins (or restarts)
// is sent every topic's state by every other node, which brings back what
// it missed while away. Versions are kept on disk beside the retained
// messages.

// rversion orders the states of one retained topic across nodes.
type rversion struct {
	ts   uint64 // hybrid logical clock: nanoseconds since 1970, at least one past any seen
	node string
}

func (v rversion) newer(than rversion) bool {
	return v.ts > than.ts || (v.ts == than.ts && v.node > than.node)
}

// tombstoneTTL is how long a cleared topic's version is kept.
const tombstoneTTL = 24 * time.Hour

// tombstoneSweep is how often a running node forgets tombstones older than
// tombstoneTTL (a node that clears many distinct topics would otherwise
// keep every one until it restarts).
const tombstoneSweep = 10 * time.Minute

// retainedSync versions retained topics and sends their states to the
// other nodes.
type retainedSync struct {
	remote Remote
	node   string
	// mu guards versions and clock.
	mu       sync.Mutex
	versions map[string]rversion
	clock    uint64
}

func newRetainedSync(remote Remote, node string) *retainedSync {
	return &retainedSync{remote: remote, node: node, versions: map[string]rversion{}}
}

// stamp gives topic a new local version (zero when s is nil: standalone).
func (s *retainedSync) stamp(topic string) rversion {
	if s == nil || strings.HasPrefix(topic, mochi.SysPrefix) {
		return rversion{}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.clock = max(uint64(time.Now().UnixNano()), s.clock+1)
	v := rversion{ts: s.clock, node: s.node}
	s.versions[topic] = v
	return v
}

// observe records v for topic if it is newer than the version held, and
// reports whether it was.
func (s *retainedSync) observe(topic string, v rversion) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.clock = max(s.clock, v.ts)
	if !v.newer(s.versions[topic]) {
		return false
	}
	s.versions[topic] = v
	return true
}

func (s *retainedSync) version(topic string) (rversion, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v, ok := s.versions[topic]
	return v, ok
}

func (s *retainedSync) topics() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]string, 0, len(s.versions))
	for t := range s.versions {
		out = append(out, t)
	}
	return out
}

// send sends topic's state (the retained message memory holds, or none)
// at version v to every other node, or through send when set. The topic's
// lock is held, so the states of a topic leave in version order.
func (r *retainer) sendLocked(topic string, v rversion, send func([]byte)) {
	pk, ok := r.server.Topics.Retained.Get(topic)
	if !ok {
		pk = packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish, Retain: true}, TopicName: topic}
	}
	msg, err := encodeRetainedState(&pk, v, time.Now().Unix())
	if err != nil {
		return // expired meanwhile: every node expires it on its own
	}
	if send != nil {
		send(msg)
	} else {
		r.sync.remote.Broadcast(msg)
	}
}

// applyRemote installs a retained topic's state another node sent, if it
// is newer than what this node holds.
func (r *retainer) applyRemote(pk packets.Packet, v rversion) {
	mu := r.lock(pk.TopicName)
	mu.Lock()
	defer mu.Unlock()
	if !r.sync.observe(pk.TopicName, v) {
		return
	}
	pk.FixedHeader.Retain = true
	r.server.Topics.RetainMessage(pk)
	r.storeLocked(pk.TopicName, v)
}

// SendRetained sends every retained topic's state this node holds
// (tombstones included) through send: to a node that joined the cluster
// or restarted (cluster mode; nothing when standalone).
func (b *Broker) SendRetained(send func(msg []byte)) {
	r := b.delivery.retained
	if r.sync == nil {
		return
	}
	<-b.restored // what was kept on disk too (or the broker closed)
	for _, topic := range r.sync.topics() {
		var msg []byte
		mu := r.lock(topic)
		mu.Lock()
		if v, ok := r.sync.version(topic); ok {
			r.sendLocked(topic, v, func(m []byte) { msg = m })
		}
		mu.Unlock()
		// Sent outside the topic's lock: send may wait for room in the
		// peer's queue, and the state carries its version (a newer one
		// sent meanwhile wins at the peer whatever the order).
		if msg != nil {
			send(msg)
		}
	}
}

// versionKey is where a retained topic's version is kept.
func versionKey(topic string) []byte {
	return append([]byte{keyRetainedVersion}, topic...)
}

func encodeVersion(v rversion) []byte {
	b := binary.AppendUvarint([]byte{stateVersion}, v.ts)
	return append(b, v.node...)
}

func decodeVersion(b []byte) (rversion, error) {
	if len(b) < 2 || b[0] != stateVersion {
		return rversion{}, fmt.Errorf("%w: retained version", errStateCorrupt)
	}
	ts, n := binary.Uvarint(b[1:])
	if n <= 0 {
		return rversion{}, fmt.Errorf("%w: retained version", errStateCorrupt)
	}
	return rversion{ts: ts, node: string(b[1+n:])}, nil
}

// staleTombstones lists the topics whose version is older than horizon
// (candidates: sweepTombstones checks each under its topic's lock).
func (s *retainedSync) staleTombstones(horizon uint64) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for t, v := range s.versions {
		if v.ts < horizon {
			out = append(out, t)
		}
	}
	return out
}

// sweepTombstones forgets, in memory and on disk, the versions of cleared
// topics older than tombstoneTTL; it returns how many. Each topic is
// checked under its own lock (one at a time), so a concurrent retain wins.
func (r *retainer) sweepTombstones(now time.Time) int {
	if r.sync == nil {
		return 0
	}
	horizon := uint64(now.Add(-tombstoneTTL).UnixNano())
	n := 0
	for _, topic := range r.sync.staleTombstones(horizon) {
		mu := r.lock(topic)
		mu.Lock()
		_, held := r.server.Topics.Retained.Get(topic)
		r.sync.mu.Lock()
		v, ok := r.sync.versions[topic]
		forget := ok && !held && v.ts < horizon
		if forget {
			delete(r.sync.versions, topic)
		}
		r.sync.mu.Unlock()
		if forget {
			n++
			if r.st != nil {
				r.st.submit([]streams.KVWrite{{Key: versionKey(topic), Delete: true}}, true, nil)
			}
		}
		mu.Unlock()
	}
	return n
}

// sweepLoop runs sweepTombstones every tombstoneSweep until stop closes.
func (b *Broker) sweepLoop(stop <-chan struct{}, done chan<- struct{}) {
	defer close(done)
	t := time.NewTicker(tombstoneSweep)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case now := <-t.C:
			if n := b.delivery.retained.sweepTombstones(now); n > 0 {
				b.log.Debug("forgot old retained tombstones", "count", n)
			}
		}
	}
}

// restoreVersions reads the retained topics' versions back, forgetting
// tombstones older than tombstoneTTL (returned as deletions).
func (b *Broker) restoreVersions(now time.Time) ([]streams.KVWrite, error) {
	s := b.delivery.retained.sync
	var stale []streams.KVWrite
	horizon := uint64(now.Add(-tombstoneTTL).UnixNano())
	err := b.state.kv.Scan([]byte{keyRetainedVersion}, func(k, val []byte) error {
		topic := string(k[1:])
		v, err := decodeVersion(val)
		_, held := b.server.Topics.Retained.Get(topic)
		if err != nil || s == nil || (!held && v.ts < horizon) {
			stale = append(stale, streams.KVWrite{Key: bytes.Clone(k), Delete: true})
			return nil
		}
		s.mu.Lock()
		s.versions[topic] = v
		s.clock = max(s.clock, v.ts)
		s.mu.Unlock()
		return nil
	})
	return stale, err
}

// forwardRetained starts a retained topic's state in a forwarded frame
// (remote.go); a plain publish starts with forwardVersion1.
const forwardRetained = 2

// encodeRetainedState frames topic's state at version v for the other
// nodes: the kind, the version, then the message as encodeForwarded
// frames it (an empty payload clears the topic).
func encodeRetainedState(pk *packets.Packet, v rversion, now int64) ([]byte, error) {
	msg, err := encodeForwarded(pk, pk.Origin, now)
	if err != nil {
		return nil, err
	}
	b := make([]byte, 0, len(msg)+len(v.node)+12)
	b = append(b, forwardRetained)
	b = binary.AppendUvarint(b, v.ts)
	b = binary.AppendUvarint(b, uint64(len(v.node)))
	b = append(b, v.node...)
	return append(b, msg...), nil
}

// decodeRetainedState reads what encodeRetainedState framed.
func decodeRetainedState(b []byte, now int64) (packets.Packet, rversion, error) {
	if len(b) < 1 || b[0] != forwardRetained {
		return packets.Packet{}, rversion{}, fmt.Errorf("%w: kind", errBadForward)
	}
	b = b[1:]
	ts, n := binary.Uvarint(b)
	if n <= 0 {
		return packets.Packet{}, rversion{}, fmt.Errorf("%w: version", errBadForward)
	}
	b = b[n:]
	l, n := binary.Uvarint(b)
	if n <= 0 || l > uint64(len(b)-n) {
		return packets.Packet{}, rversion{}, fmt.Errorf("%w: node", errBadForward)
	}
	v := rversion{ts: ts, node: string(b[n : n+int(l)])}
	pk, _, err := decodeForwarded(b[n+int(l):], now)
	return pk, v, err
}

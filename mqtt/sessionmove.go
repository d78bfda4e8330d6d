package mqtt

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/mqstream/mqstream/streams"
)

// Moving a persistent session to another node (claims.go): the node that
// held it sends what it keeps on disk for the client (its session record,
// subscriptions, queued and in-flight deliveries) as key/value pairs; the
// claiming node writes them into its own broker state and restores that
// one client as if it had just started, so mochi's takeover finds a
// disconnected client with the session and the outbound session reads its
// queue from disk.

// maxSessionMove bounds a handed-over session; queued deliveries beyond it
// are left out (logged), so the answer fits one RPC frame.
const maxSessionMove = 32 << 20

// sessionKinds are the kinds of keys that make up a client's session.
var sessionKinds = []byte{keySession, keySubscription, keySent, keyQueue} // in-flight before queued: kept first when too large

// exportSession encodes what the broker state holds for client id (its
// writes must have completed); last is the key of the last queued
// delivery in it (0: none).
func (b *Broker) exportSession(id string) (out []byte, last uint64) {
	n, size, dropped := 0, 0, 0
	var pairs []byte
	for _, kind := range sessionKinds {
		err := b.state.kv.Scan(clientKey(kind, id, 0), func(k, v []byte) error {
			if dropped > 0 || (size+len(k)+len(v) > maxSessionMove && kind != keySession) {
				dropped++ // and every later one: no gap in the queue
				return nil
			}
			pairs = appendPair(pairs, k, v)
			n++
			size += len(k) + len(v)
			if kind == keyQueue {
				if _, seq, ok := splitSeqKey(k); ok {
					last = seq
				}
			}
			return nil
		})
		if err != nil {
			b.log.Warn("session not handed over: reading it failed", "client", id, "error", err)
			return nil, 0
		}
	}
	if n == 0 {
		return nil, 0
	}
	if dropped > 0 {
		b.log.Warn("session handed over without its newest queued messages: too large", "client", id,
			"dropped", dropped, "limit_bytes", maxSessionMove)
	}
	out = binary.AppendUvarint(out, uint64(n))
	return append(out, pairs...), last
}

// appendPair frames a key/value pair of a handed-over session.
func appendPair(b, k, v []byte) []byte {
	b = binary.AppendUvarint(b, uint64(len(k)))
	b = append(b, k...)
	b = binary.AppendUvarint(b, uint64(len(v)))
	return append(b, v...)
}

// importSession installs a session another node handed over for client
// id, replacing any this node kept for it, unless the client is connected
// here (mochi then takes the local session over) or this node's copy is
// newer (errNewerSession). Every outcome but success is logged.
func (b *Broker) importSession(id string, payload []byte) error {
	if b.state == nil {
		b.log.Warn("a session handed over by another node is dropped: mqtt.persistence is off", "client", id)
		return errors.New("mqtt: mqtt.persistence is off")
	}
	writes, err := decodeSessionMove(id, payload)
	if err != nil {
		b.log.Warn("a session handed over by another node is dropped", "client", id, "error", err)
		return err
	}
	if cur, ok := b.server.Clients.Get(id); ok {
		// This node keeps a session of the client too. Of the two
		// copies, the one of the newer claim is the client's latest: the
		// other was restored by a node that was down while the client
		// moved on (docs/operations.md). A connection here is the latest.
		moved, own := stampOf(id, writes), b.state.stamp(id)
		if !cur.Closed() || !moved.newer(own) {
			b.log.Warn("a session handed over by another node is dropped: this node holds a newer one for the client", "client", id)
			return errNewerSession
		}
		b.log.Info("this node's copy of a session is older than the one handed over: it is replaced", "client", id)
		b.releaseSession(id, false)
	}
	if err := b.state.write(append(endWrites(id), writes...)...); err != nil {
		b.log.Warn("a session handed over by another node is dropped: writing it failed", "client", id, "error", err)
		return fmt.Errorf("mqtt: writing a handed-over session: %w", err)
	}
	var rs restoreStats
	stale, wills, err := b.restoreSessions(func(kind byte) []byte { return clientKey(kind, id, 0) }, time.Now().Unix(), &rs)
	if err != nil {
		b.log.Warn("a session handed over by another node is dropped: restoring it failed", "client", id, "error", err)
		return fmt.Errorf("mqtt: restoring a handed-over session: %w", err)
	}
	if len(stale) > 0 {
		if err := b.state.write(stale...); err != nil {
			b.log.Warn("deleting expired state of a handed-over session failed", "client", id, "error", err)
		}
	}
	for _, w := range wills {
		b.scheduleWill(w)
	}
	if cl, ok := b.server.Clients.Get(id); ok && b.opts.Remote != nil {
		// The other nodes route to this one before the CONNACK, so no
		// message published after it misses the moved subscriptions.
		b.opts.Remote.SetClient(id, routedFilters(cl))
	}
	b.log.Info("session taken over from another node", "client", id, "subscriptions", rs.subscriptions, "queued", rs.queued)
	return nil
}

// movedStamp returns the claim stamp of a handed-over session (zero when
// it has none, or cannot be read).
func movedStamp(id string, payload []byte) rversion {
	writes, err := decodeSessionMove(id, payload)
	if err != nil {
		return rversion{}
	}
	return stampOf(id, writes)
}

// stampOf returns the claim stamp of the session record among a
// handed-over session's writes (zero: none).
func stampOf(id string, writes []streams.KVWrite) rversion {
	key := clientKey(keySession, id, 0)
	for _, w := range writes {
		if bytes.Equal(w.Key, key) {
			if r, err := decodeSession(w.Value); err == nil {
				return r.Stamp
			}
		}
	}
	return rversion{}
}

// decodeSessionMove reads the key/value pairs of a handed-over session;
// every key must belong to client id.
func decodeSessionMove(id string, b []byte) ([]streams.KVWrite, error) {
	r := bytes.NewReader(b)
	n, err := binary.ReadUvarint(r)
	if err != nil || n > uint64(len(b)) || n > 1<<20 { // a session holds far fewer keys
		return nil, fmt.Errorf("%w: session pairs", errBadForward)
	}
	prefixes := make([][]byte, len(sessionKinds))
	for i, kind := range sessionKinds {
		prefixes[i] = clientKey(kind, id, 0)
	}
	out := make([]streams.KVWrite, 0, min(n, 4096)) // n comes from the frame
	for range n {
		k, err1 := readBytes(r)
		v, err2 := readBytes(r)
		if err1 != nil || err2 != nil {
			return nil, fmt.Errorf("%w: session pair", errBadForward)
		}
		ok := false
		for _, p := range prefixes {
			ok = ok || bytes.HasPrefix(k, p)
		}
		if !ok {
			return nil, fmt.Errorf("%w: a key of another client in a handed-over session", errBadForward)
		}
		out = append(out, streams.KVWrite{Key: k, Value: v})
	}
	if r.Len() != 0 {
		return nil, fmt.Errorf("%w: trailing bytes after the session", errBadForward)
	}
	return out, nil
}

func readBytes(r *bytes.Reader) ([]byte, error) {
	n, err := binary.ReadUvarint(r)
	if err != nil || n > uint64(r.Len()) {
		return nil, errBadForward
	}
	b := make([]byte, n)
	_, _ = r.Read(b)
	return b, nil
}

package mqtt

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"

	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/mqstream/mqstream/streams"
)

// Restoring the broker state at start (state.go), before any client
// connects: retained messages go back into mochi's index; each persistent
// session that has not expired becomes a disconnected mochi client with
// its subscriptions (so a client that comes back gets session present and
// its subscriptions) and an outbound session whose queue is on disk.
// mochi counts session expiry from the moment it learns of a disconnected
// client, so a restored MQTT 5 session gets the expiry it has left. A will
// held back by its delay interval when the node stopped is published when
// the delay (counted from the disconnect) has passed, if the client has
// not come back by then (also when its session expired meanwhile: the will
// was due first); it goes through Broker.Publish (stored, retained and
// delivered; its publisher shows as the API's client id).

// restoreStats says what a restore found.
type restoreStats struct {
	retained, sessions, expired, subscriptions, queued int
}

// pendingWill is a will held back by its delay when the node stopped; cl
// is its restored client (nil if the session has expired since).
type pendingWill struct {
	id   string
	cl   *mochi.Client
	will mochi.Will
	due  time.Time
}

// restore reads the broker state back; it runs once, before Serve.
func (b *Broker) restore() error {
	start := time.Now()
	st := b.state
	now := start.Unix()
	var rs restoreStats
	var stale []streams.KVWrite
	var wills []pendingWill

	err := st.kv.Scan([]byte{keyRetained}, func(k, v []byte) error {
		pk, err := decodeRetained(v)
		if err != nil || (pk.Expiry > 0 && pk.Expiry <= now) {
			stale = append(stale, streams.KVWrite{Key: k, Delete: true})
			return nil
		}
		b.server.Topics.RetainMessage(pk)
		rs.retained++
		return nil
	})
	if err != nil {
		return fmt.Errorf("mqtt: restore retained messages: %w", err)
	}
	atomic.StoreInt64(&b.server.Info.Retained, int64(b.server.Topics.Retained.Len()))
	staleVersions, err := b.restoreVersions(start)
	if err != nil {
		return fmt.Errorf("mqtt: restore retained versions: %w", err)
	}
	stale = append(stale, staleVersions...)

	sessStale, sessWills, err := b.restoreSessions(func(kind byte) []byte { return []byte{kind} }, now, &rs)
	if err != nil {
		return err
	}
	stale, wills = append(stale, sessStale...), append(wills, sessWills...)

	if len(stale) > 0 {
		if err := st.write(stale...); err != nil {
			return fmt.Errorf("mqtt: delete expired broker state: %w", err)
		}
	}
	// Once everything is back (subscriptions, queues), the wills.
	for _, w := range wills {
		b.scheduleWill(w)
	}
	b.log.Info("broker state restored", "retained", rs.retained, "sessions", rs.sessions,
		"subscriptions", rs.subscriptions, "queued", rs.queued, "expired_sessions", rs.expired,
		"duration", time.Since(start).Round(time.Millisecond))
	return nil
}

// restoreClient adds the disconnected client of a persistent session to
// mochi, unless the session expired; it schedules a pending will.
func (b *Broker) restoreClient(id string, r *sessionRecord, now int64) (*mochi.Client, bool) {
	left := r.DisconnectedAt
	if left == 0 {
		left = now // connected when the node stopped
	}
	var remaining int64
	if r.ProtocolVersion == 5 {
		remaining = left + int64(r.Expiry) - now
		if r.Expiry == 0 || remaining <= 0 {
			return nil, false
		}
	}
	cl := b.server.NewClient(nil, r.Listener, id, false)
	cl.Properties.Username = r.Username
	cl.Properties.ProtocolVersion = r.ProtocolVersion
	cl.Properties.Props = packets.Properties{
		ReceiveMaximum:    r.ReceiveMaximum,
		MaximumPacketSize: r.MaximumPacketSize,
		TopicAliasMaximum: r.TopicAliasMaximum,
	}
	if r.ProtocolVersion == 5 {
		cl.Properties.Props.SessionExpiryInterval = uint32(remaining)
		cl.Properties.Props.SessionExpiryIntervalFlag = true
	}
	cl.Stop(packets.ErrServerShuttingDown)
	b.server.Clients.Add(cl)
	return cl, true
}

// scheduleWill publishes a restored will when it is due unless its client
// came back (or the broker closed) first.
func (b *Broker) scheduleWill(pw pendingWill) {
	w, cl := pw.will, pw.cl
	publish := func() {
		cur, ok := b.server.Clients.Get(pw.id)
		if (cl != nil && (!ok || cur != cl)) || (cl == nil && ok) {
			return // the client came back (and may have left again)
		}
		m := willMessage(w)
		m.ClientID = pw.id // stored as its client's
		if _, err := b.Publish(context.Background(), m); err != nil {
			b.log.Warn("delayed will not published", "client", pw.id, "topic", w.TopicName, "error", err)
			return
		}
		if cl != nil {
			atomic.StoreUint32(&cl.Properties.Will.Flag, 0) // one handed back (droppedwills.go)
		}
		if cl != nil && b.state != nil && b.state.owner(pw.id) == cl {
			// The session no longer has a will.
			b.state.submit([]streams.KVWrite{{Key: clientKey(keySession, pw.id, 0),
				Value: encodeSession(b.state.record(cl, b.state.leftAt(cl)))}}, false, nil)
		}
	}
	b.willsMu.Lock()
	defer b.willsMu.Unlock()
	if b.willsClosed {
		return
	}
	b.wills = append(b.wills, time.AfterFunc(max(time.Until(pw.due), 0), publish))
}

// restoreSessions brings back the persistent sessions whose keys start
// with prefix(kind) for each kind of session key (every session, or one
// client's): their clients, subscriptions and queues. It returns the keys
// to delete (expired or undecodable state) and the wills to schedule.
func (b *Broker) restoreSessions(prefix func(kind byte) []byte, now int64, rs *restoreStats) (stale []streams.KVWrite, wills []pendingWill, err error) {
	st := b.state
	clients := map[string]*mochi.Client{}
	err = st.kv.Scan(prefix(keySession), func(k, v []byte) error {
		id, rest, ok := splitClientKey(k)
		if !ok || len(rest) != 0 {
			stale = append(stale, streams.KVWrite{Key: k, Delete: true})
			return nil
		}
		r, err := decodeSession(v)
		if err != nil {
			b.log.Error("dropping an undecodable session", "client", id, "error", err)
			stale = append(stale, endWrites(id)...)
			return nil
		}
		cl, ok := b.restoreClient(id, r, now)
		if r.Will != nil && r.WillDue > 0 {
			// A will is due no later than its session's expiry: one
			// whose session expired meanwhile is published too.
			wills = append(wills, pendingWill{id: id, cl: cl, will: *r.Will, due: time.Unix(r.WillDue, 0)})
		}
		if !ok {
			rs.expired++
			stale = append(stale, endWrites(id)...)
			return nil
		}
		clients[id] = cl
		st.own(id, cl)
		st.setStamp(id, r.Stamp)
		if r.DisconnectedAt > 0 {
			st.restored(cl, r.DisconnectedAt)
		}
		rs.sessions++
		return nil
	})
	if err != nil {
		return nil, nil, fmt.Errorf("mqtt: restore sessions: %w", err)
	}

	// The queues: how many deliveries each session has on disk, and the
	// last key used (of either kind: a new delivery must not reuse the key
	// of a packet id left behind by a crash, which is deleted).
	type queueInfo struct {
		count int
		size  int64
		seq   uint64
		seqs  map[uint64]bool
	}
	queues := map[string]*queueInfo{}
	for _, kind := range []byte{keyQueue, keySent} {
		err = st.kv.Scan(prefix(kind), func(k, v []byte) error {
			id, seq, ok := splitSeqKey(k)
			if !ok || clients[id] == nil {
				stale = append(stale, streams.KVWrite{Key: k, Delete: true})
				return nil
			}
			q := queues[id]
			if q == nil {
				q = &queueInfo{seqs: map[uint64]bool{}}
				queues[id] = q
			}
			q.seq = max(q.seq, seq)
			if kind == keySent {
				if !q.seqs[seq] {
					stale = append(stale, streams.KVWrite{Key: k, Delete: true})
				}
				return nil
			}
			q.seqs[seq] = true
			q.count++
			q.size += int64(len(v)) // about the topic and payload (read back at attach)
			return nil
		})
		if err != nil {
			return nil, nil, fmt.Errorf("mqtt: restore session queues: %w", err)
		}
	}
	for id := range clients {
		q := queues[id]
		if q == nil {
			q = &queueInfo{}
		}
		b.delivery.out.restoreSession(id, q.count, q.size, q.seq)
		rs.queued += q.count
	}

	// The subscriptions last: a message routed to one of them (a
	// session handed over while this node serves) finds its session with
	// its queue, not a fresh one whose keys would overwrite the queue's
	// and which restoreSession would then replace.
	err = st.kv.Scan(prefix(keySubscription), func(k, v []byte) error {
		id, filter, ok := splitClientKey(k)
		cl := clients[id]
		if !ok || cl == nil {
			stale = append(stale, streams.KVWrite{Key: k, Delete: true})
			return nil
		}
		sub, err := decodeSubscription(string(filter), v)
		if err != nil {
			stale = append(stale, streams.KVWrite{Key: k, Delete: true})
			return nil
		}
		if b.server.Topics.Subscribe(id, sub) {
			atomic.AddInt64(&b.server.Info.Subscriptions, 1)
		}
		cl.State.Subscriptions.Add(sub.Filter, sub)
		if isPlusHash(sub.Filter) && !mochi.IsSharedFilter(sub.Filter) {
			b.sel.remember(sub.Filter, id)
		}
		b.sel.routes.add(id, sub)
		rs.subscriptions++
		return nil
	})
	if err != nil {
		return nil, nil, fmt.Errorf("mqtt: restore subscriptions: %w", err)
	}
	if b.subscribed != nil {
		// Right after the subscription scan: the first moment a
		// message can be routed to the restored sessions.
		b.subscribed()
	}
	return stale, wills, nil
}

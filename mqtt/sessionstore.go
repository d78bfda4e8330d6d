package mqtt

import (
	"github.com/mqstream/mqstream/streams"
)

// A persistent session's queue on disk.
//
// Every QoS 1/2 delivery to a persistent session gets the next sequence
// number of the session and is written under 'q' cid seq before its
// publisher is acknowledged (the write is submitted here; ingest waits for
// it), and deleted in the background when the client acknowledges it. Its
// packet id (and whether it is past PUBREC) is written under 'i' cid seq
// in the background: for QoS 2 when it is sent (so that exactly once holds
// across a crash as far as the background write got), for QoS 1 only
// when the client leaves (after a crash a QoS 1 delivery in flight is
// sent again as new: it may arrive twice, as QoS 1 allows). While the client is away, its deliveries live on
// disk only: detach releases them from memory (spill) and new ones are
// only written; attach reads them back (load), in order, before anything
// newer, and resends those that were in flight with their packet ids.
//
// The design copies each message into the queues of the sessions that
// subscribed to it rather than serving sessions from the streams through
// cursors: a session's subscriptions can match topics that no stream
// stores, QoS, retain flag and subscription identifiers are per session,
// and what a session holds is bounded on its own (Options.MaxQueued,
// Options.MaxQueuedBytes); the cost is one write per persistent subscriber
// per message, shared with the record's fsync by group commit.

// storeLocked gives d the session's next queue key and submits its write;
// it returns the submission. s.mu is held.
func (s *session) storeLocked(d *delivery) uint64 {
	s.mu.seq++
	d.seq = s.mu.seq
	return s.o.st.submit([]streams.KVWrite{{Key: seqKey(keyQueue, s.id, d.seq), Value: encodeDelivery(d)}}, false, nil)
}

// forgetLocked deletes a finished delivery from disk (in the background).
func (s *session) forgetLocked(d *delivery) {
	if d.seq == 0 || s.o.st == nil {
		return
	}
	// One add: both deletions go in the same batch.
	if d.idKept {
		s.o.st.p.add(s, streams.KVWrite{Key: seqKey(keyQueue, s.id, d.seq), Delete: true},
			streams.KVWrite{Key: seqKey(keySent, s.id, d.seq), Delete: true})
	} else {
		s.o.st.p.add(s, streams.KVWrite{Key: seqKey(keyQueue, s.id, d.seq), Delete: true})
	}
	d.seq, d.idKept = 0, false
}

// sentLocked records (in the background) the packet id a delivery on disk
// was sent with, so that it is resent with it after a restart.
func (s *session) sentLocked(d *delivery) {
	if d.seq == 0 || s.o.st == nil {
		return
	}
	s.o.st.p.add(s, streams.KVWrite{Key: seqKey(keySent, s.id, d.seq), Value: encodeSent(sentState{id: d.id, pubrel: d.pubrel})})
	d.idKept = true
}

// spillLocked releases the queue of a detached persistent session from
// memory: what is not done stays on disk (with the packet ids and QoS 2
// states of those in flight) and attach reads it back. s.mu and sendMu
// are held.
func (s *session) spillLocked() {
	var count int
	var size int64
	for _, d := range s.mu.queue[s.mu.head:] {
		if d == nil || d.done {
			continue
		}
		if d.seq == 0 {
			s.storeLocked(d)
		}
		if d.id != 0 {
			s.sentLocked(d)
		}
		count++
		size += int64(d.size)
	}
	s.o.queued.Add(int64(count - s.mu.unsent))
	s.mu.offline.count += count
	s.mu.offline.bytes += size
	s.mu.queue, s.mu.head, s.mu.next, s.mu.inflight, s.mu.unsent, s.mu.unsentBytes = nil, 0, 0, 0, 0, 0
	s.mu.byID = map[uint16]*delivery{}
}

// load reads the session's queue back from disk, ahead of the deliveries
// queued since (they were written too, with later keys, and are in
// memory already). It leaves loading set: attach clears it as it attaches
// the connection. sendMu is held; s.mu is not.
func (s *session) load() {
	s.mu.Lock()
	s.mu.loading = true // from now on new deliveries stay in memory as well
	below := s.mu.seq + 1
	s.o.queued.Add(-int64(s.mu.offline.count))
	s.mu.offline.count, s.mu.offline.bytes = 0, 0
	s.mu.Unlock()

	loaded := s.o.readQueue(s.id, below)

	s.mu.Lock()
	defer s.mu.Unlock()
	queue := make([]*delivery, 0, len(loaded)+len(s.mu.queue)-s.mu.head)
	for _, d := range loaded {
		if d.id != 0 {
			if _, taken := s.mu.byID[d.id]; taken {
				d.id, d.pubrel = 0, false // a stale id (a lost deletion): sent as new
			} else {
				s.mu.byID[d.id] = d
			}
		}
		if d.id == 0 { // counted until sent, as in enqueue
			s.mu.unsent++
			s.mu.unsentBytes += int64(d.size)
			s.o.queued.Add(1)
		}
		queue = append(queue, d)
	}
	s.mu.queue = append(queue, s.mu.queue[s.mu.head:]...)
	s.mu.head, s.mu.next = 0, 0
}

// readQueue reads client id's queue on disk, the keys below below, once
// every write submitted so far has completed.
func (o *outbound) readQueue(id string, below uint64) []*delivery {
	st := o.st
	st.p.flush() // ends with a barrier: every write submitted so far is done
	sent := map[uint64]sentState{}
	err := st.kv.Scan(clientKey(keySent, id, 0), func(k, v []byte) error {
		if _, seq, ok := splitSeqKey(k); ok {
			if ss, err := decodeSent(v); err == nil {
				sent[seq] = ss
			}
		}
		return nil
	})
	if err != nil {
		o.log.Error("reading a session's in-flight state failed", "client", id, "error", err)
	}
	var out []*delivery
	err = st.kv.Scan(clientKey(keyQueue, id, 0), func(k, v []byte) error {
		_, seq, ok := splitSeqKey(k)
		if !ok || seq >= below {
			return nil
		}
		d, err := decodeDelivery(v)
		if err != nil {
			o.log.Error("dropping an undecodable queued delivery", "client", id, "seq", seq, "error", err)
			st.p.add(nil, streams.KVWrite{Key: k, Delete: true})
			return nil
		}
		d.seq = seq
		d.size = len(d.pk.TopicName) + len(d.pk.Payload)
		if ss, ok := sent[seq]; ok {
			d.idKept = true
			if ss.id != 0 {
				d.id, d.pubrel = ss.id, ss.pubrel
			}
		}
		out = append(out, d)
		return nil
	})
	if err != nil {
		o.log.Error("reading a session's queue failed", "client", id, "error", err)
	}
	return out
}

// restoreSession makes the session of a client restored from disk: away,
// with count deliveries of size bytes on disk, the last with key seq.
func (o *outbound) restoreSession(id string, count int, size int64, seq uint64) {
	s := &session{o: o, id: id}
	s.mu.byID = map[uint16]*delivery{}
	s.mu.persist = true
	s.mu.seq = seq
	s.mu.offline.count, s.mu.offline.bytes = count, size
	o.queued.Add(int64(count))
	o.sessions.Store(id, s)
}

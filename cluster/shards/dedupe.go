package shards

import (
	"cmp"
	"slices"
)

// Deduplication of retried appends.
//
// A node forwarding an append to a shard's leader cannot tell, when the
// leader fails before answering, whether the append was committed. It
// sends it again, to the next leader, with the id it gave it (appendID).
// The state machine remembers the ids of the last dedupeWindow appends it
// applied, with their results, and answers a repeated id with the first
// result instead of storing the records twice.
//
// The window must be the same on every replica, or one would store a
// retry that another skipped: it is a function of the log alone (the ids
// of the last dedupeWindow appends in log order), it travels in snapshots,
// and a replica replaying entries its store already holds still records
// their ids.
//
// The results travel in snapshots too (encoding 4, snapshot.go), and a
// replica that replays entries its store holds derives their results
// again (replay.go): each stream's next offset as the snapshot left it,
// advanced by every replayed append, and checked against the store once
// the replay reaches the store's applied index. A result still unknown
// (a snapshot of an older encoding, or a replay whose check failed)
// answers a retry with offset 0 and no error: the records are stored
// once, as the retry asked (MQTT acknowledgements carry no offset; a REST
// retry of that case reports 0).

// dedupeWindow is how many appends' ids a shard remembers: minutes of
// retries at thousands of appends per second.
const dedupeWindow = 1 << 16

// appendID names an append across retries.
type appendID struct {
	producer uint64 // 0: an append without id (never deduplicated)
	seq      uint64
}

// dedupe is the window of recent append ids, owned by the state
// machine's goroutine.
//
// ring holds the window in log order (for eviction and snapshots). The
// lookup side is one seq-sorted run per producer (producerWindow), not a
// map of every id: a node numbers its appends in order, so almost every
// id applied is above its producer's highest and goes on the end, and
// the oldest id of the window is at, or within a few of, the front of its
// run. A hash map of 64k ids per shard cost a cache miss or more per
// probe (three probes per append: 11% of a node's CPU at full load).
type dedupe struct {
	window    int        // how many ids the window holds (dedupeWindow)
	ring      []appendID // the window, ring[next] the oldest once full
	next      int        // where the next id goes once the ring is full
	producers map[uint64]*producerWindow
}

// producerWindow is one producer's ids in the window, sorted by seq:
// entries[head:] are live.
type producerWindow struct {
	entries []seqEntry
	head    int
}

// seqEntry is one id of a producer. refs counts its copies in the ring
// (an id evicted and applied again, or replayed twice, is there twice);
// result is the newest copy's.
type seqEntry struct {
	seq    uint64
	refs   int
	result *appendResult
}

type dedupeEntry struct {
	id     appendID
	result *appendResult // nil when not known (replayed, or restored)
}

func newDedupe() *dedupe { return newDedupeWindow(dedupeWindow) }

func newDedupeWindow(window int) *dedupe {
	return &dedupe{window: window, ring: make([]appendID, 0, min(window, 1024)), producers: make(map[uint64]*producerWindow)}
}

// lookup returns the entry of id, if it is in the window.
func (d *dedupe) lookup(id appendID) (dedupeEntry, bool) {
	if id.producer == 0 {
		return dedupeEntry{}, false
	}
	pw := d.producers[id.producer]
	if pw == nil {
		return dedupeEntry{}, false
	}
	live := pw.entries[pw.head:]
	if len(live) == 0 || id.seq > live[len(live)-1].seq {
		return dedupeEntry{}, false // above the producer's highest: new
	}
	i, ok := pw.find(id.seq)
	if !ok {
		return dedupeEntry{}, false
	}
	return dedupeEntry{id: id, result: live[i].result}, true
}

// add records id (with where its result will be), evicting the oldest
// id once the window is full.
func (d *dedupe) add(id appendID, result *appendResult) {
	if id.producer == 0 {
		return
	}
	if len(d.ring) < d.window {
		d.ring = append(d.ring, id)
	} else {
		d.remove(d.ring[d.next])
		d.ring[d.next] = id
		d.next = (d.next + 1) % d.window
	}
	pw := d.producers[id.producer]
	if pw == nil {
		pw = &producerWindow{}
		d.producers[id.producer] = pw
	}
	pw.insert(id.seq, result)
}

// remove drops one copy of id (evicted from the ring).
func (d *dedupe) remove(id appendID) {
	pw := d.producers[id.producer]
	if pw == nil {
		return
	}
	if pw.remove(id.seq) && pw.head == len(pw.entries) {
		delete(d.producers, id.producer)
	}
}

// ids returns the window's ids, oldest first (for a snapshot).
func (d *dedupe) ids() []appendID {
	out := make([]appendID, 0, len(d.ring))
	if len(d.ring) < d.window {
		return append(out, d.ring...)
	}
	out = append(out, d.ring[d.next:]...)
	return append(out, d.ring[:d.next]...)
}

// results returns the results of ids (as ids returns them): nil where
// none is known.
func (d *dedupe) results(ids []appendID) []*appendResult {
	out := make([]*appendResult, len(ids))
	for i, id := range ids {
		if e, ok := d.lookup(id); ok {
			out[i] = e.result
		}
	}
	return out
}

// learn sets the result of id, if it is in the window without one.
func (d *dedupe) learn(id appendID, r appendResult) {
	pw := d.producers[id.producer]
	if pw == nil {
		return
	}
	if i, ok := pw.find(id.seq); ok {
		if e := &pw.entries[pw.head+i]; e.result == nil {
			e.result = &r
		}
	}
}

// nearEnds is how far from either end of a run find looks one by one
// before it bisects: ids arrive nearly in order, so they are found there.
const nearEnds = 8

// find returns the index in entries[head:] of seq, or where it would go.
func (pw *producerWindow) find(seq uint64) (int, bool) {
	live := pw.entries[pw.head:]
	n := len(live)
	for i := 0; i < n && i < nearEnds; i++ { // the front: evictions
		if live[i].seq >= seq {
			return i, live[i].seq == seq
		}
	}
	for i := n - 1; i >= 0 && i >= n-nearEnds; i-- { // the back: additions
		if live[i].seq < seq {
			return i + 1, false
		}
		if live[i].seq == seq {
			return i, true
		}
	}
	i, ok := slices.BinarySearchFunc(live, seq, func(e seqEntry, seq uint64) int { return cmp.Compare(e.seq, seq) })
	return i, ok
}

// insert adds one copy of seq with its result.
func (pw *producerWindow) insert(seq uint64, result *appendResult) {
	live := pw.entries[pw.head:]
	if len(live) == 0 || seq > live[len(live)-1].seq {
		pw.entries = append(pw.entries, seqEntry{seq: seq, refs: 1, result: result})
		return
	}
	i, ok := pw.find(seq)
	if ok {
		live[i].refs++
		live[i].result = result
		return
	}
	pw.entries = slices.Insert(pw.entries, pw.head+i, seqEntry{seq: seq, refs: 1, result: result})
}

// remove drops one copy of seq and reports whether it was the last one.
func (pw *producerWindow) remove(seq uint64) bool {
	i, ok := pw.find(seq)
	if !ok {
		return false
	}
	live := pw.entries[pw.head:]
	if live[i].refs--; live[i].refs > 0 {
		return false
	}
	// Close the gap from the front (the entry is near it), then let go
	// of the front slot.
	copy(live[1:i+1], live[:i])
	pw.entries[pw.head] = seqEntry{}
	pw.head++
	if pw.head == len(pw.entries) {
		pw.entries, pw.head = pw.entries[:0], 0
	} else if pw.head >= 1024 && 2*pw.head >= len(pw.entries) {
		n := copy(pw.entries, pw.entries[pw.head:])
		clear(pw.entries[n:])
		pw.entries, pw.head = pw.entries[:n], 0
	}
	return true
}

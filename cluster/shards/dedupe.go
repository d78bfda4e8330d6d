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

// dedupeWindow is how many appends' ids a shard remembers.
const dedupeWindow = 1 << 16

// Past the window. How long a retry can come after its first copy is a
// matter of time (the write timeout, on each node a copy passed through),
// and 65,536 appends are a few seconds of one busy stream. So the window
// also keeps, per producer, the highest seq it evicted (its floor): a
// retry not in the window at or below its producer's floor may have been
// applied already, and is refused (ErrRetryTooLate) rather than stored a
// second time. Its publisher hears that the write failed, as when a
// shard has no leader; a producer's appends reach a shard nearly in seq
// order, so an append refused this way that was never stored has waited
// longer than the whole window. The floors are the log's too (evictions
// follow the log), travel in snapshots (encoding 5), and are bounded:
// the maxFloors producers whose floor rose last keep theirs (a producer
// is a node's process, so that is many restarts). The rule applies to
// entries of version 5 (entry.go), which a leader writes once every
// member knows it, so that replicas of two versions never decide a retry
// differently; the floors count from the first entry of version 5 after
// entries of others (fsm.noteVersion), and only a snapshot taken after it
// carries them (encoding 5).

// maxFloors bounds the producers whose floors a window keeps.
const maxFloors = 1024

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
	// floors holds, per producer, the highest seq evicted from the
	// window, and when it last rose (raised counts the rises): the
	// oldest rise goes first when there are more than maxFloors.
	floors map[uint64]floor
	raised uint64
}

// floor is a producer's highest evicted seq; at orders the floors by
// their last rise.
type floor struct{ seq, at uint64 }

// producerFloor is a producer's floor as a snapshot lists it.
type producerFloor struct{ producer, seq uint64 }

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
	return &dedupe{window: window, ring: make([]appendID, 0, min(window, 1024)), producers: make(map[uint64]*producerWindow),
		floors: make(map[uint64]floor)}
}

// tooLate reports whether id, not in the window, is at or below its
// producer's floor: an append that may have been applied and evicted.
func (d *dedupe) tooLate(id appendID) bool {
	if id.producer == 0 {
		return false
	}
	f, ok := d.floors[id.producer]
	return ok && id.seq <= f.seq
}

// raiseFloor records that id left the window.
func (d *dedupe) raiseFloor(id appendID) {
	f, ok := d.floors[id.producer]
	if ok && id.seq <= f.seq {
		return
	}
	d.raised++
	d.floors[id.producer] = floor{seq: id.seq, at: d.raised}
	if !ok && len(d.floors) > maxFloors {
		oldest, at := uint64(0), uint64(0)
		for p, f := range d.floors {
			if at == 0 || f.at < at {
				oldest, at = p, f.at
			}
		}
		delete(d.floors, oldest)
	}
}

// floorList returns the floors, oldest rise first (for a snapshot).
func (d *dedupe) floorList() []producerFloor {
	type ranked struct {
		producerFloor
		at uint64
	}
	all := make([]ranked, 0, len(d.floors))
	for p, f := range d.floors {
		all = append(all, ranked{producerFloor{p, f.seq}, f.at})
	}
	slices.SortFunc(all, func(a, b ranked) int { return cmp.Compare(a.at, b.at) })
	out := make([]producerFloor, len(all))
	for i, r := range all {
		out[i] = r.producerFloor
	}
	return out
}

// clearFloors forgets the floors (noteVersion).
func (d *dedupe) clearFloors() {
	clear(d.floors)
	d.raised = 0
}

// setFloors replaces the floors with a snapshot's, oldest rise first.
func (d *dedupe) setFloors(floors []producerFloor) {
	clear(d.floors)
	d.raised = 0
	for _, f := range floors {
		d.raised++
		d.floors[f.producer] = floor{seq: f.seq, at: d.raised}
	}
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
		d.raiseFloor(d.ring[d.next])
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

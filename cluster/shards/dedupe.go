package shards

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
// their ids. A replayed append's result (its first offset) is not known
// again; a retry of it is answered with offset 0 and no error (MQTT
// acknowledgements carry no offset; a REST retry of that case reports 0).

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
type dedupe struct {
	ring  []dedupeEntry
	next  int // where the next id goes
	index map[appendID]int
}

type dedupeEntry struct {
	id     appendID
	result *appendResult // nil when not known (replayed, or restored)
}

func newDedupe() *dedupe {
	return &dedupe{ring: make([]dedupeEntry, 0, 1024), index: make(map[appendID]int)}
}

// lookup returns the entry of id, if it is in the window.
func (d *dedupe) lookup(id appendID) (dedupeEntry, bool) {
	if id.producer == 0 {
		return dedupeEntry{}, false
	}
	pos, ok := d.index[id]
	if !ok {
		return dedupeEntry{}, false
	}
	return d.ring[pos], true
}

// add records id (with where its result will be), evicting the oldest
// id once the window is full.
func (d *dedupe) add(id appendID, result *appendResult) {
	if id.producer == 0 {
		return
	}
	e := dedupeEntry{id: id, result: result}
	if len(d.ring) < dedupeWindow {
		d.index[id] = len(d.ring)
		d.ring = append(d.ring, e)
		return
	}
	old := d.ring[d.next]
	if pos, ok := d.index[old.id]; ok && pos == d.next {
		delete(d.index, old.id)
	}
	d.ring[d.next] = e
	d.index[id] = d.next
	d.next = (d.next + 1) % dedupeWindow
}

// ids returns the window's ids, oldest first (for a snapshot).
func (d *dedupe) ids() []appendID {
	out := make([]appendID, 0, len(d.ring))
	if len(d.ring) < dedupeWindow {
		for _, e := range d.ring {
			out = append(out, e.id)
		}
		return out
	}
	for i := 0; i < dedupeWindow; i++ {
		out = append(out, d.ring[(d.next+i)%dedupeWindow].id)
	}
	return out
}

package cq

import (
	"cmp"
	"container/heap"
	"time"

	"github.com/mqstream/mqstream/query"
)

// EMIT_INTERVAL('1s') rate-limits the updates of a query that emits
// changes, per group (key, and window if any): a group outputs its row at
// most once per interval, and the latest row of an update held back is
// never lost.
//
// Time is the records' (their _timestamp), not the clock's, so that the
// rows are a function of the records: an update at time t is output at
// once if t is at least the group's last output time plus the interval,
// and otherwise held (pending). A held update is due at that last time
// plus the interval, or at its window's end if sooner (the final value
// of a closing window; on event time, the end plus the idle timeout, or
// at once when the newest event time closes the window:
// eventchanges.go). Due updates are output, with the group's row as
// it is then, before the first record at or after their due time is
// processed, or when the input has been read to its end and the query's
// flush time (now for a push query) has passed them: a record appended
// later is stamped later, so it would not have changed them. They come
// in order of due time, window start and key; the group's last output
// time becomes the due time. Either way the same rows, in the same order.
//
// Exactly once (persistent queries): a restart replays the windows
// holding the next record (changes.go), and with them the rate limit's
// decisions. What the records do not tell is whether held updates were
// output at the input's end (now - IdleTimeout for a persistent query)
// before a crash: every output request carries the time up to which
// held updates have been output (mqstream-flushed, and a hint under
// flushKey), and the replay outputs none due by then.

// propFlushed is the time (unix ns) up to which a rate-limited query has
// output its held updates.
const propFlushed = "mqstream-flushed"

// flushKey keeps the progress hint of propFlushed.
func flushKey(id string) []byte { return []byte("f/" + id) }

// groupRef names a group of a changer: its window's start and key.
type groupRef struct {
	start int64
	key   string
}

// heldRow is an update held back by the rate limit, due at due.
type heldRow struct {
	due int64
	ref groupRef
	g   *query.Group
}

// heldRows is a min-heap of held updates by (due, window start, key).
type heldRows []heldRow

func (h heldRows) Len() int { return len(h) }
func (h heldRows) Less(i, j int) bool {
	if c := cmp.Compare(h[i].due, h[j].due); c != 0 {
		return c < 0
	}
	if c := cmp.Compare(h[i].ref.start, h[j].ref.start); c != 0 {
		return c < 0
	}
	return h[i].ref.key < h[j].ref.key
}
func (h heldRows) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *heldRows) Push(x any)   { *h = append(*h, x.(heldRow)) }
func (h *heldRows) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

// limiter is the rate limit of a changer (EMIT_INTERVAL); the changer's
// goroutine owns it.
type limiter struct {
	every int64 // the interval
	// last is each group's last output time; held the groups with an
	// update not output yet (also in due).
	last map[groupRef]int64
	held map[groupRef]bool
	due  heldRows
	// flushed is the greatest time flushTo was called with; quietTo,
	// after a restart, the one the progress carries: held updates due
	// by it were output before.
	flushed, quietTo int64
}

func newLimiter(every time.Duration) *limiter {
	return &limiter{every: int64(every), last: map[groupRef]int64{}, held: map[groupRef]bool{}, flushed: -1 << 63, quietTo: -1 << 63}
}

// limited appends the row of group g (window start, key), updated by a
// record at ts, to out, or holds it back.
func (ch *changer) limited(out []query.Output, ref groupRef, g *query.Group, ts int64, quiet bool) []query.Output {
	l := ch.limit
	last, seen := l.last[ref]
	if !seen {
		ch.bytes += limitBytes + int64(len(ref.key)) // counted with the groups (state.go)
	}
	if !seen || ts >= last+l.every {
		l.last[ref] = ts
		return ch.result(out, g, time.Unix(0, ref.start).UTC(), quiet)
	}
	if !l.held[ref] {
		l.held[ref] = true
		due := last + l.every
		if ch.size > 0 {
			// On event time the window closes at the latest once the
			// records' append time is the idle timeout past its end.
			due = min(due, ref.start+ch.size+ch.idle)
		}
		heap.Push(&l.due, heldRow{due: due, ref: ref, g: g})
	}
	return out
}

// flushTo appends the rows of the held updates due at or before t to
// out (EMIT_INTERVAL; nothing without).
func (ch *changer) flushTo(t int64, out []query.Output, quiet bool) []query.Output {
	l := ch.limit
	if l == nil {
		return out
	}
	l.flushed = max(l.flushed, t)
	for len(l.due) > 0 && l.due[0].due <= t {
		h := heap.Pop(&l.due).(heldRow)
		if !l.held[h.ref] {
			continue // output when its window closed (event time)
		}
		delete(l.held, h.ref)
		l.last[h.ref] = h.due
		out = ch.result(out, h.g, time.Unix(0, h.ref.start).UTC(), quiet || h.due <= l.quietTo)
	}
	return out
}

// limitBytes estimates the memory of a group's entry in the rate limit,
// besides its key.
const limitBytes = 64

// forget drops the rate limit's memory of the groups of the window
// starting at s, which closes (its held updates were due by its end).
func (ch *changer) forget(s int64, w map[string]*query.Group) {
	for k := range w {
		ref := groupRef{s, k}
		if _, ok := ch.limit.last[ref]; ok {
			delete(ch.limit.last, ref)
			ch.bytes -= limitBytes + int64(len(k))
		}
		delete(ch.limit.held, ref)
	}
}

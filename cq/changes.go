package cq

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/mqstream/mqstream/query"
	"github.com/mqstream/mqstream/streams"
)

// A query that emits changes (EMIT CHANGES, and every query without a
// window) outputs, for each input record, the updated row of each window
// holding it: one for a tumbling window, size/slide for a hopping one,
// one per record for a filter or transform without state.
//
// Exactly once: each output request carries, in the mqstream-input-offset
// user property, the offset of the last input record whose rows it
// completes. The row of a record depends on the records before it in its
// windows only, so after a restart the query reads its input again from
// the start of the first window holding the next record, rebuilding the
// state without output, and outputs from the next record on: the same
// rows as an uninterrupted run. A window's state is freed once the
// watermark passes its end.

// changer is the state of a query that emits changes: a group per window
// and key (per key for a push query aggregating without a window; none
// for a query without state). One goroutine owns it.
type changer struct {
	c         *query.Continuous
	size, hop int64
	// windows holds the groups by window start (0 without a window).
	windows map[int64]map[string]*query.Group
	wm      int64 // as windower.wm
	started bool
	groups  int
	bytes   int64 // the estimated memory of the groups (state.go)
	// keep (views) keeps every window: the watermark frees none and no
	// record is late; floor is the earliest window start a view makes
	// (windows before it hold records retention deleted).
	keep  bool
	floor int64
	// look is the view a lookup join (query.JoinLookup) reads; ctx ends
	// the waits for it.
	look *viewState
	ctx  context.Context
	// limit rate-limits the updates (EMIT_INTERVAL, limit.go), if set.
	// Its held updates must be flushed (flushTo) up to a watermark
	// before advance frees the windows it closes.
	limit *limiter
	counts
}

func newChanger(c *query.Continuous) *changer {
	ch := &changer{c: c, windows: map[int64]map[string]*query.Group{}}
	if c.Windowed() {
		ch.size, ch.hop = int64(c.Window.Size), int64(c.Window.Hop())
	}
	if c.Hints.EmitInterval > 0 {
		ch.limit = newLimiter(c.Hints.EmitInterval)
	}
	return ch
}

// add feeds one record and appends the rows it updates to out, in window
// order, unless quiet (a restart rebuilding its state); with
// EMIT_INTERVAL, first the held updates due by its time. A record whose
// windows have all closed is late: counted, not added.
func (ch *changer) add(r *streams.Record, out []query.Output, quiet bool) []query.Output {
	ch.in++
	ts := r.Timestamp.UnixNano()
	ch.lastTS = ts
	if ch.look != nil {
		defer ch.advance(ts)
		return ch.lookup(r, out, quiet)
	}
	out = ch.flushTo(ts, out, quiet)
	var first, last int64 // the windows holding the record
	if ch.size > 0 {
		first, last = ch.c.Window.FirstStart(ts), ch.c.Window.LastStart(ts)
		if ch.started && !ch.keep {
			first = max(first, ch.c.Window.FirstStart(ch.wm))
		}
		if first > last {
			ch.late++
			return out
		}
	}
	defer ch.advance(ts)
	key, ok, err := ch.c.Eval(r)
	if err != nil {
		ch.skip(err)
		return out
	}
	if !ok {
		return out
	}
	if !ch.c.Stateful && ch.size == 0 {
		// A filter or transform: the record alone makes its row.
		g := ch.c.NewGroup()
		if err := ch.c.Add(g); err != nil {
			ch.skip(err)
			return out
		}
		return ch.result(out, g, time.Time{}, quiet)
	}
	for s := first; s <= last; s += max(ch.hop, 1) {
		if ch.size > 0 && s < ch.floor {
			continue
		}
		w := ch.windows[s]
		if w == nil {
			w = map[string]*query.Group{}
			ch.windows[s] = w
		}
		g := w[string(key)]
		if g == nil {
			g = ch.c.NewGroup()
			w[string(key)] = g
			ch.groups++
			ch.bytes += ch.groupBytes(string(key), g)
		}
		if err := ch.c.Add(g); err != nil {
			ch.skip(err)
			continue
		}
		if ch.limit != nil {
			out = ch.limited(out, groupRef{s, string(key)}, g, ts, quiet)
		} else {
			out = ch.result(out, g, time.Unix(0, s).UTC(), quiet)
		}
		if ch.size == 0 {
			break
		}
	}
	return out
}

func (ch *changer) result(out []query.Output, g *query.Group, start time.Time, quiet bool) []query.Output {
	if quiet {
		return out
	}
	o, ok, err := ch.c.Result(g, start)
	if err != nil {
		ch.skip(err)
		return out
	}
	if ok {
		out = append(out, o)
	}
	return out
}

func (ch *changer) skip(err error) {
	ch.skipped++
	ch.lastErr = err
}

// advance raises the watermark to wm and frees the windows it closes.
func (ch *changer) advance(wm int64) {
	if ch.started && wm <= ch.wm {
		return
	}
	ch.wm, ch.started = wm, true
	if ch.size == 0 || ch.keep {
		return
	}
	for s := range ch.windows {
		if s+ch.size <= wm {
			ch.drop(s)
		}
	}
}

// groupBytes estimates the memory of key's group g in a window.
func (ch *changer) groupBytes(key string, g *query.Group) int64 {
	return keyOverhead + int64(len(key)) + ch.c.GroupBytes(g)
}

// drop frees the window starting at s.
func (ch *changer) drop(s int64) {
	w := ch.windows[s]
	for k, g := range w {
		ch.bytes -= ch.groupBytes(k, g)
	}
	if ch.limit != nil {
		ch.forget(s, w)
	}
	ch.groups -= len(w)
	delete(ch.windows, s)
}

// stateSize is the estimated memory of the groups, and the keys of the
// window holding most.
func (ch *changer) stateSize() (bytes int64, keys int) {
	for _, w := range ch.windows {
		keys = max(keys, len(w))
	}
	return ch.bytes, keys
}

// openWindows returns the starts of the open windows, sorted.
func (ch *changer) openWindows() []int64 {
	out := make([]int64, 0, len(ch.windows))
	for s := range ch.windows {
		out = append(out, s)
	}
	slices.SortFunc(out, cmp.Compare[int64])
	return out
}

// maxRequestRows bounds the rows of one output request of a query that
// emits changes: a batch of input records is split into requests of
// whole records.
const maxRequestRows = 1000

// runChanges recovers the progress of a query that emits changes and runs
// it until an error.
func (r *runner) runChanges(ctx context.Context) error {
	m, c, id := r.m, r.c, r.def.ID
	if err := r.ensureOutput(ctx); err != nil {
		return err
	}
	next, err := recoverInput(m.opts.Reader, m.opts.KV, id, r.sink())
	if err != nil {
		return err
	}
	ch := newChanger(c)
	ch.ctx = ctx
	if ch.limit != nil {
		if ch.limit.quietTo, _, err = recoverProgress(m.opts.Reader, m.opts.KV, id, r.sink(), flushKey(id), propFlushed); err != nil {
			return err
		}
	}
	pos := next
	if next == 0 {
		pos = r.def.Start // no progress yet: START('latest') reads from the end it had
	}
	if next > 0 && c.Stateful {
		// Rebuild the windows holding the next record: from the first
		// window holding the last record processed.
		if pos, err = r.rebuildFrom(next - 1); err != nil {
			return err
		}
	}
	hinted, hintedAt := int64(next), m.opts.Now()
	var outCount int64
	var lastEmit time.Time
	ahead := newReadAhead(m.opts.Reader, c.Source)
	for {
		if c.Join != nil {
			// Each batch: a view paused and resumed has a new state.
			if ch.look, err = r.lookedUp(ctx); err != nil {
				return err
			}
		}
		recs, err := ahead.read(pos)
		if err != nil {
			return fmt.Errorf("read stream %s: %w", c.Source, err)
		}
		var rows []query.Output
		for i := range recs {
			rec := &recs[i]
			rows = ch.add(rec, rows, rec.Offset < next)
			pos = rec.Offset + 1
			if len(rows) >= maxRequestRows || i == len(recs)-1 && len(rows) > 0 {
				if err := r.outputRows(rows, r.changeMarkers(ch, rec.Offset), &outCount, &lastEmit); err != nil {
					return err
				}
				rows = rows[:0]
				r.hintChanges(ch, pos)
				hinted, hintedAt = int64(pos), m.opts.Now()
			}
		}
		notify, end, err := m.opts.Reader.Notify(c.Source)
		if err != nil {
			return fmt.Errorf("stream %s: %w", c.Source, err)
		}
		now := m.opts.Now()
		atTail := pos >= end
		if atTail {
			wm := now.Add(-m.idleOf(c.Hints.IdleTimeout)).UnixNano()
			// Held updates (EMIT_INTERVAL) due by then: a record appended
			// later is stamped later.
			if rows := ch.flushTo(wm, nil, false); len(rows) > 0 {
				if err := r.outputRows(rows, r.changeMarkers(ch, pos-1), &outCount, &lastEmit); err != nil {
					return err
				}
				r.hintChanges(ch, pos)
				hinted, hintedAt = int64(pos), now
			}
			ch.advance(wm) // frees windows input has left behind
		}
		if int64(pos) > hinted && pos > next && now.Sub(hintedAt) >= m.opts.HintInterval {
			r.hintChanges(ch, pos) // records that made no rows
			hinted, hintedAt = int64(pos), now
		}
		size, nkeys := ch.stateSize()
		r.report(view{running: true, wm: ch.wm, started: ch.started, windows: len(ch.windows), keys: ch.groups, counts: &ch.counts,
			out: outCount, lastEmit: lastEmit, pos: pos, next: end, stateBytes: size, stateKeys: nkeys})
		if err := r.checkState(size, nkeys); err != nil {
			return err // its output is durable up to pos
		}
		if !atTail {
			continue
		}
		if err := r.wait(ctx, notify); err != nil {
			return err
		}
	}
}

// changeMarkers are the user properties of an output request of a query
// emitting changes whose rows the input record at offset last completes.
func (r *runner) changeMarkers(ch *changer, last uint64) []streams.UserProperty {
	props := markers(r.def.ID, propInput, int64(last))
	if ch.limit != nil {
		props = append(props, streams.UserProperty{Key: propFlushed, Value: strconv.FormatInt(ch.limit.flushed, 10)})
	}
	return props
}

// hintChanges writes the progress hints of a query emitting changes once
// its output is durable: the next input offset, and the time up to which
// held updates were output (EMIT_INTERVAL).
func (r *runner) hintChanges(ch *changer, next uint64) {
	r.hintAt(inputKey(r.def.ID), encodeHint(int64(next)))
	if ch.limit != nil {
		r.hintAt(flushKey(r.def.ID), encodeHint(ch.limit.flushed))
	}
}

// rebuildFrom returns where a restarted query that emits changes reads
// its input again: the start of the first window holding the record at
// offset last (the last processed), so that the windows holding the
// records after it are whole again.
func (r *runner) rebuildFrom(last uint64) (uint64, error) {
	m, c := r.m, r.c
	recs, err := m.opts.Reader.Read(c.Source, last, streams.ReadOptions{MaxRecords: 1})
	if err != nil {
		return 0, fmt.Errorf("read stream %s: %w", c.Source, err)
	}
	if len(recs) == 0 || recs[0].Offset != last || !c.Windowed() {
		// Trimmed by retention (or no window to rebuild): from what is kept.
		return last + 1, nil
	}
	start := c.Window.FirstStart(recs[0].Timestamp.UnixNano())
	pos, err := m.opts.Reader.OffsetAt(c.Source, time.Unix(0, start))
	if err != nil {
		return 0, fmt.Errorf("stream %s: %w", c.Source, err)
	}
	return pos, nil
}

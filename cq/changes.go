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
// Exactly once (on _timestamp; on event time, see eventchanges.go): each
// output request carries, in the mqstream-input-offset user property,
// the offset of the last input record whose rows it completes. The row
// of a record depends on the records before it in its windows only, so
// after a restart the query reads its input again from the start of the
// first window holding the next record, rebuilding the state without
// output, and outputs from the next record on: the same rows as an
// uninterrupted run. A window's state is freed once the
// watermark passes its end.

// changer is the state of a query that emits changes: a group per window
// and key (per key for a push query aggregating without a window; none
// for a query without state). One goroutine owns it.
type changer struct {
	c         *query.Continuous
	size, hop int64
	// windows holds the groups by window start (0 without a window).
	windows map[int64]map[string]*query.Group
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
	// intake holds the watermark (as windower's) and the counters; on
	// event time also where a replay stands and the late records
	// (eventchanges.go). Its idle timeout is 0 on append time.
	intake
	// first holds the first record of each window (event time: where a
	// replay starts).
	first map[int64]firstRecord
	// nextEnd is at most the earliest end of the windows (closing).
	nextEnd int64
}

func newChanger(c *query.Continuous) *changer {
	ch := &changer{c: c, windows: map[int64]map[string]*query.Group{}, intake: newIntake(c)}
	if c.Windowed() {
		ch.size, ch.hop = int64(c.Window.Size), int64(c.Window.Hop())
	}
	if c.EventTime {
		ch.first = map[int64]firstRecord{}
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
	if ch.c.EventTime {
		return ch.addEvent(r, out, quiet)
	}
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
	return ch.update(string(key), first, last, ts, out, quiet)
}

// update adds the record Eval read last, of key, to the windows starting
// from first to last (a group per key without a window), and appends
// their updated rows to out (held back by EMIT_INTERVAL, at time ts).
func (ch *changer) update(key string, first, last, ts int64, out []query.Output, quiet bool) []query.Output {
	for s := first; s <= last; s += max(ch.hop, 1) {
		if ch.size > 0 && s < ch.floor {
			continue
		}
		w := ch.windows[s]
		if w == nil {
			w = map[string]*query.Group{}
			ch.windows[s] = w
			ch.nextEnd = min(ch.nextEnd, s+ch.size)
			if ch.first != nil {
				ch.first[s] = ch.cur
			}
		}
		g := w[key]
		if g == nil {
			g = ch.c.NewGroup()
			w[key] = g
			ch.groups++
			ch.bytes += ch.groupBytes(key, g)
		}
		if err := ch.c.Add(g); err != nil {
			ch.skip(err)
			continue
		}
		if ch.limit != nil {
			out = ch.limited(out, groupRef{s, key}, g, ts, quiet)
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

// advance raises the watermark to wm and frees the windows it closes.
func (ch *changer) advance(wm int64) {
	if ch.started && wm <= ch.wm {
		return
	}
	ch.wm, ch.started = wm, true
	for _, s := range ch.closing() {
		ch.drop(s)
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
	delete(ch.first, s)
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
	m, c := r.m, r.c
	if err := r.ensureOutput(ctx); err != nil {
		return err
	}
	ch := newChanger(c)
	ch.ctx = ctx
	recoverChanges := r.recoverChanges
	if c.EventTime {
		recoverChanges = r.recoverEventChanges
	}
	pos, next, err := recoverChanges(ch)
	if err != nil {
		return err
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
				at := m.opts.Now() // before the write, as in sessionchanges.go
				if err := r.outputChanges(ch, rows, rec.Offset, &outCount, &lastEmit); err != nil {
					return err
				}
				rows = rows[:0]
				r.hintChanges(ch, pos)
				hinted, hintedAt = int64(pos), at
			}
		}
		// Late records that made no rows, before a hint covers them.
		notify, end, atTail, now, err := r.endOfBatch(ch.takeLate(), pos)
		if err != nil {
			return err
		}
		if atTail {
			wm := now.Add(-m.idleOf(c.Hints.IdleTimeout)).UnixNano()
			// Held updates (EMIT_INTERVAL) due by then: a record appended
			// later is stamped later.
			if rows := ch.flushTo(wm, nil, false); len(rows) > 0 {
				if err := r.outputChanges(ch, rows, pos-1, &outCount, &lastEmit); err != nil {
					return err
				}
				r.hintChanges(ch, pos)
				hinted, hintedAt = int64(pos), now
			}
			// Frees windows input has left behind. On event time, wm is
			// the append time a next record would have, whose idle term
			// is wm - idle (eventchanges.go).
			ch.advance(wm - ch.idle)
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

// outputChanges writes the late records kept (event time), then rows,
// the rows of a query emitting changes up to the input record at offset
// last.
func (r *runner) outputChanges(ch *changer, rows []query.Output, last uint64, count *int64, lastEmit *time.Time) error {
	if err := r.writeLate(ch.takeLate()); err != nil {
		return err
	}
	return r.outputRows(rows, r.changeMarkers(ch, last), count, lastEmit)
}

// changeMarkers are the user properties of an output request of a query
// emitting changes whose rows the input record at offset last completes
// (on event time, its event-time progress instead).
func (r *runner) changeMarkers(ch *changer, last uint64) []streams.UserProperty {
	if r.c.EventTime {
		return ch.changeProgress().marks(r.def.ID)
	}
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
	if r.c.EventTime {
		r.hintAt(eventChangesKey(r.def.ID), ch.changeProgress().encode())
		return
	}
	r.hintAt(inputKey(r.def.ID), encodeHint(int64(next)))
	if ch.limit != nil {
		r.hintAt(flushKey(r.def.ID), encodeHint(ch.limit.flushed))
	}
}

// recoverChanges sets up changer ch of a restarting query on append
// time: it returns the input offset to read again from and the next one
// to output rows for (0 for a query without progress).
func (r *runner) recoverChanges(ch *changer) (pos, next uint64, err error) {
	m, c, id := r.m, r.c, r.def.ID
	if next, err = recoverInput(m.opts.Reader, r.place.kv, id, r.sink()); err != nil {
		return 0, 0, err
	}
	if ch.limit != nil {
		if ch.limit.quietTo, _, err = recoverProgress(m.opts.Reader, r.place.kv, id, r.sink(), flushKey(id), propFlushed); err != nil {
			return 0, 0, err
		}
	}
	if next == 0 {
		return r.def.Start, 0, nil // no progress yet: START('latest') reads from the end it had
	}
	if !c.Stateful {
		return next, next, nil
	}
	// Rebuild the windows holding the next record: from the first window
	// holding the last record processed.
	pos, err = r.rebuildFrom(next - 1)
	return pos, next, err
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

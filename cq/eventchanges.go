package cq

import (
	"encoding/binary"
	"fmt"
	"maps"
	"math"
	"slices"
	"strconv"
	"time"

	"github.com/mqstream/mqstream/query"
	"github.com/mqstream/mqstream/streams"
)

// EMIT CHANGES on event time (a tumbling or hopping window on an
// expression of the record). Records come in any time order; the
// watermark is the clock of EMIT FINAL (eventtime.go). Each record whose
// windows are not all closed updates its group in each open window
// holding it and outputs the updated rows, at once or held back by
// EMIT_INTERVAL: a record within the grace of an older window still open
// outputs that window's corrected row. A record all of whose windows have
// closed is late, as with EMIT FINAL: counted, and written to
// <query>_late with WITH (late = TRUE). A window's groups are freed once
// the watermark passes its end, so the state is keys x open windows.
//
// EMIT_INTERVAL measures time in append time (the records' _timestamp,
// which never decreases), as on _timestamp (limit.go). Windows close by
// one of two terms of the watermark:
//
//   - the newest event time less GRACE, raised by a record: the windows
//     it closes output their held updates (in order of window start and
//     key) right after that record's rows, then are freed;
//   - the idle term, the append time of the next record less the idle
//     timeout: a window closes by it at the append time end + idle, so a
//     held update is due at the latest then, and comes (flushTo) before
//     its window is freed.
//
// At the input's end a persistent query goes on as if a record were
// appended at now - idle (the margin the held updates of queries on
// _timestamp wait, well over the commit latency between a record's
// stamp and its visibility): held updates due by then come, and the
// windows close that such a record's idle term would close (now - 2 x
// idle); a push query, which keeps nothing, takes now. Held updates
// thus come in the order of one timeline, whether the query reached them
// at the input's end or at the next record: the rows are a function of
// the records, and exactly once like EMIT FINAL on event time. Each output request carries the event-time progress (the
// watermark, the first record of the oldest open window with the
// watermark before it, the next input offset) and the time up to which
// held updates were output (mqstream-flushed). A restart reads the input
// again from that first record with that watermark, quietly up to the
// next offset: the open windows, and the rate limit's decisions, are
// rebuilt exactly; a window that had closed and is rebuilt in part
// closes again without output (at the same record, or by the idle term
// at a time the progress's flushed time covers).

// addEvent is add on event time.
func (ch *changer) addEvent(r *streams.Record, out []query.Output, quiet bool) []query.Output {
	at := r.Timestamp.UnixNano()
	// Held updates due by the record's append time, among them all those
	// of the windows the idle term closes now.
	out = ch.flushTo(at, out, quiet)
	ch.begin(r)
	out = ch.closeEvent(out, quiet)
	key, ok, err := ch.c.Eval(r)
	if err != nil {
		ch.skipRecord(err, true)
		return out
	}
	ts := ch.c.Time()
	first, last := ch.c.Window.FirstStart(ts), ch.c.Window.LastStart(ts)
	if ch.started {
		first = max(first, ch.c.Window.FirstStart(ch.wm))
	}
	if first > last {
		ch.lateRecord(r)
		return out
	}
	if ok {
		out = ch.update(string(key), first, last, at, out, quiet)
	}
	ch.after(ts)
	return ch.closeEvent(out, quiet)
}

// closeEvent closes the windows the watermark has passed: the updates
// EMIT_INTERVAL holds for them come first, in order of window start and
// key, then their groups are freed.
func (ch *changer) closeEvent(out []query.Output, quiet bool) []query.Output {
	for _, s := range ch.closing() {
		if l := ch.limit; l != nil {
			w := ch.windows[s]
			var keys []string
			for k := range w {
				if l.held[groupRef{s, k}] {
					keys = append(keys, k)
				}
			}
			slices.Sort(keys)
			for _, k := range keys {
				delete(l.held, groupRef{s, k}) // its entry in l.due is skipped
				out = ch.result(out, w[k], time.Unix(0, s).UTC(), quiet)
			}
		}
		ch.drop(s)
	}
	return out
}

// closing returns the starts of the windows ending at or before the
// watermark, oldest first (none for views, which keep their windows).
func (ch *changer) closing() []int64 {
	if ch.size == 0 || ch.keep || !ch.started || ch.nextEnd > ch.wm {
		return nil
	}
	var out []int64
	next := int64(math.MaxInt64)
	for s := range ch.windows {
		if s+ch.size <= ch.wm {
			out = append(out, s)
		} else {
			next = min(next, s+ch.size)
		}
	}
	ch.nextEnd = next
	slices.Sort(out)
	return out
}

// eventProgress is the progress of a changer on event time, without the
// flushed time: from the first record of its oldest open window.
func (ch *changer) eventProgress() eventProgress {
	return ch.intake.progress(maps.Values(ch.first))
}

// changeProgress is the progress of a query emitting changes on event
// time: its event-time progress and, with EMIT_INTERVAL, the time up to
// which held updates were output (math.MinInt64 without).
type changeProgress struct {
	eventProgress
	flushed int64
}

func (ch *changer) changeProgress() changeProgress {
	p := changeProgress{eventProgress: ch.eventProgress(), flushed: math.MinInt64}
	if ch.limit != nil {
		p.flushed = max(ch.limit.flushed, ch.limit.quietTo)
	}
	return p
}

// eventChangesKey keeps the progress hint of a query emitting changes on
// event time.
func eventChangesKey(id string) []byte { return []byte("c/" + id) }

func (p changeProgress) marks(id string) []streams.UserProperty {
	return append(p.eventProgress.marks(id), streams.UserProperty{Key: propFlushed, Value: strconv.FormatInt(p.flushed, 10)})
}

func (p changeProgress) encode() []byte {
	return binary.BigEndian.AppendUint64(p.eventProgress.encode(), uint64(p.flushed))
}

// later reports whether p was taken after q (every field only grows).
func (p changeProgress) later(q changeProgress) bool {
	switch {
	case p.next != q.next:
		return p.next > q.next
	case p.flushed != q.flushed:
		return p.flushed > q.flushed
	case p.wm != q.wm:
		return p.wm > q.wm
	}
	return p.from > q.from
}

// recoverEventChanges returns the progress of query id, emitting changes
// on event time: that of its newest output record or of its hint,
// whichever was taken last; ok is false for a query that has made none.
func recoverEventChanges(r Reader, kv KV, id string, sink streamFrom) (p changeProgress, ok bool, err error) {
	v, found, err := kv.Get(eventChangesKey(id))
	if err != nil {
		return p, false, fmt.Errorf("progress hint: %w", err)
	}
	if found {
		if len(v) != 40 && len(v) != 48 {
			return p, false, fmt.Errorf("cq: event-time changes progress hint of %d bytes", len(v))
		}
		u := func(i int) uint64 { return binary.BigEndian.Uint64(v[8*i:]) }
		p = changeProgress{eventProgress{wm: int64(u(0)), fromWM: int64(u(1)), from: u(2), next: u(3)}, int64(u(4))}
		ok = true
		if len(v) == 48 {
			sink.from = max(sink.from, u(5)) // see recoverProgress
		}
	}
	var out changeProgress
	found, err = lastOutput(r, sink, func(rec *streams.Record) bool {
		vals := [5]int64{}
		for i, prop := range []string{propWatermark, propFromWM, propFrom, propNext, propFlushed} {
			var okP bool
			if vals[i], okP = markerOf(rec, id, prop); !okP {
				return false
			}
		}
		out = changeProgress{eventProgress{wm: vals[0], fromWM: vals[1], from: uint64(vals[2]), next: uint64(vals[3])}, vals[4]}
		return true
	})
	if err != nil {
		return p, false, err
	}
	if found && (!ok || out.later(p)) {
		p, ok = out, true
	}
	return p, ok, nil
}

// recoverEventChanges sets up changer ch of a restarting query on event
// time: it returns the input offset to read again from and the next one
// to output rows for (0 for a query without progress).
func (r *runner) recoverEventChanges(ch *changer) (pos, next uint64, err error) {
	m, c, id := r.m, r.c, r.def.ID
	ch.idle = int64(m.idleOf(c.Hints.IdleTimeout))
	if err := r.recoverLate(&ch.intake); err != nil {
		return 0, 0, err
	}
	p, ok, err := recoverEventChanges(m.opts.Reader, r.place.kv, id, r.sink())
	if err != nil || !ok {
		return r.def.Start, 0, err
	}
	ch.resumeEvent(p.eventProgress)
	ch.next = p.from // where the replay starts: the progress of a changer that read nothing since
	if ch.limit != nil {
		ch.limit.quietTo = p.flushed
	}
	return p.from, p.next, nil
}

// recoverLate sets where the writing of late records resumes: after the
// last one the query's late stream holds (WITH (late = TRUE)).
func (r *runner) recoverLate(in *intake) error {
	if r.c.LateStream == "" {
		return nil
	}
	last, found, err := lastMarker(r.m.opts.Reader, r.def.ID, streamFrom{name: r.c.LateStream}, propInput)
	if err != nil {
		return err
	}
	if found {
		in.lateFrom = uint64(last) + 1
	}
	return nil
}

package cq

import (
	"encoding/binary"
	"fmt"
	"iter"
	"math"
	"strconv"
	"time"

	"github.com/mqstream/mqstream/query"
	"github.com/mqstream/mqstream/streams"
)

// clock is the watermark of a query outputting final rows: every window
// ending at or before wm is complete. It is
//
//	max(newest record time - grace, newest record's _timestamp - idle, now - idle at the input's end)
//
// The second term is the idle timeout read off the records themselves: a
// record appended at t comes after every instant the query can have been
// idle at its input's end before it (records are stamped when stored), so
// when a record is judged late it no longer matters whether the query was
// idle before it, or for how long. Whether a record is late is thus a
// function of the records only, never of when they were read: a replay
// from any record, started from the watermark the query had before that
// record, takes the same decisions. Window closing still follows the
// clock at the input's end (advance).
//
// With _timestamp as time and grace 0, the first term dominates: the
// watermark is the newest record's time, as it always was.
type clock struct {
	wm      int64
	started bool // false until a watermark is known
	grace   int64
	idle    int64
}

// advance raises the watermark to wm (it never goes back).
func (k *clock) advance(wm int64) {
	if !k.started || wm > k.wm {
		k.wm, k.started = wm, true
	}
}

// before applies record r's append time to the watermark, before r is
// judged late or not.
func (k *clock) before(r *streams.Record) {
	if k.idle > 0 {
		k.advance(r.Timestamp.UnixNano() - k.idle)
	}
}

// after applies a record's time ts once it has been added.
func (k *clock) after(ts int64) { k.advance(ts - k.grace) }

// mark is the watermark before a record: a replay from the record starts
// from it.
func (k *clock) mark() int64 {
	if !k.started {
		return math.MinInt64
	}
	return k.wm
}

// restore sets the watermark a replay starts from (a mark).
func (k *clock) restore(m int64) {
	k.wm, k.started = m, m != math.MinInt64
}

// intake is what windows and sessions share about taking records in:
// the watermark, the counters, and where a replay after a restart on
// event time stands.
type intake struct {
	clock
	counts
	// cur is the record being added; next the input offset after the
	// last one. On event time, after a restart: windows (sessions)
	// ending at or before quietTo were output already, and records
	// before quietBefore were read before (not counted late again).
	cur         firstRecord
	next        uint64
	quietTo     int64
	quietBefore uint64
	// keepLate keeps the late records (WITH (late = TRUE)) in lates,
	// those from offset lateFrom on (the others were written already).
	keepLate bool
	lateFrom uint64
	lates    []streams.Record
}

// lateRecord counts late record r (unless read before a restart) and
// keeps it if the query writes its late records.
func (in *intake) lateRecord(r *streams.Record) {
	if r.Offset >= in.quietBefore {
		in.late++
	}
	if in.keepLate && r.Offset >= in.lateFrom {
		in.lates = append(in.lates, *r)
		in.lateFrom = r.Offset + 1
	}
}

// takeLate returns the late records kept since it was last called.
func (in *intake) takeLate() []streams.Record {
	out := in.lates
	in.lates = nil
	return out
}

func newIntake(c *query.Continuous) intake {
	return intake{clock: clock{grace: int64(c.Hints.Grace)}, keepLate: c.LateStream != ""}
}

// begin starts adding record r: counts it, applies its append time to
// the watermark, and notes where a replay from it would start.
func (in *intake) begin(r *streams.Record) {
	in.in++
	in.lastTS = r.Timestamp.UnixNano()
	in.next = r.Offset + 1
	in.before(r)
	in.cur = firstRecord{off: r.Offset, wm: in.mark()}
}

// skipRecord counts a record whose evaluation failed; on _timestamp its
// time still moves the watermark (it has one).
func (in *intake) skipRecord(err error, eventTime bool) {
	in.skip(err)
	if !eventTime {
		in.after(in.lastTS)
	}
}

func (in *intake) skip(err error) {
	in.skipped++
	in.lastErr = err
}

// resumeEvent sets the progress of a restarted query on event time: its
// input is read again from p.from, with the watermark it had then; what
// ends at or before p.wm was output already.
func (in *intake) resumeEvent(p eventProgress) {
	in.restore(p.fromWM)
	in.quietTo, in.quietBefore = p.wm, p.next
}

// progress is the progress of an event-time query whose open windows
// (sessions) have the first records open yields.
func (in *intake) progress(open iter.Seq[firstRecord]) eventProgress {
	p := eventProgress{wm: max(in.wm, in.quietTo), from: in.next, fromWM: in.mark(), next: max(in.next, in.quietBefore)}
	for f := range open {
		if f.off < p.from {
			p.from, p.fromWM = f.off, f.wm
		}
	}
	return p
}

// firstRecord is the first record (lowest offset) of a pane or session,
// with the watermark before it: where a replay that rebuilds it starts.
type firstRecord struct {
	off uint64
	wm  int64 // clock.mark() before the record
}

// eventProgress is the progress of a query on event time: records may
// come in any time order, so its input is read again from an offset, not
// a time. Every window (session) ending at or before wm has been output;
// the open ones hold only records at or after offset from (the first
// record of the oldest open one), and fromWM is the watermark before that
// record; next is the next input offset then (records before it that a
// replay finds late were counted already).
type eventProgress struct {
	wm, fromWM int64
	from, next uint64
}

// User properties of the output records of event-time queries (besides
// propQuery and propWatermark).
const (
	propFrom   = "mqstream-from-offset"
	propFromWM = "mqstream-from-watermark"
	propNext   = "mqstream-next-offset"
)

// eventKey keeps the progress hint of an event-time query.
func eventKey(id string) []byte { return []byte("e/" + id) }

func (p eventProgress) marks(id string) []streams.UserProperty {
	return append(markers(id, propWatermark, p.wm),
		streams.UserProperty{Key: propFrom, Value: strconv.FormatUint(p.from, 10)},
		streams.UserProperty{Key: propFromWM, Value: strconv.FormatInt(p.fromWM, 10)},
		streams.UserProperty{Key: propNext, Value: strconv.FormatUint(p.next, 10)})
}

func (p eventProgress) encode() []byte {
	b := encodeHint(p.wm)
	b = binary.BigEndian.AppendUint64(b, uint64(p.fromWM))
	b = binary.BigEndian.AppendUint64(b, p.from)
	return binary.BigEndian.AppendUint64(b, p.next)
}

// recoverEvent returns the progress of event-time query id: that of its
// newest output record or of its hint, whichever has the greater
// watermark; ok is false for a query that has made none.
func recoverEvent(r Reader, kv KV, id string, sink streamFrom) (p eventProgress, ok bool, err error) {
	v, found, err := kv.Get(eventKey(id))
	if err != nil {
		return p, false, fmt.Errorf("progress hint: %w", err)
	}
	if found {
		if len(v) != 32 && len(v) != 40 {
			return p, false, fmt.Errorf("cq: event-time progress hint of %d bytes", len(v))
		}
		u := func(i int) uint64 { return binary.BigEndian.Uint64(v[8*i:]) }
		p, ok = eventProgress{wm: int64(u(0)), fromWM: int64(u(1)), from: u(2), next: u(3)}, true
		if len(v) == 40 {
			sink.from = max(sink.from, u(4)) // see recoverProgress
		}
	}
	var out eventProgress
	found, err = lastOutput(r, sink, func(rec *streams.Record) bool {
		var okW, okF, okM, okN bool
		out.wm, okW = markerOf(rec, id, propWatermark)
		out.fromWM, okM = markerOf(rec, id, propFromWM)
		var from, next int64
		from, okF = markerOf(rec, id, propFrom)
		next, okN = markerOf(rec, id, propNext)
		out.from, out.next = uint64(from), uint64(next)
		return okW && okF && okM && okN
	})
	if err != nil {
		return p, false, err
	}
	if found && (!ok || out.wm > p.wm) {
		p, ok = out, true
	}
	return p, ok, nil
}

// idleOf is the idle timeout of a query: its IDLE_TIMEOUT hint, else the
// manager's.
func (m *Manager) idleOf(hint time.Duration) time.Duration {
	if hint > 0 {
		return hint
	}
	return m.opts.IdleTimeout
}

package cq

import (
	"context"
	"fmt"
	"time"

	"github.com/mqstream/mqstream/query"
)

// Session windows with EMIT CHANGES in a persistent query.
//
// Each record outputs its session's row as it stands after the record
// (window_start and window_end are the session's bounds then); a record
// that bridges two sessions outputs the merged session's row, whose
// window_start is the older session's. Nothing more is output when a
// session closes: its last row was its final one.
//
// Progress is the event-time progress (eventtime.go), on _timestamp too:
// each output request carries the offset of the first record of the
// oldest open session, the watermark before it, and the next input
// offset. It is kept as the changes of windows keep theirs
// (changeProgress, with nothing held back), so that a restart takes the
// output's progress or the hint's, whichever was taken last by input
// offset: the watermark alone does not tell (on event time it stays put
// while older records come). A restart reads the input again from that record with that
// watermark, rebuilding the open sessions whole, and outputs only the
// rows of records from the next offset on: the rows of the others were
// output before. Sessions are a function of the records (session.go),
// and whether a record is late is too (clock), so the output is the
// uninterrupted run's, row for row.

// runSessionChanges recovers the progress of a session query emitting
// changes and runs it until an error.
func (r *runner) runSessionChanges(ctx context.Context) error {
	m, c, id := r.m, r.c, r.def.ID
	if err := r.ensureOutput(ctx); err != nil {
		return err
	}
	x := newSessioner(c)
	x.idle = int64(m.idleOf(c.Hints.IdleTimeout))
	if err := r.recoverLate(&x.intake); err != nil {
		return err
	}
	pos := r.def.Start
	p, found, err := recoverEventChanges(m.opts.Reader, r.place.kv, id, r.sink())
	if err != nil {
		return err
	}
	if found {
		x.resumeEvent(p.eventProgress)
		pos = p.from
	}
	progress := func() changeProgress { return changeProgress{eventProgress: x.progress()} }
	quietBefore := x.quietBefore
	hinted, hintedAt := pos, m.opts.Now()
	var outCount int64
	var lastEmit time.Time
	ahead := newReadAhead(m.opts.Reader, c.Source)
	output := func(rows []query.Output, now time.Time) error {
		// Late records first: once the rows are durable, so are they.
		if err := r.writeLate(x.takeLate()); err != nil {
			return err
		}
		if err := r.output(rows, progress().marks(id)); err != nil {
			return err
		}
		outCount += int64(len(rows))
		lastEmit = now
		if m.opts.afterOutput != nil && m.opts.afterOutput(id) {
			return errCrash
		}
		return nil
	}
	for {
		recs, err := ahead.read(pos)
		if err != nil {
			return fmt.Errorf("read stream %s: %w", c.Source, err)
		}
		var rows []query.Output
		for i := range recs {
			rec := &recs[i]
			n := len(rows)
			rows = x.add(rec, rows)
			if rec.Offset < quietBefore {
				rows = rows[:n] // output before the restart
			}
			pos = rec.Offset + 1
			if len(rows) >= maxRequestRows || i == len(recs)-1 && len(rows) > 0 {
				at := m.opts.Now()
				if err := output(rows, at); err != nil {
					return err
				}
				rows = rows[:0]
				// The time before the write: a reader that saw the rows
				// and moved the clock on must see the next hint taken
				// (TestSessionChangesCrashAfterAHintAtTheSameWatermark
				// advances a fake clock right after the rows appear).
				hinted, hintedAt = pos, at
			}
		}
		notify, end, atTail, now, err := r.endOfBatch(x.takeLate(), pos)
		if err != nil {
			return err
		}
		if atTail {
			// Input stopped: sessions ending before now - IdleTimeout
			// are over (records appended from now on are stamped later).
			x.advance(now.Add(-time.Duration(x.idle)).UnixNano())
		}
		x.closeDue() // frees the sessions over; their last rows are out
		if pos > hinted && now.Sub(hintedAt) >= m.opts.HintInterval {
			r.hintAt(eventChangesKey(id), progress().encode()) // records that made no rows
			hinted, hintedAt = pos, now
		}
		wm, started := max(x.wm, x.quietTo), x.started
		r.report(view{running: true, wm: wm, started: started, windows: x.open, keys: x.open, counts: &x.counts, out: outCount, lastEmit: lastEmit,
			pos: pos, next: end, stateBytes: x.bytes, stateKeys: len(x.keys)})
		if err := r.checkState(x.bytes, len(x.keys)); err != nil {
			return err // its output is durable up to its progress
		}
		if !atTail {
			continue
		}
		if err := r.wait(ctx, notify); err != nil {
			return err
		}
	}
}

package cq

import (
	"cmp"
	"math"
	"slices"
	"time"

	"github.com/mqstream/mqstream/query"
	"github.com/mqstream/mqstream/streams"
)

// sessioner is the state of a query with session windows: each key's open
// sessions, one accumulator set each, never the records.
//
// A record at t makes the session [t, t + gap); sessions of a key that
// overlap merge (their accumulators combined, the older first), so a
// session is a run of the key's records each less than the gap after the
// one before. With a maximum length, sessions are also cut at every
// multiple of it on the epoch's grid (Window.CellEnd): a session never
// spans one. A session ends at min(last record + gap, its cell's end) and
// closes once the watermark reaches its end; it then outputs one row (EMIT
// FINAL) and is freed. With EMIT CHANGES, each record outputs its
// session's updated row instead.
//
// Whether two records of a key share a session depends on those two
// records only (the gap between them, and whether a multiple of the
// maximum lies between them), never on where reading started. That is
// what makes a restart exact (doc.go): reading again from the start of
// the oldest open session rebuilds every open session whole, and the
// sessions it rebuilds partially had all ended, so they are closed
// silently (quietTo). Rows come out in order of their sessions' ends,
// then starts, then keys: a function of the input only, whatever the
// batches the watermark moved in.
//
// With _timestamp as time, records come in time order and sessions only
// ever grow at their end; merging is for event time, where records come
// in any order (the restart then replays from an offset: eventtime.go).
// A record whose session would already have closed is late: counted, not
// added. One goroutine owns it.
type sessioner struct {
	c     *query.Continuous
	gap   int64
	final bool
	// keys are the open sessions of each key, by start.
	keys map[string][]*session
	open int // sessions open, over all keys
	// bytes estimates the memory of the open sessions (state.go).
	bytes int64
	// intake holds the watermark (unix ns) and the counters; sessions
	// ending at or before its quietTo were output before a restart, and
	// close without output.
	intake
	// minEnd is at most the end of every open session: closeDue has
	// nothing to do below it (sessions' ends only grow).
	minEnd int64
}

// session is one open session of a key.
type session struct {
	key         string
	start, last int64
	g           *query.Group
	first       firstRecord // its record of the lowest offset
	bytes       int64       // its estimated memory (state.go)
}

func newSessioner(c *query.Continuous) *sessioner {
	return &sessioner{c: c, gap: int64(c.Window.Gap), final: c.Emit == "final", keys: map[string][]*session{}, minEnd: math.MaxInt64,
		intake: newIntake(c)}
}

// end is when s closes if no record of its key comes.
func (x *sessioner) end(s *session) int64 {
	return min(s.last+x.gap, x.c.Window.CellEnd(s.start))
}

// resume sets the progress of a restarted query: every session ending at
// or before wm has been output. Its input is read again from the start of
// the oldest session open then (resumeFrom, kept with the watermark).
func (x *sessioner) resume(wm int64) { x.quietTo = wm }

// progress is the progress an output request of an event-time query
// carries: the oldest record of the open sessions.
func (x *sessioner) progress() eventProgress {
	return x.intake.progress(func(yield func(firstRecord) bool) {
		for _, ss := range x.keys {
			for _, s := range ss {
				if !yield(s.first) {
					return
				}
			}
		}
	})
}

// add feeds one record and, with EMIT CHANGES, appends its session's
// updated row to out. The watermark rises to the record's time (less the
// grace); sessions it ends close at the next closeDue.
func (x *sessioner) add(r *streams.Record, out []query.Output) []query.Output {
	x.begin(r)
	key, ok, err := x.c.Eval(r)
	if err != nil {
		x.skipRecord(err, x.c.EventTime)
		return out
	}
	ts := x.c.Time()
	if ok {
		s, late, err := x.insert(string(key), ts)
		switch {
		case err != nil:
			x.skip(err)
		case late:
			x.lateRecord(r)
		case !x.final:
			out = x.result(out, s)
		}
	}
	x.after(ts)
	return out
}

// insert adds the record Eval read last, at ts, to key's session holding
// it, merging the sessions it bridges; late if its session would have
// closed already (then s is nil).
func (x *sessioner) insert(key string, ts int64) (s *session, late bool, err error) {
	ss := x.keys[key]
	cell := x.c.Window.CellEnd(ts)
	// The sessions the record's [ts, ts + gap) overlaps, in its cell.
	lo := len(ss)
	hi := lo
	for i, s := range ss {
		e := x.end(s)
		if x.started && e <= x.wm {
			continue // closed, whether closeDue ran yet or not
		}
		if ts < e && ts+x.gap > s.start && x.c.Window.CellEnd(s.start) == cell {
			if i < lo {
				lo = i
			}
			hi = i + 1
		}
	}
	if lo == len(ss) {
		if x.started && min(ts+x.gap, cell) <= x.wm {
			return nil, true, nil
		}
		s = &session{key: key, start: ts, last: ts, g: x.c.NewGroup(), first: x.cur}
		if err := x.c.Add(s.g); err != nil {
			return nil, false, err
		}
		i, _ := slices.BinarySearchFunc(ss, ts, func(s *session, t int64) int { return cmp.Compare(s.start, t) })
		x.keys[key] = slices.Insert(ss, i, s)
		x.open++
		s.bytes = sessionOverhead + int64(len(key)) + x.c.GroupBytes(s.g)
		x.bytes += s.bytes
		x.minEnd = min(x.minEnd, x.end(s))
		return s, false, nil
	}
	// Merge ss[lo:hi] (overlapping ones are consecutive by start) and the
	// record, oldest first: the older group's first row stays.
	s = ss[lo]
	if ts < s.start {
		g := x.c.NewGroup()
		if err := x.c.Add(g); err != nil {
			return nil, false, err
		}
		merged, err := x.c.Combine(g, s.g)
		if err != nil {
			return nil, false, err
		}
		s.g, s.start = merged, ts
	} else if err := x.c.Add(s.g); err != nil {
		return nil, false, err
	}
	s.last = max(s.last, ts)
	for _, o := range ss[lo+1 : hi] {
		merged, err := x.c.Combine(s.g, o.g)
		if err != nil {
			return nil, false, err
		}
		s.g, s.last = merged, max(s.last, o.last)
		x.bytes -= o.bytes
		if o.first.off < s.first.off {
			s.first = o.first
		}
	}
	if hi-lo > 1 {
		x.keys[key] = slices.Delete(ss, lo+1, hi)
		x.open -= hi - lo - 1
	}
	return s, false, nil
}

// closeDue closes the sessions the watermark has reached the end of, in
// order of their ends, then starts, then keys; with EMIT FINAL it
// returns their rows (but not those of sessions ending at or before
// quietTo: output before a restart). closed counts the sessions closed.
func (x *sessioner) closeDue() (out []query.Output, closed int) {
	if !x.started || x.wm < x.minEnd {
		return nil, 0
	}
	var done []*session
	x.minEnd = math.MaxInt64
	for k, ss := range x.keys {
		n := 0
		for _, s := range ss {
			if e := x.end(s); e <= x.wm {
				done = append(done, s)
			} else {
				ss[n] = s
				n++
				x.minEnd = min(x.minEnd, e)
			}
		}
		if n == 0 {
			delete(x.keys, k)
		} else {
			clear(ss[n:])
			x.keys[k] = ss[:n]
		}
	}
	x.open -= len(done)
	for _, s := range done {
		x.bytes -= s.bytes
	}
	slices.SortFunc(done, func(a, b *session) int {
		return cmp.Or(cmp.Compare(x.end(a), x.end(b)), cmp.Compare(a.start, b.start), cmp.Compare(a.key, b.key))
	})
	for _, s := range done {
		if x.final && x.end(s) > x.quietTo {
			out = x.result(out, s)
		}
	}
	return out, len(done)
}

// resumeFrom is where a restart reads input again from: the start of the
// oldest open session, or the watermark if none is open.
func (x *sessioner) resumeFrom() int64 {
	from := x.wm
	for _, ss := range x.keys {
		from = min(from, ss[0].start)
	}
	return from
}

func (x *sessioner) result(out []query.Output, s *session) []query.Output {
	o, ok, err := x.c.ResultSpan(s.g, time.Unix(0, s.start).UTC(), time.Unix(0, x.end(s)).UTC())
	if err != nil {
		x.skip(err)
		return out
	}
	if ok {
		out = append(out, o)
	}
	return out
}

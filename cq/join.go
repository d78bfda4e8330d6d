package cq

import (
	"context"
	"encoding/binary"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/mqstream/mqstream/query"
	"github.com/mqstream/mqstream/streams"
)

// An interval join (query.JoinInterval) reads two streams, a (the
// query's Source) and b (Join.Right), and outputs each pair of records
// with equal keys whose times t_a and t_b (their _timestamp) satisfy
// Lo <= t_b - t_a <= Hi.
//
// Order. The records of both inputs are processed in one order, by
// (time, input, offset): a before b at equal times. A record of one
// input is processed once the other input shows a later record, or, if
// the other has been read to its end, once its time is before now -
// IdleTimeout (a record appended later is stamped later than that: the
// assumption windows already make, doc.go). The order is thus a function
// of the records alone, and so is the output: each pair is output when
// the later of its two records is processed, matched against the kept
// records of the other input, in their order.
//
// State. A record of a is kept while a record of b may still join it:
// until the time of the records processed passes t_a + Hi; one of b
// until it passes t_b - Lo. The state is the records of the interval,
// indexed by key, counted in the query's state estimate.
//
// Exactly once. Each output request carries, in mqstream-join-offsets,
// the next offset of each input: the records processed before are a
// prefix of the order above. A restart reads each input again from the
// first record it may still need (the time T of the last record
// processed, less Hi for a, plus Lo for b), adds the records before its
// next offset to the state without output, and goes on from there: the
// same pairs, in the same order, as an uninterrupted run.

// propJoin is the progress of an interval join in its output records:
// "next offset of a,next offset of b".
const propJoin = "mqstream-join-offsets"

// joinKey keeps the progress hint of an interval join.
func joinKey(id string) []byte { return []byte("j/" + id) }

// joinRow is a record an interval join keeps: its time, join key and
// columns, and (outer joins) whether a record of the other input has
// joined it.
type joinRow struct {
	ts      int64
	key     string
	vals    []any
	bytes   int64
	matched bool
}

// joinSide is the records kept of one input, in processing order (their
// times never decrease), and by key.
type joinSide struct {
	rows  []*joinRow
	head  int // rows[:head] are evicted
	byKey map[string][]*joinRow
}

// joiner is the state of an interval join. One goroutine owns it.
type joiner struct {
	c *query.Continuous
	// outer says, per input, whether a record of it that nothing joined
	// is output alone: a for LEFT and FULL JOIN, b for RIGHT and FULL.
	outer [2]bool
	sides [2]joinSide
	// keep is how long past its time a record of each input may still
	// join one processed later: Hi for a, -Lo for b.
	keep     [2]int64
	frontier int64 // the time of the last record processed (or the idle floor)
	// quietTo, after a restart, is the frontier its progress carries:
	// the records evicted below it were output alone before (outer
	// joins), if they had to be.
	quietTo int64
	bytes   int64
	counts
}

func newJoiner(c *query.Continuous) *joiner {
	j := &joiner{c: c, outer: [2]bool{c.Join.Left, c.Join.RightOuter}, keep: [2]int64{int64(c.Join.Hi), -int64(c.Join.Lo)}, frontier: -1 << 63, quietTo: -1 << 63}
	for i := range j.sides {
		j.sides[i].byKey = map[string][]*joinRow{}
	}
	return j
}

// add processes record r of input side (0: a, 1: b) and appends the rows
// it completes to out, unless quiet (a restart rebuilding its state):
// first those of the records it evicts (outer joins), then its pairs. A
// record without a key (JoinInput) joins nothing.
func (j *joiner) add(side int, r *streams.Record, out []query.Output, quiet bool) []query.Output {
	j.in++
	ts := r.Timestamp.UnixNano()
	j.lastTS = ts
	out = j.evict(ts, out)
	key, vals, ok, err := j.c.JoinInput(side, r)
	if err != nil {
		j.skip(err)
		return out
	}
	if !ok {
		return out
	}
	jr := &joinRow{ts: ts, key: string(key), vals: vals}
	if key != nil && (!quiet || j.outer[0] || j.outer[1]) {
		for _, o := range j.sides[1-side].byKey[jr.key] {
			l, rt := vals, o.vals
			if side == 1 {
				l, rt = o.vals, vals
			}
			row, matched, ok, err := j.c.Pair(l, rt)
			if err != nil {
				j.skip(err)
				continue
			}
			o.matched = o.matched || matched
			jr.matched = jr.matched || matched
			if ok && !quiet {
				out = append(out, row)
			}
		}
	}
	if ts+j.keep[side] < j.frontier {
		// Joins nothing processed later.
		return j.alone(side, jr, out)
	}
	s := &j.sides[side]
	jr.bytes = keyOverhead + j.c.RowBytes(key, vals)
	s.rows = append(s.rows, jr)
	s.byKey[jr.key] = append(s.byKey[jr.key], jr)
	j.bytes += jr.bytes
	return out
}

// alone appends the row of a record of input side leaving the state
// unjoined (outer joins) to out, unless it was output before a restart.
func (j *joiner) alone(side int, jr *joinRow, out []query.Output) []query.Output {
	if !j.outer[side] || jr.matched || jr.ts+j.keep[side] < j.quietTo {
		return out
	}
	l, r := jr.vals, []any(nil)
	if side == 1 {
		l, r = nil, jr.vals
	}
	row, _, ok, err := j.c.Pair(l, r)
	if err != nil {
		j.skip(err)
		return out
	}
	if ok {
		out = append(out, row)
	}
	return out
}

func (j *joiner) skip(err error) {
	j.skipped++
	j.lastErr = err
}

// evict raises the frontier to t and drops the records no record at or
// after t can join, appending the rows of those output alone (outer
// joins) to out in the order they expire (a record's time plus its
// side's keep; a's first on a tie). That order does not depend on how
// far each call moves the frontier, so a restart, which moves it in
// other steps, outputs the same rows in the same order.
func (j *joiner) evict(t int64, out []query.Output) []query.Output {
	if t <= j.frontier {
		return out
	}
	j.frontier = t
	for {
		i := -1
		var first int64
		for k := range j.sides {
			s := &j.sides[k]
			if s.head < len(s.rows) {
				if exp := s.rows[s.head].ts + j.keep[k]; exp < t && (i < 0 || exp < first) {
					i, first = k, exp
				}
			}
		}
		if i < 0 {
			break
		}
		s := &j.sides[i]
		jr := s.rows[s.head]
		s.rows[s.head] = nil
		s.head++
		if list := s.byKey[jr.key]; len(list) > 1 {
			list[0] = nil
			s.byKey[jr.key] = list[1:]
		} else {
			delete(s.byKey, jr.key)
		}
		j.bytes -= jr.bytes
		out = j.alone(i, jr, out)
	}
	for k := range j.sides {
		if s := &j.sides[k]; s.head > 1024 && s.head*2 > len(s.rows) {
			s.rows = append([]*joinRow(nil), s.rows[s.head:]...)
			s.head = 0
		}
	}
	return out
}

// size is the estimated memory of the records kept, and their keys.
func (j *joiner) size() (int64, int) {
	return j.bytes, len(j.sides[0].byKey) + len(j.sides[1].byKey)
}

// kept is the number of records kept.
func (j *joiner) kept() int {
	return len(j.sides[0].rows) - j.sides[0].head + len(j.sides[1].rows) - j.sides[1].head
}

// joinInput is one input of an interval join as its runner reads it.
type joinInput struct {
	name  string
	pos   uint64           // the next offset to read
	next  uint64           // records before it were processed before a restart
	buf   []streams.Record // read, not processed yet
	end   uint64           // the stream's next offset when last asked
	ready <-chan struct{}  // closed when it grows past end
}

func (in *joinInput) head() *streams.Record {
	if len(in.buf) == 0 {
		return nil
	}
	return &in.buf[0]
}

// fill reads the next records if none is waiting, then the stream's end.
func (in *joinInput) fill(rd Reader) error {
	if len(in.buf) == 0 {
		recs, err := rd.Read(in.name, in.pos, streams.ReadOptions{MaxRecords: readBatch})
		if err != nil {
			return fmt.Errorf("read stream %s: %w", in.name, err)
		}
		in.buf = recs
	}
	var err error
	if in.ready, in.end, err = rd.Notify(in.name); err != nil {
		return fmt.Errorf("stream %s: %w", in.name, err)
	}
	return nil
}

// drained reports whether every record of the input has been processed.
func (in *joinInput) drained() bool { return len(in.buf) == 0 && in.pos >= in.end }

// runInterval recovers the progress of an interval join and runs it
// until an error.
func (r *runner) runInterval(ctx context.Context) error {
	m, c, id := r.m, r.c, r.def.ID
	if err := r.ensureOutput(ctx); err != nil {
		return err
	}
	p, found, err := recoverJoin(m.opts.Reader, r.place.kv, id, r.sink())
	if err != nil {
		return err
	}
	next := p.next
	in := [2]*joinInput{{name: c.Source}, {name: c.Join.Right}}
	for i := range in {
		in[i].pos, in[i].next = next[i], next[i]
	}
	if found {
		if err := r.rewindJoin(in); err != nil {
			return err
		}
	}
	j := newJoiner(c)
	if found {
		j.quietTo = p.frontier
	}
	hinted, hintedAt := next, m.opts.Now()
	var outCount int64
	var lastEmit time.Time
	flush := func(rows []query.Output) error {
		at := m.opts.Now() // before the write, as in sessionchanges.go
		if err := r.outputRows(rows, joinMarkers(id, in, j.frontier), &outCount, &lastEmit); err != nil {
			return err
		}
		hinted, hintedAt = r.hintJoin(in, j.frontier), at
		return nil
	}
	round := func(now time.Time) error {
		if (in[0].pos > hinted[0] || in[1].pos > hinted[1]) && now.Sub(hintedAt) >= m.opts.HintInterval {
			hinted, hintedAt = r.hintJoin(in, j.frontier), now // records that made no rows
		}
		size, nkeys := j.size()
		r.report(view{running: true, wm: j.frontier, started: j.in > 0, windows: 0, keys: j.kept(), counts: &j.counts,
			out: outCount, lastEmit: lastEmit, pos: in[0].pos + in[1].pos, next: in[0].end + in[1].end, stateBytes: size, stateKeys: nkeys})
		// Over the limit: stop here, the output durable up to the
		// offsets it carries.
		return r.checkState(size, nkeys)
	}
	return m.joinLoop(ctx, c, in, j, flush, round)
}

// joinLoop runs an interval join over its inputs until ctx ends or a
// callback fails: it reads both, processes their records in the join's
// order, hands the rows to flush in batches of whole records (at most
// maxRequestRows, unless one record makes more), and calls round after
// each pass.
func (m *Manager) joinLoop(ctx context.Context, c *query.Continuous, in [2]*joinInput, j *joiner,
	flush func(rows []query.Output) error, round func(now time.Time) error) error {
	idle := m.idleOf(c.Hints.IdleTimeout)
	for {
		for _, x := range in {
			if err := x.fill(m.opts.Reader); err != nil {
				return err
			}
		}
		now := m.opts.Now()
		floor := now.Add(-idle).UnixNano()
		var rows []query.Output
		processed := false
		for {
			side := pickJoin(in, floor)
			if side < 0 {
				break
			}
			x := in[side]
			rec := &x.buf[0]
			rows = j.add(side, rec, rows, rec.Offset < x.next)
			x.pos = rec.Offset + 1
			x.buf = x.buf[1:]
			processed = true
			if len(rows) >= maxRequestRows || len(x.buf) == 0 && len(rows) > 0 {
				if err := flush(rows); err != nil {
					return err
				}
				rows = rows[:0]
			}
			if len(x.buf) == 0 {
				break // read on before going further
			}
		}
		atTail := in[0].drained() && in[1].drained()
		if atTail {
			// Records appended from now on are stamped after floor: the
			// records of a before it leave, with their rows (LEFT JOIN).
			rows = j.evict(floor, rows)
		}
		if len(rows) > 0 {
			if err := flush(rows); err != nil {
				return err
			}
		}
		if err := round(now); err != nil {
			return err
		}
		if processed && !atTail {
			continue
		}
		if err := waitEither(ctx, in[0].ready, in[1].ready, m.opts.Tick); err != nil {
			return err
		}
	}
}

// outputRows outputs rows carrying props (runner.output), counts them
// and stops as a crash would when the test hook says so.
func (r *runner) outputRows(rows []query.Output, props []streams.UserProperty, count *int64, last *time.Time) error {
	if err := r.output(rows, props); err != nil {
		return err
	}
	*count += int64(len(rows))
	*last = r.m.opts.Now()
	if r.m.opts.afterOutput != nil && r.m.opts.afterOutput(r.def.ID) {
		return errCrash
	}
	return nil
}

// pickJoin returns the input whose waiting record comes next in the
// join's order, or -1 if none may be processed yet: the other input has
// not shown a later record, nor is it read to its end with the record
// before floor (now - IdleTimeout).
func pickJoin(in [2]*joinInput, floor int64) int {
	a, b := in[0].head(), in[1].head()
	switch {
	case a != nil && b != nil:
		if a.Timestamp.UnixNano() <= b.Timestamp.UnixNano() {
			return 0
		}
		return 1
	case a != nil && in[1].drained() && a.Timestamp.UnixNano() < floor:
		return 0
	case b != nil && in[0].drained() && b.Timestamp.UnixNano() < floor:
		return 1
	}
	return -1
}

// waitEither waits for input on either channel, the next tick or the end
// of ctx.
func waitEither(ctx context.Context, a, b <-chan struct{}, tick time.Duration) error {
	t := time.NewTimer(tick)
	defer t.Stop()
	select {
	case <-a:
	case <-b:
	case <-t.C:
	case <-ctx.Done():
		return ctx.Err()
	}
	return nil
}

// rewindJoin moves each input back to the first record a restarted join
// may still need: from the time T of the last record processed, T - Hi
// for a, T + Lo for b (never past the next offset). With LEFT JOIN, b
// from T - Hi + Lo: the records that joined those of a kept, which
// must know whether they were joined; with RIGHT JOIN, a from T + Lo -
// Hi, for those of b kept.
func (r *runner) rewindJoin(in [2]*joinInput) error {
	rd, c := r.m.opts.Reader, r.c
	var last int64
	known := false
	for _, x := range in {
		if x.next == 0 {
			continue
		}
		recs, err := rd.Read(x.name, x.next-1, streams.ReadOptions{MaxRecords: 1})
		if err != nil {
			return fmt.Errorf("read stream %s: %w", x.name, err)
		}
		if len(recs) > 0 && recs[0].Offset == x.next-1 {
			last, known = max(last, recs[0].Timestamp.UnixNano()), true
		}
	}
	if !known {
		return nil // trimmed by retention: from what is kept
	}
	back := [2]time.Duration{-c.Join.Hi, c.Join.Lo}
	if c.Join.Left {
		back[1] = c.Join.Lo - max(c.Join.Hi, 0)
	}
	if c.Join.RightOuter {
		back[0] = min(c.Join.Lo, 0) - c.Join.Hi
	}
	for i, back := range back {
		x := in[i]
		from, err := rd.OffsetAt(x.name, time.Unix(0, last).Add(back))
		if err != nil {
			return fmt.Errorf("stream %s: %w", x.name, err)
		}
		x.pos = min(x.pos, from)
	}
	return nil
}

// joinProgress is the progress of an interval join: the next offset of
// each input, and the frontier (its records of a evicted below it were
// output alone, with LEFT JOIN, if they had to be).
type joinProgress struct {
	next     [2]uint64
	frontier int64
}

func joinMarkers(id string, in [2]*joinInput, frontier int64) []streams.UserProperty {
	return []streams.UserProperty{{Key: propQuery, Value: id}, {Key: propJoin, Value: strconv.FormatUint(in[0].pos, 10) + "," +
		strconv.FormatUint(in[1].pos, 10) + "," + strconv.FormatInt(frontier, 10)}}
}

// hintJoin records the inputs' next offsets and the frontier in the
// key/value namespace (after the output they cover is durable) and
// returns the offsets.
func (r *runner) hintJoin(in [2]*joinInput, frontier int64) [2]uint64 {
	v := binary.BigEndian.AppendUint64(binary.BigEndian.AppendUint64(nil, in[0].pos), in[1].pos)
	r.hintAt(joinKey(r.def.ID), binary.BigEndian.AppendUint64(v, uint64(frontier)))
	return [2]uint64{in[0].pos, in[1].pos}
}

// recoverJoin returns the progress of interval join id: the newer of
// its hint and its newest output record's marker.
func recoverJoin(rd Reader, kv KV, id string, sink streamFrom) (p joinProgress, ok bool, err error) {
	v, found, err := kv.Get(joinKey(id))
	if err != nil {
		return p, false, fmt.Errorf("progress hint: %w", err)
	}
	if found {
		if len(v) != 24 && len(v) != 32 {
			return p, false, fmt.Errorf("cq: join progress hint of %d bytes", len(v))
		}
		u := func(i int) uint64 { return binary.BigEndian.Uint64(v[8*i:]) }
		p, ok = joinProgress{next: [2]uint64{u(0), u(1)}, frontier: int64(u(2))}, true
		if len(v) == 32 {
			// Output written since the hint is at or after the output
			// stream's end then (see recoverProgress).
			sink.from = max(sink.from, u(3))
		}
	}
	var out joinProgress
	seen, err := lastOutput(rd, sink, func(rec *streams.Record) bool {
		var parsed bool
		out, parsed = joinMarkerOf(rec, id)
		return parsed
	})
	if err != nil {
		return p, false, err
	}
	// Both are points of one order: the further one has both offsets and
	// the frontier at least as high.
	if seen && (!ok || out.next[0]+out.next[1] > p.next[0]+p.next[1] || out.next == p.next && out.frontier > p.frontier) {
		p, ok = out, true
	}
	return p, ok, nil
}

// joinMarkerOf reads the progress an output record of interval join id
// carries.
func joinMarkerOf(rec *streams.Record, id string) (joinProgress, bool) {
	if !writtenBy(rec, id) {
		return joinProgress{}, false
	}
	for _, prop := range rec.UserProperties {
		if prop.Key != propJoin {
			continue
		}
		f := strings.Split(prop.Value, ",")
		if len(f) != 3 {
			return joinProgress{}, false
		}
		a, err1 := strconv.ParseUint(f[0], 10, 64)
		b, err2 := strconv.ParseUint(f[1], 10, 64)
		fr, err3 := strconv.ParseInt(f[2], 10, 64)
		if err1 != nil || err2 != nil || err3 != nil {
			return joinProgress{}, false
		}
		return joinProgress{next: [2]uint64{a, b}, frontier: fr}, true
	}
	return joinProgress{}, false
}

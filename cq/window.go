package cq

import (
	"cmp"
	"slices"
	"time"

	"github.com/mqstream/mqstream/query"
	"github.com/mqstream/mqstream/streams"
)

// windower is the state of one query's open windows: one accumulator set
// per key and pane, never buffered records. A pane is a slice of time of
// gcd(size, slide) (the window's size for tumbling windows); a window is
// the union of size/pane consecutive panes. A pane is freed once the last
// window holding it has closed.
//
// Closing a window combines, for each key, its panes in the window. To
// keep that cost independent of size/slide, panes are grouped in blocks of
// the window's size on a fixed grid (the tumbling windows of that size):
// a window is a suffix of one block and a prefix of the next, and each
// pane caches the combination of its block's panes up to it (pre) and
// from it (suf). Each pane is combined into one prefix and one suffix,
// each window costs one combination per key. The grid is fixed, so the
// order in which accumulators are combined, hence every float rounding,
// depends on the input only, never on when the query (re)started.
//
// It is deterministic: the same records and watermarks give the same
// closed windows. One goroutine (the query's runner) owns it.
type windower struct {
	c         *query.Continuous
	size, hop int64

	keys map[string]*keyPanes
	// bytes estimates the memory of keys (state.go), kept up to date as
	// groups come and go.
	bytes int64
	// starts are the starts of the panes holding a group, sorted, with
	// the number of keys each holds.
	starts []int64
	held   map[int64]int
	seq    int64 // numbers groups in order of creation
	// intake holds the watermark (unix ns: every window ending at or
	// before it is closed, and a record all of whose windows are closed
	// is late) and the counters.
	intake
	// closedTo is the watermark up to which windows have been closed
	// (output, or empty); 0 for a new query. A replay on event time runs
	// with the watermark below it.
	closedTo int64
	// first holds the first record of each pane in starts (event time:
	// where a replay starts).
	first map[int64]firstRecord
	// pending are the rows of the windows closed since closeDue last
	// returned (closed counts those windows).
	pending       []query.Output
	pendingClosed int
}

// counts are a runner's counters since it started.
type counts struct {
	in, late, skipped int64
	lastErr           error // the last evaluation error (skipped record)
	lastTS            int64 // the timestamp of the last record read (unix ns)
}

// keyPanes are one key's groups, one per pane, oldest first.
type keyPanes struct {
	key   string
	panes []paneGroup
}

// paneGroup is a key's group in one pane, with the cached combinations of
// its block (nil until computed, at a window's close, when the panes they
// cover are complete).
type paneGroup struct {
	start    int64
	seq      int64 // when the key's first record in the pane came
	bytes    int64 // the estimated memory of g (state.go)
	g        *query.Group
	pre, suf *query.Group
	cached   int64 // the estimated memory of pre and suf where they are not g
}

func newWindower(c *query.Continuous) *windower {
	return &windower{c: c, size: int64(c.Window.Size), hop: int64(c.Window.Hop()), keys: map[string]*keyPanes{}, held: map[int64]int{},
		first: map[int64]firstRecord{}, intake: newIntake(c)}
}

// resumeEvent sets the progress of a restarted query on event time: its
// input is read again from p.from, with the watermark it had then, and
// the windows ending at or before p.wm, output already, are not output
// again.
func (w *windower) resumeEvent(p eventProgress) {
	w.intake.resumeEvent(p)
	w.closedTo = p.wm
}

// progress is the progress an output request of an event-time query
// carries: the oldest record of the open panes.
func (w *windower) progress() eventProgress {
	return w.intake.progress(func(yield func(firstRecord) bool) {
		for _, s := range w.starts {
			if !yield(w.first[s]) {
				return
			}
		}
	})
}

// resume sets the watermark a restarted query had reached: every window
// ending at or before it has been output.
func (w *windower) resume(wm int64) { w.wm, w.closedTo, w.started = wm, wm, true }

// add feeds one record; its time is its _timestamp or its event time
// (Continuous.Time). A record whose windows the watermark has all passed
// is late: counted, not added. A record whose evaluation fails is
// skipped: counted, its error kept.
func (w *windower) add(r *streams.Record) {
	w.begin(r)
	// Windows the watermark has passed close now, before the record can
	// reach them through a pane they share with open ones (hopping
	// windows on event time): a closed window's rows never depend on
	// when closeDue is called.
	w.closeTo()
	key, ok, err := w.c.Eval(r)
	if err != nil {
		w.skipRecord(err, w.c.EventTime)
		return
	}
	ts := w.c.Time()
	if w.started && w.c.Window.LastStart(ts)+w.size <= w.wm {
		w.lateRecord(r)
		return
	}
	if ok {
		if err := w.c.Add(w.group(string(key), w.c.Window.PaneStart(ts))); err != nil {
			w.skip(err)
		}
	}
	// With _timestamp as time (never decreasing within a stream), once a
	// record at ts arrived every window ending at or before ts has all its
	// records; with event time, once the grace has passed too.
	w.after(ts)
}

// group returns key's group in the pane starting at p, created with the
// record Eval read last if it is new.
func (w *windower) group(key string, p int64) *query.Group {
	kp := w.keys[key]
	if kp == nil {
		kp = &keyPanes{key: key}
		w.keys[key] = kp
		w.bytes += keyOverhead + int64(len(key))
	}
	n := len(kp.panes)
	if n > 0 && kp.panes[n-1].start == p && kp.panes[n-1].pre == nil && kp.panes[n-1].suf == nil {
		return kp.panes[n-1].g // the common case: the key's newest pane
	}
	i, found := slices.BinarySearchFunc(kp.panes, p, byStart)
	if found {
		// A pane whose combinations were computed changes (only if
		// timestamps went back): compute them again.
		for j := range kp.panes {
			kp.panes[j].pre, kp.panes[j].suf = nil, nil
			w.bytes -= kp.panes[j].cached
			kp.panes[j].cached = 0
		}
		return kp.panes[i].g
	}
	w.seq++
	g := w.c.NewGroup()
	b := paneOverhead + w.c.GroupBytes(g)
	w.bytes += b
	kp.panes = slices.Insert(kp.panes, i, paneGroup{start: p, seq: w.seq, g: g, bytes: b})
	if w.held[p] == 0 {
		j, _ := slices.BinarySearch(w.starts, p)
		w.starts = slices.Insert(w.starts, j, p)
		w.first[p] = w.cur
	}
	w.held[p]++
	return g
}

// closeDue outputs the windows the watermark has closed since the last
// call, oldest first, and frees the panes no open window holds; closed
// counts the windows holding records it closed. Within a window, rows are
// in order of each key's first record. A group whose output cannot be
// computed is skipped and counted. Empty windows output nothing.
func (w *windower) closeDue() (out []query.Output, closed int) {
	w.closeTo()
	out, closed = w.pending, w.pendingClosed
	w.pending, w.pendingClosed = nil, 0
	return out, closed
}

// closeTo closes the windows ending at or before the watermark into
// pending.
func (w *windower) closeTo() {
	if !w.started {
		return
	}
	out := w.pending
	if len(w.starts) > 0 {
		// Windows ending in (closedTo, wm] that hold a pane.
		s := max(w.c.Window.FirstStart(w.starts[0]), w.c.Window.FirstStart(w.closedTo))
		last := w.c.Window.LastStart(w.starts[len(w.starts)-1])
		for ; s+w.size <= w.wm && s <= last; s += w.hop {
			if w.holds(s) {
				out = w.output(out, s)
				w.pendingClosed++
			}
		}
	}
	w.pending = out
	w.closedTo = max(w.closedTo, w.wm)
	w.free()
}

// holds reports whether the window starting at s holds a pane.
func (w *windower) holds(s int64) bool {
	i, _ := slices.BinarySearch(w.starts, s)
	return i < len(w.starts) && w.starts[i] < s+w.size
}

// free drops the panes whose last window has closed: the window starting
// at LastStart(pane).
func (w *windower) free() {
	gone := func(p int64) bool { return w.c.Window.LastStart(p)+w.size <= w.wm }
	if len(w.starts) == 0 || !gone(w.starts[0]) {
		return
	}
	n := 0
	for n < len(w.starts) && gone(w.starts[n]) {
		delete(w.held, w.starts[n])
		delete(w.first, w.starts[n])
		n++
	}
	// Resliced rather than shifted: appends reallocate, dropping the head.
	w.starts = w.starts[n:]
	for k, kp := range w.keys {
		m := 0
		for m < len(kp.panes) && gone(kp.panes[m].start) {
			w.bytes -= kp.panes[m].bytes + kp.panes[m].cached
			m++
		}
		clear(kp.panes[:m]) // the groups go to the collector
		kp.panes = kp.panes[m:]
		if len(kp.panes) == 0 {
			delete(w.keys, k)
			w.bytes -= keyOverhead + int64(len(k))
		}
	}
}

func byStart(pg paneGroup, t int64) int { return cmp.Compare(pg.start, t) }

// windowRow is one key's group in a closing window.
type windowRow struct {
	seq int64
	g   *query.Group
}

// output appends the rows of the window [s, s + size).
func (w *windower) output(out []query.Output, s int64) []query.Output {
	e := s + w.size
	var rows []windowRow
	for _, kp := range w.keys {
		lo, _ := slices.BinarySearchFunc(kp.panes, s, byStart)
		hi, _ := slices.BinarySearchFunc(kp.panes, e, byStart)
		if lo == hi {
			continue
		}
		g, err := w.combine(kp, s, lo, hi)
		if err != nil {
			w.skip(err)
			continue
		}
		rows = append(rows, windowRow{seq: kp.panes[lo].seq, g: g})
	}
	slices.SortFunc(rows, func(a, b windowRow) int { return cmp.Compare(a.seq, b.seq) })
	start := time.Unix(0, s).UTC()
	for _, r := range rows {
		o, ok, err := w.c.Result(r.g, start)
		if err != nil {
			w.skip(err)
			continue
		}
		if ok {
			out = append(out, o)
		}
	}
	return out
}

// combine returns the group of kp's panes lo..hi-1, those of the window
// starting at s: the suffix of the block holding s (unless s starts it),
// then the prefix of the next.
func (w *windower) combine(kp *keyPanes, s int64, lo, hi int) (*query.Group, error) {
	b := w.c.Window.BlockStart(s)
	if b == s {
		return w.pre(kp, hi-1) // the window is one block
	}
	// The first pane of the next block, if the window holds one.
	m, _ := slices.BinarySearchFunc(kp.panes[lo:hi], b+w.size, byStart)
	m += lo
	switch {
	case m == lo:
		return w.pre(kp, hi-1)
	case m == hi:
		return w.suf(kp, lo)
	}
	suf, err := w.suf(kp, lo)
	if err != nil {
		return nil, err
	}
	pre, err := w.pre(kp, hi-1)
	if err != nil {
		return nil, err
	}
	return w.c.Combine(suf, pre)
}

// pre returns the combination of kp's panes from the start of pane j's
// block up to pane j.
func (w *windower) pre(kp *keyPanes, j int) (*query.Group, error) {
	ps := kp.panes
	if ps[j].pre != nil {
		return ps[j].pre, nil
	}
	b := w.c.Window.BlockStart(ps[j].start)
	i := j
	for i > 0 && ps[i-1].pre == nil && w.c.Window.BlockStart(ps[i-1].start) == b {
		i--
	}
	for ; i <= j; i++ {
		if i == 0 || w.c.Window.BlockStart(ps[i-1].start) != b {
			ps[i].pre = ps[i].g
			continue
		}
		g, err := w.c.Combine(ps[i-1].pre, ps[i].g)
		if err != nil {
			return nil, err
		}
		ps[i].pre = g
		w.cache(&ps[i], g)
	}
	return ps[j].pre, nil
}

// suf returns the combination of kp's panes from pane j to the end of its
// block (which must be complete).
func (w *windower) suf(kp *keyPanes, j int) (*query.Group, error) {
	ps := kp.panes
	if ps[j].suf != nil {
		return ps[j].suf, nil
	}
	b := w.c.Window.BlockStart(ps[j].start)
	i := j
	for i+1 < len(ps) && ps[i+1].suf == nil && w.c.Window.BlockStart(ps[i+1].start) == b {
		i++
	}
	for ; i >= j; i-- {
		if i+1 == len(ps) || w.c.Window.BlockStart(ps[i+1].start) != b {
			ps[i].suf = ps[i].g
			continue
		}
		g, err := w.c.Combine(ps[i].g, ps[i+1].suf)
		if err != nil {
			return nil, err
		}
		ps[i].suf = g
		w.cache(&ps[i], g)
	}
	return ps[j].suf, nil
}

// cache counts a combination g kept with pane pg in the state's size: a
// hopping window's panes hold up to two (window.go's header), freed with
// the pane or when it changes.
func (w *windower) cache(pg *paneGroup, g *query.Group) {
	b := w.c.GroupBytes(g)
	pg.cached += b
	w.bytes += b
}

// openWindows counts the windows not closed yet that hold a pane.
func (w *windower) openWindows() int {
	if len(w.starts) == 0 {
		return 0
	}
	first := w.c.Window.FirstStart(w.starts[0])
	if w.started {
		first = max(first, w.c.Window.FirstStart(w.wm))
	}
	last := w.c.Window.LastStart(w.starts[len(w.starts)-1])
	if last < first {
		return 0
	}
	return int((last-first)/w.hop) + 1
}

// groups counts the groups held: keys times panes.
func (w *windower) groups() int {
	n := 0
	for _, c := range w.held {
		n += c
	}
	return n
}

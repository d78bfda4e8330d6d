package cq

import (
	"cmp"
	"slices"
	"time"

	"github.com/mqstream/mqstream/query"
	"github.com/mqstream/mqstream/streams"
)

// windower is the state of one query's open windows: accumulators per key
// and open window, never buffered records. It is deterministic: the same
// records and watermarks give the same closed windows. One goroutine (the
// query's runner) owns it.
type windower struct {
	c    *query.Continuous
	size int64 // window size, ns

	open map[int64]*window // by start (unix ns)
	// wm is the watermark (unix ns): every window ending at or before it
	// is closed, and a record in such a window is late. started is false
	// until a watermark is known (a new query).
	wm      int64
	started bool

	counts
}

// counts are a runner's counters since it started.
type counts struct {
	in, late, skipped int64
	lastErr           error // the last evaluation error (skipped record)
}

// window is one open window.
type window struct {
	start  int64
	groups map[string]*query.Group
	order  []*query.Group // first appearance: the output order
}

func newWindower(c *query.Continuous) *windower {
	return &windower{c: c, size: int64(c.Window.Size), open: map[int64]*window{}}
}

// resume sets the watermark a restarted query had reached.
func (w *windower) resume(wm int64) { w.wm, w.started = wm, true }

// add feeds one record; the event time is its timestamp. A record in a
// window the watermark has passed is late: counted, not added. A record
// whose evaluation fails is skipped: counted, its error kept.
func (w *windower) add(r *streams.Record) {
	w.in++
	ts := r.Timestamp.UnixNano()
	start := w.c.Window.Start(r.Timestamp)
	s := start.UnixNano()
	if w.started && s+w.size <= w.wm {
		w.late++
		return
	}
	key, ok, err := w.c.Eval(r, start)
	if err == nil && ok {
		win := w.open[s]
		if win == nil {
			win = &window{start: s, groups: map[string]*query.Group{}}
			w.open[s] = win
		}
		g := win.groups[string(key)]
		if g == nil {
			g = w.c.NewGroup()
			win.groups[string(key)] = g
			win.order = append(win.order, g)
		}
		err = w.c.Add(g)
	}
	if err != nil {
		w.skipped++
		w.lastErr = err
	}
	// Timestamps never decrease within a stream, so once a record at ts
	// arrived every window ending at or before ts has all its records.
	w.advance(ts)
}

// advance raises the watermark to wm (it never goes back).
func (w *windower) advance(wm int64) {
	if !w.started || wm > w.wm {
		w.wm, w.started = wm, true
	}
}

// due removes and returns the windows the watermark has closed, oldest
// first.
func (w *windower) due() []*window {
	var out []*window
	for s, win := range w.open {
		if s+w.size <= w.wm {
			out = append(out, win)
			delete(w.open, s)
		}
	}
	slices.SortFunc(out, func(a, b *window) int { return cmp.Compare(a.start, b.start) })
	return out
}

// groups counts the groups of the open windows.
func (w *windower) groups() int {
	n := 0
	for _, win := range w.open {
		n += len(win.order)
	}
	return n
}

// rows computes the output of closed windows (their records' payloads),
// in window order and, within a window, in order of each key's first
// record. A group whose output cannot be computed is skipped and counted.
func (w *windower) rows(closed []*window) []query.Output {
	var out []query.Output
	for _, win := range closed {
		for _, g := range win.order {
			p, ok, err := w.c.Result(g, time.Unix(0, win.start))
			if err != nil {
				w.skipped++
				w.lastErr = err
				continue
			}
			if ok {
				out = append(out, p)
			}
		}
	}
	return out
}

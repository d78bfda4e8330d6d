package history

import (
	"math"
	"time"
)

// Series are the node's points over a span, column by column (the shape
// chart libraries take). A nil entry marks a gap: no point was recorded
// there. Times are Unix seconds.
type Series struct {
	// Interval is the period of the points (fine or coarse).
	Interval    time.Duration
	Time        []int64
	In          []*float64
	Out         []*float64
	Dropped     []*float64
	Stored      []*float64
	Refused     []*float64
	AppendP99MS []*float64
	GroupLag    []*int64
	Connections []*int64
}

// GroupSeries are one group's lag over a span; a nil entry marks a gap.
type GroupSeries struct {
	Interval time.Duration
	Time     []int64
	Lag      []*int64
	Members  []*int64
}

// pickLocked returns the ring that covers span and its period: the fine ring up
// to FineSpan, the coarse ring beyond.
func (r *Recorder) pickLocked(span time.Duration) (fine bool, period time.Duration) {
	if span <= r.opts.FineSpan {
		return true, r.opts.Interval
	}
	return false, r.coarsePeriod()
}

// Series returns the node's points of the last span (at most 24 hours).
func (r *Recorder) Series(span time.Duration) Series {
	r.mu.Lock()
	fine, period := r.pickLocked(span)
	src := r.mu.coarse
	if fine {
		src = r.mu.fine
	}
	points := src.all()
	r.mu.Unlock()
	since := r.opts.Now().Add(-span)
	out := Series{Interval: period, Time: []int64{}, In: []*float64{}, Out: []*float64{}, Dropped: []*float64{},
		Stored: []*float64{}, Refused: []*float64{}, AppendP99MS: []*float64{}, GroupLag: []*int64{}, Connections: []*int64{}}
	walk(points, func(p Point) time.Time { return p.At }, since, period, func(t time.Time) {
		out.Time = append(out.Time, t.Unix())
		out.In, out.Out, out.Dropped = append(out.In, nil), append(out.Out, nil), append(out.Dropped, nil)
		out.Stored, out.Refused = append(out.Stored, nil), append(out.Refused, nil)
		out.AppendP99MS = append(out.AppendP99MS, nil)
		out.GroupLag, out.Connections = append(out.GroupLag, nil), append(out.Connections, nil)
	}, func(p Point) {
		out.Time = append(out.Time, p.At.Unix())
		out.In, out.Out = append(out.In, round(p.In)), append(out.Out, round(p.Out))
		out.Dropped, out.Stored = append(out.Dropped, round(p.Dropped)), append(out.Stored, round(p.Stored))
		out.Refused = append(out.Refused, round(p.Refused))
		out.AppendP99MS = append(out.AppendP99MS, round(float64(p.AppendP99)/float64(time.Millisecond)))
		out.GroupLag, out.Connections = append(out.GroupLag, ptr(p.GroupLag)), append(out.Connections, ptr(p.Connections))
	})
	return out
}

// GroupSeries returns a group's lag over the last span; ok is false for a
// group the recorder has not seen.
func (r *Recorder) GroupSeries(name, filter string, span time.Duration) (GroupSeries, bool) {
	r.mu.Lock()
	gr := r.mu.groups[groupKey{name, filter}]
	fine, period := r.pickLocked(span)
	var points []groupPoint
	if gr != nil {
		if fine {
			points = gr.fine.all()
		} else {
			points = gr.coarse.all()
		}
	}
	r.mu.Unlock()
	if gr == nil {
		return GroupSeries{}, false
	}
	since := r.opts.Now().Add(-span)
	out := GroupSeries{Interval: period, Time: []int64{}, Lag: []*int64{}, Members: []*int64{}}
	walk(points, func(p groupPoint) time.Time { return p.at }, since, period, func(t time.Time) {
		out.Time = append(out.Time, t.Unix())
		out.Lag, out.Members = append(out.Lag, nil), append(out.Members, nil)
	}, func(p groupPoint) {
		out.Time = append(out.Time, p.at.Unix())
		out.Lag, out.Members = append(out.Lag, ptr(p.lag)), append(out.Members, ptr(int64(p.members)))
	})
	return out, true
}

// walk calls emit for each point taken after since, oldest first, and gap
// (with the time one period after the previous point) before a point more
// than one and a half periods after the previous one.
func walk[P any](points []P, at func(P) time.Time, since time.Time, period time.Duration, gap func(time.Time), emit func(P)) {
	var prev time.Time
	for _, p := range points {
		t := at(p)
		if !t.After(since) {
			continue
		}
		if !prev.IsZero() && t.Sub(prev) > period*3/2 {
			gap(prev.Add(period))
		}
		prev = t
		emit(p)
	}
}

// round keeps three decimals: enough for a chart, and the JSON stays short.
func round(v float64) *float64 {
	v = math.Round(v*1000) / 1000
	return &v
}

func ptr[T any](v T) *T { return &v }

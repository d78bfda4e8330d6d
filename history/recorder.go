package history

import (
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/mqstream/mqstream/streams"
)

// Reading is what a Source reports at one instant: cumulative counters
// since the node started and gauges.
type Reading struct {
	MessagesIn  int64 // PUBLISH packets received
	MessagesOut int64 // PUBLISH packets sent
	Dropped     int64 // deliveries dropped (full in-flight stores and session queues)
	Stored      int64 // publishes stored
	Refused     int64 // publishes refused
	// AppendLatency is the store's cumulative append-latency histogram.
	AppendLatency streams.Histogram
	Connections   int64
	Groups        []GroupReading
}

// GroupReading is one consumer group's state at one instant.
type GroupReading struct {
	Name, Filter string
	Lag          int64 // records not yet done
	Acked        int64 // cumulative acknowledgements
	Members      int   // connected members
}

// Source provides readings. Read is called from the recorder's loop once
// per Interval; it must return within a fraction of it and must not call
// the Recorder.
type Source interface {
	Read() Reading
}

// SourceFunc adapts a function to Source.
type SourceFunc func() Reading

// Read calls f.
func (f SourceFunc) Read() Reading { return f() }

// Options configure a Recorder.
type Options struct {
	// Source is read every Interval (required).
	Source Source
	// Interval is the period of the fine ring; 0 means 1 s.
	Interval time.Duration
	// FineSpan is how far back the fine ring goes; 0 means 15 minutes.
	FineSpan time.Duration
	// CoarseFactor is how many Intervals make one coarse point; 0 means 10.
	CoarseFactor int
	// CoarseSpan is how far back the coarse ring goes; 0 means 24 hours.
	CoarseSpan time.Duration
	// Now returns the current time; nil means time.Now. Tests inject a clock.
	Now func() time.Time
	// Logger receives the recorder's logs; nil means slog.Default().
	Logger *slog.Logger
}

// EnsureDefaults fills zero fields with their defaults.
func (o *Options) EnsureDefaults() {
	if o.Interval == 0 {
		o.Interval = time.Second // the overview updates once a second
	}
	if o.FineSpan == 0 {
		o.FineSpan = 15 * time.Minute // the shortest chart range, at full resolution
	}
	if o.CoarseFactor == 0 {
		o.CoarseFactor = 10 // 24 h in 8640 points: a chart's width in pixels, roughly
	}
	if o.CoarseSpan == 0 {
		o.CoarseSpan = 24 * time.Hour // the longest chart range
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
}

// Validate reports every problem with the options at once.
func (o *Options) Validate() error {
	var errs []error
	if o.Source == nil {
		errs = append(errs, errors.New("source is nil"))
	}
	if o.Interval < 0 || o.FineSpan < 0 || o.CoarseSpan < 0 || o.CoarseFactor < 0 {
		errs = append(errs, errors.New("durations and factors must not be negative"))
	}
	if o.Interval > 0 && o.FineSpan > 0 && o.FineSpan < o.Interval {
		errs = append(errs, fmt.Errorf("fine span %s is shorter than the interval %s", o.FineSpan, o.Interval))
	}
	if o.Interval > 0 && o.CoarseFactor > 0 && o.CoarseSpan > 0 && o.CoarseSpan < o.Interval*time.Duration(o.CoarseFactor) {
		errs = append(errs, fmt.Errorf("coarse span %s is shorter than one coarse period", o.CoarseSpan))
	}
	return errors.Join(errs...)
}

// Point is the node's figures over one period.
type Point struct {
	// At is the end of the period.
	At time.Time
	// Rates per second over the period.
	In, Out, Dropped, Stored, Refused float64
	// AppendP99 is the 99th percentile of the appends completed in the
	// period (0 when there were none).
	AppendP99 time.Duration
	// Gauges at At.
	GroupLag    int64
	Connections int64
}

// groupPoint is a group's state at one instant.
type groupPoint struct {
	at      time.Time
	lag     int64
	acked   int64
	members int
}

// groupRings are one group's fine and coarse points.
type groupRings struct {
	fine, coarse *ring[groupPoint]
}

// stamped is a reading with the time it was taken.
type stamped struct {
	at time.Time
	r  Reading
}

// Recorder keeps the rings. All methods are safe for concurrent use.
type Recorder struct {
	opts Options
	log  *slog.Logger

	// mu guards the rings, the base readings and the change channel.
	mu struct {
		sync.Mutex
		fine, coarse *ring[Point]
		groups       map[groupKey]*groupRings
		prev         stamped       // the base of the next fine point
		bucket       stamped       // the base of the coarse point being built
		changed      chan struct{} // closed and replaced by every sample
	}

	closeOnce sync.Once
	done      chan struct{}
	wg        sync.WaitGroup
}

type groupKey struct{ name, filter string }

// New creates a recorder, takes its first reading (the base of the first
// points) and starts the loop, which samples every Interval until Close.
func New(opts Options) (*Recorder, error) {
	opts.EnsureDefaults()
	if err := opts.Validate(); err != nil {
		return nil, fmt.Errorf("history: invalid options: %w", err)
	}
	r := &Recorder{opts: opts, log: opts.Logger, done: make(chan struct{})}
	r.mu.fine = newRing[Point](int(opts.FineSpan / opts.Interval))
	r.mu.coarse = newRing[Point](int(opts.CoarseSpan / (opts.Interval * time.Duration(opts.CoarseFactor))))
	r.mu.groups = map[groupKey]*groupRings{}
	r.mu.changed = make(chan struct{})
	first := stamped{at: opts.Now(), r: opts.Source.Read()}
	r.mu.prev, r.mu.bucket = first, first
	r.wg.Add(1)
	go r.run()
	return r, nil
}

func (r *Recorder) run() {
	defer r.wg.Done()
	t := time.NewTicker(r.opts.Interval)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			r.Sample()
		case <-r.done:
			return
		}
	}
}

// Close stops the loop and waits for it; it is idempotent. The recorder
// still answers afterwards.
func (r *Recorder) Close() error {
	r.closeOnce.Do(func() {
		close(r.done)
		r.wg.Wait()
	})
	return nil
}

// Done is closed when the recorder is closed (event streams end then).
func (r *Recorder) Done() <-chan struct{} { return r.done }

// Interval is the period of the fine ring.
func (r *Recorder) Interval() time.Duration { return r.opts.Interval }

// coarsePeriod is the period of the coarse ring.
func (r *Recorder) coarsePeriod() time.Duration {
	return r.opts.Interval * time.Duration(r.opts.CoarseFactor)
}

// Sample reads the source now and adds a fine point, and a coarse point
// when a coarse period has passed since the last one. The loop calls it
// every Interval; tests with an injected clock call it directly.
func (r *Recorder) Sample() {
	cur := stamped{at: r.opts.Now(), r: r.opts.Source.Read()} // no lock held: the source may be slow
	r.mu.Lock()
	defer r.mu.Unlock()
	if !cur.at.After(r.mu.prev.at) {
		return // the clock did not move: nothing to average over
	}
	r.mu.fine.push(point(r.mu.prev, cur))
	r.mu.prev = cur
	coarse := cur.at.Sub(r.mu.bucket.at) >= r.coarsePeriod()-r.opts.Interval/2
	if coarse {
		r.mu.coarse.push(point(r.mu.bucket, cur))
		r.mu.bucket = cur
	}
	seen := make(map[groupKey]bool, len(cur.r.Groups))
	for _, g := range cur.r.Groups {
		k := groupKey{g.Name, g.Filter}
		seen[k] = true
		gr := r.mu.groups[k]
		if gr == nil {
			gr = &groupRings{fine: newRing[groupPoint](cap(r.mu.fine.items)), coarse: newRing[groupPoint](cap(r.mu.coarse.items))}
			r.mu.groups[k] = gr
		}
		gp := groupPoint{at: cur.at, lag: g.Lag, acked: g.Acked, members: g.Members}
		gr.fine.push(gp)
		if coarse {
			gr.coarse.push(gp)
		}
	}
	for k := range r.mu.groups {
		if !seen[k] {
			delete(r.mu.groups, k) // deleted: a group declared again starts afresh
		}
	}
	close(r.mu.changed)
	r.mu.changed = make(chan struct{})
}

// point computes the figures over the period from a to b.
func point(a, b stamped) Point {
	sec := b.at.Sub(a.at).Seconds()
	rate := func(x, y int64) float64 {
		if y < x { // counters restarted
			return 0
		}
		return float64(y-x) / sec
	}
	p := Point{At: b.at,
		In: rate(a.r.MessagesIn, b.r.MessagesIn), Out: rate(a.r.MessagesOut, b.r.MessagesOut),
		Dropped: rate(a.r.Dropped, b.r.Dropped), Stored: rate(a.r.Stored, b.r.Stored),
		Refused: rate(a.r.Refused, b.r.Refused), Connections: b.r.Connections}
	if h := b.r.AppendLatency.Sub(a.r.AppendLatency); h.Count > 0 {
		p.AppendP99 = h.Quantile(0.99)
	}
	for _, g := range b.r.Groups {
		p.GroupLag += g.Lag
	}
	return p
}

// Changed returns a channel closed at the next sample.
func (r *Recorder) Changed() <-chan struct{} {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.mu.changed
}

// Latest returns the newest fine point; ok is false before the first.
func (r *Recorder) Latest() (p Point, ok bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.mu.fine.last()
}

// Trend says where a group's lag is going (see the package doc); "" for a
// group the recorder has not seen.
func (r *Recorder) Trend(name, filter string) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	gr := r.mu.groups[groupKey{name, filter}]
	if gr == nil || gr.fine.len() == 0 {
		return ""
	}
	now, _ := gr.fine.last()
	then := gr.fine.at(0)
	for i := gr.fine.len() - 1; i >= 0; i-- {
		if p := gr.fine.at(i); now.at.Sub(p.at) >= TrendWindow {
			then = p
			break
		}
	}
	return trend(then, now)
}

// TrendWindow is how far back Trend looks.
const TrendWindow = 10 * time.Second

// Trends of a group's lag.
const (
	TrendNoMembers = "no_members"
	TrendCaughtUp  = "caught_up"
	TrendGrowing   = "growing"
	TrendDraining  = "draining"
	TrendSteady    = "steady"
	TrendStalled   = "stalled"
)

func trend(then, now groupPoint) string {
	switch {
	case now.members == 0:
		return TrendNoMembers
	case now.lag == 0:
		return TrendCaughtUp
	case now.lag > then.lag:
		return TrendGrowing
	case now.lag < then.lag:
		return TrendDraining
	case now.acked > then.acked:
		return TrendSteady
	}
	return TrendStalled
}

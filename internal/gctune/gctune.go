package gctune

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"runtime/metrics"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Options configure a Controller. Zero fields take the defaults of
// EnsureDefaults.
type Options struct {
	// Low is the target while the process allocates slowly.
	Low int
	// High is the target under load.
	High int
	// Up is the turnover (live heaps allocated per second) at or above
	// which Low switches to High.
	Up float64
	// Down is the turnover below which High switches back to Low, after
	// DownAfter consecutive readings.
	Down float64
	// DownAfter is how many consecutive readings below Down it takes.
	DownAfter int
	// MinLive is the least live heap the turnover divides by, so that a
	// nearly empty heap does not make every allocation look like load.
	MinLive uint64
	// Interval is the time between readings.
	Interval time.Duration
	// Logger receives the changes at debug level; nil means slog.Default().
	Logger *slog.Logger
	// SetGCPercent sets the target; nil means debug.SetGCPercent. Tests
	// replace it so that they leave the process's collector alone.
	SetGCPercent func(int) int
	// Release runs once each time the target goes down to Low: the
	// process has turned idle, and what its busy spell left behind can
	// go. nil means debug.FreeOSMemory (a collection at the new target,
	// which also shrinks the goroutine stacks that grew, then every free
	// page back to the OS).
	Release func()
}

// EnsureDefaults fills zero fields with their defaults.
func (o *Options) EnsureDefaults() {
	if o.Low == 0 {
		o.Low = 100 // Go's default: the heap at most twice its live size
	}
	if o.High == 0 {
		o.High = 400 // runtime.gc_percent's fixed default before auto: ingest's CPU per message
	}
	if o.Up == 0 {
		o.Up = 1 // at Low, one cycle a second: a few percent of a core for a heap of ~100 MB
	}
	if o.Down == 0 {
		o.Down = 0.25 // a quarter of Up: idle fleets sit far below it, a paused load drops below it
	}
	if o.DownAfter == 0 {
		o.DownAfter = 30 // 30 s at the default Interval: pauses in a load keep High
	}
	if o.MinLive == 0 {
		o.MinLive = 16 << 20 // a node's own heap before any connection
	}
	if o.Interval == 0 {
		o.Interval = time.Second // runtime/metrics reads cost microseconds
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.SetGCPercent == nil {
		o.SetGCPercent = debug.SetGCPercent
	}
	if o.Release == nil {
		o.Release = debug.FreeOSMemory
	}
}

// Validate reports every problem with the options at once.
func (o *Options) Validate() error {
	var errs []error
	if o.Low < 1 || o.High < 1 {
		errs = append(errs, fmt.Errorf("targets %d and %d: both must be positive", o.Low, o.High))
	}
	if o.Low > o.High {
		errs = append(errs, fmt.Errorf("low target %d is above the high one %d", o.Low, o.High))
	}
	if o.Down < 0 || o.Up <= 0 || o.Down >= o.Up {
		errs = append(errs, fmt.Errorf("turnovers down %g, up %g: want 0 <= down < up", o.Down, o.Up))
	}
	if o.DownAfter < 1 {
		errs = append(errs, fmt.Errorf("down after %d readings: want at least 1", o.DownAfter))
	}
	if o.Interval <= 0 {
		errs = append(errs, fmt.Errorf("interval %s: want positive", o.Interval))
	}
	return errors.Join(errs...)
}

// Reading is one observation of the process's allocation.
type Reading struct {
	// Rate is the bytes allocated per second since the previous reading.
	Rate float64
	// Live is the heap the last collection found live, in bytes.
	Live uint64
}

// Policy decides the target from readings. It is not safe for concurrent
// use: the Controller's goroutine owns it.
type Policy struct {
	opts   Options
	target int
	// calm counts consecutive readings below Down while at High.
	calm int
}

// NewPolicy returns a policy at opts.High (defaults filled in): a node
// that just started is often taking its clients' reconnections, a
// connect storm; it goes to Low after DownAfter calm readings.
func NewPolicy(opts Options) (*Policy, error) {
	opts.EnsureDefaults()
	if err := opts.Validate(); err != nil {
		return nil, fmt.Errorf("gctune: %w", err)
	}
	return &Policy{opts: opts, target: opts.High}, nil
}

// Target is the current target.
func (p *Policy) Target() int { return p.target }

// Turnover is the reading's allocation rate in live heaps per second.
func (p *Policy) Turnover(r Reading) float64 {
	return r.Rate / float64(max(r.Live, p.opts.MinLive))
}

// Observe takes a reading and returns the target and whether it changed.
func (p *Policy) Observe(r Reading) (target int, changed bool) {
	t := p.Turnover(r)
	switch {
	case p.target == p.opts.Low:
		if t >= p.opts.Up {
			p.target, p.calm = p.opts.High, 0
			return p.target, true
		}
	case t < p.opts.Down:
		p.calm++
		if p.calm >= p.opts.DownAfter {
			p.target, p.calm = p.opts.Low, 0
			return p.target, true
		}
	default:
		p.calm = 0
	}
	return p.target, false
}

// Controller applies a Policy to the process every Interval.
type Controller struct {
	opts    Options
	policy  *Policy
	started sync.Once // the High target set (Start)
}

// New returns a controller; Run starts it.
func New(opts Options) (*Controller, error) {
	p, err := NewPolicy(opts)
	if err != nil {
		return nil, err
	}
	return &Controller{opts: p.opts, policy: p}, nil
}

// The runtime/metrics the controller reads.
const (
	metricAllocs = "/gc/heap/allocs:bytes"
	metricLive   = "/gc/heap/live:bytes"
	metricGOGC   = "/gc/gogc:percent"
)

// Start sets the High target, once. Call it before the process serves
// anything that reports the target (the metrics), so that nothing reads
// the runtime's default meanwhile; Run calls it too.
func (c *Controller) Start() {
	c.started.Do(func() {
		c.opts.SetGCPercent(c.policy.Target())
		c.opts.Logger.Debug("gc target", "percent", c.policy.Target(), "reason", "start")
	})
}

// Run sets the High target (Start), then reads the allocation every
// Interval and follows the policy until ctx ends. It leaves the last
// target in place.
func (c *Controller) Run(ctx context.Context) {
	log := c.opts.Logger
	c.Start()
	samples := []metrics.Sample{{Name: metricAllocs}, {Name: metricLive}}
	metrics.Read(samples)
	prevAllocs, prevAt := samples[0].Value.Uint64(), time.Now()
	tick := time.NewTicker(c.opts.Interval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-tick.C:
			metrics.Read(samples)
			allocs := samples[0].Value.Uint64()
			secs := now.Sub(prevAt).Seconds()
			if secs <= 0 {
				continue
			}
			r := Reading{Rate: float64(allocs-prevAllocs) / secs, Live: samples[1].Value.Uint64()}
			prevAllocs, prevAt = allocs, now
			if target, changed := c.policy.Observe(r); changed {
				c.opts.SetGCPercent(target)
				log.Debug("gc target", "percent", target, "alloc_bytes_per_second", int64(r.Rate),
					"live_bytes", r.Live, "turnover", c.policy.Turnover(r))
				if target == c.opts.Low {
					c.opts.Release()
				}
			}
		}
	}
}

// Collector returns the gauge mqstream_runtime_gc_percent: the collector's
// current target as the runtime reports it, whoever set it (-1: off).
func Collector() prometheus.Collector { return gaugeCollector{} }

var descGCPercent = prometheus.NewDesc("mqstream_runtime_gc_percent",
	"The Go collector's current target (GOGC); with runtime.gc_percent: auto it follows the allocation rate. -1: collector off.", nil, nil)

type gaugeCollector struct{}

func (gaugeCollector) Describe(ch chan<- *prometheus.Desc) { ch <- descGCPercent }

func (gaugeCollector) Collect(ch chan<- prometheus.Metric) {
	s := []metrics.Sample{{Name: metricGOGC}}
	metrics.Read(s)
	v := -1.0
	if s[0].Value.Kind() == metrics.KindUint64 {
		// The runtime reports "off" as a very large number.
		if n := s[0].Value.Uint64(); n < 1<<31 {
			v = float64(n)
		}
	}
	ch <- prometheus.MustNewConstMetric(descGCPercent, prometheus.GaugeValue, v)
}

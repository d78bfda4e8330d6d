package stats

import (
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"time"

	"github.com/mqstream/mqstream/streams"
)

// The windows rates are computed over.
const (
	Window1m  = time.Minute
	Window5m  = 5 * time.Minute
	Window10m = 10 * time.Minute
	// LatencyWindow is the window of the append-latency percentiles.
	LatencyWindow = time.Minute
	// maxWindow is the longest window: the ring keeps samples this old.
	maxWindow = Window10m
	// maxSamples bounds the ring (each sample holds every stream's counters
	// and a 2 KiB histogram): intervals under 0.5 s cover less than 10
	// minutes.
	maxSamples = 1202
)

// Source is what the sampler reads: cumulative counters since the store
// opened. *streams.Store implements it. Both methods must be cheap and must
// not block on I/O.
type Source interface {
	Counters() map[string]streams.StreamCounters
	StoreCounters() streams.StoreCounters
}

// Options configure a Sampler.
type Options struct {
	// Source provides the counters (required).
	Source Source
	// Interval is the sampling period; 0 means 5 s. Shorter intervals make
	// the windows' spans closer to their nominal length at the cost of
	// memory (the ring holds 10 minutes of samples, at most 1202 of them,
	// so intervals under 0.5 s shorten the longest windows).
	Interval time.Duration
	// Now returns the current time; nil means time.Now. Tests inject a clock.
	Now func() time.Time
	// Logger receives the sampler's logs; nil means slog.Default().
	Logger *slog.Logger
}

// EnsureDefaults fills zero fields with their defaults.
func (o *Options) EnsureDefaults() {
	if o.Interval == 0 {
		o.Interval = 5 * time.Second // 10 minutes of samples in 122 slots; windows within 5 s of nominal
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
	if o.Interval < 0 {
		errs = append(errs, fmt.Errorf("interval %s is negative", o.Interval))
	}
	if o.Interval > Window1m {
		errs = append(errs, fmt.Errorf("interval %s is longer than the shortest window (%s)", o.Interval, Window1m))
	}
	return errors.Join(errs...)
}

// sample is one reading of the counters.
type sample struct {
	at      time.Time
	streams map[string]streams.StreamCounters
	latency streams.Histogram
}

// Sampler samples a Source periodically and computes moving averages.
// All methods are safe for concurrent use.
type Sampler struct {
	opts Options
	log  *slog.Logger

	mu struct {
		sync.Mutex
		// ring holds the samples, oldest first, at most cap(ring) of them;
		// start is the index of the oldest one.
		ring  []sample
		start int
	}

	startOnce sync.Once
	closeOnce sync.Once
	done      chan struct{} // closed by Close to stop the loop
	wg        sync.WaitGroup
}

// New creates a sampler and takes its first sample (the base of every window
// until the node is older than the window). Call Start to sample
// periodically.
func New(opts Options) (*Sampler, error) {
	opts.EnsureDefaults()
	if err := opts.Validate(); err != nil {
		return nil, fmt.Errorf("stats: invalid options: %w", err)
	}
	s := &Sampler{opts: opts, log: opts.Logger, done: make(chan struct{})}
	// Enough slots for maxWindow plus the sample being replaced and one
	// spare, but never more than maxSamples.
	n := min(int(maxWindow/opts.Interval)+2, maxSamples)
	s.mu.ring = make([]sample, 0, n)
	s.Sample()
	return s, nil
}

// Start runs the sampling loop until Close. Calling it again does nothing.
func (s *Sampler) Start() {
	s.startOnce.Do(func() {
		s.wg.Add(1)
		go s.run()
	})
}

func (s *Sampler) run() {
	defer s.wg.Done()
	t := time.NewTicker(s.opts.Interval)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			s.Sample()
		case <-s.done:
			return
		}
	}
}

// Close stops the sampling loop and waits for it. It is idempotent; the
// sampler still answers queries afterwards (from the samples it has).
func (s *Sampler) Close() error {
	s.closeOnce.Do(func() {
		close(s.done)
		s.wg.Wait()
	})
	return nil
}

// Interval is the sampling period.
func (s *Sampler) Interval() time.Duration { return s.opts.Interval }

// read takes a reading of the source now (no lock held: the source has its
// own synchronisation).
func (s *Sampler) read() sample {
	sc := s.opts.Source.StoreCounters()
	return sample{at: s.opts.Now(), streams: s.opts.Source.Counters(), latency: sc.AppendLatency}
}

// Sample takes one sample now and adds it to the ring, dropping the oldest
// when the ring is full. The loop calls it every Interval; tests with an
// injected clock call it directly.
func (s *Sampler) Sample() {
	smp := s.read()
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.mu.ring) < cap(s.mu.ring) {
		s.mu.ring = append(s.mu.ring, smp)
		return
	}
	s.mu.ring[s.mu.start] = smp
	s.mu.start = (s.mu.start + 1) % len(s.mu.ring)
}

// Samples returns how many samples the ring holds (at most
// 10m/Interval + 2).
func (s *Sampler) Samples() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.mu.ring)
}

// baseLocked returns the oldest sample taken at or after since; if every
// sample is older (the loop stalled), the newest one. s.mu must be held.
func (s *Sampler) baseLocked(since time.Time) sample {
	n := len(s.mu.ring)
	// Samples are in time order from start: bisect for the first one at or after since.
	i := sort.Search(n, func(i int) bool {
		return !s.mu.ring[(s.mu.start+i)%n].at.Before(since)
	})
	if i == n {
		i = n - 1
	}
	return s.mu.ring[(s.mu.start+i)%n]
}

// bases returns the base samples of the given windows ending at now.
func (s *Sampler) bases(now time.Time, windows ...time.Duration) []sample {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]sample, len(windows))
	for i, w := range windows {
		out[i] = s.baseLocked(now.Add(-w))
	}
	return out
}

// Rate is an average rate over a span of time.
type Rate struct {
	// RecordsPerSec and BytesPerSec are averages over Span.
	RecordsPerSec float64
	BytesPerSec   float64
	// Span is the time the average covers: the window, less up to one
	// sampling interval, or less when the node is younger than the window
	// (then the time since the sampler started). 0 means no time has passed
	// yet and the rates are 0.
	Span time.Duration
}

// Rates are the averages of one counter pair over the three windows.
type Rates struct {
	M1, M5, M10 Rate
}

// StreamRates are one stream's append and read rates. Bytes are the
// payload bytes (reads) and encoded record bytes (appends) the store counts.
type StreamRates struct {
	Stream string
	Append Rates
	Read   Rates
}

// StreamRates returns the append and read rates of every stream the store
// has, sorted by name, computed now.
func (s *Sampler) StreamRates() []StreamRates {
	cur := s.read()
	b := s.bases(cur.at, Window1m, Window5m, Window10m)
	out := make([]StreamRates, 0, len(cur.streams))
	for name, c := range cur.streams {
		sr := StreamRates{Stream: name}
		ar := [3]*Rate{&sr.Append.M1, &sr.Append.M5, &sr.Append.M10}
		rr := [3]*Rate{&sr.Read.M1, &sr.Read.M5, &sr.Read.M10}
		for i, base := range b {
			old, ok := base.streams[name]
			if !ok || c.AppendedRecords < old.AppendedRecords || c.ReadRecords < old.ReadRecords ||
				c.AppendedBytes < old.AppendedBytes || c.ReadBytes < old.ReadBytes {
				old = streams.StreamCounters{} // new since the base, or counters restarted
			}
			span := cur.at.Sub(base.at)
			*ar[i] = rate(c.AppendedRecords-old.AppendedRecords, c.AppendedBytes-old.AppendedBytes, span)
			*rr[i] = rate(c.ReadRecords-old.ReadRecords, c.ReadBytes-old.ReadBytes, span)
		}
		out = append(out, sr)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Stream < out[j].Stream })
	return out
}

func rate(records, bytes int64, span time.Duration) Rate {
	if span <= 0 {
		return Rate{}
	}
	sec := span.Seconds()
	return Rate{RecordsPerSec: float64(records) / sec, BytesPerSec: float64(bytes) / sec, Span: span}
}

// Latency summarises the append latencies observed over a span.
type Latency struct {
	// Count is the number of appends completed in Span.
	Count int64
	// Span is the time covered (LatencyWindow, less up to one interval, or
	// the time since the sampler started).
	Span time.Duration
	// Percentiles of the time from submit to durable completion; 0 when
	// Count is 0. Each is the upper bound of its histogram bucket.
	P50, P90, P99, P999 time.Duration
	// Mean is the exact average.
	Mean time.Duration
}

// AppendLatency returns the append-latency percentiles over the last
// LatencyWindow, computed now.
func (s *Sampler) AppendLatency() Latency {
	cur := s.read()
	base := s.bases(cur.at, LatencyWindow)[0]
	h := cur.latency.Sub(base.latency)
	if h.Count < 0 { // cannot happen with one store; be safe if the source was swapped
		h = cur.latency
	}
	l := Latency{Count: h.Count, Span: cur.at.Sub(base.at)}
	if h.Count > 0 {
		l.P50, l.P90, l.P99, l.P999 = h.Quantile(0.5), h.Quantile(0.9), h.Quantile(0.99), h.Quantile(0.999)
		l.Mean = h.Sum / time.Duration(h.Count)
	}
	return l
}

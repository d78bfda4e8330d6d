package streams

import (
	"math"
	"math/bits"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble/v2"
)

// StreamCounters are cumulative counts for one stream since the store opened.
type StreamCounters struct {
	AppendedRecords int64 `json:"appended_records"`
	AppendedBytes   int64 `json:"appended_bytes"`
	ReadRecords     int64 `json:"read_records"`
	ReadBytes       int64 `json:"read_bytes"`
}

// counters is a stream's live counters (atomics: updated by the committer
// and readers, read by samplers).
type counters struct {
	appendedRecords, appendedBytes, readRecords, readBytes atomic.Int64
}

func (c *counters) snapshot() StreamCounters {
	return StreamCounters{
		AppendedRecords: c.appendedRecords.Load(), AppendedBytes: c.appendedBytes.Load(),
		ReadRecords: c.readRecords.Load(), ReadBytes: c.readBytes.Load(),
	}
}

// StoreCounters are cumulative store-wide counts since the store opened.
type StoreCounters struct {
	// Commits is the number of batches written; Syncs those that were
	// fsynced; Records the records they held.
	Commits int64 `json:"commits"`
	Syncs   int64 `json:"syncs"`
	Records int64 `json:"records"`
	// CommitErrors counts failed batches.
	CommitErrors int64 `json:"commit_errors"`
	// Delays counts the commits held back by Options.CommitDelay.
	Delays int64 `json:"commit_delays"`
	// DelayOn says Options.CommitDelayAuto holds commits back now, and
	// Delay for how long (a step of its ladder); DelaySwitches counts
	// its changes of decision between on and off.
	DelayOn       bool          `json:"commit_delay_on"`
	Delay         time.Duration `json:"commit_delay_ns"`
	DelaySwitches int64         `json:"commit_delay_switches"`
	// AppendLatency is the distribution of the time from Submit to the
	// request's completion (durable under the sync policy).
	AppendLatency Histogram `json:"-"`
}

type storeCounters struct {
	commits, syncs, records, commitErrors, delays atomic.Int64
	delaySwitches, delay                          atomic.Int64
	delayOn                                       atomic.Bool
	appendLatency                                 histogram
}

// Counters returns every stream's counters, by name.
func (s *Store) Counters() map[string]StreamCounters {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make(map[string]StreamCounters, len(s.mu.streams))
	for name, st := range s.mu.streams {
		out[name] = st.counters.snapshot()
	}
	return out
}

// StoreCounters returns the store-wide counters.
func (s *Store) StoreCounters() StoreCounters {
	return StoreCounters{
		Commits: s.stats.commits.Load(), Syncs: s.stats.syncs.Load(), Records: s.stats.records.Load(),
		CommitErrors: s.stats.commitErrors.Load(), Delays: s.stats.delays.Load(), AppendLatency: s.stats.appendLatency.snapshot(),
		DelayOn: s.stats.delayOn.Load(), Delay: time.Duration(s.stats.delay.Load()), DelaySwitches: s.stats.delaySwitches.Load(),
	}
}

// histogram is a lock-free log-linear histogram of durations: 8 buckets per
// power of two of nanoseconds (at most 9% relative error), from 1 us up.
type histogram struct {
	buckets [histBuckets]atomic.Int64
	sum     atomic.Int64 // nanoseconds
}

const (
	histSub     = 8  // sub-buckets per power of two
	histMinExp  = 10 // 2^10 ns ~ 1 us: everything below goes to bucket 0
	histMaxExp  = 40 // 2^40 ns ~ 18 min: everything above goes to the last bucket
	histBuckets = (histMaxExp-histMinExp)*histSub + 1
)

func bucketOf(ns int64) int {
	if ns < 1<<histMinExp {
		return 0
	}
	exp := bits.Len64(uint64(ns)) - 1 // 2^exp <= ns < 2^(exp+1)
	if exp >= histMaxExp {
		return histBuckets - 1
	}
	sub := int((uint64(ns) >> (uint(exp) - 3)) & (histSub - 1))
	return (exp-histMinExp)*histSub + sub + 1
}

// bucketUpper is the upper bound of bucket i in nanoseconds.
func bucketUpper(i int) int64 {
	if i == 0 {
		return 1 << histMinExp
	}
	if i >= histBuckets-1 {
		return math.MaxInt64
	}
	i--
	exp, sub := i/histSub+histMinExp, i%histSub
	return int64(1)<<exp + int64(sub+1)<<(exp-3)
}

func (h *histogram) observe(d time.Duration) {
	h.buckets[bucketOf(int64(d))].Add(1)
	h.sum.Add(int64(d))
}

func (h *histogram) snapshot() Histogram {
	var out Histogram
	out.Counts = make([]int64, histBuckets)
	for i := range h.buckets {
		out.Counts[i] = h.buckets[i].Load()
		out.Count += out.Counts[i]
	}
	out.Sum = time.Duration(h.sum.Load())
	return out
}

// Histogram is a snapshot of a latency distribution.
type Histogram struct {
	Counts []int64 // per bucket; see BucketUpper
	Count  int64
	Sum    time.Duration
}

// BucketUpper is the upper bound of bucket i.
func BucketUpper(i int) time.Duration { return time.Duration(bucketUpper(i)) }

// Sub returns the observations of h that are not in older (a snapshot taken
// earlier), i.e. the distribution over the interval between them.
func (h Histogram) Sub(older Histogram) Histogram {
	out := Histogram{Counts: make([]int64, len(h.Counts)), Sum: h.Sum - older.Sum}
	for i := range h.Counts {
		out.Counts[i] = h.Counts[i]
		if i < len(older.Counts) {
			out.Counts[i] -= older.Counts[i]
		}
		out.Count += out.Counts[i]
	}
	return out
}

// Quantile returns the q-quantile (0 < q <= 1) as the upper bound of the
// bucket holding it; 0 if there are no observations.
func (h Histogram) Quantile(q float64) time.Duration {
	if h.Count == 0 {
		return 0
	}
	rank := int64(math.Ceil(q * float64(h.Count)))
	var seen int64
	for i, c := range h.Counts {
		seen += c
		if seen >= rank {
			return BucketUpper(i)
		}
	}
	return BucketUpper(len(h.Counts) - 1)
}

// EngineMetrics returns the store's Pebble metrics; ok is false while the
// database is being reopened after a failure.
func (s *Store) EngineMetrics() (m *pebble.Metrics, ok bool) {
	db, release, err := s.reader()
	if err != nil {
		return nil, false
	}
	defer release()
	return db.Metrics(), true
}

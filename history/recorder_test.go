package history

import (
	"sync"
	"testing"
	"time"

	"github.com/mqstream/mqstream/internal/testutil"
)

// fakeSource is a Source the test sets.
type fakeSource struct {
	mu sync.Mutex
	r  Reading
}

func (f *fakeSource) Read() Reading {
	f.mu.Lock()
	defer f.mu.Unlock()
	r := f.r
	r.Groups = append([]GroupReading(nil), f.r.Groups...)
	return r
}

func (f *fakeSource) set(fn func(r *Reading)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn(&f.r)
}

func newTestRecorder(t *testing.T, src Source, clock *testutil.Clock) *Recorder {
	t.Helper()
	// An hour-long interval: the loop never fires; the test samples.
	r, err := New(Options{Source: src, Interval: time.Hour, FineSpan: 15 * time.Hour, CoarseFactor: 10, CoarseSpan: 240 * time.Hour,
		Now: clock.Now, Logger: testutil.Logger()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r.Close() })
	return r
}

func TestRatesAreDifferencesOverTheSpan(t *testing.T) {
	clock := testutil.NewClock(time.Unix(1_000_000, 0))
	src := &fakeSource{}
	r := newTestRecorder(t, src, clock)
	src.set(func(r *Reading) { r.MessagesIn, r.MessagesOut, r.Connections = 7200, 3600, 4 })
	clock.Advance(time.Hour)
	r.Sample()
	p, ok := r.Latest()
	if !ok {
		t.Fatal("no point after a sample")
	}
	if p.In != 2 || p.Out != 1 || p.Connections != 4 {
		t.Fatalf("point %+v, want in 2/s, out 1/s, 4 connections", p)
	}
}

func TestSeriesMarkGapsWithNull(t *testing.T) {
	clock := testutil.NewClock(time.Unix(1_000_000, 0))
	r := newTestRecorder(t, &fakeSource{}, clock)
	clock.Advance(time.Hour)
	r.Sample()
	clock.Advance(3 * time.Hour) // the loop stalled for two periods
	r.Sample()
	clock.Advance(time.Hour)
	r.Sample()
	s := r.Series(15 * time.Hour)
	if len(s.Time) != 4 || len(s.In) != 4 || len(s.GroupLag) != 4 {
		t.Fatalf("series of %d times, %d values: want 3 points and a gap: %+v", len(s.Time), len(s.In), s)
	}
	if s.In[1] != nil || s.GroupLag[1] != nil || s.In[0] == nil || s.In[2] == nil {
		t.Fatalf("gap not marked at index 1: %v", s.In)
	}
	if s.Time[1] != s.Time[0]+3600 {
		t.Fatalf("gap at %d, want one period after %d", s.Time[1], s.Time[0])
	}
}

func TestCoarsePointsCoverTenIntervals(t *testing.T) {
	clock := testutil.NewClock(time.Unix(1_000_000, 0))
	src := &fakeSource{}
	r := newTestRecorder(t, src, clock)
	for i := 1; i <= 25; i++ {
		src.set(func(r *Reading) { r.Stored = int64(i) * 3600 })
		clock.Advance(time.Hour)
		r.Sample()
	}
	s := r.Series(200 * time.Hour)
	if s.Interval != 10*time.Hour || len(s.Time) != 2 {
		t.Fatalf("coarse series: interval %s, %d points, want 10h and 2", s.Interval, len(s.Time))
	}
	if *s.Stored[0] != 1 || *s.Stored[1] != 1 {
		t.Fatalf("coarse stored rates %v %v, want 1/s", *s.Stored[0], *s.Stored[1])
	}
	if fine := r.Series(5 * time.Hour); len(fine.Time) != 5 || fine.Interval != time.Hour {
		t.Fatalf("fine series of the last 5 periods: %d points at %s", len(fine.Time), fine.Interval)
	}
}

func TestFineRingIsBounded(t *testing.T) {
	clock := testutil.NewClock(time.Unix(1_000_000, 0))
	r := newTestRecorder(t, &fakeSource{}, clock)
	for range 40 {
		clock.Advance(time.Hour)
		r.Sample()
	}
	if n := len(r.Series(15 * time.Hour).Time); n != 15 {
		t.Fatalf("%d fine points, want the ring's 15", n)
	}
}

func TestGroupTrends(t *testing.T) {
	clock := testutil.NewClock(time.Unix(1_000_000, 0))
	src := &fakeSource{}
	r := newTestRecorder(t, src, clock)
	step := func(lag, acked int64, members int) string {
		src.set(func(r *Reading) {
			r.Groups = []GroupReading{{Name: "g", Filter: "a/#", Lag: lag, Acked: acked, Members: members}}
		})
		clock.Advance(TrendWindow)
		r.Sample()
		return r.Trend("g", "a/#")
	}
	for _, c := range []struct {
		lag, acked int64
		members    int
		want       string
	}{
		{0, 0, 1, TrendCaughtUp},
		{10, 0, 1, TrendGrowing},
		{10, 0, 1, TrendStalled},
		{10, 5, 1, TrendSteady},
		{4, 11, 1, TrendDraining},
		{4, 11, 0, TrendNoMembers},
	} {
		if got := step(c.lag, c.acked, c.members); got != c.want {
			t.Fatalf("lag %d acked %d members %d: trend %q, want %q", c.lag, c.acked, c.members, got, c.want)
		}
	}
	gs, ok := r.GroupSeries("g", "a/#", time.Hour)
	if !ok || len(gs.Lag) == 0 || *gs.Lag[len(gs.Lag)-1] != 4 {
		t.Fatalf("group series %+v %v", gs, ok)
	}
	src.set(func(r *Reading) { r.Groups = nil })
	clock.Advance(time.Second)
	r.Sample()
	if tr := r.Trend("g", "a/#"); tr != "" {
		t.Fatalf("a deleted group still has trend %q", tr)
	}
}

func TestChangedIsClosedBySample(t *testing.T) {
	r, err := New(Options{Source: &fakeSource{}, Interval: 10 * time.Millisecond, Logger: testutil.Logger()})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	select {
	case <-r.Changed():
	case <-time.After(5 * time.Second):
		t.Fatal("the loop did not sample within 5 s")
	}
	if _, ok := r.Latest(); !ok {
		t.Fatal("no point after the loop sampled")
	}
	_ = r.Close()
	_ = r.Close() // idempotent
}

func TestOptionsValidate(t *testing.T) {
	if _, err := New(Options{}); err == nil {
		t.Fatal("no error without a source")
	}
}

package gctune

import (
	"context"
	"runtime/debug"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/mqstream/mqstream/internal/testutil"
)

const mib = 1 << 20

// TestPolicyDecisions feeds the default policy readings and checks each
// decision: up at once, down only after DownAfter calm readings in a row,
// nothing in between.
func TestPolicyDecisions(t *testing.T) {
	p, err := NewPolicy(Options{DownAfter: 3})
	if err != nil {
		t.Fatal(err)
	}
	live := uint64(100 * mib)
	at := func(turnover float64) Reading { return Reading{Rate: turnover * float64(live), Live: live} }
	steps := []struct {
		name    string
		r       Reading
		want    int
		changed bool
	}{
		{"starts high: idle 1", at(0.04), 400, false},
		{"idle 2", at(0.01), 400, false},
		{"idle 3: down", at(0.04), 100, true},
		{"idle stays low", at(0.04), 100, false},
		{"between the thresholds stays low", at(0.9), 100, false},
		{"load goes high at once", at(1.0), 400, true},
		{"load stays high", at(5), 400, false},
		{"calm 1", at(0.1), 400, false},
		{"calm 2", at(0.1), 400, false},
		{"a reading between the thresholds restarts the count", at(0.5), 400, false},
		{"calm 1 again", at(0.2), 400, false},
		{"calm 2 again", at(0), 400, false},
		{"calm 3: down", at(0.1), 100, true},
		{"low again", at(0.1), 100, false},
		{"a burst", at(3), 400, true},
	}
	for _, s := range steps {
		got, changed := p.Observe(s.r)
		if got != s.want || changed != s.changed || p.Target() != s.want {
			t.Fatalf("%s: target %d changed %v; want %d %v", s.name, got, changed, s.want, s.changed)
		}
	}
}

// TestPolicyScalesWithTheHeap: the same allocation rate is load for a
// small heap and idle for a large one, and a nearly empty heap counts as
// MinLive.
func TestPolicyScalesWithTheHeap(t *testing.T) {
	rate := 40.0 * mib // 100,000 idle clients' map copies, roughly
	for _, c := range []struct {
		live uint64
		want int
	}{
		{1 * mib, 400},    // counts as 16 MiB: 2.5 heaps/s
		{20 * mib, 400},   // 2 heaps/s
		{100 * mib, 100},  // 0.4: between the thresholds, stays low
		{1000 * mib, 100}, // 0.04
	} {
		p, err := NewPolicy(Options{DownAfter: 1})
		if err != nil {
			t.Fatal(err)
		}
		p.Observe(Reading{}) // from the start (High) to Low
		if got, _ := p.Observe(Reading{Rate: rate, Live: c.live}); got != c.want {
			t.Errorf("live %d MiB: target %d, want %d (turnover %.2f)", c.live/mib, got, c.want, p.Turnover(Reading{Rate: rate, Live: c.live}))
		}
	}
}

func TestOptionsValidate(t *testing.T) {
	for _, c := range []struct {
		opts Options
		want []string
	}{
		{Options{Low: 500, High: 100}, []string{"low target 500 is above"}},
		{Options{Low: -5}, []string{"both must be positive"}},
		{Options{Up: 1, Down: 2}, []string{"want 0 <= down < up"}},
		{Options{DownAfter: -1, Interval: -time.Second}, []string{"down after -1", "interval -1s"}},
	} {
		_, err := New(c.opts)
		if err == nil {
			t.Errorf("%+v accepted", c.opts)
			continue
		}
		for _, w := range c.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%+v: %v does not mention %q", c.opts, err, w)
			}
		}
	}
}

// TestControllerRuns: Run sets the high target at start and returns when
// its context ends. The setter is replaced, so the process's collector is
// left alone.
func TestControllerRuns(t *testing.T) {
	var mu sync.Mutex // guards set
	var set []int
	c, err := New(Options{Interval: time.Millisecond, SetGCPercent: func(p int) int {
		mu.Lock()
		defer mu.Unlock()
		set = append(set, p)
		return 100
	}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); c.Run(ctx) }()
	cancel()
	<-done
	mu.Lock()
	defer mu.Unlock()
	if len(set) == 0 || set[0] != 400 {
		t.Fatalf("targets set: %v", set)
	}
}

// TestControllerReleasesWhenIdle: going down to Low, the controller runs
// Release once, after setting the target (the process turned idle).
func TestControllerReleasesWhenIdle(t *testing.T) {
	var mu sync.Mutex // guards set and released
	var set []int
	released := 0
	// Any real turnover is far below Down: the first reading goes to Low.
	c, err := New(Options{Interval: time.Millisecond, Up: 1e12, Down: 1e11, DownAfter: 1,
		SetGCPercent: func(p int) int {
			mu.Lock()
			defer mu.Unlock()
			set = append(set, p)
			return 100
		},
		Release: func() {
			mu.Lock()
			defer mu.Unlock()
			released++
		}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); c.Run(ctx) }()
	testutil.Eventually(t, 5*time.Second, "the controller going to Low", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return released > 0
	})
	cancel()
	<-done
	mu.Lock()
	defer mu.Unlock()
	if len(set) != 2 || set[0] != 400 || set[1] != 100 || released != 1 {
		t.Fatalf("targets set %v, released %d times; want [400 100], once", set, released)
	}
}

// TestCollectorReportsTheRuntimeTarget: the gauge reads the target from the
// runtime, -1 when the collector is off.
func TestCollectorReportsTheRuntimeTarget(t *testing.T) {
	old := debug.SetGCPercent(250)
	defer debug.SetGCPercent(old)
	reg := prometheus.NewRegistry()
	reg.MustRegister(Collector())
	want := func(v float64) {
		t.Helper()
		fams, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		if len(fams) != 1 || fams[0].GetName() != "mqstream_runtime_gc_percent" || len(fams[0].GetMetric()) != 1 {
			t.Fatalf("gathered %v", fams)
		}
		if got := fams[0].GetMetric()[0].GetGauge().GetValue(); got != v {
			t.Errorf("gauge %g, want %g", got, v)
		}
	}
	want(250)
	debug.SetGCPercent(-1)
	want(-1)
}

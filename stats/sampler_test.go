package stats

import (
	"context"
	"fmt"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/mqstream/mqstream/internal/testutil"
	"github.com/mqstream/mqstream/streams"
)

func openStore(t *testing.T) *streams.Store {
	t.Helper()
	s, err := streams.Open(streams.Options{Dir: t.TempDir(), AutoCreate: true, Sync: streams.SyncNone,
		Logger: testutil.Logger()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// appendN appends n records to stream in one request and returns the
// encoded bytes the store counted for them.
func appendN(t *testing.T, s *streams.Store, stream string, n int) int64 {
	t.Helper()
	before := s.Counters()[stream].AppendedBytes
	recs := make([]streams.Record, n)
	for i := range recs {
		recs[i] = streams.Record{Topic: stream + "/x", Payload: []byte(fmt.Sprintf(`{"i":%d}`, i))}
	}
	if _, err := s.Append(context.Background(), stream, recs...); err != nil {
		t.Fatal(err)
	}
	return s.Counters()[stream].AppendedBytes - before
}

func near(a, b float64) bool { return math.Abs(a-b) <= 1e-9*math.Max(1, math.Abs(b)) }

func findRates(t *testing.T, all []StreamRates, name string) StreamRates {
	t.Helper()
	for _, r := range all {
		if r.Stream == name {
			return r
		}
	}
	t.Fatalf("no rates for stream %q in %+v", name, all)
	return StreamRates{}
}

func TestRatesAreAveragesOverTheirWindows(t *testing.T) {
	store := openStore(t)
	clk := testutil.NewClock(time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC))
	s, err := New(Options{Source: store, Interval: time.Second, Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()

	// Minute 1: 120 records to a.
	aBytes1 := appendN(t, store, "a", 120)
	clk.Advance(time.Minute)
	s.Sample()

	r := findRates(t, s.StreamRates(), "a")
	if !near(r.Append.M1.RecordsPerSec, 2) || r.Append.M1.Span != time.Minute {
		t.Errorf("a after 1 min: M1 = %+v, want 2 rec/s over 1m", r.Append.M1)
	}
	// The node is one minute old: the 5 and 10 minute windows cover that minute.
	if !near(r.Append.M5.RecordsPerSec, 2) || r.Append.M5.Span != time.Minute || !near(r.Append.M10.RecordsPerSec, 2) {
		t.Errorf("a after 1 min: M5 = %+v, M10 = %+v, want 2 rec/s over the node's age", r.Append.M5, r.Append.M10)
	}
	if !near(r.Append.M1.BytesPerSec, float64(aBytes1)/60) {
		t.Errorf("a bytes/s = %v, want %v", r.Append.M1.BytesPerSec, float64(aBytes1)/60)
	}

	// Minute 2: 60 more to a, 300 to a new stream b; a is read once in full.
	aBytes2 := appendN(t, store, "a", 60)
	appendN(t, store, "b", 300)
	read := 0
	if err := store.Scan(context.Background(), "a", 0, 0, func(streams.Record) (bool, error) { read++; return true, nil }); err != nil {
		t.Fatal(err)
	}
	clk.Advance(time.Minute)
	s.Sample()

	all := s.StreamRates()
	if len(all) != 2 || all[0].Stream != "a" || all[1].Stream != "b" {
		t.Fatalf("streams = %+v, want a and b in order", all)
	}
	a, b := all[0], all[1]
	if !near(a.Append.M1.RecordsPerSec, 1) || !near(a.Append.M1.BytesPerSec, float64(aBytes2)/60) {
		t.Errorf("a minute 2: M1 = %+v, want 1 rec/s", a.Append.M1)
	}
	if !near(a.Append.M5.RecordsPerSec, 1.5) || a.Append.M5.Span != 2*time.Minute {
		t.Errorf("a minute 2: M5 = %+v, want 180 records over 2 min", a.Append.M5)
	}
	if !near(b.Append.M1.RecordsPerSec, 5) || !near(b.Append.M10.RecordsPerSec, 2.5) {
		t.Errorf("b: M1 = %+v, M10 = %+v, want 5 and 2.5 rec/s", b.Append.M1, b.Append.M10)
	}
	if !near(a.Read.M1.RecordsPerSec, float64(read)/60) || read != 180 {
		t.Errorf("a read M1 = %+v after reading %d records, want 3 rec/s", a.Read.M1, read)
	}
	if b.Read.M1.RecordsPerSec != 0 {
		t.Errorf("b was never read, read rate %+v", b.Read.M1)
	}

	// Eleven idle minutes later every window has slid past the appends.
	for range 11 * 60 {
		clk.Advance(time.Second)
		s.Sample()
	}
	a = findRates(t, s.StreamRates(), "a")
	if a.Append.M10.RecordsPerSec != 0 || a.Append.M10.Span != 10*time.Minute {
		t.Errorf("idle a: M10 = %+v, want 0 over 10m", a.Append.M10)
	}
}

func TestRingIsBounded(t *testing.T) {
	store := openStore(t)
	clk := testutil.NewClock(time.Unix(1_800_000_000, 0))
	s, err := New(Options{Source: store, Interval: 10 * time.Second, Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	want := int(Window10m/(10*time.Second)) + 2
	for i := 0; i < 3*want; i++ {
		appendN(t, store, "s", 1)
		clk.Advance(10 * time.Second)
		s.Sample()
	}
	if got := s.Samples(); got != want {
		t.Fatalf("ring holds %d samples, want %d", got, want)
	}
	// One record every 10 s: 0.1 rec/s over each full window.
	r := findRates(t, s.StreamRates(), "s")
	for _, w := range []Rate{r.Append.M1, r.Append.M5, r.Append.M10} {
		if !near(w.RecordsPerSec, 0.1) {
			t.Errorf("rate %+v, want 0.1 rec/s", w)
		}
	}
	if r.Append.M10.Span != Window10m || r.Append.M1.Span != Window1m {
		t.Errorf("spans M1 %s M10 %s, want the full windows", r.Append.M1.Span, r.Append.M10.Span)
	}
}

func TestAppendLatencyOverLastMinute(t *testing.T) {
	store := openStore(t)
	clk := testutil.NewClock(time.Unix(1_800_000_000, 0))
	s, err := New(Options{Source: store, Interval: time.Second, Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	if l := s.AppendLatency(); l.Count != 0 || l.P99 != 0 {
		t.Fatalf("no appends yet: %+v", l)
	}
	for range 5 {
		appendN(t, store, "lat", 3)
	}
	clk.Advance(30 * time.Second)
	s.Sample()
	l := s.AppendLatency()
	if l.Count != 5 || l.Span != 30*time.Second {
		t.Fatalf("latency %+v, want 5 appends over 30s", l)
	}
	if l.P50 <= 0 || l.P50 > l.P90 || l.P90 > l.P99 || l.P99 > l.P999 || l.Mean <= 0 || l.Mean > l.P999 {
		t.Fatalf("percentiles out of order: %+v", l)
	}
	// Past the window the appends no longer count.
	for range 61 {
		clk.Advance(time.Second)
		s.Sample()
	}
	if l := s.AppendLatency(); l.Count != 0 || l.P50 != 0 {
		t.Fatalf("a minute later: %+v, want no appends", l)
	}
}

func TestStartSamplesUntilClose(t *testing.T) {
	store := openStore(t)
	s, err := New(Options{Source: store, Interval: 2 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	s.Start()
	s.Start()
	deadline := time.Now().Add(5 * time.Second)
	for s.Samples() < 4 {
		if time.Now().After(deadline) {
			t.Fatalf("only %d samples after 5s at a 2ms interval", s.Samples())
		}
		time.Sleep(time.Millisecond)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	n := s.Samples()
	time.Sleep(10 * time.Millisecond)
	if s.Samples() != n {
		t.Fatal("sampling went on after Close")
	}
	_ = s.StreamRates() // still answers
}

func TestOptionsAreValidated(t *testing.T) {
	_, err := New(Options{Interval: 2 * time.Minute})
	if err == nil {
		t.Fatal("invalid options accepted")
	}
	for _, want := range []string{"source is nil", "longer than the shortest window"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
}

func TestShortIntervalsKeepTheRingBounded(t *testing.T) {
	store := openStore(t)
	clk := testutil.NewClock(time.Unix(1_800_000_000, 0))
	s, err := New(Options{Source: store, Interval: time.Millisecond, Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	for range 2 * maxSamples {
		clk.Advance(time.Millisecond)
		s.Sample()
	}
	if s.Samples() != maxSamples {
		t.Fatalf("ring holds %d samples, want at most %d", s.Samples(), maxSamples)
	}
}

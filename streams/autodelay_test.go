package streams

import (
	"fmt"
	"testing"
	"time"
)

// load is how appends arrive with a commit delay d (0: none): appends per
// second and per synced commit.
type load func(d time.Duration) (rate, per float64)

// drive feeds the controller commits for d of simulated time from *now,
// each carrying the appends the load gives with the current delay.
func drive(a *autoDelay, now *time.Time, d time.Duration, l load) {
	end := now.Add(d)
	for now.Before(end) {
		rate, per := l(a.current())
		*now = now.Add(time.Duration(per / rate * float64(time.Second)))
		a.committed(int(per), *now)
	}
}

// gathered is an open load of rate appends/s: the delay gathers what
// arrives meanwhile (3 per commit without it).
func gathered(rate float64, d time.Duration) (float64, float64) {
	if d == 0 {
		return rate, 3
	}
	return rate, max(3, rate*d.Seconds())
}

var (
	// Devices on their own schedule: the longer the delay, the more per
	// fsync at the same rate.
	openLoop load = func(d time.Duration) (float64, float64) { return gathered(10000, d) }
	// Producers waiting for each ack: any delay slows them down.
	closedLoop load = func(d time.Duration) (float64, float64) {
		if d == 0 {
			return 5000, 2
		}
		return 2500, 2
	}
	// Producers with enough in flight to hide a delay up to 1ms, not 2ms.
	upTo1ms load = func(d time.Duration) (float64, float64) {
		if d > time.Millisecond {
			return gathered(8000, d)
		}
		return gathered(10000, d)
	}
	// Full load: commits take longer than the delay, nothing changes.
	fullLoad load = func(time.Duration) (float64, float64) { return 200000, 400 }
	// Too little to judge.
	trickle load = func(d time.Duration) (float64, float64) {
		if d == 0 {
			return 100, 2
		}
		return 100, 4
	}
)

func TestAutoDelayClimbsForAnOpenLoop(t *testing.T) {
	now := time.Unix(1000, 0)
	a := newAutoDelay(500*time.Microsecond, now)
	if a.current() != 0 {
		t.Fatal("on before any probe")
	}
	// One window, then the two probes: the first step.
	drive(a, &now, 3500*time.Millisecond, openLoop)
	if !a.on() || a.current() != 500*time.Microsecond || a.hold != autoMinHold || a.switches != 1 {
		t.Fatalf("after the first probe: on %v, delay %s, hold %s, switches %d", a.on(), a.current(), a.hold, a.switches)
	}
	// A step per probe, up to the top of the ladder (four times the
	// first); each probe that confirms it doubles the hold, up to
	// autoMaxHold.
	drive(a, &now, 10*time.Minute, openLoop)
	if a.level != autoLevels || a.at(a.level) != 2*time.Millisecond || a.hold != autoMaxHold || a.switches != 1 {
		t.Fatalf("after confirming probes: level %d (%s), hold %s, switches %d", a.level, a.at(a.level), a.hold, a.switches)
	}
}

func TestAutoDelayStopsWhereTheRateDrops(t *testing.T) {
	now := time.Unix(1000, 0)
	a := newAutoDelay(500*time.Microsecond, now)
	// The 2ms step slows the producers: the delay stays at 1ms, and
	// the probes that confirm it grow the hold.
	for range 10 {
		drive(a, &now, time.Minute, upTo1ms)
		if a.phase == autoHolding && a.at(a.level) > time.Millisecond {
			t.Fatalf("delay %s while the load slows above 1ms", a.at(a.level))
		}
	}
	if a.at(a.level) != time.Millisecond || a.hold < 4*autoMinHold || a.switches != 1 {
		t.Fatalf("level %d (%s), hold %s, switches %d", a.level, a.at(a.level), a.hold, a.switches)
	}
	// The producers start waiting for each ack: neither the candidate
	// nor the delay held pays, so the delay goes off.
	drive(a, &now, 5*time.Minute, closedLoop)
	if a.on() || a.switches != 2 {
		t.Fatalf("closed loop after 1ms: on %v, switches %d", a.on(), a.switches)
	}
}

func TestAutoDelayStaysOffForAClosedLoop(t *testing.T) {
	now := time.Unix(1000, 0)
	a := newAutoDelay(500*time.Microsecond, now)
	drive(a, &now, 3500*time.Millisecond, closedLoop)
	if a.on() || a.switches != 0 {
		t.Fatalf("closed loop: on %v, switches %d", a.on(), a.switches)
	}
	// Probing costs: over five minutes, at most a few seconds were spent
	// with the delay (one probe window per hold, the holds growing).
	probed := 0
	for range 300 {
		drive(a, &now, time.Second, closedLoop)
		if a.phase == autoProbeOn {
			probed++
		}
	}
	if a.on() || probed > 8 || a.hold < 4*autoMinHold {
		t.Fatalf("closed loop over 5 minutes: on %v, %d s probing with the delay, hold %s", a.on(), probed, a.hold)
	}
}

func TestAutoDelayFollowsTheLoad(t *testing.T) {
	now := time.Unix(1000, 0)
	a := newAutoDelay(time.Millisecond, now)
	drive(a, &now, time.Minute, openLoop)
	if !a.on() {
		t.Fatal("open loop: off")
	}
	// The producers start waiting for each ack: the next probe turns the
	// delay off, and the hold starts short again.
	drive(a, &now, 4*time.Minute, closedLoop)
	if a.on() || a.switches != 2 {
		t.Fatalf("closed loop after open: on %v, switches %d", a.on(), a.switches)
	}
	// Full load: the delay gathers nothing more per fsync, so it stays
	// off; a trickle is too little to judge, off.
	drive(a, &now, 2*time.Minute, fullLoad)
	if a.on() {
		t.Fatal("full load: on")
	}
	drive(a, &now, time.Minute, openLoop)
	drive(a, &now, 5*time.Minute, trickle)
	if a.on() {
		t.Fatal("trickle: on")
	}
}

func TestAutoDelayNeedsADelay(t *testing.T) {
	o := Options{Dir: t.TempDir(), CommitDelayAuto: true}
	o.EnsureDefaults()
	if err := o.Validate(); err == nil {
		t.Fatal("automatic commit delay without a delay accepted")
	}
}

// TestAutoDelayStore: a store under CommitDelayAuto commits concurrent
// appends, starts with the delay off, and says so in its counters.
func TestAutoDelayStore(t *testing.T) {
	s, err := Open(Options{Dir: t.TempDir(), AutoCreate: true, Sync: SyncAlways, CommitDelay: time.Millisecond, CommitDelayAuto: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if c := s.StoreCounters(); c.DelayOn || c.DelaySwitches != 0 {
		t.Fatalf("a new store: %+v", c)
	}
	done := make(chan error, 200)
	for i := range 200 {
		if err := s.Submit(AppendRequest{Stream: "auto", Records: []Record{rec("t", fmt.Sprint(i))}, Done: func(_ uint64, err error) { done <- err }}); err != nil {
			t.Fatal(err)
		}
	}
	for range 200 {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
	if info, _ := s.DescribeStream("auto"); info.Records != 200 {
		t.Fatalf("%d records stored, want 200", info.Records)
	}
}

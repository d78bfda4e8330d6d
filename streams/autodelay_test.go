package streams

import (
	"fmt"
	"testing"
	"time"
)

// load is how appends arrive without the delay (off) and with it (on):
// appends per second and per synced commit.
type load struct {
	offRate, offPer, onRate, onPer float64
}

// drive feeds the controller commits for d of simulated time from *now,
// each carrying the appends the load gives in the current mode.
func drive(a *autoDelay, now *time.Time, d time.Duration, l load) {
	end := now.Add(d)
	for now.Before(end) {
		rate, per := l.offRate, l.offPer
		if a.current() > 0 {
			rate, per = l.onRate, l.onPer
		}
		*now = now.Add(time.Duration(per / rate * float64(time.Second)))
		a.committed(int(per), *now)
	}
}

var (
	// Devices on their own schedule: the delay gathers more per fsync at
	// the same rate.
	openLoop = load{offRate: 10000, offPer: 2.5, onRate: 10000, onPer: 11}
	// Producers waiting for each ack: the delay slows them down.
	closedLoop = load{offRate: 5000, offPer: 2, onRate: 2500, onPer: 2}
	// Full load: commits take longer than the delay, nothing changes.
	fullLoad = load{offRate: 200000, offPer: 400, onRate: 200000, onPer: 400}
	// Too little to judge.
	trickle = load{offRate: 100, offPer: 2, onRate: 100, onPer: 4}
)

func TestAutoDelayTurnsOnForAnOpenLoop(t *testing.T) {
	now := time.Unix(1000, 0)
	a := newAutoDelay(500*time.Microsecond, now)
	if a.current() != 0 {
		t.Fatal("on before any probe")
	}
	// One window, then the two probes: on.
	drive(a, &now, 3500*time.Millisecond, openLoop)
	if !a.on || a.current() != 500*time.Microsecond || a.hold != autoMinHold || a.switches != 1 {
		t.Fatalf("after the first probe: on %v, delay %s, hold %s, switches %d", a.on, a.current(), a.hold, a.switches)
	}
	// Each probe that confirms doubles the hold, up to autoMaxHold.
	drive(a, &now, 10*time.Minute, openLoop)
	if !a.on || a.hold != autoMaxHold || a.switches != 1 {
		t.Fatalf("after confirming probes: on %v, hold %s, switches %d", a.on, a.hold, a.switches)
	}
}

func TestAutoDelayStaysOffForAClosedLoop(t *testing.T) {
	now := time.Unix(1000, 0)
	a := newAutoDelay(500*time.Microsecond, now)
	drive(a, &now, 3500*time.Millisecond, closedLoop)
	if a.on || a.switches != 0 {
		t.Fatalf("closed loop: on %v, switches %d", a.on, a.switches)
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
	if a.on || probed > 8 || a.hold < 4*autoMinHold {
		t.Fatalf("closed loop over 5 minutes: on %v, %d s probing with the delay, hold %s", a.on, probed, a.hold)
	}
}

func TestAutoDelayFollowsTheLoad(t *testing.T) {
	now := time.Unix(1000, 0)
	a := newAutoDelay(time.Millisecond, now)
	drive(a, &now, time.Minute, openLoop)
	if !a.on {
		t.Fatal("open loop: off")
	}
	// The producers start waiting for each ack: the next probe turns the
	// delay off, and the hold starts short again.
	drive(a, &now, 2*time.Minute, closedLoop)
	if a.on || a.switches != 2 {
		t.Fatalf("closed loop after open: on %v, switches %d", a.on, a.switches)
	}
	// Full load: the delay gathers nothing more per fsync, so it stays
	// off; a trickle is too little to judge, off.
	drive(a, &now, 2*time.Minute, fullLoad)
	if a.on {
		t.Fatal("full load: on")
	}
	drive(a, &now, time.Minute, openLoop)
	drive(a, &now, 5*time.Minute, trickle)
	if a.on {
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

package streams

import "time"

// Options.CommitDelayAuto: the committer decides by itself whether to hold
// synced commits back (Options.CommitDelay), and for how long, by trying.
//
// A delay pays when appends arrive on their own schedule (a fleet of
// devices publishing every few seconds): the same appends then share
// fewer fsyncs, and each costs CPU. It costs when producers wait for each
// acknowledgement before sending the next (a gateway publishing one
// message at a time): every round trip then includes the delay, and fewer
// appends arrive. The store cannot tell the two apart from one commit,
// but it can from the rate: an open-loop load arrives at the same rate
// with or without the delay, a closed loop slows down.
//
// So the controller alternates: after holding a decision for a while, it
// measures one probe window without the delay and one with a candidate
// delay, and takes the candidate when appends arrived about as fast with
// it (at least autoKeepRate of the rate without) while each fsync carried
// clearly more of them (autoGain times as many). A probe that confirms
// the decision doubles the time until the next (up to autoMaxHold); one
// that changes it starts again from autoMinHold. Too few appends in a
// probe to judge turn the delay off: there is little to save.
//
// The delays form a ladder: Options.CommitDelay, then twice and four
// times as long (autoLevels). The candidate is one step above the delay
// held now, so an open load climbs a step per probe while each step keeps
// the rate, and every step is measured against no delay at all: the
// delays never slow the producers by more than autoKeepRate together. The
// delay held now is measured too, in the last window before the probe:
// when the candidate fails and that one passes, it stays; when both fail
// (the load changed), the delay goes off and climbs again from the first
// step. The top of the ladder is the latency budget: at most four times
// Options.CommitDelay is added to an acknowledgement.

const (
	autoProbe    = time.Second      // each probe window
	autoMinHold  = 10 * time.Second // a decision stands this long at first
	autoMaxHold  = 160 * time.Second
	autoKeepRate = 0.95 // the delay may cost at most 5% of the rate
	autoGain     = 1.2  // and must gather this many more appends per fsync
	autoMinOps   = 500  // appends a probe window needs to judge
	autoLevels   = 3    // delays on the ladder: CommitDelay x1, x2, x4
)

// autoDelay is the committer's controller (owned by its goroutine: no
// lock).
type autoDelay struct {
	delay time.Duration // the first step of the ladder
	level int           // the decision: 0 off, else the step (1..autoLevels)
	hold  time.Duration // how long it stands

	phase      autoPhase
	phaseStart time.Time
	ops        int64 // appends committed in this phase
	commits    int64 // synced commits in this phase
	// the figures of the probe without the delay and of the window with
	// the delay held (probeHeld): appends per second and per commit.
	offRate, offPer   float64
	heldRate, heldPer float64
	// switches counts changes of decision between on and off (the
	// store's metrics).
	switches int64
}

type autoPhase uint8

const (
	autoHolding   autoPhase = iota
	autoProbeHeld           // the last window of a hold, measured
	autoProbeOff
	autoProbeOn
)

func newAutoDelay(delay time.Duration, now time.Time) *autoDelay {
	// The first decision is made soon: a probe starts after one window.
	return &autoDelay{delay: delay, hold: autoProbe, phaseStart: now}
}

// on says the decision is to hold commits back.
func (a *autoDelay) on() bool { return a.level > 0 }

// at is the delay of a step of the ladder (0: off).
func (a *autoDelay) at(level int) time.Duration {
	if level <= 0 {
		return 0
	}
	return a.delay << (level - 1)
}

// candidate is the step the next probe tries.
func (a *autoDelay) candidate() int { return min(a.level+1, autoLevels) }

// current is the delay to apply to the next commit.
func (a *autoDelay) current() time.Duration {
	switch a.phase {
	case autoProbeOff:
		return 0
	case autoProbeOn:
		return a.at(a.candidate())
	}
	return a.at(a.level)
}

// committed records a synced commit of ops appends at now and moves the
// controller on.
func (a *autoDelay) committed(ops int, now time.Time) {
	a.ops += int64(ops)
	a.commits++
	elapsed := now.Sub(a.phaseStart)
	switch a.phase {
	case autoHolding:
		switch {
		case elapsed < a.hold-autoProbe:
		case a.level > 0 && a.level < autoLevels:
			// The delay held is measured when the probe tries another.
			a.next(autoProbeHeld, now)
		case elapsed >= a.hold:
			a.next(autoProbeOff, now)
		}
	case autoProbeHeld:
		if elapsed >= autoProbe {
			a.heldRate, a.heldPer = a.figures(elapsed)
			a.next(autoProbeOff, now)
		}
	case autoProbeOff:
		if elapsed >= autoProbe {
			a.offRate, a.offPer = a.figures(elapsed)
			a.next(autoProbeOn, now)
		}
	case autoProbeOn:
		if elapsed >= autoProbe {
			level := 0
			if a.ops >= autoMinOps && a.offRate*autoProbe.Seconds() >= autoMinOps {
				switch rate, per := a.figures(elapsed); {
				case a.pays(rate, per):
					level = a.candidate()
				case a.level != a.candidate() && a.pays(a.heldRate, a.heldPer):
					level = a.level
				}
			}
			a.decide(level)
			a.next(autoHolding, now)
		}
	}
}

// pays says a delay that gave these figures kept the rate of the probe
// without it and gathered clearly more per fsync.
func (a *autoDelay) pays(rate, per float64) bool {
	return rate >= autoKeepRate*a.offRate && per >= autoGain*a.offPer
}

func (a *autoDelay) figures(elapsed time.Duration) (rate, per float64) {
	return float64(a.ops) / elapsed.Seconds(), float64(a.ops) / float64(max(a.commits, 1))
}

func (a *autoDelay) decide(level int) {
	if level == a.level && a.hold >= autoMinHold {
		a.hold = min(2*a.hold, autoMaxHold)
		return
	}
	if (level > 0) != a.on() {
		a.switches++
	}
	a.level, a.hold = level, autoMinHold
}

func (a *autoDelay) next(p autoPhase, now time.Time) {
	a.phase, a.phaseStart, a.ops, a.commits = p, now, 0, 0
}

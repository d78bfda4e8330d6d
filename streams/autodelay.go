package streams

import "time"

// Options.CommitDelayAuto: the committer decides by itself whether to hold
// synced commits back (Options.CommitDelay), by trying both.
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
// measures one probe window without the delay and one with it, and keeps
// the delay on when appends arrived about as fast with it (at least
// autoKeepRate of the rate without) while each fsync carried clearly more
// of them (autoGain times as many). A probe that confirms the decision
// doubles the time until the next (up to autoMaxHold); one that changes
// it starts again from autoMinHold. Too few appends in a probe to judge
// turn the delay off: there is little to save.

const (
	autoProbe    = time.Second      // each probe window
	autoMinHold  = 10 * time.Second // a decision stands this long at first
	autoMaxHold  = 160 * time.Second
	autoKeepRate = 0.95 // the delay may cost at most 5% of the rate
	autoGain     = 1.2  // and must gather this many more appends per fsync
	autoMinOps   = 500  // appends a probe window needs to judge
)

// autoDelay is the committer's controller (owned by its goroutine: no
// lock).
type autoDelay struct {
	delay time.Duration // the delay while on
	on    bool          // the decision
	hold  time.Duration // how long it stands

	phase      autoPhase
	phaseStart time.Time
	ops        int64 // appends committed in this phase
	commits    int64 // synced commits in this phase
	// off figures of the probe without the delay: appends per second
	// and per commit.
	offRate, offPer float64
	// switches counts changes of decision (the store's metrics).
	switches int64
}

type autoPhase uint8

const (
	autoHolding autoPhase = iota
	autoProbeOff
	autoProbeOn
)

func newAutoDelay(delay time.Duration, now time.Time) *autoDelay {
	// The first decision is made soon: a probe starts after one window.
	return &autoDelay{delay: delay, hold: autoProbe, phaseStart: now}
}

// current is the delay to apply to the next commit.
func (a *autoDelay) current() time.Duration {
	switch {
	case a.phase == autoProbeOff:
		return 0
	case a.phase == autoProbeOn || a.on:
		return a.delay
	}
	return 0
}

// committed records a synced commit of ops appends at now and moves the
// controller on.
func (a *autoDelay) committed(ops int, now time.Time) {
	a.ops += int64(ops)
	a.commits++
	elapsed := now.Sub(a.phaseStart)
	switch a.phase {
	case autoHolding:
		if elapsed >= a.hold {
			a.next(autoProbeOff, now)
		}
	case autoProbeOff:
		if elapsed >= autoProbe {
			a.offRate, a.offPer = a.figures(elapsed)
			a.next(autoProbeOn, now)
		}
	case autoProbeOn:
		if elapsed >= autoProbe {
			on := false
			if a.ops >= autoMinOps && a.offRate*autoProbe.Seconds() >= autoMinOps {
				rate, per := a.figures(elapsed)
				on = rate >= autoKeepRate*a.offRate && per >= autoGain*a.offPer
			}
			a.decide(on)
			a.next(autoHolding, now)
		}
	}
}

func (a *autoDelay) figures(elapsed time.Duration) (rate, per float64) {
	return float64(a.ops) / elapsed.Seconds(), float64(a.ops) / float64(max(a.commits, 1))
}

func (a *autoDelay) decide(on bool) {
	if on == a.on && a.hold >= autoMinHold {
		a.hold = min(2*a.hold, autoMaxHold)
		return
	}
	if on != a.on {
		a.switches++
	}
	a.on, a.hold = on, autoMinHold
}

func (a *autoDelay) next(p autoPhase, now time.Time) {
	a.phase, a.phaseStart, a.ops, a.commits = p, now, 0, 0
}

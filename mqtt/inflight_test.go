package mqtt

import (
	"testing"
	"time"
)

// TestInFlightWaitsForWorkAddedDuringTheWait: work added while a wait is
// under way (a delayed will while the broker stops) is waited for.
func TestInFlightWaitsForWorkAddedDuringTheWait(t *testing.T) {
	var f inFlight
	f.add()
	waited := make(chan struct{})
	go func() {
		f.wait()
		close(waited)
	}()
	f.add() // added during the wait
	f.done()
	select {
	case <-waited:
		t.Fatal("wait returned while work added during it was still under way")
	case <-time.After(20 * time.Millisecond):
	}
	f.done()
	select {
	case <-waited:
	case <-time.After(5 * time.Second):
		t.Fatal("wait did not return once the work was done")
	}
	f.wait() // nothing under way: returns at once
}

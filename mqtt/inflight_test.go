package mqtt

import (
	"sync"
	"testing"
	"time"
)

// TestInFlightWaitsForWorkAddedDuringTheWait: work added while a wait is
// under way (a delayed will while the broker stops) is waited for, and the
// race detector finds nothing to report, as it did with a WaitGroup.
func TestInFlightWaitsForWorkAddedDuringTheWait(t *testing.T) {
	var f inFlight
	f.add()
	waited := make(chan struct{})
	go func() {
		f.wait()
		close(waited)
	}()
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := 0; j < 1000; j++ {
				f.add()
				f.done()
			}
		}()
	}
	wg.Wait()
	select {
	case <-waited:
		t.Fatal("wait returned while one piece of work was still under way")
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

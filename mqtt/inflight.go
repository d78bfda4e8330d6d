package mqtt

import (
	"sync"
	"sync/atomic"
)

// inFlight counts work under way; wait returns once none is. Unlike a
// sync.WaitGroup it allows work to be added while a wait is under way:
// mochi's event loop can send a delayed will (ingestHook.OnWillSent) while
// a stopping broker waits for its publishes, which a WaitGroup reports as
// misuse under the race detector.
type inFlight struct {
	n  atomic.Int64
	mu sync.Mutex // guards zero
	// zero is made by a waiter that found work under way and closed by
	// the done that brings n to zero (nil while nobody waits).
	zero chan struct{}
}

func (f *inFlight) add() { f.n.Add(1) }

func (f *inFlight) done() {
	if f.n.Add(-1) != 0 {
		return
	}
	f.mu.Lock()
	if f.zero != nil {
		close(f.zero)
		f.zero = nil
	}
	f.mu.Unlock()
}

// wait blocks until no work is under way. Work added meanwhile is waited
// for too, as long as some is under way when wait looks.
func (f *inFlight) wait() {
	for {
		f.mu.Lock()
		if f.n.Load() == 0 {
			f.mu.Unlock()
			return
		}
		if f.zero == nil {
			f.zero = make(chan struct{})
		}
		ch := f.zero
		f.mu.Unlock()
		<-ch
	}
}

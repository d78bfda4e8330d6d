// Package broadcast wakes every waiter at once: a channel closed at the
// next change, replaced by a fresh one for the waiters after it.
package broadcast

import "sync"

// Signal is a change signal; the zero value is ready to use.
type Signal struct {
	mu sync.Mutex    // guards ch
	ch chan struct{} // closed and replaced at each change; nil until asked for
}

// Wait returns a channel closed at the next Notify.
func (s *Signal) Wait() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ch == nil {
		s.ch = make(chan struct{})
	}
	return s.ch
}

// Notify wakes everyone waiting on a channel from Wait.
func (s *Signal) Notify() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ch != nil {
		close(s.ch)
		s.ch = nil
	}
}

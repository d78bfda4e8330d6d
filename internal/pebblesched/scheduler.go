// Package pebblesched is a Pebble compaction scheduler that is quiet while
// no compaction waits.
//
// Pebble's default scheduler (pebble.ConcurrencyLimitScheduler) grants a
// database as many concurrent compactions as the database allows
// (DBForCompaction.GetAllowedWithoutPermission, which grows with the
// compaction backlog). Because that allowance also grows without the
// scheduler hearing of it, the default scheduler samples it every 100 ms,
// forever: ten wake-ups a second per database, on an idle node too. A
// cluster node runs two databases (the stream store and the Raft log), and
// on an idle node those wake-ups are a visible share of its CPU.
//
// Scheduler grants exactly as the default does, and samples every 100 ms
// too, but only while a compaction is waiting. A database asks for a grant
// (TrySchedule) whenever it wants to compact; once refused it remembers
// the compaction and asks no more, waiting to be granted: that refusal is
// when sampling starts. Sampling stops when the database, offered a grant,
// has no compaction waiting any more. In between, a compaction that ends
// (Done) and a flush that raises the allowance
// (UpdateGetAllowedWithoutPermission) grant at once, as by default.
package pebblesched

import (
	"sync"
	"time"

	"github.com/cockroachdb/pebble/v2"
)

// sampleInterval is how often the allowance is sampled while a compaction
// waits: pebble's default scheduler's interval.
const sampleInterval = 100 * time.Millisecond

// Scheduler is a pebble.CompactionScheduler for one database. Set a new one
// in each database's Options.Experimental.CompactionScheduler.
type Scheduler struct {
	db   pebble.DBForCompaction // set by Register, before any other call
	poke chan struct{}          // capacity 1: grant now, and sample if waiting
	stop chan struct{}          // closed by Unregister
	done chan struct{}          // closed when the sampler has returned

	// mu guards what follows. It is not held across calls into the
	// database that run compactions (GetWaitingCompaction, Schedule): a
	// grant in progress is marked by granting instead.
	mu struct {
		sync.Mutex
		running      int    // compactions granted and not done
		allowed      int    // the allowance as last sampled
		waiting      bool   // a refused compaction may be waiting for a grant
		refusals     uint64 // counts refusals, so that a grant pass sees one made during it
		unregistered bool
		granting     bool       // a grant pass is under way
		idle         *sync.Cond // signalled when granting ends
	}
}

var _ pebble.CompactionScheduler = (*Scheduler)(nil)

// New returns a Scheduler; the database registers itself when it opens.
func New() *Scheduler {
	s := &Scheduler{poke: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{})}
	s.mu.idle = sync.NewCond(&s.mu.Mutex)
	return s
}

// Register is called once by the database when it opens.
func (s *Scheduler) Register(_ int, db pebble.DBForCompaction) {
	s.db = db
	go s.sample()
}

// Unregister is called once by the database when it closes; no call into
// the database follows its return.
func (s *Scheduler) Unregister() {
	close(s.stop)
	if s.db != nil {
		<-s.done // the sampler runs once registered
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.mu.unregistered = true
	for s.mu.granting {
		s.mu.idle.Wait()
	}
}

// TrySchedule grants the database a compaction if its allowance has room;
// a refusal means the database now waits for a grant.
func (s *Scheduler) TrySchedule() (bool, pebble.CompactionGrantHandle) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.mu.unregistered {
		return false, nil
	}
	s.mu.allowed = s.db.GetAllowedWithoutPermission()
	if s.mu.allowed > s.mu.running {
		s.mu.running++
		return true, s
	}
	s.mu.refusals++
	if !s.mu.waiting {
		s.mu.waiting = true
		s.wake()
	}
	return false, nil
}

// UpdateGetAllowedWithoutPermission is called by the database when its
// allowance may have grown (after a flush): a waiting compaction may be
// granted now.
func (s *Scheduler) UpdateGetAllowedWithoutPermission() {
	s.mu.Lock()
	if s.mu.unregistered {
		s.mu.Unlock()
		return
	}
	allowed := s.db.GetAllowedWithoutPermission()
	grow := allowed > s.mu.allowed
	s.mu.allowed = allowed
	s.mu.Unlock()
	if grow {
		s.wake()
	}
}

// The grant handle's methods: Done frees the compaction's slot.
func (s *Scheduler) Started()                                          {}
func (s *Scheduler) MeasureCPU(pebble.CompactionGoroutineKind)         {}
func (s *Scheduler) CumulativeStats(pebble.CompactionGrantHandleStats) {}

// Done is called when a granted compaction ends.
func (s *Scheduler) Done() {
	s.mu.Lock()
	s.mu.running--
	s.mu.Unlock()
	s.grant()
}

func (s *Scheduler) wake() {
	select {
	case s.poke <- struct{}{}:
	default:
	}
}

// sample grants when poked, and every sampleInterval while a compaction
// waits.
func (s *Scheduler) sample() {
	defer close(s.done)
	var tick *time.Ticker
	defer func() {
		if tick != nil {
			tick.Stop()
		}
	}()
	for {
		var tc <-chan time.Time
		if tick != nil {
			tc = tick.C
		}
		select {
		case <-s.stop:
			return
		case <-s.poke:
		case <-tc:
		}
		waiting := s.grant()
		switch {
		case waiting && tick == nil:
			tick = time.NewTicker(sampleInterval)
		case !waiting && tick != nil:
			tick.Stop()
			tick = nil
		}
	}
}

// grant offers the waiting compactions as many grants as the allowance
// has room for, and reports whether one may still be waiting.
func (s *Scheduler) grant() (waiting bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for s.mu.granting {
		s.mu.idle.Wait()
	}
	if s.mu.unregistered || !s.mu.waiting {
		return false
	}
	s.mu.allowed = s.db.GetAllowedWithoutPermission()
	room := s.mu.allowed - s.mu.running
	if room <= 0 {
		return true // still waiting: a Done or the next sample grants it
	}
	s.mu.granting = true
	refusals := s.mu.refusals
	s.mu.Unlock()
	for room > 0 {
		if ok, _ := s.db.GetWaitingCompaction(); !ok {
			break
		}
		if !s.db.Schedule(s) {
			break
		}
		s.mu.Lock()
		s.mu.running++
		s.mu.Unlock()
		room--
	}
	s.mu.Lock()
	s.mu.granting = false
	s.mu.idle.Broadcast()
	// Granted all the room: more may wait. Stopped early: nothing waited
	// any more (the database said so), unless a compaction was refused
	// since.
	s.mu.waiting = room == 0 || s.mu.refusals != refusals
	return s.mu.waiting
}

package pebblesched

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/mqstream/mqstream/internal/testutil"
)

// fakeDB is a database with waiting compactions and an allowance.
type fakeDB struct {
	mu        sync.Mutex
	allowed   int
	waiting   int // compactions waiting for a grant
	started   int // compactions granted through Schedule
	allowance int // calls of GetAllowedWithoutPermission
}

func (d *fakeDB) GetAllowedWithoutPermission() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.allowance++
	return d.allowed
}

func (d *fakeDB) GetWaitingCompaction() (bool, pebble.WaitingCompaction) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.waiting > 0, pebble.WaitingCompaction{}
}

func (d *fakeDB) Schedule(pebble.CompactionGrantHandle) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.waiting == 0 {
		return false
	}
	d.waiting--
	d.started++
	return true
}

func (d *fakeDB) set(f func(d *fakeDB)) {
	d.mu.Lock()
	defer d.mu.Unlock()
	f(d)
}

func (d *fakeDB) get(f func(d *fakeDB) int) int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return f(d)
}

func startedCount(d *fakeDB) int   { return d.started }
func allowanceCalls(d *fakeDB) int { return d.allowance }

// try asks for a grant as the database does: a refused compaction waits.
func try(t *testing.T, s *Scheduler, db *fakeDB) bool {
	t.Helper()
	ok, h := s.TrySchedule()
	if ok && h == nil {
		t.Fatal("granted without a handle")
	}
	if !ok {
		db.set(func(d *fakeDB) { d.waiting++ })
	}
	return ok
}

func newScheduler(t *testing.T, db *fakeDB) *Scheduler {
	s := New()
	s.Register(2, db)
	t.Cleanup(s.Unregister)
	return s
}

func TestGrantsUpToTheAllowance(t *testing.T) {
	db := &fakeDB{allowed: 2}
	s := newScheduler(t, db)
	if !try(t, s, db) || !try(t, s, db) {
		t.Fatal("refused within the allowance")
	}
	if try(t, s, db) {
		t.Fatal("granted beyond the allowance")
	}
	// The compaction refused runs once a slot frees.
	s.Done()
	testutil.Eventually(t, 5*time.Second, "the waiting compaction granted", func() bool { return db.get(startedCount) == 1 })
}

func TestSamplesWhileAWaitingCompactionHasNoRoom(t *testing.T) {
	db := &fakeDB{allowed: 1}
	s := newScheduler(t, db)
	try(t, s, db)
	if try(t, s, db) {
		t.Fatal("granted beyond the allowance")
	}
	// The allowance grows without the scheduler being told: sampling
	// finds it.
	db.set(func(d *fakeDB) { d.allowed = 2 })
	testutil.Eventually(t, 5*time.Second, "the waiting compaction granted", func() bool { return db.get(startedCount) == 1 })
}

func TestUpdateGrantsAtOnce(t *testing.T) {
	db := &fakeDB{allowed: 0}
	s := newScheduler(t, db)
	if try(t, s, db) {
		t.Fatal("granted with no allowance")
	}
	db.set(func(d *fakeDB) { d.allowed = 1 })
	s.UpdateGetAllowedWithoutPermission()
	testutil.Eventually(t, 5*time.Second, "the waiting compaction granted", func() bool { return db.get(startedCount) == 1 })
}

func TestQuietWhileNothingWaits(t *testing.T) {
	db := &fakeDB{allowed: 1}
	s := newScheduler(t, db)
	try(t, s, db)
	try(t, s, db) // refused: waits
	s.Done()
	testutil.Eventually(t, 5*time.Second, "the waiting compaction granted", func() bool { return db.get(startedCount) == 1 })
	s.Done()
	// Offered a grant with nothing waiting, sampling stops.
	testutil.Eventually(t, 5*time.Second, "sampling to stop", func() bool {
		before := db.get(allowanceCalls)
		time.Sleep(3 * sampleInterval)
		return db.get(allowanceCalls) == before
	})
}

func TestUnregisterStopsCalls(t *testing.T) {
	db := &fakeDB{allowed: 0}
	s := New()
	s.Register(2, db)
	try(t, s, db) // waiting: sampling
	s.Unregister()
	before := db.get(allowanceCalls)
	s.UpdateGetAllowedWithoutPermission()
	s.Done()
	if ok, _ := s.TrySchedule(); ok {
		t.Fatal("granted after Unregister")
	}
	time.Sleep(2 * sampleInterval)
	if after := db.get(allowanceCalls); after != before {
		t.Fatalf("%d calls into the database after Unregister", after-before)
	}
}

// TestPebbleCompactsWithIt: a Pebble database with the scheduler compacts
// what its writes pile up, and closes.
func TestPebbleCompactsWithIt(t *testing.T) {
	opts := &pebble.Options{FS: vfs.NewMem(), MemTableSize: 256 << 10, L0CompactionThreshold: 2}
	opts.Experimental.CompactionScheduler = New()
	db, err := pebble.Open("", opts)
	if err != nil {
		t.Fatal(err)
	}
	value := make([]byte, 1024)
	for round := range 20 {
		b := db.NewBatch()
		for i := range 512 {
			if err := b.Set(fmt.Appendf(nil, "k%06d", (round*512+i)%4096), value, nil); err != nil {
				t.Fatal(err)
			}
		}
		if err := b.Commit(pebble.NoSync); err != nil {
			t.Fatal(err)
		}
		if err := db.Flush(); err != nil {
			t.Fatal(err)
		}
	}
	testutil.Eventually(t, 20*time.Second, "compactions", func() bool {
		m := db.Metrics()
		return m.Compact.Count > 0 && m.Levels[0].TablesCount < 4
	})
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
}

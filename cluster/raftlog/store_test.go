package raftlog

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"sync"
	"testing"

	"github.com/hashicorp/raft"
)

// openTest opens a DB in dir without syncs, closed at the end of the test.
func openTest(t testing.TB, dir string) *DB {
	t.Helper()
	d, err := Open(dir, Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = d.Close() })
	return d
}

// entries returns entries lo..hi of term 1 whose data names their index.
func entries(lo, hi uint64) []*raft.Log {
	var logs []*raft.Log
	for i := lo; i <= hi; i++ {
		logs = append(logs, &raft.Log{Index: i, Term: 1, Data: fmt.Appendf(nil, "entry %d", i)})
	}
	return logs
}

func checkBounds(t *testing.T, s *Store, first, last uint64) {
	t.Helper()
	f, err := s.FirstIndex()
	if err != nil {
		t.Fatal(err)
	}
	l, err := s.LastIndex()
	if err != nil {
		t.Fatal(err)
	}
	if f != first || l != last {
		t.Fatalf("group %q: bounds %d-%d, want %d-%d", s.id, f, l, first, last)
	}
	// The cache must agree with Pebble.
	f, l, err = s.readBounds()
	if err != nil {
		t.Fatal(err)
	}
	if f != first || l != last {
		t.Fatalf("group %q: Pebble holds %d-%d, want %d-%d", s.id, f, l, first, last)
	}
}

func TestLogRoundTrip(t *testing.T) {
	s := openTest(t, t.TempDir()).Group("meta")
	want := sampleLogs()
	if err := s.StoreLogs(want); err != nil {
		t.Fatal(err)
	}
	for _, w := range want {
		var got raft.Log
		if err := s.GetLog(w.Index, &got); err != nil {
			t.Fatalf("get %d: %v", w.Index, err)
		}
		if !equalLogs(&got, w) {
			t.Fatalf("get %d:\n got %+v\nwant %+v", w.Index, got, *w)
		}
	}
	if err := s.GetLog(4, new(raft.Log)); err != raft.ErrLogNotFound {
		t.Fatalf("missing entry: err %v, want raft.ErrLogNotFound", err)
	}
	checkBounds(t, s, 1, 1<<64-1)
}

func TestBoundsAcrossWritesAndReopen(t *testing.T) {
	dir := t.TempDir()
	d := openTest(t, dir)
	s := d.Group("shard-1")
	checkBounds(t, s, 0, 0)
	if err := s.StoreLog(entries(1, 1)[0]); err != nil {
		t.Fatal(err)
	}
	checkBounds(t, s, 1, 1)
	if err := s.StoreLogs(entries(2, 100)); err != nil {
		t.Fatal(err)
	}
	checkBounds(t, s, 1, 100)
	steps := []struct {
		lo, hi      uint64
		first, last uint64
	}{
		{1, 10, 11, 100},   // compaction of a prefix
		{50, 60, 11, 100},  // a hole
		{90, 100, 11, 89},  // truncation of a conflicting suffix
		{11, 49, 61, 89},   // a prefix up to the hole: first moves past it
		{0, 0, 61, 89},     // nothing of ours
		{61, 88, 89, 89},   // one entry left
		{1, 1 << 20, 0, 0}, // all of it
	}
	for _, st := range steps {
		if err := s.DeleteRange(st.lo, st.hi); err != nil {
			t.Fatal(err)
		}
		checkBounds(t, s, st.first, st.last)
	}
	// A gap, as after a snapshot was installed.
	if err := s.StoreLogs(append(entries(5, 6), entries(1000, 1002)...)); err != nil {
		t.Fatal(err)
	}
	checkBounds(t, s, 5, 1002)
	if err := s.DeleteRange(1, 999); err != nil {
		t.Fatal(err)
	}
	checkBounds(t, s, 1000, 1002)
	if err := s.DeleteRange(1002, 1<<64-1); err != nil {
		t.Fatal(err)
	}
	checkBounds(t, s, 1000, 1001)

	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	if err := d.Close(); err != nil {
		t.Fatalf("second close: %v", err)
	}
	if _, err := s.LastIndex(); !errors.Is(err, ErrClosed) {
		t.Fatalf("after close: err %v, want ErrClosed", err)
	}
	s = openTest(t, dir).Group("shard-1")
	checkBounds(t, s, 1000, 1001)
	var got raft.Log
	if err := s.GetLog(1001, &got); err != nil || string(got.Data) != "entry 1001" {
		t.Fatalf("after reopen: %+v %v", got, err)
	}
}

func TestGroupsAreIsolated(t *testing.T) {
	d := openTest(t, t.TempDir())
	a, ab := d.Group("a"), d.Group("ab")
	if d.Group("a") != a {
		t.Fatal("Group returned two stores for one id")
	}
	if err := a.StoreLogs(entries(1, 10)); err != nil {
		t.Fatal(err)
	}
	if err := ab.StoreLogs(entries(20, 30)); err != nil {
		t.Fatal(err)
	}
	if err := a.Set([]byte("k"), []byte("of a")); err != nil {
		t.Fatal(err)
	}
	checkBounds(t, a, 1, 10)
	checkBounds(t, ab, 20, 30)
	if err := ab.GetLog(5, new(raft.Log)); err != raft.ErrLogNotFound {
		t.Fatalf("ab sees a's entry: %v", err)
	}
	if _, err := ab.Get([]byte("k")); err != ErrKeyNotFound {
		t.Fatalf("ab sees a's key: %v", err)
	}
	if err := ab.DeleteRange(0, 1<<64-1); err != nil {
		t.Fatal(err)
	}
	checkBounds(t, ab, 0, 0)
	checkBounds(t, a, 1, 10)
}

func TestDeleteGroup(t *testing.T) {
	d := openTest(t, t.TempDir())
	gone, kept := d.Group("shard-7"), d.Group("shard-70")
	for _, s := range []*Store{gone, kept} {
		if err := s.StoreLogs(entries(1, 50)); err != nil {
			t.Fatal(err)
		}
		if err := s.SetUint64([]byte("CurrentTerm"), 4); err != nil {
			t.Fatal(err)
		}
	}
	if err := d.DeleteGroup("shard-7"); err != nil {
		t.Fatal(err)
	}
	checkBounds(t, gone, 0, 0)
	if _, err := gone.GetUint64([]byte("CurrentTerm")); err != ErrKeyNotFound {
		t.Fatalf("stable key survived DeleteGroup: %v", err)
	}
	checkBounds(t, kept, 1, 50)
	if v, err := kept.GetUint64([]byte("CurrentTerm")); v != 4 || err != nil {
		t.Fatalf("other group: %d %v", v, err)
	}
	// The group can be used again, e.g. when a replica moves back.
	if err := gone.StoreLogs(entries(3, 4)); err != nil {
		t.Fatal(err)
	}
	checkBounds(t, gone, 3, 4)
	if err := d.DeleteGroup(""); err == nil {
		t.Fatal("DeleteGroup accepted an empty id")
	}
}

func TestStableStore(t *testing.T) {
	s := openTest(t, t.TempDir()).Group("meta")
	// Raft tells a missing key by this message (raft.NewRaft,
	// raft.HasExistingState, requestVote).
	if _, err := s.Get([]byte("LastVoteCand")); err == nil || err.Error() != "not found" {
		t.Fatalf("Get of a missing key: err %v, want \"not found\"", err)
	}
	if v, err := s.GetUint64([]byte("CurrentTerm")); v != 0 || err == nil || err.Error() != "not found" {
		t.Fatalf("GetUint64 of a missing key: %d, %v, want 0, \"not found\"", v, err)
	}
	for _, kv := range [][2]string{{"LastVoteCand", "node-2"}, {"", "empty key"}, {"empty value", ""}, {"LastVoteCand", "node-3"}} {
		if err := s.Set([]byte(kv[0]), []byte(kv[1])); err != nil {
			t.Fatal(err)
		}
		got, err := s.Get([]byte(kv[0]))
		if err != nil || got == nil || string(got) != kv[1] {
			t.Fatalf("Get(%q) = %q (nil %v), %v; want %q", kv[0], got, got == nil, err, kv[1])
		}
	}
	for _, v := range []uint64{0, 1, 1<<64 - 1} {
		if err := s.SetUint64([]byte("CurrentTerm"), v); err != nil {
			t.Fatal(err)
		}
		if got, err := s.GetUint64([]byte("CurrentTerm")); got != v || err != nil {
			t.Fatalf("GetUint64 = %d, %v; want %d", got, err, v)
		}
	}
	// A log key and a stable key never meet.
	checkBounds(t, s, 0, 0)
}

func TestCorruptValues(t *testing.T) {
	d := openTest(t, t.TempDir())
	s := d.Group("meta")
	if err := s.StoreLogs(entries(1, 3)); err != nil {
		t.Fatal(err)
	}
	put := func(key, val []byte) {
		t.Helper()
		if err := d.pdb.Set(key, val, nil); err != nil {
			t.Fatal(err)
		}
	}
	put(s.logKey(2), []byte{1, 2})                                           // truncated
	put(s.logKey(3), appendLog(nil, &raft.Log{Index: 4, Data: []byte("x")})) // under another index
	put(s.stableKey([]byte("CurrentTerm")), []byte{1, 2, 3})                 // not 8 bytes
	for _, i := range []uint64{2, 3} {
		if err := s.GetLog(i, new(raft.Log)); !errors.Is(err, ErrCorrupt) {
			t.Errorf("GetLog(%d): err %v, want ErrCorrupt", i, err)
		}
	}
	if _, err := s.GetUint64([]byte("CurrentTerm")); !errors.Is(err, ErrCorrupt) {
		t.Errorf("GetUint64: err %v, want ErrCorrupt", err)
	}
	if err := s.GetLog(1, new(raft.Log)); err != nil {
		t.Errorf("GetLog(1): %v", err)
	}
}

// TestConcurrentGroups writes to several groups at once, with readers and
// truncations alongside, and two writers sharing one group.
func TestConcurrentGroups(t *testing.T) {
	d := openTest(t, t.TempDir())
	const groups, perGroup = 8, 300
	var wg sync.WaitGroup
	errs := make(chan error, 4*groups)
	for g := range groups {
		s := d.Group(fmt.Sprintf("shard-%d", g))
		wg.Add(2)
		go func() { // Raft's main loop: appends and compactions
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(g), 1))
			for next := uint64(1); next <= perGroup; {
				hi := min(next+rng.Uint64N(8), perGroup)
				if err := s.StoreLogs(entries(next, hi)); err != nil {
					errs <- err
					return
				}
				next = hi + 1
				if next%50 < 8 {
					if err := s.DeleteRange(1, next-20); err != nil {
						errs <- err
						return
					}
				}
			}
		}()
		go func() { // replication and metrics: reads
			defer wg.Done()
			for range perGroup {
				first, err := s.FirstIndex()
				if err == nil && first > 0 {
					err = s.GetLog(first, new(raft.Log))
				}
				if err != nil && err != raft.ErrLogNotFound { // a compaction may win the race
					errs <- err
					return
				}
			}
		}()
	}
	shared := d.Group("shared")
	for w := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range uint64(100) {
				if err := shared.StoreLog(entries(1+2*i+uint64(w), 1+2*i+uint64(w))[0]); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	for g := range groups {
		s := d.Group(fmt.Sprintf("shard-%d", g))
		last, err := s.LastIndex()
		if err != nil || last != perGroup {
			t.Fatalf("group %d: last %d %v", g, last, err)
		}
		first, _, _ := s.readBounds()
		checkBounds(t, s, first, perGroup)
	}
	checkBounds(t, shared, 1, 200)
}

// TestBoundsMatchPebble runs random appends and truncations on one group
// and compares the cached bounds with Pebble's after each.
func TestBoundsMatchPebble(t *testing.T) {
	s := openTest(t, t.TempDir()).Group("g")
	rng := rand.New(rand.NewPCG(7, 7))
	for range 500 {
		lo := 1 + rng.Uint64N(300)
		hi := lo + rng.Uint64N(20)
		var err error
		if rng.IntN(3) == 0 {
			err = s.DeleteRange(lo, hi)
		} else {
			err = s.StoreLogs(entries(lo, hi))
		}
		if err != nil {
			t.Fatal(err)
		}
		first, last, err := s.readBounds()
		if err != nil {
			t.Fatal(err)
		}
		checkBounds(t, s, first, last)
	}
}

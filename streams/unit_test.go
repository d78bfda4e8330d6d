package streams

import (
	"fmt"
	"sync"
	"testing"

	"github.com/mqstream/mqstream/internal/testutil"
)

// TestUnitCommitsInOneBatch: a unit's appends and key/value writes are
// committed in one batch (one commit), with their applied marker, even
// where the group size limit would cut a run of plain requests, and each
// part reports its own outcome.
func TestUnitCommitsInOneBatch(t *testing.T) {
	s, err := Open(Options{Dir: t.TempDir(), AutoCreate: true, MaxGroupBytes: 1, Logger: testutil.Logger()})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	kv := s.KV("unit")
	var wg sync.WaitGroup
	var mu sync.Mutex
	var errs []error
	report := func(err error) {
		mu.Lock()
		errs = append(errs, err)
		mu.Unlock()
		wg.Done()
	}
	before := s.StoreCounters().Commits
	u := s.NewUnit()
	for i := range 5 {
		wg.Add(1)
		if err := u.Append(AppendRequest{Stream: fmt.Sprintf("s%d", i), Records: []Record{{Topic: "t", Payload: []byte("p")}},
			NoSync: true, AppliedLog: "log", AppliedIndex: 7, Done: func(_ uint64, err error) { report(err) }}); err != nil {
			t.Fatal(err)
		}
	}
	wg.Add(1)
	u.KV(kv, KVRequest{Writes: []KVWrite{{Key: []byte("k"), Value: []byte("v")}}, NoSync: true, AppliedLog: "log", AppliedIndex: 7, Done: report})
	if err := u.Submit(); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if n := s.StoreCounters().Commits - before; n != 1 {
		t.Fatalf("the unit took %d commits, want 1", n)
	}
	if idx, err := s.AppliedIndexOf("log"); err != nil || idx != 7 {
		t.Fatalf("applied marker %d %v", idx, err)
	}
	if err := s.NewUnit().Append(AppendRequest{Stream: "x"}); err == nil {
		t.Fatal("an append without Done was accepted")
	}
	if err := s.NewUnit().Submit(); err != nil {
		t.Fatalf("an empty unit: %v", err)
	}
}

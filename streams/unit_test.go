package streams

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
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
	if err := u.Commit(); err != nil {
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
	if err := s.NewUnit().Commit(); err != nil {
		t.Fatalf("an empty unit: %v", err)
	}
}

// TestUnitCommitOnCaller: Commit commits on the calling goroutine when the
// committer is idle (every Done has run when it returns), queues the unit
// for the committer while another commit holds the writer role, and
// refuses once the store is closed. Units committed both ways, from many
// goroutines, with plain appends in between, keep every stream's offsets
// dense and in each producer's order.
func TestUnitCommitOnCaller(t *testing.T) {
	s, err := Open(Options{Dir: t.TempDir(), AutoCreate: true, Logger: testutil.Logger()})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()

	// The committer takes the writer role for a moment each time round
	// its loop, also when idle (the first time just after Open): a unit
	// that meets it is queued instead. So a unit is committed until one
	// goes inline, the first to stream "inline", later ones to "spare".
	inline := false
	for try := 0; try < 50 && !inline; try++ {
		var done atomic.Int32
		all := make(chan struct{}, 3)
		stream := "inline"
		if try > 0 {
			stream = "spare"
		}
		u := s.NewUnit()
		for range 3 {
			if err := u.Append(AppendRequest{Stream: stream, Records: []Record{{Payload: []byte("p")}}, NoSync: true,
				AppliedLog: "log", AppliedIndex: 3, Done: func(_ uint64, err error) {
					if err != nil {
						t.Error(err)
					}
					done.Add(1)
					all <- struct{}{}
				}}); err != nil {
				t.Fatal(err)
			}
		}
		if err := u.Commit(); err != nil {
			t.Fatal(err)
		}
		inline = done.Load() == 3
		for range 3 {
			<-all
		}
	}
	if !inline {
		t.Fatal("no unit of 50 had every part done when Commit returned, on an idle store")
	}
	if idx, err := s.AppliedIndexOf("log"); err != nil || idx != 3 {
		t.Fatalf("applied marker %d %v", idx, err)
	}

	// While the writer role is held, the unit goes to the committer.
	s.writer.Lock()
	ch := make(chan error, 1)
	u := s.NewUnit()
	if err := u.Append(AppendRequest{Stream: "inline", Records: []Record{{Payload: []byte("q")}}, NoSync: true,
		Done: func(first uint64, err error) {
			if err == nil && first != 3 {
				err = fmt.Errorf("offset %d, want 3", first)
			}
			ch <- err
		}}); err != nil {
		t.Fatal(err)
	}
	if err := u.Commit(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-ch:
		t.Fatalf("a unit committed while the writer role was held: %v", err)
	default:
	}
	s.writer.Unlock()
	if err := <-ch; err != nil {
		t.Fatal(err)
	}

	// Many producers, both paths: each stream dense and in order.
	const producers, per = 4, 200
	var wg sync.WaitGroup
	for p := range producers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			name := fmt.Sprintf("p%d", p)
			for i := range per {
				res := make(chan error, 1)
				want := uint64(i)
				req := AppendRequest{Stream: name, Records: []Record{{Payload: []byte(fmt.Sprint(i))}}, NoSync: true,
					Done: func(first uint64, err error) {
						if err == nil && first != want {
							err = fmt.Errorf("%s: record %d at offset %d", name, want, first)
						}
						res <- err
					}}
				var err error
				if i%3 == 0 {
					err = s.Submit(req)
				} else {
					u := s.NewUnit()
					if err = u.Append(req); err == nil {
						err = u.Commit()
					}
				}
				if err == nil {
					err = <-res
				}
				if err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()

	s.Close()
	u = s.NewUnit()
	_ = u.Append(AppendRequest{Stream: "inline", Records: []Record{{Payload: []byte("late")}}, Done: func(uint64, error) {}})
	if err := u.Commit(); !errors.Is(err, ErrClosed) {
		t.Fatalf("Commit after Close: %v, want ErrClosed", err)
	}
}

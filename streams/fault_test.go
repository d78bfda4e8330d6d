package streams

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cockroachdb/pebble/v2/vfs/errorfs"

	"github.com/mqstream/mqstream/internal/testutil"
)

// walFaults injects an error into every write and sync of the write-ahead
// log while switched on.
func walFaults() *errorfs.Toggle {
	return &errorfs.Toggle{Injector: errorfs.InjectorFunc(func(op errorfs.Op) error {
		if strings.HasSuffix(op.Path, ".log") || strings.HasSuffix(op.Path, "probe.tmp") {
			switch op.Kind {
			case errorfs.OpFileWrite, errorfs.OpFileWriteAt, errorfs.OpFileSync, errorfs.OpFileSyncData, errorfs.OpFileSyncTo, errorfs.OpCreate:
				return errorfs.ErrInjected
			}
		}
		return nil
	})}
}

// TestWriteFailureRefusesThenRecovers: while the disk fails writes, appends
// fail (nothing is acknowledged), reads keep working and the store reports
// unhealthy; when writes succeed again it recovers by itself, offsets
// continue densely and nothing acknowledged is lost.
func TestWriteFailureRefusesThenRecovers(t *testing.T) {
	ctx := context.Background()
	mem := vfs.NewMem()
	faults := walFaults()
	s, err := Open(Options{Dir: "/db", FS: errorfs.Wrap(mem, faults), AutoCreate: true, Logger: testutil.Logger()})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	acked := map[string]bool{}
	var mu sync.Mutex
	appendN := func(prefix string, n int) (ok, failed int) {
		var wg sync.WaitGroup
		for i := 0; i < n; i++ {
			wg.Add(1)
			p := fmt.Sprintf("%s-%d", prefix, i)
			err := s.Submit(AppendRequest{Stream: "f", Records: []Record{rec("t", p)}, Done: func(_ uint64, err error) {
				defer wg.Done()
				mu.Lock()
				defer mu.Unlock()
				if err == nil {
					acked[p] = true
					ok++
				} else {
					if !errors.Is(err, ErrWrite) && !errors.Is(err, ErrUnavailable) {
						t.Errorf("append error %v is neither ErrWrite nor ErrUnavailable", err)
					}
					failed++
				}
			}})
			if err != nil {
				t.Fatal(err)
			}
		}
		wg.Wait()
		return ok, failed
	}
	if ok, _ := appendN("before", 100); ok != 100 {
		t.Fatalf("%d of 100 appends succeeded before the fault", ok)
	}
	faults.On()
	if ok, failed := appendN("during", 50); ok != 0 || failed != 50 {
		t.Fatalf("during the fault: %d acked, %d failed", ok, failed)
	}
	if s.Healthy() == nil {
		t.Fatal("store reports healthy while writes fail")
	}
	recs, err := s.Read("f", 0, ReadOptions{MaxRecords: 1000})
	if err != nil || len(recs) != 100 {
		t.Fatalf("read during the fault: %d records, %v", len(recs), err)
	}
	if _, err := s.CreateStream(ctx, "other", Retention{}); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("create during the fault: %v", err)
	}
	faults.Off()
	deadline := time.Now().Add(10 * time.Second)
	for s.Healthy() != nil {
		if time.Now().After(deadline) {
			t.Fatalf("store did not recover: %v", s.Healthy())
		}
		time.Sleep(10 * time.Millisecond)
	}
	first, err := s.Append(ctx, "f", rec("t", "after"))
	if err != nil || first != 100 {
		t.Fatalf("append after recovery: offset %d, %v (want 100)", first, err)
	}
	recs, _ = s.Read("f", 0, ReadOptions{MaxRecords: 1000})
	for i, r := range recs {
		if r.Offset != uint64(i) {
			t.Fatalf("offset %d at position %d", r.Offset, i)
		}
	}
	for p := range acked {
		found := false
		for _, r := range recs {
			if string(r.Payload) == p {
				found = true
				break
			}
		}
		if !found {
			t.Fatalf("acknowledged %s lost", p)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s2, err := Open(Options{Dir: "/db", FS: mem, Logger: testutil.Logger()})
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	if info, _ := s2.DescribeStream("f"); info.Records != 101 {
		t.Fatalf("after reopen: %+v", info)
	}
}

// TestDiskUsage: the data directory's filesystem on the OS reports its
// space; a filesystem that reports none is an error, one that does is
// passed through (free means available to the store).
func TestDiskUsage(t *testing.T) {
	s := openTest(t, t.TempDir(), nil)
	u, err := s.DiskUsage()
	if err != nil {
		t.Fatal(err)
	}
	if u.TotalBytes <= 0 || u.FreeBytes < 0 || u.FreeBytes > u.TotalBytes {
		t.Fatalf("disk usage %+v: want 0 <= free <= total, total > 0", u)
	}
	mem := vfs.NewMem()
	m := openTest(t, "/db", func(o *Options) { o.FS = mem })
	if _, err := m.DiskUsage(); err == nil {
		t.Fatal("an in-memory filesystem reported disk usage")
	}
	mem.TestingSetDiskUsage(vfs.DiskUsage{AvailBytes: 10, UsedBytes: 88, TotalBytes: 100})
	if u, err := m.DiskUsage(); err != nil || u != (DiskUsage{FreeBytes: 10, TotalBytes: 100}) {
		t.Fatalf("disk usage %+v, %v; want 10 free of 100", u, err)
	}
}

// TestUnitRequiringRecoveriesIsRefusedAfterARecovery: a unit that
// requires the recovery count the caller saw commits while the store has
// not recovered since, and is refused whole (ErrRecovered, no record and
// no marker written) once it has; with the new count it commits.
func TestUnitRequiringRecoveriesIsRefusedAfterARecovery(t *testing.T) {
	faults := walFaults()
	s, err := Open(Options{Dir: "/db", FS: errorfs.Wrap(vfs.NewMem(), faults), AutoCreate: true, Logger: testutil.Logger()})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	commit := func(seen, index uint64) []error {
		t.Helper()
		u := s.NewUnit()
		u.RequireRecoveries(seen)
		errs := make([]error, 2)
		var wg sync.WaitGroup
		wg.Add(2)
		if err := u.Append(AppendRequest{Stream: "u", Records: []Record{rec("t", "x")}, NoSync: true, AppliedLog: "shard-0", AppliedIndex: index,
			Done: func(_ uint64, err error) { errs[0] = err; wg.Done() }}); err != nil {
			t.Fatal(err)
		}
		u.KV(s.KV("ns"), KVRequest{Writes: []KVWrite{{Key: []byte("k"), Value: []byte{byte(index)}}}, NoSync: true,
			AppliedLog: "shard-0", AppliedIndex: index, Done: func(err error) { errs[1] = err; wg.Done() }})
		if err := u.Commit(); err != nil {
			t.Fatal(err)
		}
		wg.Wait()
		return errs
	}
	seen := s.Recoveries()
	if errs := commit(seen, 1); errs[0] != nil || errs[1] != nil {
		t.Fatalf("a unit with no recovery since: %v", errs)
	}
	if err := s.Sync(context.Background()); err != nil {
		t.Fatal(err)
	}
	faults.On()
	if err := s.Sync(context.Background()); err == nil {
		t.Fatal("a sync with the disk failing succeeded")
	}
	faults.Off()
	testutil.Eventually(t, 10*time.Second, "the store to recover", func() bool { return s.Healthy() == nil })
	if errs := commit(seen, 2); !errors.Is(errs[0], ErrRecovered) || !errors.Is(errs[1], ErrRecovered) || !errors.Is(errs[0], ErrUnavailable) {
		t.Fatalf("a unit after a recovery: %v, want ErrRecovered (an ErrUnavailable) for both parts", errs)
	}
	if got, _ := s.AppliedIndexOf("shard-0"); got != 1 {
		t.Fatalf("marker %d after the refused unit, want 1", got)
	}
	if info, _ := s.DescribeStream("u"); info.NextOffset != 1 {
		t.Fatalf("stream u holds %d records after the refused unit, want 1", info.NextOffset)
	}
	if errs := commit(s.Recoveries(), 2); errs[0] != nil || errs[1] != nil {
		t.Fatalf("a unit with the new count: %v", errs)
	}
}

package streams

import (
	"context"
	"fmt"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// TestCrashKeepsEverySyncedAppend appends under SyncAlways, then opens a
// crash clone of the filesystem holding exactly what was synced: every
// acknowledged record is there, offsets are dense, counters match, and
// appends continue at the next offset.
func TestCrashKeepsEverySyncedAppend(t *testing.T) {
	ctx := context.Background()
	fs := vfs.NewCrashableMem()
	s, err := Open(Options{Dir: "/db", FS: fs, AutoCreate: true})
	if err != nil {
		t.Fatal(err)
	}
	acked := 0
	for i := 0; i < 500; i++ {
		if _, err := s.Append(ctx, fmt.Sprintf("s%d", i%3), rec("t", fmt.Sprint(i))); err != nil {
			t.Fatal(err)
		}
		acked++
	}
	want := s.ListStreams()
	crashed := fs.CrashClone(vfs.CrashCloneCfg{})
	_ = s.Close()

	s2, err := Open(Options{Dir: "/db", FS: crashed, AutoCreate: true})
	if err != nil {
		t.Fatalf("open after crash: %v", err)
	}
	defer s2.Close()
	got := s2.ListStreams()
	if fmt.Sprintf("%+v", got) != fmt.Sprintf("%+v", want) {
		t.Fatalf("after crash:\n got %+v\nwant %+v", got, want)
	}
	total := 0
	for _, info := range got {
		recs, err := s2.Read(info.Name, 0, ReadOptions{MaxRecords: 10000})
		if err != nil {
			t.Fatal(err)
		}
		for i, r := range recs {
			if r.Offset != uint64(i) {
				t.Fatalf("%s: record %d has offset %d", info.Name, i, r.Offset)
			}
		}
		total += len(recs)
	}
	if total != acked {
		t.Fatalf("%d records after crash, %d acknowledged", total, acked)
	}
	if first, err := s2.Append(ctx, "s0", rec("t", "next")); err != nil || first != uint64(want[0].NextOffset) {
		t.Fatalf("append after crash: %d %v, want offset %d", first, err, want[0].NextOffset)
	}
}

// TestCrashWithoutSyncStaysConsistent: under SyncNone a crash may lose the
// newest records, but what remains is a consistent prefix.
func TestCrashWithoutSyncStaysConsistent(t *testing.T) {
	ctx := context.Background()
	fs := vfs.NewCrashableMem()
	s, err := Open(Options{Dir: "/db", FS: fs, AutoCreate: true, Sync: SyncNone})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.CreateStream(ctx, "n", Retention{}); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 300; i++ {
		if _, err := s.Append(ctx, "n", rec("t", fmt.Sprint(i))); err != nil {
			t.Fatal(err)
		}
	}
	crashed := fs.CrashClone(vfs.CrashCloneCfg{})
	_ = s.Close()
	s2, err := Open(Options{Dir: "/db", FS: crashed})
	if err != nil {
		t.Fatalf("open after crash: %v", err)
	}
	defer s2.Close()
	info, err := s2.DescribeStream("n")
	if err != nil {
		t.Fatal(err)
	}
	recs, _ := s2.Read("n", 0, ReadOptions{MaxRecords: 1000})
	if int64(len(recs)) != info.Records || info.NextOffset != uint64(len(recs)) {
		t.Fatalf("inconsistent after crash: %+v with %d records", info, len(recs))
	}
	for i, r := range recs {
		if string(r.Payload) != fmt.Sprint(i) {
			t.Fatalf("record %d: %q (not a prefix)", i, r.Payload)
		}
	}
}

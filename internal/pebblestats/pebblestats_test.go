package pebblestats

import (
	"bytes"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/mqstream/mqstream/internal/testutil"
)

func TestStallsCountAndTime(t *testing.T) {
	var logs bytes.Buffer
	clock := testutil.NewClock(time.Unix(1000, 0))
	s := NewStalls(slog.New(slog.NewTextHandler(&logs, nil)), "store")
	s.now = clock.Now
	l := s.Listener()

	if n, d := s.Figures(); n != 0 || d != 0 {
		t.Fatalf("fresh: %d stalls, %v", n, d)
	}
	l.WriteStallEnd() // an end without a beginning changes nothing
	if n, d := s.Figures(); n != 0 || d != 0 {
		t.Fatalf("after a lone end: %d stalls, %v", n, d)
	}

	l.WriteStallBegin(pebble.WriteStallBeginInfo{Reason: "L0 file count limit exceeded"})
	clock.Advance(300 * time.Millisecond)
	if n, d := s.Figures(); n != 1 || d != 300*time.Millisecond {
		t.Fatalf("during the first stall: %d stalls, %v; want 1, 300ms (the stall under way counts)", n, d)
	}
	l.WriteStallBegin(pebble.WriteStallBeginInfo{Reason: "again"}) // not a second stall
	clock.Advance(200 * time.Millisecond)
	l.WriteStallEnd()
	clock.Advance(time.Second) // time between stalls does not count
	l.WriteStallBegin(pebble.WriteStallBeginInfo{Reason: "memtable count limit reached"})
	clock.Advance(50 * time.Millisecond)
	l.WriteStallEnd()
	if n, d := s.Figures(); n != 2 || d != 550*time.Millisecond {
		t.Fatalf("after two stalls: %d stalls, %v; want 2, 550ms", n, d)
	}
	out := logs.String()
	for _, want := range []string{"db=store", `reason="L0 file count limit exceeded"`, `reason="memtable count limit reached"`, "stalled=500ms", "stalled=50ms"} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "reason=again") {
		t.Errorf("a begin during a stall was logged as a new one:\n%s", out)
	}
}

// TestFromARealDatabase: the figures of a Pebble database that was
// written, flushed and compacted say so.
func TestFromARealDatabase(t *testing.T) {
	stalls := NewStalls(slog.New(slog.DiscardHandler), "test")
	db, err := pebble.Open("", &pebble.Options{FS: vfs.NewMem(), EventListener: stalls.Listener()})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	empty := From(db.Metrics(), stalls)
	if empty.Flushes != 0 || empty.Compactions != 0 || empty.L0Files != 0 || empty.WriteStalls != 0 {
		t.Fatalf("a new database: %+v", empty)
	}
	value := bytes.Repeat([]byte("v"), 100)
	for round := 0; round < 3; round++ {
		for i := 0; i < 1000; i++ {
			if err := db.Set([]byte(fmt.Sprintf("key-%06d", i)), value, pebble.NoSync); err != nil {
				t.Fatal(err)
			}
		}
		if err := db.Flush(); err != nil {
			t.Fatal(err)
		}
	}
	flushed := From(db.Metrics(), stalls)
	if flushed.Flushes < 3 || flushed.FlushedBytes == 0 || flushed.L0Files == 0 || flushed.WALBytes < 300_000 || flushed.DiskBytes == 0 || flushed.Memtables < 1 {
		t.Fatalf("after 3 flushes of 1,000 keys: %+v", flushed)
	}
	if err := db.Compact(t.Context(), []byte("key-"), []byte("key-~"), true); err != nil {
		t.Fatal(err)
	}
	compacted := From(db.Metrics(), stalls)
	if compacted.Compactions <= flushed.Compactions || compacted.CompactedBytes == 0 || compacted.CompactionReadBytes == 0 || compacted.L0Files != 0 {
		t.Fatalf("after a manual compaction: %+v (before %+v)", compacted, flushed)
	}
	if _, closer, err := db.Get([]byte("key-000001")); err != nil {
		t.Fatal(err)
	} else {
		closer.Close()
	}
	if got := From(db.Metrics(), nil); got.CacheHits+got.CacheMisses == 0 || got.WriteStalls != 0 {
		t.Fatalf("after a read: %+v", got)
	}
}

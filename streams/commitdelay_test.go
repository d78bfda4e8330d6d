package streams

import (
	"context"
	"testing"
	"time"
)

// TestCommitDelayGathersConcurrentAppends: after a synced commit that
// carried two appends, the next commit waits for the rest of
// Options.CommitDelay, so three appends submitted meanwhile share one
// sync; appends of one producer that waits for each acknowledgement are
// never held back.
func TestCommitDelayGathersConcurrentAppends(t *testing.T) {
	ctx := context.Background()
	s, err := Open(Options{Dir: t.TempDir(), AutoCreate: true, Sync: SyncAlways, CommitDelay: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()

	for i := 0; i < 5; i++ {
		if _, err := s.Append(ctx, "lone", rec("t", "x")); err != nil {
			t.Fatal(err)
		}
	}
	if got := s.StoreCounters().Delays; got != 0 {
		t.Fatalf("one producer waiting for each ack: %d commits delayed, want 0", got)
	}

	done := make(chan error, 5)
	answer := func(_ uint64, err error) { done <- err }
	pair := []*op{
		{kind: opAppend, stream: "busy", req: AppendRequest{Stream: "busy", Records: []Record{rec("t", "a")}, Done: answer}, done: answer, submitted: time.Now()},
		{kind: opAppend, stream: "busy", req: AppendRequest{Stream: "busy", Records: []Record{rec("t", "b")}, Done: answer}, done: answer, submitted: time.Now()},
	}
	if err := s.queue.pushAll(pair); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 2; i++ {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
	syncs := s.StoreCounters().Syncs
	for _, p := range []string{"c", "d", "e"} {
		if err := s.Submit(AppendRequest{Stream: "busy", Records: []Record{rec("t", p)}, Done: answer}); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < 3; i++ {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
	c := s.StoreCounters()
	if c.Syncs != syncs+1 || c.Delays != 1 {
		t.Errorf("three appends after a shared commit: %d syncs (want 1), %d delays (want 1)", c.Syncs-syncs, c.Delays)
	}
	if info, _ := s.DescribeStream("busy"); info.Records != 5 {
		t.Errorf("busy holds %d records, want 5", info.Records)
	}
}

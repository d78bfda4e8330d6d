package shards

import (
	"errors"
	"testing"
	"time"

	"github.com/mqstream/mqstream/streams"
)

// neverAnswered is a Raft future Raft dropped at shutdown.
type neverAnswered struct{ block chan struct{} }

func (f neverAnswered) Error() error { <-f.block; return nil }

// TestWaitGivesUpOnceRaftIsDown: a future Raft never answers (it shut
// down with the entry queued) does not hold the replica's close: once
// Raft is down the outcome is unknown (ErrClosed). bench's failover test
// hung once in Set.Close this way.
func TestWaitGivesUpOnceRaftIsDown(t *testing.T) {
	r := &replica{shard: 3, raftDown: make(chan struct{})}
	f := neverAnswered{block: make(chan struct{})}
	defer close(f.block)
	done := make(chan error, 1)
	go func() { done <- r.wait(f) }()
	close(r.raftDown)
	select {
	case err := <-done:
		if !errors.Is(err, streams.ErrClosed) {
			t.Fatalf("wait: %v, want ErrClosed", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("wait still blocked after Raft shut down")
	}
}

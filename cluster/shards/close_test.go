package shards

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/mqstream/mqstream/internal/testutil"
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

// TestAppliedEntryWithoutResultsIsSentAgain: an entry Raft committed
// whose state machine returned no results (it stopped first, or found
// writes lost) answers its appends with the outcome unknown, so that they
// are sent again with their ids, not failed for good.
func TestAppliedEntryWithoutResultsIsSentAgain(t *testing.T) {
	r := &replica{shard: 2, name: groupName(2), raftDown: make(chan struct{})}
	var errs []error
	batch := []proposal{{done: func(_ uint64, err error) { errs = append(errs, err) }}, {done: func(_ uint64, err error) { errs = append(errs, err) }}}
	r.answer(failedFuture{}, batch, nil)
	if len(errs) != 2 {
		t.Fatalf("%d of 2 appends answered", len(errs))
	}
	for _, err := range errs {
		if !errors.Is(err, errOutcomeUnknown) {
			t.Fatalf("answered %v, want the outcome unknown (sent again)", err)
		}
	}
}

// TestFailedTransferHoldsUntilRaftTakesProposals: after a failed
// leadership transfer, the replica's proposals stay held while raft
// still refuses them for the transfer (its flag outlives the transfer's
// timeout until the TimeoutNow call returns), however long past the
// transfer's own timeout that is.
func TestFailedTransferHoldsUntilRaftTakesProposals(t *testing.T) {
	r := &replica{shard: 1, log: testutil.Logger(), stop: make(chan struct{})}
	refuseUntil := time.Now().Add(300 * time.Millisecond)
	calls := 0
	r.barrier = func(time.Duration) error {
		calls++
		if time.Now().Before(refuseUntil) {
			return raft.ErrLeadershipTransferInProgress
		}
		return nil
	}
	r.awaitTransferEnd(50 * time.Millisecond) // the transfer's timeout
	if time.Now().Before(refuseUntil) {
		t.Fatalf("released the proposals while raft still refused them (after %d barriers)", calls)
	}
}

// TestSubmitsRacingCloseAreAnswered: appends submitted (and forwards
// served) while a node's set closes are each answered, and starting an
// outbox sender never races with Close waiting for the senders (bench's
// failover test saw that race: a forward served during Node.Close).
func TestSubmitsRacingCloseAreAnswered(t *testing.T) {
	c := newCluster(t, 3, 4, 2)
	c.waitLeaders()
	nd := c.nodes[0]
	set, _ := nd.running()
	var answered atomic.Int64
	var wg sync.WaitGroup
	stop := make(chan struct{})
	// loop runs step on a goroutine until stop closes or step says no.
	loop := func(step func(i int) bool) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				if !step(i) {
					return
				}
			}
		}()
	}
	for g := 0; g < 4; g++ {
		loop(func(i int) bool {
			return set.Submit(streams.AppendRequest{Stream: fmt.Sprintf("s%d-%d", g, i%8),
				Records: []streams.Record{{Payload: []byte("x")}},
				Done:    func(uint64, error) { answered.Add(1) }}) == nil
		})
	}
	// Forwards from other nodes keep arriving (HandleForward does not
	// look at whether the set closes: its appends are refused by route).
	for g := 0; g < 2; g++ {
		loop(func(i int) bool {
			cmd := appendCmd{kind: kindAppend, stream: fmt.Sprintf("f%d", i%8), records: encodeRecords([]streams.Record{{Payload: []byte("y")}}),
				id: appendID{producer: uint64(1000 + g), seq: uint64(i + 1)}}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_, _ = set.HandleForward(ctx, "n2", encodeForward(ShardOf(cmd.stream, 4), 1, []appendCmd{cmd}))
			return true
		})
	}
	testutil.Eventually(t, 10*time.Second, "appends in flight", func() bool { return answered.Load() > 50 })
	nd.stop()
	close(stop)
	wg.Wait()
	submitted := func() int64 { return int64(set.seq.Load()) }
	testutil.Eventually(t, 10*time.Second, "every submitted append answered", func() bool {
		return answered.Load() == submitted()
	})
}

// failedEntry is an ApplyFuture that fails with err once released;
// settled closes when Error has returned.
type failedEntry struct {
	release, settled chan struct{}
	err              error
}

func (f failedEntry) Error() error { <-f.release; defer close(f.settled); return f.err }
func (failedEntry) Index() uint64  { return 0 }
func (failedEntry) Response() any  { return nil }

// TestEntriesAnswerInProposalOrder: two entries in flight lose the
// leadership, the second's future settling first; the first's appends
// are answered (sent again, by route) before the second's, so one
// publisher's appends keep their order across the retry.
func TestEntriesAnswerInProposalOrder(t *testing.T) {
	r := &replica{shard: 1, raftDown: make(chan struct{})}
	var mu sync.Mutex
	var order []string
	record := func(name string) func(uint64, error) {
		return func(_ uint64, err error) {
			if !errors.Is(err, errOutcomeUnknown) {
				t.Errorf("%s answered with %v, want an unknown outcome", name, err)
			}
			mu.Lock()
			order = append(order, name)
			mu.Unlock()
		}
	}
	first := failedEntry{release: make(chan struct{}), settled: make(chan struct{}), err: raft.ErrLeadershipLost}
	second := failedEntry{release: make(chan struct{}), settled: make(chan struct{}), err: raft.ErrLeadershipLost}
	firstDone := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		r.answer(first, []proposal{{done: record("a1")}, {done: record("a2")}}, nil)
		close(firstDone)
	}()
	go func() {
		defer wg.Done()
		r.answer(second, []proposal{{done: record("b1")}}, firstDone)
	}()
	close(second.release)
	<-second.settled
	mu.Lock()
	early := slices.Clone(order)
	mu.Unlock()
	if len(early) > 0 {
		t.Fatalf("%v answered before the first entry settled", early)
	}
	close(first.release)
	wg.Wait()
	if want := []string{"a1", "a2", "b1"}; !slices.Equal(order, want) {
		t.Fatalf("answered in the order %v, want %v", order, want)
	}
}

package routes

import (
	"context"
	"testing"
	"time"

	"github.com/mqstream/mqstream/cluster/rpcmux"
	"github.com/mqstream/mqstream/internal/testutil"
)

// TestFlushReturnsOnceThePeerLeft: a flush waiting for a batch in flight
// to a peer that then leaves the set returns (the batch is dropped; the
// handler's context is the mux's, not the caller's).
func TestFlushReturnsOnceThePeerLeft(t *testing.T) {
	faults := rpcmux.NewFaults()
	a, b := startNode(t, "a", "", faults, fastOptions()), startNode(t, "b", "", faults, fastOptions())
	mesh(a, b)
	b.r.SetClient("cb", []string{"t"})
	faults.Partition(a.addr(), b.addr())
	a.r.Forward("t", []byte("m"))
	testutil.Eventually(t, 5*time.Second, "the batch in flight", func() bool {
		a.r.mu.Lock()
		p := a.r.peers["b"]
		a.r.mu.Unlock()
		p.out.mu.Lock()
		defer p.out.mu.Unlock()
		return p.out.inflightN > 0
	})
	done := make(chan struct{})
	go func() {
		_, _ = a.r.HandleFlush(context.Background(), "b", nil)
		close(done)
	}()
	a.r.SetPeers([]Peer{{ID: "a", Addr: a.addr()}}) // b left
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("HandleFlush still waiting 5 s after the peer left")
	}
}

// TestFlushWaitsForTheBatchInFlight: messages dropped from the queue
// after the flush's mark (newer than the batch in flight) do not count
// for the batch queued before it.
func TestFlushWaitsForTheBatchInFlight(t *testing.T) {
	var o outbox
	o.init(100)
	for range 5 {
		o.push(make([]byte, 10))
	}
	if b := o.take(context.Background()); len(b) != 5 {
		t.Fatalf("batch of %d", len(b))
	}
	mark := o.mark()
	for range 20 { // queued after the mark; the oldest of them are dropped
		o.push(make([]byte, 10))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if o.waitFor(ctx, mark) {
		t.Fatal("the wait ended while the batch queued before the mark is still in flight")
	}
	o.done()
	if !o.waitFor(context.Background(), mark) {
		t.Fatal("the wait did not end once the batch went through")
	}
}

// TestFlushWaitsForAForwardUnderWay: a message whose targets were looked
// up before another node's filters arrived goes only to the node that had
// the filter before; a flush that node asks for once the new filters are
// known here (a session moving away from it) returns only after that
// message reached it, or it would be lost between the two nodes.
func TestFlushWaitsForAForwardUnderWay(t *testing.T) {
	a, old, next := startNode(t, "a", "", nil, fastOptions()), startNode(t, "old", "", nil, fastOptions()), startNode(t, "next", "", nil, fastOptions())
	mesh(a, old, next)
	old.r.SetClient("roamer", []string{"t"})
	looked, resume := make(chan struct{}), make(chan struct{})
	a.r.lookedUp = func() {
		close(looked)
		<-resume
	}
	go a.r.Forward("t", []byte("m"))
	<-looked
	a.r.lookedUp = nil
	next.r.SetClient("roamer", []string{"t"}) // a knows of it when this returns

	flushed := make(chan []string, 1)
	go func() {
		_, _ = a.r.HandleFlush(context.Background(), "old", nil)
		flushed <- old.in.got()
	}()
	select {
	case got := <-flushed: // returned before the forward queued its message
		close(resume)
		t.Fatalf("the flush returned before the forward under way queued its message for old (old had %q then)", got)
	case <-time.After(100 * time.Millisecond):
	}
	close(resume)
	if got := <-flushed; len(got) != 1 || got[0] != "m" {
		t.Fatalf("old had %q when the flush returned, want [m]", got)
	}
}

package shards

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/mqstream/mqstream/cluster/rpcmux"

	"github.com/mqstream/mqstream/internal/testutil"
	"github.com/mqstream/mqstream/streams"
)

// Order and at-most-once across forwards and changes of leadership: the
// cases a review of the forwarding path found.

// TestQueuedAppendIsNotProposedInALaterTerm: the
// leader L has a publisher's A1 in flight (its entry in L's log only, L
// cut off) and its A2, claimed as direct too, waiting in the replica's
// queue for a slot (maxEntriesInFlight entries in flight). L steps down:
// A1's entry fails with the leadership lost (retried) and is dropped by
// the next leader. L takes the leadership back before the slot frees;
// A2 must not be proposed in L's new term ahead of A1, put back in the
// outbox (staleTerm).
func TestQueuedAppendIsNotProposedInALaterTerm(t *testing.T) {
	c, l, r, stream, term := settledLeaderOfShard0(t)
	release := make(chan struct{})
	var once sync.Once
	free := func() { once.Do(func() { close(release) }) }
	defer free() // so that a failed setup does not hold the nodes' close
	directNow := func() int {
		o := &l.set.outboxes[0]
		o.mu.Lock()
		defer o.mu.Unlock()
		return o.direct
	}

	c.partition(l) // nothing L proposes now reaches a majority
	// E0: a fenced append whose answer is slow (held until release); it
	// takes one of the two slots, and A1's entry the other.
	if err := l.set.SubmitFenced(streams.AppendRequest{Stream: stream, Records: recs("E0", 1),
		Done: func(uint64, error) { <-release }}, term); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, time.Second, "E0 proposed", func() bool { return r.queued() == 0 })
	a1 := submitOne(t, l.set, stream, "A1")
	testutil.Eventually(t, time.Second, "A1 proposed", func() bool { return r.queued() == 0 })
	a2 := submitOne(t, l.set, stream, "A2")
	if d := directNow(); d != 2 {
		t.Fatalf("setup: %d direct appends, want 2 (L stepped down too soon)", d)
	}
	if q := r.queued(); q != 1 {
		t.Fatalf("setup: %d appends queued in the replica, want 1 (A2 waiting for a slot)", q)
	}
	testutil.Eventually(t, 5*time.Second, "L to step down", func() bool { return !r.isLeader() })
	testutil.Eventually(t, 10*time.Second, "a new leader among the others", func() bool {
		for _, nd := range c.nodes {
			if nd != l && nd.set.replica(0).isLeader() {
				return true
			}
		}
		return false
	})
	c.heal()
	// Another node leads (and overwrites A1's uncommitted entry on L),
	// then hands the leadership back to L.
	testutil.Eventually(t, 15*time.Second, "L to know the new leader", func() bool {
		p, ok := r.leader()
		return ok && p.ID != l.self.ID && r.raft.LastIndex() == c.nodes[slices.IndexFunc(c.nodes, func(nd *testNode) bool { return nd.self.ID == p.ID })].set.replica(0).raft.LastIndex()
	})
	testutil.Eventually(t, 15*time.Second, "L leading again", func() bool {
		for _, nd := range c.nodes {
			if o := nd.set.replica(0); nd != l && o.isLeader() {
				_ = o.raft.LeadershipTransferToServer(raft.ServerID(l.self.ID), raft.ServerAddress(l.self.RPC)).Error()
			}
		}
		return r.isLeader()
	})
	t.Logf("L leads again in term %d (was %d); A2 still queued: %v", r.raft.CurrentTerm(), term, r.queued() == 1)
	free()
	expectInOrder(t, a1, a2)
}

// TestOwnAppendBatchedWithATwiceForwardedOneGoesOn: a
// follower Y's outbox holds an append forwarded to it twice already (a
// node took Y for the leader) and, behind it, an append of Y's own
// publisher. Only the twice forwarded one is answered "not proposed";
// the local append, never forwarded, goes on to the leader (before, the
// whole batch was refused).
func TestOwnAppendBatchedWithATwiceForwardedOneGoesOn(t *testing.T) {
	c := newSteadyCluster(t, 3)
	leaders := c.waitLeaders()
	y := c.nodes[(leaders[0]+1)%3]
	stream := streamOfShard(t, 0, 1)
	entered, release := c.stallFirstForward()
	a0 := submitOne(t, y.set, stream, "A0")
	<-entered // Y's sender is busy with A0

	// A forward that reached Y after one hop already (hops 2 in the request).
	f := appendCmd{kind: kindAppend, stream: stream, records: encodeRecords(recs("F", 1)), id: appendID{producer: 4242, seq: 1}}
	fwd := make(chan error, 1)
	go func() {
		_, err := y.set.HandleForward(context.Background(), "", encodeForward(0, 2, []appendCmd{f}))
		fwd <- err
	}()
	o := &y.set.outboxes[0]
	testutil.Eventually(t, 5*time.Second, "F queued in Y's outbox", func() bool {
		o.mu.Lock()
		defer o.mu.Unlock()
		return len(o.queue) == 1
	})
	a1 := submitOne(t, y.set, stream, "A1") // Y's own publisher, hops 0
	close(release)
	expectStored(t, "local append A0", a0)
	expectStored(t, "local append A1 (never forwarded, the shard has a leader)", a1)
	<-fwd
}

// callerForwarder is one node's view of the test cluster's forwards: it
// asks the cluster's callerHook, which knows the caller, before each
// forward.
type callerForwarder struct {
	c    *cluster
	from string
}

func (f *callerForwarder) Call(ctx context.Context, addr, service string, req []byte) ([]byte, error) {
	f.c.mu.Lock()
	hook := f.c.callerHook
	f.c.mu.Unlock()
	if hook != nil && service == ForwardService {
		if err := hook(f.from, addr, req); err != nil {
			return nil, err
		}
	}
	return f.c.Call(ctx, addr, service, req)
}

// TestForwardedPairStaysInOrderThroughAFollower: node O
// holds no replica of the shard and forwards a publisher's A1 and A2 in
// one request to a follower L (target rotates over the replicas). L's
// outbox holds, ahead of them, an append F forwarded twice already. L's
// sender takes [F, A1] (A2 does not fit in the same 4 MiB batch). Only
// F may be answered "not proposed": were A1 too (the batch's highest hop
// count once decided for all), L would forward [A2] to the leader, O
// would get A1: retry, A2: ok, and send A1 again, to be stored after A2.
func TestForwardedPairStaysInOrderThroughAFollower(t *testing.T) {
	c := newSteadyCluster(t, 4)
	leaders := c.waitLeaders()
	ld := c.nodes[leaders[0]]
	var o, l *testNode
	for _, nd := range c.nodes {
		switch {
		case !c.layout.Holds(0, nd.self.ID):
			o = nd
		case nd != ld && l == nil:
			l = nd
		}
	}
	stream := streamOfShard(t, 0, 1)
	t.Logf("leader %s, follower L %s, O %s (no replica)", ld.self.ID, l.self.ID, o.self.ID)

	lEntered, lRelease := make(chan struct{}), make(chan struct{})
	oEntered, oRelease := make(chan struct{}), make(chan struct{})
	var mu sync.Mutex
	calls := map[string]int{}
	hook := func(from, addr string, req []byte) error {
		mu.Lock()
		calls[from]++
		n := calls[from]
		mu.Unlock()
		_, _, cmds, err := decodeForward(req)
		if err != nil {
			return err
		}
		switch {
		case from == l.self.ID && n == 1: // L's own X0: L's sender stays busy
			close(lEntered)
			<-lRelease
			return errors.New("forward timed out")
		case from == o.self.ID && n == 1: // O's A0: O's sender stays busy
			close(oEntered)
			<-oRelease
			return errors.New("forward timed out")
		case from == o.self.ID && cmds[0].stream == stream && addr != l.self.RPC:
			return errors.New("unreachable") // A1 and A2 reach L only
		case from == o.self.ID && cmds[0].stream != stream && addr == l.self.RPC:
			return errors.New("unreachable") // A0 stays out of L's outbox
		}
		return nil
	}
	c.mu.Lock()
	c.callerHook = hook
	c.mu.Unlock()

	submit := func(set *Set, stream, payload string, n, size int) chan submitted {
		ch := make(chan submitted, 1)
		rs := make([]streams.Record, n)
		for i := range rs {
			p := make([]byte, size)
			copy(p, payload)
			rs[i] = streams.Record{Topic: "t", Payload: p}
		}
		if err := set.Submit(streams.AppendRequest{Stream: stream, Records: rs,
			Done: func(first uint64, err error) { ch <- submitted{first, err} }}); err != nil {
			t.Fatal(err)
		}
		return ch
	}
	x0 := submit(l.set, "x", "X0", 1, 10)
	<-lEntered
	a0 := submit(o.set, "y", "A0", 1, 10)
	<-oEntered
	// F, forwarded to L by a node that took L for the leader (hops 2).
	fRecs := make([]streams.Record, 1)
	fRecs[0] = streams.Record{Topic: "t", Payload: make([]byte, 600<<10)}
	f := appendCmd{kind: kindAppend, stream: "z", records: encodeRecords(fRecs), id: appendID{producer: 4242, seq: 1}}
	go func() { _, _ = l.set.HandleForward(context.Background(), "", encodeForward(0, 2, []appendCmd{f})) }()
	lq := func() int {
		ob := &l.set.outboxes[0]
		ob.mu.Lock()
		defer ob.mu.Unlock()
		return len(ob.queue)
	}
	testutil.Eventually(t, 5*time.Second, "F queued on L", func() bool { return lq() == 1 })
	// One publisher on O: A1 (small) then A2 (3.6 MB in 4 records), one
	// batch of O's (under 4 MiB).
	a1 := submit(o.set, stream, "A1", 1, 10)
	a2 := submit(o.set, stream, "A2", 4, 900<<10)
	close(oRelease)
	testutil.Eventually(t, 10*time.Second, "A1 and A2 queued on L behind F", func() bool { return lq() == 3 })
	close(lRelease)
	expectStored(t, "X0", x0)
	expectStored(t, "A0", a0)
	expectInOrder(t, a1, a2)
}

// TestLostAnswerToAForwardedDeletionIsNotSentAgain: a follower forwards
// a stream's deletion; the leader applies it but the answer is lost.
// In a cluster with a member of an earlier version the deletion has no
// id, and sent again (the state machine would apply it again) it could
// delete the stream another client created anew meanwhile, with its
// acknowledged records: it is answered with the outcome unknown instead.
func TestLostAnswerToAForwardedDeletionIsNotSentAgain(t *testing.T) {
	c := newClusterWith(t, 3, 1, 3, LocalTimers(), func(c *cluster) { c.noAdminIDs = true })
	leaders := c.waitLeaders()
	leader, follower := c.nodes[leaders[0]], c.nodes[(leaders[0]+1)%3]
	stream := streamOfShard(t, 0, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := leader.set.CreateStream(ctx, stream, streams.Retention{}); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	calls := 0
	c.mu.Lock()
	c.dropAnswers = 1 // the deletion is applied, its answer lost
	c.forwardFault = func(string) error {
		mu.Lock()
		calls++
		mu.Unlock()
		return nil
	}
	c.mu.Unlock()
	err := follower.set.DeleteStream(ctx, stream)
	if !errors.Is(err, errOutcomeUnknown) || !errors.Is(err, streams.ErrUnavailable) {
		t.Fatalf("DeleteStream with its answer lost: %v, want the outcome unknown (unavailable)", err)
	}
	mu.Lock()
	n := calls
	mu.Unlock()
	if n != 1 {
		t.Fatalf("the deletion was forwarded %d times, want once", n)
	}
	// Another client creates the stream anew and has a record
	// acknowledged: nothing deletes them.
	if _, err := leader.set.CreateStream(ctx, stream, streams.Retention{}); err != nil {
		t.Fatal(err)
	}
	if _, err := leader.set.Append(ctx, stream, recs("R", 1)...); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 5*time.Second, "the new stream's record on every replica", func() bool {
		for _, nd := range c.nodes {
			if got, err := nd.store.Read(stream, 0, streams.ReadOptions{MaxRecords: 10}); err != nil || len(got) != 1 {
				return false
			}
		}
		return true
	})
}

// TestForwardNotSentIsSentAgain: a forward that never left the node (no
// connection) is sent again, creations and deletions included: the
// leader never saw it.
func TestForwardNotSentIsSentAgain(t *testing.T) {
	c := newCluster(t, 3, 1, 3)
	leaders := c.waitLeaders()
	follower := c.nodes[(leaders[0]+1)%3]
	stream := streamOfShard(t, 0, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var once sync.Once
	c.mu.Lock()
	c.forwardFault = func(addr string) error {
		err := error(nil)
		once.Do(func() { err = fmt.Errorf("%w: dial %s: connection refused", rpcmux.ErrNotSent, addr) })
		return err
	}
	c.mu.Unlock()
	if _, err := follower.set.CreateStream(ctx, stream, streams.Retention{}); err != nil {
		t.Fatalf("CreateStream after a forward that was not sent: %v", err)
	}
}

// TestNewTermAppendWaitsForTheOldTermsOnes: the leader L has a
// publisher's A1 queued in its replica in term T (both slots taken by
// entries whose answers are slow). L loses the leadership and takes it
// back (term T+2) before the slots free. The publisher's A2, submitted
// now, must not be proposed in T+2 while A1, which staleTerm fails as not
// proposed once the slots free, is still unanswered: it waits in the
// outbox (directTerm) and is sent after A1.
func TestNewTermAppendWaitsForTheOldTermsOnes(t *testing.T) {
	c, l, r, stream, term := settledLeaderOfShard0(t)
	release := make(chan struct{})
	released := false
	free := func() {
		if !released {
			released = true
			close(release)
		}
	}
	defer free()
	entered := make(chan struct{}, 2)
	slow := func(payload string) {
		if err := l.set.Submit(streams.AppendRequest{Stream: stream, Records: recs(payload, 1),
			Done: func(uint64, error) { entered <- struct{}{}; <-release }}); err != nil {
			t.Fatal(err)
		}
	}
	// X1, X2: committed, their answers held: both slots taken.
	slow("X1")
	testutil.Eventually(t, 5*time.Second, "X1 proposed", func() bool { return r.queued() == 0 })
	slow("X2")
	testutil.Eventually(t, 5*time.Second, "X2 proposed", func() bool { return r.queued() == 0 })
	select {
	case <-entered: // X1 answered, its answer held; X2's waits behind it
	case <-time.After(5 * time.Second):
		t.Fatal("X1 not answered")
	}
	testutil.Eventually(t, 5*time.Second, "X2 applied", func() bool { return r.raft.AppliedIndex() >= r.raft.LastIndex() })
	a1 := submitOne(t, l.set, stream, "A1")
	if q := r.queued(); q != 1 {
		t.Fatalf("setup: %d queued in the replica, want 1 (A1 waiting for a slot)", q)
	}
	// Hand the leadership away and back.
	var other *testNode
	for _, nd := range c.nodes {
		if nd != l {
			other = nd
			break
		}
	}
	if err := r.raft.LeadershipTransferToServer(raft.ServerID(other.self.ID), raft.ServerAddress(other.self.RPC)).Error(); err != nil {
		t.Fatalf("transfer away: %v", err)
	}
	testutil.Eventually(t, 10*time.Second, "the other node to lead", func() bool { return other.set.replica(0).isLeader() })
	testutil.Eventually(t, 15*time.Second, "L leading again", func() bool {
		if o := other.set.replica(0); o.isLeader() {
			_ = o.raft.LeadershipTransferToServer(raft.ServerID(l.self.ID), raft.ServerAddress(l.self.RPC)).Error()
		}
		return r.isLeader()
	})
	t.Logf("L leads again in term %d (A1 queued in term %d); A1 still queued: %v", r.raft.CurrentTerm(), term, r.queued() == 1)
	a2 := submitOne(t, l.set, stream, "A2")
	o := &l.set.outboxes[0]
	o.mu.Lock()
	t.Logf("outbox: direct %d, queue %d, retried %d, held %v", o.direct, len(o.queue), len(o.retried), o.held)
	o.mu.Unlock()
	free()
	expectInOrder(t, a1, a2)
}

// settledLeaderOfShard0 starts a steady three-node cluster with one shard
// and waits until its leader leads in a settled term: it returns the
// cluster, the leader, its replica, a stream of the shard and the term.
func settledLeaderOfShard0(t *testing.T) (*cluster, *testNode, *replica, string, uint64) {
	t.Helper()
	c := newSteadyCluster(t, 3)
	leaders := c.waitLeaders()
	l := c.nodes[leaders[0]]
	r := l.set.replica(0)
	var term uint64
	testutil.Eventually(t, 5*time.Second, "the leader to settle", func() bool {
		var ok bool
		term, ok = r.lead()
		return ok
	})
	return c, l, r, streamOfShard(t, 0, 1), term
}

// TestLeadershipTakenWhileForwardingToTheOldLeader: follower B's sender
// has an append on its way to leader A when A hands the shard's
// leadership to B. B, now leading, must stop waiting for A and propose
// the append itself: A, no longer able to propose it, forwards it on to
// B, where it would queue behind the very batch B's sender waits for.
// Before, only the forward attempt's timeout (2 s, the ack stall seen
// when leadership went back to a restarted node) or the write timeout
// ended the wait. Here the call is held at A's door until B gives up on
// it: B must cancel it, not time out.
func TestLeadershipTakenWhileForwardingToTheOldLeader(t *testing.T) {
	t.Run("appends with ids", func(t *testing.T) { testLeadershipTakenWhileForwarding(t, false) })
	// A creation without an id (members of an earlier version) cannot be
	// sent again safely: its forward is not cut short, it waits for its
	// answer (here until the write timeout).
	t.Run("a creation without an id", func(t *testing.T) { testLeadershipTakenWhileForwarding(t, true) })
}

func testLeadershipTakenWhileForwarding(t *testing.T, creationWithoutID bool) {
	timers := LocalTimers()
	timers.Balance = time.Hour
	timers.ForwardAttempt = time.Minute // longer than the write timeout (5 s)
	c := newClusterWith(t, 3, 1, 3, timers, func(c *cluster) { c.noAdminIDs = creationWithoutID })
	a := c.nodes[c.waitLeaders()[0]]
	var b *testNode
	for _, nd := range c.nodes {
		if nd != a {
			b = nd
			break
		}
	}
	ctx := context.Background()
	const stream = "handback"
	if _, err := a.set.CreateStream(ctx, stream, streams.Retention{}); err != nil {
		t.Fatal(err)
	}
	// B's first forward to A waits at A's door until B gives up on it,
	// then is served by A, a follower by then.
	entered, gaveUp := make(chan struct{}), make(chan error, 1)
	var once sync.Once
	c.mu.Lock()
	c.forwardGate = func(ctx context.Context, addr string) error {
		if addr != a.self.RPC {
			return nil
		}
		first := false
		once.Do(func() { first = true })
		if first {
			close(entered)
			<-ctx.Done()
			gaveUp <- ctx.Err()
		}
		return nil
	}
	c.mu.Unlock()

	type result struct {
		first uint64
		err   error
	}
	answered := make(chan result, 1)
	if creationWithoutID {
		go func() {
			_, err := b.set.CreateStream(ctx, "other", streams.Retention{})
			answered <- result{0, err}
		}()
	} else if err := b.set.Submit(streams.AppendRequest{Stream: stream, Records: recs("X", 1),
		Done: func(first uint64, err error) { answered <- result{first, err} }}); err != nil {
		t.Fatal(err)
	}
	<-entered
	r := a.set.replica(0)
	testutil.Eventually(t, 10*time.Second, b.self.ID+" to take the leadership", func() bool {
		// A transfer times out now and then on a loaded machine: try
		// again while A leads.
		if r.isLeader() {
			_ = r.raft.LeadershipTransferToServer(raft.ServerID(b.self.ID), raft.ServerAddress(b.self.RPC)).Error()
		}
		return b.set.replica(0).isLeader()
	})
	if creationWithoutID {
		if err := <-gaveUp; !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("%s's forward of a creation without an id ended with %v, want it to wait (until the write timeout)", b.self.ID, err)
		}
		<-answered
		return
	}
	if err := <-gaveUp; !errors.Is(err, context.Canceled) {
		t.Fatalf("%s's forward to the old leader ended with %v, want it cancelled once %s led", b.self.ID, err, b.self.ID)
	}
	select {
	case res := <-answered:
		if res.err != nil {
			t.Fatalf("the append forwarded to the old leader: %v", res.err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the append forwarded to the old leader was never answered")
	}
	// Stored once, though B proposed it twice: its own copy, then the one
	// A forwarded on (answered from the dedupe window).
	testutil.Eventually(t, 5*time.Second, "the record once on every replica", func() bool {
		for _, nd := range c.nodes {
			got, err := nd.store.Read(stream, 0, streams.ReadOptions{MaxRecords: 10})
			if err != nil || len(got) != 1 {
				return false
			}
		}
		return true
	})
}

// TestFailedLeadershipTransferKeepsAppendsInOrder: raft refuses the
// entries proposed while a leadership transfer is under way, and those go
// back to the outbox once the entries before them are answered. When the
// transfer failed meanwhile, this node still led, and a later append of
// the same publisher was proposed and stored before them (E0's answer is
// slow here, so A1's refusal waits behind it while A2 is proposed). A
// transfer now first waits for the entries in flight (giving up if they
// take too long) and holds the replica's proposals while it runs.
func TestFailedLeadershipTransferKeepsAppendsInOrder(t *testing.T) {
	c, l, r, stream, term := settledLeaderOfShard0(t)
	var target *testNode
	for _, nd := range c.nodes {
		if nd != l {
			target = nd
			break
		}
	}
	c.partition(target) // the leader keeps a majority with the third node; a transfer to it fails
	release := make(chan struct{})
	var once sync.Once
	free := func() { once.Do(func() { close(release) }) }
	defer free()
	if err := l.set.SubmitFenced(streams.AppendRequest{Stream: stream, Records: recs("E0", 1),
		Done: func(uint64, error) { <-release }}, term); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 5*time.Second, "E0 applied, its answer held", func() bool {
		return r.queued() == 0 && r.raft.AppliedIndex() >= r.raft.LastIndex()
	})
	errc := make(chan error, 1)
	go func() {
		errc <- r.transferLeadership(300*time.Millisecond, func() error {
			return l.set.await(r, r.raft.LeadershipTransferToServer(raft.ServerID(target.self.ID), raft.ServerAddress(target.self.RPC)))
		})
	}()
	a1 := submitOne(t, l.set, stream, "A1")
	testutil.Eventually(t, 5*time.Second, "A1 proposed", func() bool { return r.queued() == 0 })
	a2 := submitOne(t, l.set, stream, "A2")
	if err := <-errc; err == nil {
		t.Fatal("the leadership went to a node cut off from the others")
	}
	free()
	expectInOrder(t, a1, a2)
}

// TestAppendsWaitingForALeaderFailAfterTheWriteTimeout: with no leader
// reachable, the sender failed one batch (at most 4 MiB) per write
// timeout, and the appends queued behind it started their wait only then:
// ten appends of 900 KiB waited up to three write timeouts.
func TestAppendsWaitingForALeaderFailAfterTheWriteTimeout(t *testing.T) {
	c := newSteadyCluster(t, 3)
	leaders := c.waitLeaders()
	f := c.nodes[(leaders[0]+1)%3]
	stream := streamOfShard(t, 0, 1)
	c.partition(f)
	c.mu.Lock()
	c.forwardFault = func(addr string) error { return fmt.Errorf("%w: %s unreachable", rpcmux.ErrNotSent, addr) }
	c.mu.Unlock()
	big := bytes.Repeat([]byte("x"), 900<<10)
	type answer struct {
		waited time.Duration
		err    error
	}
	answers := make(chan answer, 10)
	for range 10 {
		start := time.Now()
		if err := f.set.Submit(streams.AppendRequest{Stream: stream, Records: []streams.Record{{Topic: "t", Payload: big}},
			Done: func(_ uint64, err error) { answers <- answer{time.Since(start), err} }}); err != nil {
			t.Fatal(err)
		}
	}
	timeout := f.set.opts.WriteTimeout
	for range 10 {
		a := <-answers
		if !errors.Is(a.err, ErrNoLeader) {
			t.Fatalf("an append with no leader reachable: %v", a.err)
		}
		if a.waited > 2*timeout {
			t.Fatalf("an append waited %v for a leader, the write timeout being %v", a.waited, timeout)
		}
	}
}

// TestOutboxRefusesAppendsOverItsBound: appends queued for a leader that
// takes none are bounded in bytes; the first is always taken.
func TestOutboxRefusesAppendsOverItsBound(t *testing.T) {
	o := &outbox{sending: true} // no sender is started
	var refused []error
	item := func(size int) forwardItem {
		return forwardItem{cmd: appendCmd{kind: kindAppend, stream: "s", records: [][]byte{make([]byte, size)}},
			done: func(_ uint64, err error) { refused = append(refused, err) }}
	}
	o.add(nil, 0, item(maxQueuedForward+1)) // alone: taken
	o.add(nil, 0, item(1))
	if len(refused) != 1 || !errors.Is(refused[0], streams.ErrUnavailable) || len(o.queue) != 1 {
		t.Fatalf("queued %d, refused %v", len(o.queue), refused)
	}
	if batch := o.take(); len(batch) != 1 || o.queuedBytes != 0 {
		t.Fatalf("took %d, %d bytes left counted", len(batch), o.queuedBytes)
	}
	o.add(nil, 0, item(maxQueuedForward/2))
	o.add(nil, 0, item(maxQueuedForward/4))
	if len(refused) != 1 || len(o.queue) != 2 {
		t.Fatalf("queued %d, refused %v", len(o.queue), refused)
	}
}

// TestCopyOfAForwardBeingHandledIsNotProposedAgain: a slow (not dead)
// leader; the follower's forward attempt times out and it sends the
// batch again while the first copy still waits on the leader. Each copy
// was proposed: written to the Raft log, replicated, and only then
// answered from the deduplication window. The copy now waits for the
// first's answer.
func TestCopyOfAForwardBeingHandledIsNotProposedAgain(t *testing.T) {
	timers := LocalTimers()
	timers.Balance = time.Hour
	timers.ForwardAttempt = 200 * time.Millisecond
	c := newClusterWith(t, 3, 1, 3, timers)
	l := c.nodes[c.waitLeaders()[0]]
	r := l.set.replica(0)
	var term uint64
	testutil.Eventually(t, 5*time.Second, "the leader to settle", func() bool {
		var ok bool
		term, ok = r.lead()
		return ok
	})
	stream := streamOfShard(t, 0, 1)
	var f *testNode
	for _, nd := range c.nodes {
		if nd != l {
			f = nd
			break
		}
	}
	// Two entries whose answers are held take both of the leader's
	// slots: its proposer stalls, as behind a stalled disk.
	release := make(chan struct{})
	var once sync.Once
	free := func() { once.Do(func() { close(release) }) }
	defer free()
	for _, p := range []string{"E0", "E1"} {
		if err := l.set.SubmitFenced(streams.AppendRequest{Stream: stream, Records: recs(p, 1),
			Done: func(uint64, error) { <-release }}, term); err != nil {
			t.Fatal(err)
		}
		testutil.Eventually(t, 5*time.Second, p+" proposed", func() bool { return r.queued() == 0 })
	}
	received := l.set.Counters().Received
	a1 := submitOne(t, f.set, stream, "A1")
	testutil.Eventually(t, 5*time.Second, "A1 sent again", func() bool { return l.set.Counters().Received >= received+3 })
	free()
	expectStored(t, "A1", a1)
	copies := 0
	testutil.Eventually(t, 5*time.Second, "the log read", func() bool {
		c.mu.Lock()
		logs := l.logs[groupName(0)]
		c.mu.Unlock()
		first, _ := logs.FirstIndex()
		last, _ := logs.LastIndex()
		copies = 0
		for i := first; i <= last; i++ {
			var e raft.Log
			if logs.GetLog(i, &e) != nil || e.Type != raft.LogCommand {
				continue
			}
			if _, cmds, err := decodeEntry(e.Data); err == nil {
				for _, cm := range cmds {
					if cm.kind == kindAppend && cm.term == 0 && string(cm.records[0]) != "" && cm.id.producer != 0 && cm.stream == stream {
						copies++
					}
				}
			}
		}
		return copies > 0
	})
	if copies != 1 {
		t.Fatalf("A1 proposed %d times", copies)
	}
}

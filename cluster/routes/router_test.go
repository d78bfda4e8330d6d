package routes

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mqstream/mqstream/cluster/rpcmux"
	"github.com/mqstream/mqstream/internal/testutil"
)

// inbox records the messages forwarded to a node.
type inbox struct {
	mu   sync.Mutex
	msgs []string
}

func (b *inbox) DeliverForwarded(m []byte) {
	b.mu.Lock()
	b.msgs = append(b.msgs, string(m))
	b.mu.Unlock()
}

func (b *inbox) got() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return slices.Clone(b.msgs)
}

type testNode struct {
	id  string
	mux *rpcmux.Mux
	r   *Router
	in  *inbox
}

func (n *testNode) addr() string { return n.mux.Addr().String() }

// fastOptions are timers for tests.
func fastOptions() Options {
	return Options{SyncWait: 2 * time.Second, Resync: 50 * time.Millisecond, CallTimeout: time.Second}
}

// startNode starts a router on a real RPC mux on 127.0.0.1 (addr "" picks a
// port), stopped when the test ends.
func startNode(t *testing.T, id, addr string, faults *rpcmux.Faults, o Options) *testNode {
	t.Helper()
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	log := testutil.Logger().With("node", id)
	mux, err := rpcmux.Listen(addr, rpcmux.Options{NodeID: id, Faults: faults, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	n := &testNode{id: id, mux: mux, in: &inbox{}}
	o.Self, o.Caller, o.Deliver, o.Logger = id, mux, n.in, log
	n.r = New(o)
	mux.Handle(SyncService, n.r.HandleSync)
	mux.Handle(DeliverService, n.r.HandleDeliver)
	t.Cleanup(n.stop)
	return n
}

func (n *testNode) stop() {
	n.r.Close()
	_ = n.mux.Close()
}

// mesh tells every node of all the others.
func mesh(nodes ...*testNode) {
	var peers []Peer
	for _, n := range nodes {
		peers = append(peers, Peer{ID: n.id, Addr: n.addr()})
	}
	for _, n := range nodes {
		n.r.SetPeers(peers)
	}
}

func TestSubscriptionIsKnownEverywhereWhenSetClientReturns(t *testing.T) {
	a, b, c := startNode(t, "a", "", nil, fastOptions()), startNode(t, "b", "", nil, fastOptions()), startNode(t, "c", "", nil, fastOptions())
	mesh(a, b, c)
	b.r.SetClient("sub1", []string{"sensors/+/temp"})
	// No polling: SetClient returned, so both peers hold the route.
	for _, n := range []*testNode{a, c} {
		if !n.r.Wanted("sensors/d1/temp") {
			t.Fatalf("%s does not route sensors/d1/temp to b after SetClient returned", n.id)
		}
		if n.r.Wanted("sensors/d1/humidity") {
			t.Fatalf("%s routes a topic nobody subscribed to", n.id)
		}
	}
	if b.r.Wanted("sensors/d1/temp") {
		t.Fatal("b routes its own subscription to another node")
	}

	// 1,000 messages from a arrive at b in order, and not at c.
	const n = 1000
	for i := range n {
		a.r.Forward("sensors/d1/temp", []byte(strconv.Itoa(i)))
	}
	testutil.Eventually(t, 10*time.Second, "b receives every message", func() bool { return len(b.in.got()) >= n })
	for i, m := range b.in.got() {
		if m != strconv.Itoa(i) {
			t.Fatalf("message %d is %q: order broken", i, m)
		}
	}
	if got := len(c.in.got()); got != 0 {
		t.Fatalf("c got %d messages it did not subscribe to", got)
	}
	if s := a.r.Stats(); s.Forwarded != n || s.RemoteFilters["b"] != 1 {
		t.Fatalf("a's stats: %+v", s)
	}
}

func TestFiltersAreCountedPerClient(t *testing.T) {
	a, b := startNode(t, "a", "", nil, fastOptions()), startNode(t, "b", "", nil, fastOptions())
	mesh(a, b)
	b.r.SetClient("c1", []string{"t/#", "x"})
	b.r.SetClient("c2", []string{"t/#"})
	b.r.SetClient("c1", nil) // c1's session ended
	testutil.Eventually(t, 5*time.Second, "a forgets x", func() bool { return !a.r.Wanted("x") })
	if !a.r.Wanted("t/1") {
		t.Fatal("t/# dropped while c2 still holds it")
	}
	b.r.SetClient("c2", []string{"y"}) // c2 unsubscribed t/#, subscribed y
	if !a.r.Wanted("y") {
		t.Fatal("a does not route y after SetClient returned")
	}
	testutil.Eventually(t, 5*time.Second, "a forgets t/#", func() bool { return !a.r.Wanted("t/1") })
	if s := b.r.Stats(); s.LocalFilters != 1 {
		t.Fatalf("b's local filters: %+v", s)
	}
}

// TestChangesWhileUnreachableConverge: a filter added, removed and added
// again while the peer cannot be reached (so a delta carries several
// changes of it), and another removed: after the heal the peer holds
// exactly the current set. SetClient gives up after SyncWait.
func TestChangesWhileUnreachableConverge(t *testing.T) {
	faults := rpcmux.NewFaults()
	o := fastOptions()
	o.SyncWait = 200 * time.Millisecond
	a, b := startNode(t, "a", "", faults, o), startNode(t, "b", "", faults, o)
	mesh(a, b)
	b.r.SetClient("c1", []string{"keep", "gone", "flap"})
	faults.Partition(a.addr(), b.addr())
	start := time.Now()
	b.r.SetClient("c1", []string{"keep", "new"})
	if waited := time.Since(start); waited > 5*time.Second {
		t.Fatalf("SetClient waited %v with the peer unreachable", waited)
	}
	b.r.SetClient("c1", []string{"keep", "new", "flap"})
	if !a.r.Wanted("gone") || a.r.Wanted("new") {
		t.Fatal("a learnt of changes during the partition")
	}
	faults.Heal()
	testutil.Eventually(t, 10*time.Second, "a converges", func() bool {
		return a.r.Wanted("keep") && a.r.Wanted("new") && a.r.Wanted("flap") && !a.r.Wanted("gone")
	})
}

// exchangedPair starts nodes a and b, each with a client subscribed to
// from/<its id>, once each holds the other's filter.
func exchangedPair(t *testing.T, o Options) (a, b *testNode) {
	t.Helper()
	a, b = startNode(t, "a", "", nil, o), startNode(t, "b", "", nil, o)
	mesh(a, b)
	a.r.SetClient("ca", []string{"from/a"})
	b.r.SetClient("cb", []string{"from/b"})
	if !b.r.Wanted("from/a") || !a.r.Wanted("from/b") {
		t.Fatal("routes not exchanged")
	}
	return a, b
}

// TestRestartedNodeResyncs: a node that restarts (a new process on the
// same address, knowing nothing) gets the others' filters whole, and the
// others replace what they knew of it with its new, empty set.
func TestRestartedNodeResyncs(t *testing.T) {
	// No periodic check within the test: a restarted peer must be sent
	// the filters as soon as it shows itself, not at the next check.
	slow := fastOptions()
	slow.Resync = time.Hour
	a, b := exchangedPair(t, slow)
	addr := b.addr()
	b.stop()
	b2 := startNode(t, "b", addr, nil, slow)
	mesh(a, b2) // a keeps b in its peer set: membership did not notice
	testutil.Eventually(t, 10*time.Second, "the new b learns a's filters and a forgets the old b's", func() bool {
		return b2.r.Wanted("from/a") && !a.r.Wanted("from/b")
	})
	// A message on the old b's filter is not sent; one on the new b's
	// filter is, after it (a peer's messages keep their order).
	b2.r.SetClient("cb2", []string{"marker"})
	a.r.Forward("from/b", []byte("stale"))
	a.r.Forward("marker", []byte("marker"))
	testutil.Eventually(t, 5*time.Second, "the marker arrives", func() bool { return len(b2.in.got()) > 0 })
	if got := b2.in.got(); !slices.Equal(got, []string{"marker"}) {
		t.Fatalf("the new b got %v", got)
	}
}

// TestLeavingPeerIsDropped: a node that leaves the peer set has its filters
// dropped; when it comes back it sends them again.
func TestLeavingPeerIsDropped(t *testing.T) {
	a, b := startNode(t, "a", "", nil, fastOptions()), startNode(t, "b", "", nil, fastOptions())
	mesh(a, b)
	b.r.SetClient("cb", []string{"x/#"})
	a.r.SetPeers(nil)
	if a.r.Wanted("x/1") {
		t.Fatal("a routes to a node that left")
	}
	mesh(a, b)
	testutil.Eventually(t, 10*time.Second, "b's filters come back", func() bool { return a.r.Wanted("x/1") })
}

// TestPeerDroppedOnOneSideGetsItsRoutesBackAtOnce: a's membership took b
// for failed and back, while b kept a (it refuted the suspicion). a
// dropped b's filters and, through Joined, what b had sent it (wills); b
// must send both again when a takes it back, not at its next check.
func TestPeerDroppedOnOneSideGetsItsRoutesBackAtOnce(t *testing.T) {
	dropAndTakeBack(t, false)
}

// TestPeerDroppedBeforeItsFirstSetArrivedGetsJoinedAgain: the same, when
// none of a's sets reached b before a dropped it (a's calls to b failed),
// while b's membership counted a up and ran Joined for it, sending to a.
// b hears of a's link for the first time, and must run Joined again all
// the same.
func TestPeerDroppedBeforeItsFirstSetArrivedGetsJoinedAgain(t *testing.T) {
	dropAndTakeBack(t, true)
}

// dropAndTakeBack: b subscribes, a drops b and takes it back; b's filters
// come back to a and b runs Joined for a again. firstUnheard: a's calls to
// b fail until a took b back.
func dropAndTakeBack(t *testing.T, firstUnheard bool) {
	o := fastOptions()
	o.Resync = time.Hour // the next check is far away
	ob, joined := countingJoined(o, "a")
	faults := rpcmux.NewFaults()
	a, b := startNode(t, "a", "", faults, o), startNode(t, "b", "", faults, ob)
	if firstUnheard {
		faults.Block(a.addr(), b.addr())
	}
	mesh(a, b)
	b.r.SetClient("cb", []string{"x/#"}) // b reaches a
	if !a.r.Wanted("x/1") {
		t.Fatal("a does not know b's filter once SetClient returned")
	}
	if !firstUnheard {
		testutil.Eventually(t, 5*time.Second, "b holds a's link", func() bool {
			b.r.mu.Lock()
			defer b.r.mu.Unlock()
			return b.r.remotes["a"] != nil
		})
	}
	testutil.Eventually(t, 5*time.Second, "b's Joined for a", func() bool { return joined.Load() >= 1 })
	before := joined.Load()
	a.r.SetPeers(nil)
	a.r.SetPeers([]Peer{{ID: "b", Addr: b.addr()}})
	faults.Heal()
	testutil.Eventually(t, 10*time.Second, "b's filters back on a", func() bool { return a.r.Wanted("x/1") })
	testutil.Eventually(t, 10*time.Second, "b's Joined for a again", func() bool { return joined.Load() > before })
}

// TestRestartedPeerRunsJoinedOnce: a dropped b, which then restarted; both
// take each other (back). The new b runs Joined for a once: what a
// dropped was the old b's, not anything the new one sent.
func TestRestartedPeerRunsJoinedOnce(t *testing.T) {
	o := fastOptions()
	o.Resync = time.Hour
	a, b := exchangedPair(t, o)
	addr := b.addr()
	b.stop()
	a.r.SetPeers(nil)
	ob, joined := countingJoined(o, "a")
	b2 := startNode(t, "b", addr, nil, ob)
	mesh(a, b2)
	b2.r.SetClient("cb", []string{"from/b"})
	testutil.Eventually(t, 10*time.Second, "the filters exchanged and b's Joined runs over", func() bool {
		b2.r.mu.Lock()
		running := len(b2.r.joins) > 0
		b2.r.mu.Unlock()
		return b2.r.Wanted("from/a") && a.r.Wanted("from/b") && !running && joined.Load() > 0
	})
	if n := joined.Load(); n != 1 {
		t.Fatalf("the restarted b ran Joined for a %d times", n)
	}
}

// TestJoinedRunsOncePerDrop: each node runs Joined for the other once per
// drop that lost what it had sent: a drops b and takes it back; then b
// alone drops a (a's set still names the link a dropped, which b has
// since replaced); then both drop each other at once.
func TestJoinedRunsOncePerDrop(t *testing.T) {
	o := fastOptions()
	o.Resync = time.Hour
	oa, ja := countingJoined(o, "b") // a's runs for b
	ob, jb := countingJoined(o, "a") // b's runs for a
	a, b := startNode(t, "a", "", nil, oa), startNode(t, "b", "", nil, ob)
	a.r.SetClient("ca", []string{"from/a"}) // no peers yet: sent once meshed
	b.r.SetClient("cb", []string{"from/b"})
	for _, step := range []struct {
		name string
		drop func()
	}{
		{"formed", func() {}},
		{"a dropped b", func() { a.r.SetPeers(nil) }},
		{"b dropped a", func() { b.r.SetPeers(nil) }},
		{"both dropped", func() { a.r.SetPeers(nil); b.r.SetPeers(nil) }},
	} {
		forA, forB := jb.Load(), ja.Load()
		step.drop()
		mesh(a, b)
		// Settled: every set acknowledged (a set whose answer asks for
		// another, and the Joined it starts, are over) and no Joined runs.
		testutil.Eventually(t, 10*time.Second, step.name+": sets acknowledged and Joined over", func() bool {
			return a.r.Wanted("from/b") && b.r.Wanted("from/a") && setsAcked(a) && setsAcked(b) &&
				joinsIdle(a) && joinsIdle(b) && jb.Load() > forA && ja.Load() > forB
		})
		if gotA, gotB := jb.Load()-forA, ja.Load()-forB; gotA != 1 || gotB != 1 {
			t.Fatalf("%s: b ran Joined for a %d times, a for b %d times; want once each", step.name, gotA, gotB)
		}
	}
}

// setsAcked reports whether every peer of n acknowledged n's current
// filters.
func setsAcked(n *testNode) bool {
	n.r.mu.Lock()
	defer n.r.mu.Unlock()
	for _, p := range n.r.peers {
		if p.acked < n.r.local.version {
			return false
		}
	}
	return len(n.r.peers) > 0
}

// joinsIdle reports whether no Joined runs on n.
func joinsIdle(n *testNode) bool {
	n.r.mu.Lock()
	defer n.r.mu.Unlock()
	return len(n.r.joins) == 0
}

// countingJoined returns o with a Joined that counts its runs for peer.
func countingJoined(o Options, peer string) (Options, *atomic.Int64) {
	n := new(atomic.Int64)
	o.Joined = func(p string) {
		if p == peer {
			n.Add(1)
		}
	}
	return o, n
}

// TestOlderFullUpdateIsIgnored: a full set that timed out and arrives
// after its retry carried a newer one must not undo the newer one.
func TestOlderFullUpdateIsIgnored(t *testing.T) {
	a, b := startNode(t, "a", "", nil, fastOptions()), startNode(t, "b", "", nil, fastOptions())
	mesh(a, b)
	b.r.SetClient("cb", []string{"x/#"})
	b.r.SetClient("cc", []string{"y/#"})
	old := update{kind: syncFull, incarnation: b.r.incarnation, version: 1, adds: []string{"x/#"}}
	if resp, err := a.r.HandleSync(context.Background(), "b", encodeUpdate(old)); err != nil || len(resp) != 1 || resp[0] != syncOK {
		t.Fatalf("answer to the late full set: %v %v", resp, err)
	}
	if !a.r.Wanted("y/1") {
		t.Fatal("a late full set of b's filters at version 1 undid version 2's")
	}
}

// TestFullSetOfAReplacedLinkIsIgnored: a full set b sent over a link it
// has since dropped and replaced, arriving late (its version no older),
// does not make a run Joined again nor take b's old link for a new one.
func TestFullSetOfAReplacedLinkIsIgnored(t *testing.T) {
	o := fastOptions()
	o.Resync = time.Hour
	oa, joined := countingJoined(o, "b")
	a, b := startNode(t, "a", "", nil, oa), startNode(t, "b", "", nil, o)
	mesh(a, b)
	b.r.SetClient("cb", []string{"x/#"})
	b.r.mu.Lock() // a full set over b's first link
	late := update{kind: syncFull, incarnation: b.r.incarnation, base: b.r.peers["a"].link, version: b.r.local.version, adds: []string{"x/#"}}
	b.r.mu.Unlock()
	b.r.SetPeers(nil)
	mesh(a, b) // b's second link
	heldLink := func() uint64 {
		a.r.mu.Lock()
		defer a.r.mu.Unlock()
		return a.r.remotes["b"].link
	}
	testutil.Eventually(t, 10*time.Second, "a holds b's new link and ran Joined for it", func() bool {
		return heldLink() > late.base && joinsIdle(a) && joined.Load() == 2
	})
	held := heldLink()
	if resp, err := a.r.HandleSync(context.Background(), "b", encodeUpdate(late)); err != nil || len(resp) != 1 || resp[0] != syncOK {
		t.Fatalf("answer to the late full set: %v %v", resp, err)
	}
	testutil.Eventually(t, 5*time.Second, "a's Joined idle", func() bool { return joinsIdle(a) })
	if n, now := joined.Load(), heldLink(); n != 2 || now != held {
		t.Fatalf("after the old link's late set: a ran Joined for b %d times (want 2) and holds link %d (was %d)", n, now, held)
	}
}

// TestPacedSendsDropNothing: what Joined sends (every retained message)
// may be more than a peer's queue holds; sent with SendTo it dropped its
// own start, which started the repair that sent it all again, and
// overflowed again, for as long as the peer stayed.
func TestPacedSendsDropNothing(t *testing.T) {
	o := fastOptions()
	o.MaxQueuedBytes = 1000
	var joined atomic.Int64
	var a *testNode
	o.Joined = func(peer string) {
		if peer != "b" {
			return
		}
		joined.Add(1)
		for deadline := time.Now().Add(5 * time.Second); !a.r.Wanted("live") && time.Now().Before(deadline); {
			time.Sleep(time.Millisecond) // b's filter reaches a a moment after a counts b up
		}
		for i := range 200 { // 2,000 bytes: twice the bound
			a.r.SendPaced(peer, []byte(fmt.Sprintf("%09d", i)))
			if i%5 == 4 {
				// A live message meanwhile finds room: the paced
				// ones leave half the queue free.
				a.r.Forward("live", []byte(fmt.Sprintf("live%05d", i/5)))
			}
		}
	}
	faults := rpcmux.NewFaults()
	a = startNode(t, "a", "", faults, o)
	b := startNode(t, "b", "", nil, fastOptions())
	faults.Delay(2 * time.Millisecond) // a's calls: the paced sends fill the queue
	b.r.SetPeers([]Peer{{ID: "a", Addr: a.addr()}})
	go b.r.SetClient("cb", []string{"live"}) // taken by a once a counts b up
	a.r.SetPeers([]Peer{{ID: "b", Addr: b.addr()}})
	testutil.Eventually(t, 10*time.Second, "all 240 at b", func() bool { return len(b.in.got()) >= 240 })
	var paced, live []string
	for _, m := range b.in.got() {
		if strings.HasPrefix(m, "live") {
			live = append(live, m)
		} else {
			paced = append(paced, m)
		}
	}
	if len(paced) != 200 || !slices.IsSorted(paced) || len(live) != 40 || !slices.IsSorted(live) {
		t.Fatalf("b got %d paced and %d live messages (sorted: %v, %v)", len(paced), len(live), slices.IsSorted(paced), slices.IsSorted(live))
	}
	if d := a.r.Stats().Dropped; d != 0 || joined.Load() != 1 {
		t.Fatalf("dropped %d, Joined ran %d times", d, joined.Load())
	}
}

// TestPacedPushLeavesHalfTheQueue: a paced message waits while the
// queue holds half its bound or more, so messages pushed meanwhile find
// room instead of pushing paced ones out (and starting a repair).
func TestPacedPushLeavesHalfTheQueue(t *testing.T) {
	var o outbox
	o.init(100)
	o.push(make([]byte, 40))
	if !o.pushWait(context.Background(), make([]byte, 10), nil) {
		t.Fatal("a paced message refused with half the queue free")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if o.pushWait(ctx, make([]byte, 10), nil) {
		t.Fatal("a paced message queued past half the bound")
	}
	if dropped := o.push(make([]byte, 40)); dropped != 0 {
		t.Fatalf("a live message pushed %d out", dropped)
	}
	var empty outbox
	empty.init(100)
	if !empty.pushWait(context.Background(), make([]byte, 500), nil) {
		t.Fatal("a paced message larger than the bound refused by an empty queue")
	}
}

// TestJoinedRunsOnceAtATimePerPeer: a run of Joined may wait for room
// in the peer's queue; asked for again meanwhile (a repair, the peer
// back), it runs once more after, not alongside.
func TestJoinedRunsOnceAtATimePerPeer(t *testing.T) {
	release := make(chan struct{})
	var runs, concurrent, most atomic.Int64
	o := fastOptions()
	o.Joined = func(peer string) {
		if peer != "b" {
			return
		}
		n := concurrent.Add(1)
		for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
		}
		if runs.Add(1) == 1 {
			<-release
		}
		concurrent.Add(-1)
	}
	a := startNode(t, "a", "", nil, o)
	a.r.mu.Lock()
	for range 3 {
		a.r.joinedLocked("b")
	}
	a.r.mu.Unlock()
	testutil.Eventually(t, 5*time.Second, "the first run", func() bool { return runs.Load() == 1 })
	close(release)
	testutil.Eventually(t, 5*time.Second, "one more run", func() bool { return runs.Load() == 2 })
	testutil.Eventually(t, 5*time.Second, "no run left", func() bool {
		a.r.mu.Lock()
		defer a.r.mu.Unlock()
		return len(a.r.joins) == 0
	})
	if runs.Load() != 2 || most.Load() != 1 {
		t.Fatalf("%d runs, %d at once", runs.Load(), most.Load())
	}
}

// TestPacedRunGivesWayToTheNextJoined: a run of Joined pacing a large
// retained set into the queue of a peer that takes nothing stops once
// another run is asked for (the peer restarted), so that the next run's
// hello and wills do not wait behind the rest of it.
func TestPacedRunGivesWayToTheNextJoined(t *testing.T) {
	faults := rpcmux.NewFaults()
	o := fastOptions()
	o.MaxQueuedBytes = 100
	var runs atomic.Int64
	var a *testNode
	o.Joined = func(peer string) {
		if peer != "b" {
			return
		}
		if runs.Add(1) == 1 {
			for i := range 1000 { // never room for all: b takes nothing
				a.r.SendPaced(peer, []byte(fmt.Sprintf("%09d", i)))
			}
		}
	}
	a = startNode(t, "a", "", faults, o)
	b := startNode(t, "b", "", faults, fastOptions())
	faults.Partition(a.addr(), b.addr())
	a.r.SetPeers([]Peer{{ID: "b", Addr: b.addr()}})
	testutil.Eventually(t, 5*time.Second, "the first run waits for room", func() bool {
		a.r.mu.Lock()
		defer a.r.mu.Unlock()
		return runs.Load() == 1 && a.r.joins["b"] == joinRunning
	})
	a.r.mu.Lock()
	a.r.joinedLocked("b") // b restarted
	a.r.mu.Unlock()
	testutil.Eventually(t, 5*time.Second, "the second run", func() bool { return runs.Load() == 2 })
}

func TestQueueBoundDropsOldest(t *testing.T) {
	faults := rpcmux.NewFaults()
	o := fastOptions()
	o.MaxQueuedBytes = 100
	var joined atomic.Int64 // a's Joined calls for b: at the start, and after the overflow drained
	o.Joined = func(peer string) {
		if peer == "b" {
			joined.Add(1)
		}
	}
	a, b := startNode(t, "a", "", faults, o), startNode(t, "b", "", faults, o)
	mesh(a, b)
	b.r.SetClient("cb", []string{"t"})
	faults.Partition(a.addr(), b.addr())
	for i := range 100 {
		a.r.Forward("t", []byte(fmt.Sprintf("%09d", i))) // 10 bytes each
	}
	if d := a.r.Stats().Dropped; d < 80 {
		t.Fatalf("dropped %d messages of 100 with room for 10", d)
	}
	faults.Heal()
	testutil.Eventually(t, 10*time.Second, "Joined runs again once the queue drained", func() bool { return joined.Load() >= 2 })
	testutil.Eventually(t, 10*time.Second, "the newest arrive", func() bool {
		got := b.in.got()
		return len(got) > 0 && got[len(got)-1] == fmt.Sprintf("%09d", 99)
	})
	got := b.in.got()
	if !slices.IsSorted(got) {
		t.Fatalf("out of order: %v", got)
	}
}

// TestMessageThePeerCanNeverTakeIsDropped: a batch over the largest
// frame fails however often it is sent; retried for ever, it held up
// everything queued behind it for as long as the peer stayed.
func TestMessageThePeerCanNeverTakeIsDropped(t *testing.T) {
	a, b := startNode(t, "a", "", nil, fastOptions()), startNode(t, "b", "", nil, fastOptions())
	mesh(a, b)
	b.r.SetClient("cb", []string{"t"})
	a.r.Forward("t", make([]byte, rpcmux.MaxFrame+1))
	testutil.Eventually(t, 10*time.Second, "the oversized message dropped", func() bool { return a.r.Stats().Dropped == 1 })
	a.r.Forward("t", []byte("small"))
	testutil.Eventually(t, 10*time.Second, "the next message arrives", func() bool {
		got := b.in.got()
		return len(got) == 1 && got[0] == "small"
	})
}

// TestDeliveryToARouterNotRegisteredYetIsRetried: a node restarted on
// the same address fails deliver calls ("no handler") until its router
// is registered; the messages wait for it rather than being dropped.
func TestDeliveryToARouterNotRegisteredYetIsRetried(t *testing.T) {
	log := testutil.Logger().With("node", "a")
	mux, err := rpcmux.Listen("127.0.0.1:0", rpcmux.Options{NodeID: "a", Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	a := &testNode{id: "a", mux: mux, in: &inbox{}}
	calls := &failureCounter{Caller: mux}
	o := fastOptions()
	o.Self, o.Caller, o.Deliver, o.Logger = "a", calls, a.in, log
	a.r = New(o)
	mux.Handle(SyncService, a.r.HandleSync)
	mux.Handle(DeliverService, a.r.HandleDeliver)
	t.Cleanup(a.stop)
	// c: a node whose router is not registered yet.
	cmux, err := rpcmux.Listen("127.0.0.1:0", rpcmux.Options{NodeID: "c", Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	c := &testNode{id: "c", mux: cmux, in: &inbox{}}
	co := fastOptions()
	co.Self, co.Caller, co.Deliver, co.Logger = "c", cmux, c.in, log
	c.r = New(co)
	cmux.Handle(SyncService, c.r.HandleSync) // not DeliverService yet
	t.Cleanup(c.stop)
	mesh(a, c)
	c.r.SetClient("cc", []string{"t"})
	a.r.Forward("t", []byte("m1"))
	testutil.Eventually(t, 10*time.Second, "a deliver call failed for want of a handler, and sent again", func() bool { return calls.failed.Load() >= 2 })
	cmux.Handle(DeliverService, c.r.HandleDeliver)
	testutil.Eventually(t, 10*time.Second, "m1 delivered once c serves", func() bool {
		got := c.in.got()
		return len(got) == 1 && got[0] == "m1"
	})
	if d := a.r.Stats().Dropped; d != 0 {
		t.Fatalf("%d dropped", d)
	}
	// A handler's own failure (an earlier version refusing a batch it
	// cannot decode) is not retried.
	if !permanent(fmt.Errorf("%w: routes: bad batch", rpcmux.ErrRemote)) || permanent(calls.last()) {
		t.Fatalf("a handler's failure is retried, or the missing handler is not: %v", calls.last())
	}
}

// failureCounter counts the deliver calls that failed.
type failureCounter struct {
	Caller
	failed  atomic.Int64
	mu      sync.Mutex
	lastErr error
}

func (f *failureCounter) Call(ctx context.Context, addr, service string, req []byte) ([]byte, error) {
	resp, err := f.Caller.Call(ctx, addr, service, req)
	if service == DeliverService && err != nil {
		f.failed.Add(1)
		f.mu.Lock()
		f.lastErr = err
		f.mu.Unlock()
	}
	return resp, err
}

func (f *failureCounter) last() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.lastErr
}

func TestMalformedRequestsAreRefused(t *testing.T) {
	a := startNode(t, "a", "", nil, fastOptions())
	for _, req := range [][]byte{nil, {9}, {wireVersion1, 7}, {wireVersion1, syncFull, 1}, append(encodeUpdate(update{kind: syncFull, adds: []string{"x"}}), 0)} {
		if _, err := a.r.HandleSync(context.Background(), "b", req); err == nil {
			t.Errorf("sync %x accepted", req)
		}
	}
	for _, req := range [][]byte{nil, {2}, {wireVersion1, 5, 1}, {wireVersion1, 1, 10, 'x'}} {
		if resp, err := a.r.HandleDeliver(context.Background(), "b", req); err != nil || len(resp) != 1 || resp[0] != deliverRefused {
			t.Errorf("batch %x answered %x, %v", req, resp, err)
		}
	}
	if s := a.r.Stats(); len(s.RemoteFilters) != 0 || s.Received != 0 {
		t.Fatalf("state changed by malformed requests: %+v", s)
	}
}

func TestWireRoundTrip(t *testing.T) {
	u := update{kind: syncDelta, incarnation: 1 << 60, base: 7, version: 9, adds: []string{"a/+", ""}, removes: []string{"b/#"}}
	got, err := decodeUpdate(encodeUpdate(u))
	if err != nil || got.kind != u.kind || got.incarnation != u.incarnation || got.base != 7 || got.version != 9 ||
		!slices.Equal(got.adds, u.adds) || !slices.Equal(got.removes, u.removes) {
		t.Fatalf("update round trip: %+v, %v", got, err)
	}
	msgs := [][]byte{[]byte("one"), {}, []byte("three")}
	back, err := decodeBatch(encodeBatch(msgs))
	if err != nil || len(back) != 3 || string(back[0]) != "one" || len(back[1]) != 0 || string(back[2]) != "three" {
		t.Fatalf("batch round trip: %q, %v", back, err)
	}
}

func FuzzDecode(f *testing.F) {
	f.Add(encodeUpdate(update{kind: syncFull, adds: []string{"a"}}))
	f.Add(encodeBatch([][]byte{[]byte("m")}))
	f.Fuzz(func(t *testing.T, b []byte) {
		if u, err := decodeUpdate(b); err == nil {
			if _, err := decodeUpdate(encodeUpdate(u)); err != nil {
				t.Fatalf("re-encoded update does not decode: %v", err)
			}
		}
		if m, err := decodeBatch(b); err == nil {
			if _, err := decodeBatch(encodeBatch(m)); err != nil {
				t.Fatalf("re-encoded batch does not decode: %v", err)
			}
		}
	})
}

// TestUnreachablePeerDelaysOneSubscribeOnly: with a peer unreachable, the
// first SetClient waits SyncWait; later ones for filters already waiting
// on that peer do not wait again until it caught up.
func TestUnreachablePeerDelaysOneSubscribeOnly(t *testing.T) {
	faults := rpcmux.NewFaults()
	o := fastOptions()
	o.SyncWait = time.Second
	a, b := startNode(t, "a", "", faults, o), startNode(t, "b", "", faults, o)
	mesh(a, b)
	faults.Partition(a.addr(), b.addr())
	b.r.SetClient("c0", []string{"same", "own/0"}) // waits SyncWait
	b.r.mu.Lock()
	lagging := b.r.peers["a"].lagging
	b.r.mu.Unlock()
	if !lagging {
		t.Fatal("a peer that missed the deadline is not marked lagging")
	}
	// Were a waited for again, these would take 9 s at least.
	start := time.Now()
	for i := 1; i < 10; i++ {
		b.r.SetClient(fmt.Sprintf("c%d", i), []string{"same", fmt.Sprintf("own/%d", i)})
	}
	if took := time.Since(start); took > 6*o.SyncWait {
		t.Fatalf("9 subscriptions with a lagging peer took %v (SyncWait %v)", took, o.SyncWait)
	}
	faults.Heal()
	testutil.Eventually(t, 10*time.Second, "a learns every filter", func() bool { return a.r.Wanted("same") && a.r.Wanted("own/9") })
	// b learns that a caught up (a's answer) a moment after a has the
	// filters.
	testutil.Eventually(t, 10*time.Second, "b to see a caught up", func() bool {
		b.r.mu.Lock()
		defer b.r.mu.Unlock()
		return !b.r.peers["a"].lagging
	})
	// Caught up: it is waited for again.
	b.r.SetClient("late", []string{"late"})
	if !a.r.Wanted("late") {
		t.Fatal("SetClient returned before the caught-up peer knew the filter")
	}
}

func TestDesignatedCountsOnlyAlivePeers(t *testing.T) {
	alive := map[string]bool{"a": true, "c": true}
	o := fastOptions()
	o.Alive = func(id string) bool { return alive[id] }
	n := map[string]*testNode{}
	for _, id := range []string{"a", "b", "c"} {
		n[id] = startNode(t, id, "", nil, o)
	}
	mesh(n["a"], n["b"], n["c"])
	// b is suspect (not alive): c acts for a failed a, not waiting for b.
	if !n["c"].r.Designated("a") {
		t.Fatal("c does not act for a while b, lower, is only suspect")
	}
	if n["c"].r.Designated("x") {
		t.Fatal("c acts for x while a, alive and lower, is up")
	}
	if n["a"].r.Designated("a") {
		t.Fatal("a node acts for itself")
	}
}

func TestHugeCountsAreRefused(t *testing.T) {
	// A frame of 1,000,000 empty messages is refused, not decoded into a
	// million slices.
	b := []byte{wireVersion1, 0xc0, 0x84, 0x3d} // uvarint 1,000,000
	b = append(b, make([]byte, 1_000_000)...)
	if _, err := decodeBatch(b); !errors.Is(err, ErrBadFrame) {
		t.Fatalf("a batch of 1,000,000 messages: %v", err)
	}
	// The most a sender puts in one batch decodes.
	msgs := make([][]byte, maxBatchMessages)
	if got, err := decodeBatch(encodeBatch(msgs)); err != nil || len(got) != maxBatchMessages {
		t.Fatalf("a full batch: %d, %v", len(got), err)
	}
}

// TestFiltersWaitUntilThePeerCountsTheNodeUp: a node that restarted is up
// in its own membership before the others' membership sees it. A peer that
// does not count it up yet refuses its filters, so SetClient waits for that
// peer, and returns once the peer counts it up and took them: from then on
// the peer forwards to it. Before, the peer took the filters from a node
// it had no link to, SetClient returned, and messages published there for
// the node's subscribers went nowhere (TestStaleSessionOfARestartedNode...
// lost its live/new message in CI).
func TestFiltersWaitUntilThePeerCountsTheNodeUp(t *testing.T) {
	a, b := startNode(t, "a", "", nil, fastOptions()), startNode(t, "b", "", nil, fastOptions())
	a.r.SetPeers([]Peer{{ID: "b", Addr: b.addr()}}) // b does not count a up yet
	set := make(chan struct{})
	go func() {
		defer close(set)
		a.r.SetClient("sub1", []string{"t/+"})
	}()
	select {
	case <-set:
		t.Fatal("SetClient returned although b did not take the filter")
	case <-time.After(300 * time.Millisecond): // well within SyncWait
	}
	if b.r.Wanted("t/1") {
		t.Fatal("b took the filter of a node it cannot forward to")
	}
	b.r.SetPeers([]Peer{{ID: "a", Addr: a.addr()}})
	select {
	case <-set:
	case <-time.After(5 * time.Second):
		t.Fatal("SetClient did not return once b counted a up")
	}
	if !b.r.Wanted("t/1") {
		t.Fatal("SetClient returned but b does not route t/1 to a")
	}
	b.r.Forward("t/1", []byte("m"))
	testutil.Eventually(t, 5*time.Second, "a receives b's message", func() bool { return slices.Equal(a.in.got(), []string{"m"}) })
}

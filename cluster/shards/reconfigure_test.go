package shards

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/mqstream/mqstream/internal/testutil"
	"github.com/mqstream/mqstream/streams"
)

// replaced returns the next version of l with node old replaced by p in
// every shard (in its place), or removed when p is nil; only shards
// lists the shards changed (all when empty).
func replaced(l Layout, old string, p *Peer, shards ...int) Layout {
	out := l.clone()
	out.Version++
	for i, peers := range out.Shards {
		if len(shards) > 0 && !slices.Contains(shards, i) {
			continue
		}
		k := slices.IndexFunc(peers, func(q Peer) bool { return q.ID == old })
		switch {
		case k < 0:
		case p == nil:
			out.Shards[i] = slices.Delete(peers, k, k+1)
		default:
			peers[k] = *p
		}
	}
	return out
}

// waitConfigured waits until every shard's leader has the layout's
// replicas, and no other server, as voters of its configuration.
func (c *cluster) waitConfigured() {
	c.t.Helper()
	var why string
	defer func() {
		if c.t.Failed() {
			c.t.Logf("last difference: %s", why)
		}
	}()
	testutil.Eventually(c.t, 15*time.Second, "every shard's configuration to be the layout's", func() bool {
		for i, peers := range c.layout.Shards {
			var want []string
			for _, p := range peers {
				want = append(want, p.ID)
			}
			sort.Strings(want)
			leader := c.leaderOf(i)
			if leader == nil {
				why = fmt.Sprintf("shard %d has no leader", i)
				return false
			}
			cfg := leader.raft.GetConfiguration()
			if cfg.Error() != nil {
				return false
			}
			var got []string
			for _, srv := range cfg.Configuration().Servers {
				if srv.Suffrage == raft.Voter {
					got = append(got, string(srv.ID))
				}
			}
			sort.Strings(got)
			if !slices.Equal(got, want) || len(cfg.Configuration().Servers) != len(want) {
				why = fmt.Sprintf("shard %d: voters %v of %d servers, want %v", i, got, len(cfg.Configuration().Servers), want)
				return false
			}
		}
		return true
	})
}

// leaderOf returns the running replica that leads shard, if any.
func (c *cluster) leaderOf(shard int) *replica {
	for _, nd := range c.nodes {
		if set, _ := nd.running(); set != nil {
			if r := set.replica(shard); r != nil && r.isLeader() {
				return r
			}
		}
	}
	return nil
}

// writer appends to one stream of every shard through the given nodes in
// turn until stopped, and remembers what was acknowledged.
type writer struct {
	streams []string
	wg      sync.WaitGroup
	stopc   chan struct{}
	refused atomic.Int64 // appends that failed
	mu      sync.Mutex   // guards acked and lastErr
	acked   map[string]map[uint64]string
	lastErr error
}

func startWriter(t *testing.T, shards int, via ...*testNode) *writer {
	w := &writer{stopc: make(chan struct{}), acked: map[string]map[uint64]string{}}
	for i := 0; i < shards; i++ {
		s := streamOfShard(t, i, shards)
		w.streams = append(w.streams, s)
		w.acked[s] = map[uint64]string{}
	}
	w.wg.Add(1)
	go func() {
		defer w.wg.Done()
		for k := 0; ; k++ {
			select {
			case <-w.stopc:
				return
			default:
			}
			set, _ := via[k%len(via)].running()
			if set == nil {
				continue
			}
			s := w.streams[k%len(w.streams)]
			payload := fmt.Sprintf("%s-%d", s, k)
			off, err := set.Append(context.Background(), s, streams.Record{Topic: "t", Payload: []byte(payload), QoS: 1})
			w.mu.Lock()
			if err != nil {
				w.refused.Add(1)
				w.lastErr = err
			} else {
				w.acked[s][off] = payload
			}
			w.mu.Unlock()
		}
	}()
	return w
}

// count returns how many appends were acknowledged.
func (w *writer) count() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	n := 0
	for _, m := range w.acked {
		n += len(m)
	}
	return n
}

// waitMore waits until n more appends are acknowledged.
func (w *writer) waitMore(t *testing.T, n int) {
	t.Helper()
	want := w.count() + n
	testutil.Eventually(t, 15*time.Second, fmt.Sprintf("%d appends acknowledged", want), func() bool { return w.count() >= want })
}

func (w *writer) stop() {
	close(w.stopc)
	w.wg.Wait()
}

// checkAcked fails unless store holds every acknowledged record at its
// offset.
func (w *writer) checkAcked(t *testing.T, id string, store *streams.Store) {
	t.Helper()
	for s, acked := range w.acked {
		got, err := store.Read(s, 0, streams.ReadOptions{MaxRecords: 1 << 20})
		if err != nil {
			t.Fatalf("%s: read %s: %v", id, s, err)
		}
		for off, payload := range acked {
			if off >= uint64(len(got)) || string(got[off].Payload) != payload {
				t.Fatalf("%s: %s: acknowledged %q at offset %d is missing (%d records)", id, s, payload, off, len(got))
			}
		}
	}
}

// TestReplaceADeadNode: of three nodes (RF 3), n3 dies for good while
// appends go on; every node is given a layout where n4, a new node with
// an empty store, replaces n3. Every shard's group ends with n1, n2 and
// n4 as voters, n4 gets a snapshot (the logs were compacted) and catches
// up from its peers: it holds every stream with the same records at the
// same offsets; nothing acknowledged is lost, and appends go on
// succeeding.
func TestReplaceADeadNode(t *testing.T) {
	const shards = 4
	c := newClusterWith(t, 3, shards, 3, compactingTimers())
	c.waitLeaders()
	n1, n2, n3 := c.nodes[0], c.nodes[1], c.nodes[2]
	w := startWriter(t, shards, n1, n2)
	w.waitMore(t, 40)
	c.snapshotAll() // a new replica can only catch up from a snapshot
	w.waitMore(t, 20)

	n3.stop()
	w.waitMore(t, 20)
	n4 := c.addNode(Peer{ID: "n4", RPC: "n4:7947"})
	if st := n4.set.Status(); st[0].Local || n4.set.Serves(0) {
		t.Fatalf("n4 holds shard 0 before the layout places it there: %+v", st[0])
	}
	c.update(replaced(c.layout, "n3", &n4.self))
	c.waitConfigured()
	w.waitMore(t, 40)
	// Appends after the change: none is refused.
	before := w.refused.Load()
	w.waitMore(t, 40)
	w.stop()
	if n := w.refused.Load() - before; n > 0 {
		t.Fatalf("%d appends refused after the reconfiguration (last: %v)", n, w.lastErr)
	}
	t.Logf("%d appends acknowledged, %d refused (the last: %v)", w.count(), w.refused.Load(), w.lastErr)

	c.identical()
	for _, nd := range []*testNode{n1, n2, n4} {
		w.checkAcked(t, nd.self.ID, nd.store)
	}
	for i := 0; i < shards; i++ {
		if got, _ := n4.store.AppliedIndexOf(groupName(i) + restoreSuffix); got == 0 {
			t.Fatalf("shard %d: n4 caught up without a snapshot (the log was not compacted?)", i)
		}
		if st := n4.set.Status()[i]; !st.Local || !slices.Contains(st.Replicas, "n4") || slices.Contains(st.Replicas, "n3") {
			t.Fatalf("shard %d on n4: %+v", i, st)
		}
		testutil.Eventually(t, 10*time.Second, fmt.Sprintf("n4's caught-up replica of shard %d to serve reads", i), func() bool { return n4.set.Serves(i) })
	}
	if ok, why := n4.set.Ready(); !ok {
		t.Fatalf("n4 not ready: %s", why)
	}
}

// TestRemoveANode: n3, alive, is removed from every shard of a
// three-node cluster (RF 3): it hands over the shard it leads, the
// groups go on with n1 and n2, n3 closes its replicas and drops their
// data, and appends go on succeeding.
func TestRemoveANode(t *testing.T) {
	const shards = 3
	c := newCluster(t, 3, shards, 3)
	c.waitLeaders()
	n1, n2, n3 := c.nodes[0], c.nodes[1], c.nodes[2]
	w := startWriter(t, shards, n1, n2, n3)
	w.waitMore(t, 30)
	// n3 leads the shard it prefers (2): it must hand it over.
	testutil.Eventually(t, 15*time.Second, "n3 to lead shard 2", func() bool {
		r := n3.set.replica(2)
		return r != nil && r.isLeader()
	})

	c.update(replaced(c.layout, "n3", nil))
	c.waitConfigured()
	for i := 0; i < shards; i++ {
		n3.waitDropped(t, i, shards)
	}
	w.waitMore(t, 30)
	w.stop()
	c.identical()
	for _, nd := range []*testNode{n1, n2} {
		w.checkAcked(t, nd.self.ID, nd.store)
	}
	for i := 0; i < shards; i++ {
		if st := n3.set.Status()[i]; st.Local || slices.Contains(st.Replicas, "n3") {
			t.Fatalf("shard %d on n3: %+v", i, st)
		}
	}
	// n3 still takes appends, forwarding them to the shards' replicas.
	for _, s := range w.streams {
		if _, err := n3.set.Append(context.Background(), s, recs("via-n3", 1)...); err != nil {
			t.Fatalf("append to %s through n3: %v", s, err)
		}
	}
}

// waitDropped waits until the node holds nothing of shard: no replica,
// no Raft state, no streams, no markers, an empty namespace.
func (nd *testNode) waitDropped(t *testing.T, shard, shards int) {
	nd.waitDroppedKeeping(t, shard, shards, false)
}

// waitDroppedKeeping is waitDropped; with raftKept the Raft state is
// expected to stay (a drop that could not know whether the group still
// counts this node).
func (nd *testNode) waitDroppedKeeping(t *testing.T, shard, shards int, raftKept bool) {
	t.Helper()
	var why string
	defer func() {
		if t.Failed() {
			t.Logf("%s, shard %d: %s", nd.self.ID, shard, why)
		}
	}()
	testutil.Eventually(t, 15*time.Second, nd.self.ID+" to drop shard "+fmt.Sprint(shard), func() bool {
		why = nd.held(shard, shards, raftKept)
		return why == ""
	})
	if raftKept && !nd.hasRaftState(groupName(shard)) {
		t.Fatalf("%s, shard %d: the Raft state was dropped", nd.self.ID, shard)
	}
}

// held says what the node holds of shard ("" if nothing).
func (nd *testNode) held(shard, shards int, raftKept bool) string {
	if nd.set.replica(shard) != nil {
		return "a replica"
	}
	if nd.hasRaftState(groupName(shard)) && !nd.c.noDrop && !raftKept {
		return "Raft state"
	}
	if st := shardStreams(nd.store, shard, shards); len(st) > 0 {
		return fmt.Sprintf("streams %v", st)
	}
	for _, log := range []string{groupName(shard), groupName(shard) + restoreSuffix} {
		if got, err := nd.store.AppliedIndexOf(log); err != nil || got != 0 {
			return fmt.Sprintf("marker %s at %d (%v)", log, got, err)
		}
	}
	err := nd.store.KV(kvNamespace(shard)).Scan(nil, func(k, _ []byte) error { return fmt.Errorf("key %q", k) })
	if err != nil {
		return fmt.Sprintf("namespace: %v", err)
	}
	return ""
}

// TestReplicaMovedAwayAndBack: shard 0 is moved away from n3 (the other
// shard stays): n3 closes that replica and drops its streams, key/value
// namespace, markers and Raft state; given back later, while writes went
// on, it starts clean, is added again and catches up to the same
// records, offsets and namespace as the others. Without Options.Drop,
// the replica given back restarts from the Raft state it kept.
func TestReplicaMovedAwayAndBack(t *testing.T) {
	for _, keep := range []bool{false, true} {
		t.Run(map[bool]string{false: "drop Raft state", true: "keep Raft state"}[keep], func(t *testing.T) {
			testReplicaMovedAwayAndBack(t, keep)
		})
	}
}

func testReplicaMovedAwayAndBack(t *testing.T, keepRaftState bool) {
	const shards = 2
	c := newClusterWith(t, 3, shards, 3, LocalTimers(), func(c *cluster) { c.noDrop = keepRaftState })
	c.waitLeaders()
	ctx := context.Background()
	n1, n3 := c.nodes[0], c.nodes[2]
	s0, s1 := streamOfShard(t, 0, shards), streamOfShard(t, 1, shards)
	writeKV := func(key string) {
		t.Helper()
		testutil.Eventually(t, 10*time.Second, "a key/value write to shard 0", func() bool {
			for _, nd := range c.nodes {
				if set, _ := nd.running(); set != nil {
					if term, ok := set.Lead(0); ok {
						return set.WriteKV(ctx, 0, term, []streams.KVWrite{{Key: []byte(key), Value: []byte("v-" + key)}}) == nil
					}
				}
			}
			return false
		})
	}
	appendN := func(s string, n int) {
		t.Helper()
		for k := 0; k < n; k++ {
			if _, err := n1.set.Append(ctx, s, recs(fmt.Sprint(s, k), 3)...); err != nil {
				t.Fatalf("append to %s: %v", s, err)
			}
		}
	}
	appendN(s0, 5)
	appendN(s1, 5)
	writeKV("a")
	c.identical()

	c.update(replaced(c.layout, "n3", nil, 0))
	c.waitConfigured()
	n3.waitDropped(t, 0, shards)
	if n3.set.replica(1) == nil {
		t.Fatal("n3 closed shard 1, which the layout still places there")
	}
	appendN(s0, 5)
	appendN(s1, 5)
	writeKV("b")
	if _, err := n1.set.CreateStream(ctx, "x"+s0, streams.Retention{MaxRecords: 100}); err != nil && !errors.Is(err, streams.ErrStreamExists) {
		t.Fatal(err)
	}
	c.identical()

	back := c.layout.clone()
	back.Version++
	back.Shards[0] = append(back.Shards[0], n3.self)
	c.update(back)
	c.waitConfigured()
	c.identical() // n3 included again
	appendN(s0, 3)
	c.identical()

	// Restarted with a later layout, n3 opens its replicas without
	// bootstrapping them and goes on.
	n3.stop()
	appendN(s0, 2)
	n3.start()
	c.waitLeaders()
	appendN(s0, 2)
	c.identical()
}

// TestFourthNodeJoins: a fourth node joins a three-node cluster (RF 3)
// under load and is given its share of the replicas (Replan): live nodes
// hand shards over to it, every group ends with the layout's replicas,
// the nodes that lost a shard drop its data, and the stores holding each
// shard are identical. The new node's store held stale data of a shard it
// is given (a marker far ahead, a stream, a key): it is cleared, not
// applied over.
func TestFourthNodeJoins(t *testing.T) {
	const shards = 6
	c := newCluster(t, 3, shards, 3)
	c.waitLeaders()
	w := startWriter(t, shards, c.nodes...)
	w.waitMore(t, 30)

	n4 := c.addNode(Peer{ID: "n4", RPC: "n4:7947"})
	var cands []Candidate
	for _, nd := range c.nodes {
		cands = append(cands, Candidate{Peer: nd.self, Place: true})
	}
	next := Replan(c.layout, cands, 3, nil)
	given := heldBy(next, "n4")
	if len(given) == 0 {
		t.Fatalf("the plan gives n4 nothing: %+v", next)
	}
	stale := streamOfShard(t, given[0], shards)
	errc := make(chan error, 1)
	if err := n4.store.Submit(streams.AppendRequest{Stream: stale, Records: recs("stale", 3), AppliedLog: groupName(given[0]),
		AppliedIndex: 1 << 30, Done: func(_ uint64, err error) { errc <- err }}); err != nil {
		t.Fatal(err)
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	if err := n4.store.KV(kvNamespace(given[0])).Write(context.Background(), streams.KVWrite{Key: []byte("stale"), Value: []byte("x")}); err != nil {
		t.Fatal(err)
	}

	c.update(next)
	c.waitConfigured()
	for i := 0; i < shards; i++ {
		for _, nd := range c.nodes {
			if !next.Holds(i, nd.self.ID) {
				nd.waitDropped(t, i, shards)
			}
		}
	}
	w.waitMore(t, 30)
	w.stop()
	c.identical()
	for _, nd := range c.nodes {
		if set, _ := nd.running(); set != nil {
			for i, st := range set.Status() {
				if st.Local != next.Holds(i, nd.self.ID) {
					t.Fatalf("shard %d on %s: %+v, layout %v", i, nd.self.ID, st, next.Shards[i])
				}
			}
		}
	}
	t.Logf("%d appends acknowledged, %d refused (the last: %v)", w.count(), w.refused.Load(), w.lastErr)
}

// TestDataOfAShardMovedAwayWhileDownIsDropped: n3 is down while the
// layout moves all its shards to n4; restarted with that layout, it opens
// no replica, drops what its store kept of them, and their Raft state
// once each shard's leader says the group no longer lists it.
func TestDataOfAShardMovedAwayWhileDownIsDropped(t *testing.T) {
	const shards = 3
	timers := LocalTimers()
	timers.Orphaned = 500 * time.Millisecond
	c := newClusterWith(t, 3, shards, 3, timers)
	c.waitLeaders()
	ctx := context.Background()
	n1, n3 := c.nodes[0], c.nodes[2]
	for i := 0; i < shards; i++ {
		if _, err := n1.set.Append(ctx, streamOfShard(t, i, shards), recs("a", 2)...); err != nil {
			t.Fatal(err)
		}
	}
	c.identical()
	n3.stop()
	n4 := c.addNode(Peer{ID: "n4", RPC: "n4:7947"})
	c.update(replaced(c.layout, "n3", &n4.self))
	c.waitConfigured()
	n3.start()
	for i := 0; i < shards; i++ {
		// Its Raft state goes too, once the shard's leader has said that
		// a committed configuration no longer lists n3 (a voter must not
		// come back with an empty log, so n3 does not drop it before).
		n3.waitDroppedKeeping(t, i, shards, false)
	}
	c.identical()
}

// TestUpdateRefusesBadLayouts: another shard count, an older version,
// another layout under the current version, a shard without replicas, a
// replica listed twice: refused with the reason; the same layout again
// is ignored; a closed set refuses a layout.
func TestUpdateRefusesBadLayouts(t *testing.T) {
	c := newCluster(t, 1, 2, 1)
	set := c.nodes[0].set
	cur := set.Layout()
	next := cur.clone()
	next.Version = 2
	if err := set.Update(next); err != nil {
		t.Fatal(err)
	}
	if err := set.Update(next); err != nil {
		t.Fatalf("the same layout again: %v", err)
	}
	three, _ := Plan([]Peer{c.nodes[0].self}, 3, 1)
	three.Version = 3
	dup := next.clone()
	dup.Version = 3
	dup.Shards[1] = append(dup.Shards[1], dup.Shards[1][0])
	empty := next.clone()
	empty.Version = 3
	empty.Shards[0] = nil
	other := replaced(next, "n1", &Peer{ID: "n9", RPC: "n9:7947"})
	other.Version = 2
	for _, tc := range []struct {
		name   string
		layout Layout
		want   error
	}{
		{"another shard count", three, ErrBadLayout},
		{"an older version", cur, ErrStaleLayout},
		{"another layout of the same version", other, ErrBadLayout},
		{"a replica listed twice", dup, ErrBadLayout},
		{"a shard without replicas", empty, ErrBadLayout},
	} {
		if err := set.Update(tc.layout); !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
		} else {
			t.Logf("%s: %v", tc.name, err)
		}
	}
	if got := set.Layout(); got.Version != 2 || !sameShards(got, next) {
		t.Fatalf("layout %+v after refused updates, want %+v", got, next)
	}
	if _, err := Start(set.opts, three); !errors.Is(err, ErrBadLayout) {
		t.Fatalf("start with another shard count: %v", err)
	}
	_ = set.Close()
	next.Version = 4
	if err := set.Update(next); !errors.Is(err, streams.ErrClosed) {
		t.Fatalf("update of a closed set: %v", err)
	}
}

// TestClearCutShortIsFinished: a node that stopped while clearing its
// part of a shard whose Raft state it keeps (the clearing marker set, a
// stream deleted, the applied-index marker still there) finishes the
// clear when it opens the replica again, and catches up from its log:
// its store must not claim entries whose streams it lost.
func TestClearCutShortIsFinished(t *testing.T) {
	c := newCluster(t, 3, 1, 3)
	c.waitLeaders()
	ctx := context.Background()
	n1, n3 := c.nodes[0], c.nodes[2]
	for _, stream := range []string{"a", "b"} {
		if _, err := n1.set.Append(ctx, stream, recs(stream, 3)...); err != nil {
			t.Fatal(err)
		}
	}
	c.identical()
	n3.stop()
	store, err := streams.Open(streams.Options{Dir: n3.dir, AutoCreate: true, MaxRecordBytes: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	if err := submitWait(store, streams.AppendRequest{AppliedLog: groupName(0) + clearingSuffix, AppliedIndex: 1}); err != nil {
		t.Fatal(err)
	}
	if err := store.DeleteStream(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	if err := store.Close(); err != nil {
		t.Fatal(err)
	}
	n3.start()
	c.identical()
	_, st := n3.running()
	if v, err := st.AppliedIndexOf(groupName(0) + clearingSuffix); err != nil || v != 0 {
		t.Fatalf("clearing marker after the restart: %d %v", v, err)
	}
}

// TestReplicaAddedAsANonVoterUntilCaughtUp: n3 dies, and membership sees
// it come back (it does not answer yet) just as the layout replaces it
// with n4, which is up but has not started either. n3 is not removed
// first (it looks up), so each group gets n4 while n3 is still a voter:
// as a voter, n4 would make four of which two cannot answer, and the
// group's writes would stall. As a non-voter it leaves n1 and n2 a
// majority: appends go on. Once n4 runs and has caught up, it is made a
// voter and n3 is removed.
func TestReplicaAddedAsANonVoterUntilCaughtUp(t *testing.T) {
	const shards = 2
	c := newCluster(t, 3, shards, 3)
	c.waitLeaders()
	n3 := c.nodes[2]
	w := startWriter(t, shards, c.nodes[0], c.nodes[1])
	w.waitMore(t, 20)
	n3.stop()
	w.waitMore(t, 20)

	n4 := Peer{ID: "n4", RPC: "n4:7947"}
	c.mu.Lock()
	c.seenAlive = map[string]bool{"n3": true, "n4": true}
	c.mu.Unlock()
	c.update(replaced(c.layout, "n3", &n4))
	testutil.Eventually(t, 15*time.Second, "n4 to be a non-voter of every shard's group", func() bool {
		return c.everyGroup(shards, func(_ int, servers []raft.Server) bool { return hasServer(servers, "n4", raft.Nonvoter) })
	})
	before := w.refused.Load()
	w.waitMore(t, 40)
	if n := w.refused.Load() - before; n > 0 {
		t.Fatalf("%d appends refused while n4 was a non-voter (last: %v)", n, w.lastErr)
	}

	c.addNode(n4)
	c.waitConfigured()
	w.waitMore(t, 40)
	w.stop()
	c.identical()
	for _, nd := range c.nodes {
		if nd != n3 {
			w.checkAcked(t, nd.self.ID, nd.store)
		}
	}
	t.Logf("%d appends acknowledged, %d refused (the last: %v)", w.count(), w.refused.Load(), w.lastErr)
}

// TestSuspectReplicaIsKeptUntilItsReplacementCaughtUp: the layout
// replaces n3 with n4 while membership merely suspects n3 (a busy host's
// missed pings): n3 stays a voter while n4 is added as a non-voter (n4
// has not started, so it cannot catch up), and goes only once n4 caught
// up. Removed at once, as a down replica is, it left each group two
// voters and a non-voter: one more failure, and no majority.
func TestSuspectReplicaIsKeptUntilItsReplacementCaughtUp(t *testing.T) {
	const shards = 2
	c := newCluster(t, 3, shards, 3)
	c.waitLeaders()
	w := startWriter(t, shards, c.nodes[0], c.nodes[1])
	w.waitMore(t, 20)

	n4 := Peer{ID: "n4", RPC: "n4:7947"}
	c.mu.Lock()
	c.suspects = map[string]bool{"n3": true}
	c.seenAlive = map[string]bool{"n4": true}
	c.mu.Unlock()
	c.update(replaced(c.layout, "n3", &n4))
	testutil.Eventually(t, 15*time.Second, "n4 to be a non-voter of every shard's group", func() bool {
		return c.everyGroup(shards, func(i int, servers []raft.Server) bool {
			if !hasServer(servers, "n3", raft.Voter) {
				t.Fatalf("shard %d: the suspect n3 was removed before its replacement caught up: %v", i, servers)
			}
			return hasServer(servers, "n4", raft.Nonvoter)
		})
	})

	c.addNode(n4)
	c.waitConfigured()
	w.waitMore(t, 20)
	w.stop()
	c.identical()
	for _, nd := range c.nodes {
		if nd.self.ID != "n3" { // out of the groups now
			w.checkAcked(t, nd.self.ID, nd.store)
		}
	}
}

// everyGroup reports whether each of the first shards groups has a leader
// whose configuration's servers satisfy ok.
func (c *cluster) everyGroup(shards int, ok func(shard int, servers []raft.Server) bool) bool {
	for i := 0; i < shards; i++ {
		leader := c.leaderOf(i)
		if leader == nil {
			return false
		}
		cfg := leader.raft.GetConfiguration()
		if cfg.Error() != nil || !ok(i, cfg.Configuration().Servers) {
			return false
		}
	}
	return true
}

// hasServer reports whether servers holds id with suffrage.
func hasServer(servers []raft.Server, id raft.ServerID, suffrage raft.ServerSuffrage) bool {
	return slices.ContainsFunc(servers, func(srv raft.Server) bool { return srv.ID == id && srv.Suffrage == suffrage })
}

// TestDroppedReplicaStaysUntilItsReplacementIsAVoter: the layout replaces
// n3 with n4, which is added as a non-voter and then suspected (its
// pings missed) while it runs and catches up. n3 stays until n4 is a
// voter, which it is made only once it is alive again: removed once n4
// had caught up, as it was, n3 left the group two voters and a
// non-voter.
func TestDroppedReplicaStaysUntilItsReplacementIsAVoter(t *testing.T) {
	c := newCluster(t, 3, 1, 3)
	c.waitLeaders()
	w := startWriter(t, 1, c.nodes[0], c.nodes[1])
	w.waitMore(t, 20)
	n4 := Peer{ID: "n4", RPC: "n4:7947"}
	c.mu.Lock()
	c.seenAlive = map[string]bool{"n4": true}
	c.mu.Unlock()
	c.update(replaced(c.layout, "n3", &n4))
	testutil.Eventually(t, 15*time.Second, "n4 to be a non-voter", func() bool {
		return c.everyGroup(1, func(_ int, servers []raft.Server) bool { return hasServer(servers, "n4", raft.Nonvoter) })
	})
	c.mu.Lock()
	c.suspects = map[string]bool{"n4": true}
	c.mu.Unlock()
	nd4 := c.addNode(n4)
	testutil.Eventually(t, 15*time.Second, "n4 to catch up as a non-voter", func() bool {
		leader := c.leaderOf(0)
		_, store := nd4.running()
		if leader == nil || store == nil {
			return false
		}
		applied, err := store.AppliedIndexOf(groupName(0))
		return err == nil && applied >= leader.fsm.applied.Load()
	})
	leaderSet := func() *Set {
		for _, nd := range c.nodes {
			if set, _ := nd.running(); set != nil && set.replica(0) != nil && set.replica(0).isLeader() {
				return set
			}
		}
		return nil
	}
	set := leaderSet()
	passes := set.reconciled.Load()
	testutil.Eventually(t, 15*time.Second, "five more passes of the leader's manager", func() bool {
		return set.reconciled.Load() >= passes+5
	})
	if !c.everyGroup(1, func(_ int, servers []raft.Server) bool { return hasServer(servers, "n3", raft.Voter) }) {
		t.Fatal("n3 was removed while its replacement n4 was still a non-voter")
	}
	c.mu.Lock()
	c.suspects = nil
	c.mu.Unlock()
	c.waitConfigured()
	w.waitMore(t, 20)
	w.stop()
	c.identical()
}

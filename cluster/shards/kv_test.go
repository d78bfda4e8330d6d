package shards

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/mqstream/mqstream/internal/testutil"
	"github.com/mqstream/mqstream/streams"
)

// Tests of the shards' key/value namespaces (kv.go) on clusters in one
// process (harness_test.go), with real stores.

// kvOf returns a node's replica of shard's namespace as "k=v k=v ...".
func kvOf(t testing.TB, nd *testNode, shard int) string {
	t.Helper()
	return kvString(t, func(fn func(k, v []byte) error) error { return nd.set.ScanKV(shard, nil, fn) })
}

// kvString returns what scan reads as "k=v k=v ...".
func kvString(t testing.TB, scan func(fn func(k, v []byte) error) error) string {
	t.Helper()
	var parts []string
	if err := scan(func(k, v []byte) error {
		parts = append(parts, string(k)+"="+string(v))
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return strings.Join(parts, " ")
}

// sameKV waits until every running replica of shard holds want.
func (c *cluster) sameKV(shard int, want string) {
	c.t.Helper()
	var got string
	testutil.Eventually(c.t, 10*time.Second, fmt.Sprintf("every replica of shard %d to hold %q", shard, want), func() bool {
		for _, nd := range c.nodes {
			if nd.set == nil || !c.layout.Holds(shard, nd.self.ID) {
				continue
			}
			if got = kvOf(c.t, nd, shard); got != want {
				return false
			}
		}
		return true
	})
}

// leadOf waits until a node reports it leads shard, and returns it and
// its term.
func (c *cluster) leadOf(shard int) (*testNode, uint64) {
	c.t.Helper()
	var leader *testNode
	var term uint64
	testutil.Eventually(c.t, 15*time.Second, fmt.Sprintf("a leader of shard %d", shard), func() bool {
		for _, nd := range c.nodes {
			if nd.set == nil {
				continue
			}
			if t, ok := nd.set.Lead(shard); ok {
				leader, term = nd, t
				return true
			}
		}
		return false
	})
	return leader, term
}

// transfer hands shard's leadership from its leader to node to, and
// waits until to reports it leads; it returns the new term.
func (c *cluster) transfer(shard int, from, to *testNode) uint64 {
	c.t.Helper()
	r := from.set.replica(shard)
	if err := r.raft.LeadershipTransferToServer(raft.ServerID(to.self.ID), raft.ServerAddress(to.self.RPC)).Error(); err != nil {
		c.t.Fatalf("transfer shard %d from %s to %s: %v", shard, from.self.ID, to.self.ID, err)
	}
	var term uint64
	testutil.Eventually(c.t, 10*time.Second, "the new leader to lead", func() bool {
		var ok bool
		term, ok = to.set.Lead(shard)
		return ok
	})
	return term
}

// writeKV writes on shard's leader, again if leadership moved meanwhile.
func (c *cluster) writeKV(shard int, writes ...streams.KVWrite) {
	c.t.Helper()
	for {
		leader, term := c.leadOf(shard)
		err := leader.set.WriteKV(context.Background(), shard, term, writes)
		if errors.Is(err, ErrNoLeader) || errors.Is(err, ErrFenced) {
			continue // the balancer, or an election
		}
		if err != nil {
			c.t.Fatalf("shard %d: %v", shard, err)
		}
		return
	}
}

func put(k, v string) streams.KVWrite { return streams.KVWrite{Key: []byte(k), Value: []byte(v)} }

// noBalance are fast timers without the balancer, so that leadership
// moves only when a test moves it.
func noBalance() Timers {
	t := LocalTimers()
	t.Balance = time.Hour
	return t
}

// TestKVReplicatesFromTheLeader: writes on a shard's leader (puts,
// deletes, prefix deletes) are the same on every replica; a follower
// refuses to write; bad writes are refused with a clear error.
func TestKVReplicatesFromTheLeader(t *testing.T) {
	c := newClusterWith(t, 3, 2, 3, noBalance())
	ctx := context.Background()
	for shard := 0; shard < 2; shard++ {
		leader, term := c.leadOf(shard)
		for _, w := range [][]streams.KVWrite{
			{put("g1/a", "1"), put("g1/b", "2"), put("g2/a", "3")},
			{put("g1/a", "10"), {Key: []byte("g2/a"), Delete: true}, put("g3/x", "4")},
			{{Key: []byte("g1/"), DeletePrefix: true}, put("g1/c", "5")},
		} {
			if err := leader.set.WriteKV(ctx, shard, term, w); err != nil {
				t.Fatalf("shard %d: %v", shard, err)
			}
		}
		// Applied on the leader when WriteKV returns.
		want := "g1/c=5 g3/x=4"
		if got := kvOf(t, leader, shard); got != want {
			t.Fatalf("shard %d on the leader: %q, want %q", shard, got, want)
		}
		c.sameKV(shard, want)
		var prefixed []string
		_ = leader.set.ScanKV(shard, []byte("g3/"), func(k, v []byte) error { prefixed = append(prefixed, string(k)); return nil })
		if fmt.Sprint(prefixed) != "[g3/x]" {
			t.Fatalf("scan of a prefix: %v", prefixed)
		}
		for _, nd := range c.nodes {
			if nd == leader {
				continue
			}
			if _, ok := nd.set.Lead(shard); ok {
				t.Fatalf("follower %s says it leads shard %d", nd.self.ID, shard)
			}
			err := nd.set.WriteKV(ctx, shard, term, []streams.KVWrite{put("from-follower", "x")})
			if !errors.Is(err, ErrNoLeader) || !errors.Is(err, streams.ErrUnavailable) {
				t.Fatalf("write on follower %s: %v, want ErrNoLeader", nd.self.ID, err)
			}
		}
		if got := kvOf(t, leader, shard); got != want {
			t.Fatalf("shard %d after the followers' writes: %q", shard, got)
		}
	}
	// The namespaces of two shards are apart.
	leader, term := c.leadOf(0)
	if err := leader.set.WriteKV(ctx, 0, term, []streams.KVWrite{put("only-0", "y")}); err != nil {
		t.Fatal(err)
	}
	c.sameKV(0, "g1/c=5 g3/x=4 only-0=y")
	c.sameKV(1, "g1/c=5 g3/x=4")

	for _, bad := range []struct {
		shard  int
		writes []streams.KVWrite
	}{
		{0, []streams.KVWrite{put("ok", "1"), put("", "empty key")}},
		{0, []streams.KVWrite{{DeletePrefix: true}}},
		{0, []streams.KVWrite{{Key: []byte("k"), Delete: true, Value: []byte("v")}}},
		{0, []streams.KVWrite{put("big", strings.Repeat("x", maxKVBytes))}},
		{2, []streams.KVWrite{put("k", "v")}},
		{-1, []streams.KVWrite{put("k", "v")}},
	} {
		if err := leader.set.WriteKV(ctx, bad.shard, term, bad.writes); !errors.Is(err, ErrInvalidKV) {
			t.Fatalf("bad write %+v on shard %d: %v, want ErrInvalidKV", bad.writes, bad.shard, err)
		}
	}
	if err := leader.set.ScanKV(7, nil, func(k, v []byte) error { return nil }); !errors.Is(err, ErrInvalidKV) {
		t.Fatalf("scan of shard 7 of 2: %v", err)
	}
	c.sameKV(0, "g1/c=5 g3/x=4 only-0=y")
}

// TestKVFencedByTerm: a term captured before a leadership transfer is
// refused by the new leader, by the old one, and by the old one again
// once leadership came back to it (ErrFenced); a write of a stale term
// that reaches the log anyway (proposed past the leader's check) is
// applied on no replica; LeadershipChanged fires on every node at each
// transfer.
func TestKVFencedByTerm(t *testing.T) {
	c := newClusterWith(t, 3, 1, 3, noBalance())
	ctx := context.Background()
	first, t1 := c.leadOf(0)
	if err := first.set.WriteKV(ctx, 0, t1, []streams.KVWrite{put("owner", "first")}); err != nil {
		t.Fatal(err)
	}
	var second *testNode
	for _, nd := range c.nodes {
		if nd != first {
			second = nd
			break
		}
	}
	var changed []<-chan struct{}
	for _, nd := range c.nodes {
		changed = append(changed, nd.set.LeadershipChanged())
	}
	t2 := c.transfer(0, first, second)
	for i, ch := range changed {
		testutil.Eventually(t, 5*time.Second, fmt.Sprintf("LeadershipChanged to fire on %s", c.nodes[i].self.ID), func() bool {
			select {
			case <-ch:
				return true
			default:
				return false
			}
		})
	}
	if t2 <= t1 {
		t.Fatalf("term %d after the transfer, %d before", t2, t1)
	}
	if err := second.set.WriteKV(ctx, 0, t1, []streams.KVWrite{put("stale", "on the new leader")}); !errors.Is(err, ErrFenced) {
		t.Fatalf("the old term on the new leader: %v, want ErrFenced", err)
	}
	if err := first.set.WriteKV(ctx, 0, t1, []streams.KVWrite{put("stale", "on the old leader")}); !errors.Is(err, ErrNoLeader) {
		t.Fatalf("the old term on the old leader: %v, want ErrNoLeader", err)
	}
	if err := second.set.WriteKV(ctx, 0, t2, []streams.KVWrite{put("owner", "second")}); err != nil {
		t.Fatal(err)
	}

	// Away and back: the first leader leads again, in another term.
	back := first.set.LeadershipChanged()
	t3 := c.transfer(0, second, first)
	testutil.Eventually(t, 5*time.Second, "LeadershipChanged to fire when leadership comes back", func() bool {
		select {
		case <-back:
			return true
		default:
			return false
		}
	})
	if err := first.set.WriteKV(ctx, 0, t1, []streams.KVWrite{put("stale", "away and back")}); !errors.Is(err, ErrFenced) {
		t.Fatalf("the first term after leading again in term %d: %v, want ErrFenced", t3, err)
	}
	// A stale write proposed past the check reaches the log: the state
	// machines apply it nowhere, and the proposer is told.
	r := first.set.replica(0)
	errc := make(chan error, 1)
	r.propose(appendCmd{kind: kindKV, term: t2, kv: []streams.KVWrite{put("stale", "in the log"), {Key: []byte("owner"), Delete: true}}},
		func(_ uint64, err error) { errc <- err })
	if err := <-errc; !errors.Is(err, ErrFenced) {
		t.Fatalf("a stale write in the log: %v, want ErrFenced", err)
	}
	// A barrier of the current term, then nothing stale anywhere.
	if err := first.set.WriteKV(ctx, 0, t3, nil); err != nil {
		t.Fatalf("barrier: %v", err)
	}
	if err := first.set.WriteKV(ctx, 0, t3, []streams.KVWrite{put("done", "1")}); err != nil {
		t.Fatal(err)
	}
	c.sameKV(0, "done=1 owner=second")
}

// TestKVSurvivesRestartsAndCatchUp: replicas restarted from their stores
// and Raft logs (replaying entries) keep the namespace as it was; a
// replica away while the others wrote, deleted and compacted their logs
// gets the namespace with the snapshot, and applies the log again after.
func TestKVSurvivesRestartsAndCatchUp(t *testing.T) {
	c := newClusterWith(t, 3, 2, 3, compactingTimers())
	ctx := context.Background()
	write := c.writeKV
	stream := streamOfShard(t, 0, 2)
	for i := 0; i < 5; i++ {
		write(0, put(fmt.Sprintf("g/%d", i), "a"), put("cursor", fmt.Sprint(i)))
		if _, err := c.nodes[0].set.Append(ctx, stream, recs("r", 1)...); err != nil {
			t.Fatal(err)
		}
		write(1, put(fmt.Sprintf("h/%d", i), "b"))
	}
	want0 := "cursor=4 g/0=a g/1=a g/2=a g/3=a g/4=a"
	want1 := "h/0=b h/1=b h/2=b h/3=b h/4=b"
	c.sameKV(0, want0)
	c.sameKV(1, want1)
	for _, nd := range c.nodes {
		nd.stop()
		nd.start()
		c.sameKV(0, want0)
		c.sameKV(1, want1)
	}
	c.identical()

	n3 := c.nodes[2]
	n3.stop()
	for i := 0; i < 20; i++ {
		write(0, put("cursor", fmt.Sprint(100+i)))
		write(1, put(fmt.Sprintf("h/new%02d", i), "c"))
	}
	write(0, streams.KVWrite{Key: []byte("g/"), DeletePrefix: true}, put("g/9", "z"))
	write(1, streams.KVWrite{Key: []byte("h/0"), Delete: true})
	c.snapshotAll()
	n3.start()
	want0 = "cursor=119 g/9=z"
	c.sameKV(0, want0)
	want1 = "h/1=b h/2=b h/3=b h/4=b"
	for i := 0; i < 20; i++ {
		want1 += fmt.Sprintf(" h/new%02d=c", i)
	}
	c.sameKV(1, want1)
	for shard := range c.layout.Shards {
		if n3.restoreTarget(shard) == 0 {
			t.Fatalf("shard %d: caught up without a snapshot (the log was not compacted?)", shard)
		}
	}
	// The caught-up replica applies the log from there on.
	write(0, put("after", "1"))
	c.sameKV(0, "after=1 "+want0)
	c.identical()
}

// TestConcurrentKVWritesKeepPerCallerOrder: callers writing at once, each
// one write after the other, see each of their writes applied after
// their previous one on every replica, interleaved with appends.
func TestConcurrentKVWritesKeepPerCallerOrder(t *testing.T) {
	c := newClusterWith(t, 3, 1, 3, noBalance())
	leader, term := c.leadOf(0)
	ctx := context.Background()
	const callers, writes = 8, 25
	var wg sync.WaitGroup
	errc := make(chan error, callers+1)
	for i := 0; i < callers; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := 0; j < writes; j++ {
				// Only the caller's latest key survives, if its writes
				// are applied in its order.
				p := fmt.Sprintf("c%d/", i)
				if err := leader.set.WriteKV(ctx, 0, term, []streams.KVWrite{{Key: []byte(p), DeletePrefix: true}, put(fmt.Sprintf("%s%02d", p, j), "v")}); err != nil {
					errc <- err
					return
				}
			}
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for j := 0; j < writes; j++ {
			if _, err := c.nodes[j%3].set.Append(ctx, "s", recs("a", 2)...); err != nil {
				errc <- err
				return
			}
		}
	}()
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Fatal(err)
	}
	var want []string
	for i := 0; i < callers; i++ {
		want = append(want, fmt.Sprintf("c%d/%02d=v", i, writes-1))
	}
	c.sameKV(0, strings.Join(want, " "))
}

// kvCmd is a key/value command of term.
func kvCmd(term uint64, writes ...streams.KVWrite) appendCmd {
	return appendCmd{kind: kindKV, term: term, kv: writes}
}

// nsOf returns a store's namespace of shard 0 as "k=v k=v ...".
func nsOf(t testing.TB, store *streams.Store) string {
	t.Helper()
	return kvString(t, func(fn func(k, v []byte) error) error { return store.KV(kvNamespace(0)).Scan(nil, fn) })
}

// TestKVStateMachineFencesAndReplays: the state machine applies a write
// only in an entry of its term, in order with the appends, and moves the
// applied index past a fenced one; applying the entries again, from the
// store's marker (a restart) or from an older one (batches the store
// lost in a crash), leaves the namespace as it was.
func TestKVStateMachineFencesAndReplays(t *testing.T) {
	store, err := streams.Open(streams.Options{Dir: t.TempDir(), AutoCreate: true, Logger: testutil.Logger()})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	stop := make(chan struct{})
	defer close(stop)
	open := func() *fsm {
		f, err := newFSM(fsmConfig{shards: 1, store: store, logger: testutil.Logger(), stop: stop})
		if err != nil {
			t.Fatal(err)
		}
		return f
	}
	base := time.Unix(1_700_000_000, 0)
	entry := func(index, term uint64, cmds ...appendCmd) *raft.Log {
		return &raft.Log{Index: index, Term: term, Type: raft.LogCommand, Data: encodeEntry(base.Add(time.Duration(index)*time.Second), cmds)}
	}
	first := []*raft.Log{
		entry(1, 1, appendOf("s", 2), kvCmd(1, put("a/1", "x"), put("a/2", "y"), put("b", "1"))),
		// Appends and writes of several entries in one batch.
		entry(2, 1, kvCmd(1, streams.KVWrite{Key: []byte("a/"), DeletePrefix: true}), appendOf("s", 1)),
		entry(3, 2, kvCmd(1, put("stale", "term 1 in an entry of term 2"))),
	}
	rest := []*raft.Log{
		entry(4, 2, kvCmd(2, put("b", "2"), put("c", "3")), kvCmd(2, streams.KVWrite{Key: []byte("c"), Delete: true})),
		entry(5, 2, kvCmd(2, put("a/3", "z")), kvCmd(2)),
	}
	f := open()
	out := f.ApplyBatch(first)
	if res := out[2].([]appendResult); !errors.Is(res[0].err, ErrFenced) {
		t.Fatalf("a write of term 1 in an entry of term 2: %v, want ErrFenced", res[0].err)
	}
	for _, l := range rest {
		for _, res := range f.ApplyBatch([]*raft.Log{l})[0].([]appendResult) {
			if res.err != nil {
				t.Fatalf("entry %d: %v", l.Index, res.err)
			}
		}
	}
	const want = "a/3=z b=2"
	if got := nsOf(t, store); got != want {
		t.Fatalf("namespace %q, want %q", got, want)
	}
	if idx, _ := store.AppliedIndexOf(f.log); idx != 5 {
		t.Fatalf("applied index %d, want 5", idx)
	}
	all := append(first, rest...)

	// A restart: every entry is at or below the store's marker.
	open().ApplyBatch(all)
	if got := nsOf(t, store); got != want {
		t.Fatalf("after a replay from the marker: %q, want %q", got, want)
	}
	// A crash that lost the batches after entry 3: the marker says 3,
	// the store holds more; the writes after it are applied again.
	errc := make(chan error, 1)
	if err := store.Submit(streams.AppendRequest{AppliedLog: f.log, AppliedIndex: 3, Done: func(_ uint64, err error) { errc <- err }}); err != nil {
		t.Fatal(err)
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	g := open()
	if got := g.applied.Load(); got != 3 {
		t.Fatalf("applied index %d after lowering it, want 3", got)
	}
	g.ApplyBatch(all)
	if got := nsOf(t, store); got != want {
		t.Fatalf("after applying entries 4 and 5 again: %q, want %q", got, want)
	}
	if info, _ := store.DescribeStream("s"); info.NextOffset != 3 {
		t.Fatalf("%d records, want 3", info.NextOffset)
	}
}

// TestKVInSnapshots: the namespace travels in snapshots (encoding 3); a
// replica behind a snapshot takes its namespace in place of its own, and
// a snapshot of encoding 2 (before namespaces existed) leaves it empty.
func TestKVInSnapshots(t *testing.T) {
	s := shardState{index: 7, complete: true, streams: []streamState{{name: "a", next: 1}},
		kv: []kvPair{{key: []byte("k1"), value: []byte("v1")}, {key: []byte("k2"), value: []byte{}}}}
	b := encodeSnapshot(s)
	got, err := decodeSnapshot(b)
	if err != nil || fmt.Sprint(got) != fmt.Sprint(s) {
		t.Fatalf("round trip: %+v %v", got, err)
	}
	for cut := 0; cut < len(b); cut++ {
		if _, err := decodeSnapshot(b[:cut]); !errors.Is(err, ErrBadEntry) {
			t.Fatalf("truncated at %d: %v", cut, err)
		}
	}
	s.kv[0], s.kv[1] = s.kv[1], s.kv[0]
	if _, err := decodeSnapshot(encodeSnapshot(s)); !errors.Is(err, ErrBadEntry) {
		t.Fatalf("keys out of order: %v", err)
	}

	peers, log := newFakePeers(), testLog()
	log[1] = append(log[1], kvCmd(0, put("g/1", "a"), put("g/2", "b")))
	log[6] = append(log[6], kvCmd(0, streams.KVWrite{Key: []byte("g/1"), Delete: true}, put("g/3", "c")))
	rs := replicasFed(t, peers, log, len(log), len(log), 4)
	a, c := rs[0], rs[2]
	if got := nsOf(t, c.store); got != "g/1=a g/2=b" {
		t.Fatalf("the lagging replica's namespace: %q", got)
	}
	snap := a.snapshot()
	if err := c.fsm.Restore(snap.reader()); err != nil {
		t.Fatal(err)
	}
	c.same(a)
	if got, want := nsOf(t, c.store), nsOf(t, a.store); got != want || want != "g/2=b g/3=c" {
		t.Fatalf("namespace after the restore %q, the snapshot's replica %q", got, want)
	}

	// Encoding 2: the same without the namespace, which then is empty.
	d := newTestReplica(t, "d", peers, testLayout)
	d.feed(log, 4)
	if got := nsOf(t, d.store); got == "" {
		t.Fatal("the lagging replica has no namespace to lose")
	}
	v2 := append([]byte(nil), snap.buf...)
	st, _ := decodeSnapshot(v2)
	st.kv = nil
	v2 = encodeSnapshotAs(st, snapshotVersion2)
	if got, err := decodeSnapshot(v2); err != nil || len(got.kv) != 0 || len(got.streams) != len(st.streams) {
		t.Fatalf("encoding 2: %+v %v", got, err)
	}
	if err := d.fsm.Restore((&memSink{buf: v2}).reader()); err != nil {
		t.Fatal(err)
	}
	want := a.state()
	want.kv = nil // not in the snapshot
	if diff := want.diff(d.state()); diff != "" {
		t.Fatalf("after restoring encoding 2: %s", diff)
	}
	if got := nsOf(t, d.store); got != "" {
		t.Fatalf("namespace after restoring encoding 2: %q, want it empty", got)
	}
}

// TestEntryAppliedInOneBatch: the appends and key/value writes of one
// entry reach the store in one batch with the entry's marker, even past
// the store's group size limit, so a crash can never leave an entry half
// applied under its marker (the rest would never be applied again).
func TestEntryAppliedInOneBatch(t *testing.T) {
	store, err := streams.Open(streams.Options{Dir: t.TempDir(), AutoCreate: true, MaxGroupBytes: 1, Logger: testutil.Logger()})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	stop := make(chan struct{})
	defer close(stop)
	f, err := newFSM(fsmConfig{shards: 1, store: store, logger: testutil.Logger(), stop: stop})
	if err != nil {
		t.Fatal(err)
	}
	before := store.StoreCounters().Commits
	l := &raft.Log{Index: 1, Term: 1, Type: raft.LogCommand, Data: encodeEntry(time.Unix(1_700_000_000, 0),
		[]appendCmd{appendOf("s1", 3), appendOf("s2", 2), kvCmd(1, put("k", "v")), appendOf("s3", 1)})}
	for _, res := range f.ApplyBatch([]*raft.Log{l})[0].([]appendResult) {
		if res.err != nil {
			t.Fatal(res.err)
		}
	}
	if n := store.StoreCounters().Commits - before; n != 1 {
		t.Fatalf("one entry took %d store commits, want 1", n)
	}
	if idx, _ := store.AppliedIndexOf(f.log); idx != 1 {
		t.Fatalf("applied marker %d", idx)
	}
}

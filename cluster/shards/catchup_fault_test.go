package shards

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/mqstream/mqstream/internal/testutil"
	"github.com/mqstream/mqstream/streams"
)

// hookedPeers calls hook with each fetch request before the peers serve
// it.
type hookedPeers struct {
	*fakePeers
	hook func(req fetchRequest)
}

func (h *hookedPeers) Call(ctx context.Context, addr, service string, req []byte) ([]byte, error) {
	if r, err := decodeFetchRequest(req); err == nil && h.hook != nil {
		h.hook(r)
	}
	return h.fakePeers.Call(ctx, addr, service, req)
}

// TestCatchUpThatLostPagesIsResumed: during a catch-up from peers the
// store fails a sync and recovers from what reached the disk, losing the
// last page of s1 installed without a sync. The catch-up must not mark
// the store as holding the snapshot's state (before, it went on with s2
// and set the applied marker: s1 lacked a page for good, its later
// records at shifted offsets); it fails, and the next attempt fetches
// what is missing. The replica then matches its peer.
func TestCatchUpThatLostPagesIsResumed(t *testing.T) {
	peers := newFakePeers()
	log := [][]appendCmd{
		{appendOf("s1", 2), appendOf("s2", 2)},
		{appendOf("s1", 3), appendOf("s2", 3)},
		{appendOf("s1", 3), appendOf("s2", 3)},
	}
	a := newTestReplica(t, "a", peers, testLayout)
	a.feed(log, len(log))

	store, faults := openFailingStore(t)
	stop := make(chan struct{})
	defer close(stop)
	h := &hookedPeers{fakePeers: peers}
	src := &peerSource{self: "c", layout: func() []Peer { return testLayout }, call: h}
	f, err := newFSM(fsmConfig{shards: 1, store: store, logger: testutil.Logger(), src: src, stop: stop})
	if err != nil {
		t.Fatal(err)
	}
	f.pageRecords = 4
	c := &testReplica{t: t, id: "c", store: store, fsm: f}
	c.feed(log, 1)
	if err := store.Sync(context.Background()); err != nil {
		t.Fatal(err)
	}
	h.hook = func(r fetchRequest) {
		switch {
		case r.stream == "s1" && r.from == 6:
			_ = store.Sync(context.Background())
			faults.On() // s1's last page is committed, never reaching the disk
		case r.stream == "s2" && r.from == 2:
			if err := store.Sync(context.Background()); err == nil {
				t.Error("a sync succeeded with the disk failing")
			}
			faults.Off()
			testutil.Eventually(t, 10*time.Second, "the store to recover", func() bool { return store.Healthy() == nil })
		}
	}
	snap := a.snapshot()
	if err := f.Restore(snap.reader()); err == nil {
		t.Fatal("the catch-up that lost a page succeeded")
	}
	if marker, _ := store.AppliedIndexOf(groupName(0)); marker >= uint64(len(log)) {
		t.Fatalf("the store's marker is %d after a catch-up that lost a page", marker)
	}
	h.hook = nil
	if err := f.Restore(snap.reader()); err != nil {
		t.Fatalf("the catch-up again: %v", err)
	}
	more := append(log[:len(log):len(log)], []appendCmd{appendOf("s1", 1)})
	a.feed(more, len(more))
	c.applied = len(log)
	c.feed(more, len(more))
	if d := a.state().diff(c.state()); d != "" {
		t.Fatalf("c differs from a after the catch-up: %s", d)
	}
}

// TestReplicaCatchingUpFromPeersDoesNotServe: a replica that served
// reads, cut off while the others deleted a stream, wrote another and
// compacted their logs, catches up from a snapshot once back. While it
// does (here its peers refuse fetches for a while), its store is between
// two states of the log: it must not serve reads; it does again once
// caught up.
func TestReplicaCatchingUpFromPeersDoesNotServe(t *testing.T) {
	c := newClusterWith(t, 3, 1, 3, compactingTimers())
	lead := c.waitLeaders()[0]
	l, r, o := c.nodes[lead], c.nodes[(lead+1)%3], c.nodes[(lead+2)%3]
	ctx := context.Background()
	for i := 0; i < 10; i++ {
		if _, err := l.set.Append(ctx, "old", recs("o", 1)...); err != nil {
			t.Fatal(err)
		}
	}
	testutil.Eventually(t, 15*time.Second, "r to serve reads", func() bool { return r.set.Serves(0) })

	c.partition(r)
	if err := l.set.DeleteStream(ctx, "old"); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 30; i++ {
		if _, err := l.set.Append(ctx, "new", recs("n", 1)...); err != nil {
			t.Fatal(err)
		}
	}
	for _, nd := range []*testNode{l, o} {
		if err := nd.set.replica(0).raft.Snapshot().Error(); err != nil {
			t.Fatal(err)
		}
	}
	c.mu.Lock()
	c.fetchFault = func(string) error { return errors.New("fetch refused (test)") }
	c.mu.Unlock()
	c.heal()
	testutil.Eventually(t, 15*time.Second, "r to start catching up", func() bool { return r.set.replica(0).fsm.behind() })
	if r.set.Serves(0) {
		t.Fatal("r serves reads of shard 0 while it catches up from its peers")
	}
	c.mu.Lock()
	c.fetchFault = nil
	c.mu.Unlock()
	testutil.Eventually(t, 15*time.Second, "r to serve reads again", func() bool {
		if !r.set.Serves(0) {
			return false
		}
		if info, err := r.store.DescribeStream("new"); err != nil || info.NextOffset < 30 {
			t.Fatalf("r serves reads with new at %d (%v), want 30 records", info.NextOffset, err)
		}
		return true
	})
	c.identical()
}

// clearedWhileRead is a store whose shard starts being cleared (its
// marker set, the stream deleted) while a fetch reads it.
type clearedWhileRead struct {
	Store
	t     *testing.T
	group string
}

func (c clearedWhileRead) ReadStored(name string, from, to uint64, maxRecords, maxBytes int) (streams.StoredPage, error) {
	if err := submitWait(c.Store, streams.AppendRequest{AppliedLog: c.group + clearingSuffix, AppliedIndex: 1}); err != nil {
		c.t.Fatal(err)
	}
	if err := c.Store.DeleteStream(context.Background(), name); err != nil {
		c.t.Fatal(err)
	}
	return c.Store.ReadStored(name, from, to, maxRecords, maxBytes)
}

// TestFetchFromAShardClearedMeanwhileIsRefused: a peer that starts
// clearing the shard (it moved away) between its checks and its read of
// the stream answers "unavailable", not "no such stream", which the
// catching-up replica would believe and install the stream empty.
func TestFetchFromAShardClearedMeanwhileIsRefused(t *testing.T) {
	store, err := streams.Open(streams.Options{Dir: t.TempDir(), AutoCreate: true})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	if _, err := store.Append(context.Background(), "s", streams.Record{Topic: "t", Payload: []byte("x")}); err != nil {
		t.Fatal(err)
	}
	req := encodeFetchRequest(fetchRequest{shard: 0, stream: "s", to: 10, maxRecords: 10, maxBytes: 1 << 20})
	resp, err := ServeFetch(context.Background(), clearedWhileRead{Store: store, t: t, group: groupName(0)}, req)
	if !errors.Is(err, streams.ErrUnavailable) {
		page, _ := decodeFetchPage(resp, fetchRequest{shard: 0, stream: "s", to: 10, maxRecords: 10})
		t.Fatalf("fetch while the shard is being cleared: %v (stream exists: %v), want unavailable", err, page.exists)
	}
}

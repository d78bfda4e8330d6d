package shards

import (
	"context"
	"fmt"
	"io"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/mqstream/mqstream/cluster/rpcmux"
	"github.com/mqstream/mqstream/internal/testutil"
	"github.com/mqstream/mqstream/streams"
)

// tcpNode is a node whose Raft groups and calls go over an rpcmux
// listener on 127.0.0.1, as a node's do (node/shards.go), with snapshots
// in files; its Raft logs, snapshots and store survive a restart.
type tcpNode struct {
	t        *testing.T
	self     Peer
	layout   Layout
	timers   Timers
	dir      string
	snapDirs map[string]string
	logs     map[string]*raft.InmemStore
	mux      *rpcmux.Mux
	// store and set are read by the mux's handlers.
	store   atomic.Pointer[streams.Store]
	set     atomic.Pointer[Set]
	closers []func()
}

func (n *tcpNode) listen(addr string) {
	var err error
	if n.mux, err = rpcmux.Listen(addr, rpcmux.Options{NodeID: n.self.ID, Logger: testutil.Logger()}); err != nil {
		n.t.Fatal(err)
	}
	n.self.RPC = n.mux.Addr().String()
	n.mux.Handle(ForwardService, func(ctx context.Context, from string, req []byte) ([]byte, error) {
		if s := n.set.Load(); s != nil {
			return s.HandleForward(ctx, from, req)
		}
		return nil, ErrNoLeader
	})
	n.mux.Handle(MembersService, func(ctx context.Context, from string, req []byte) ([]byte, error) {
		if s := n.set.Load(); s != nil {
			return s.HandleMembers(ctx, from, req)
		}
		return []byte{memberUnknown}, nil
	})
	n.mux.Handle(FetchService, func(ctx context.Context, _ string, req []byte) ([]byte, error) {
		store := n.store.Load()
		if store == nil {
			return nil, streams.ErrClosed
		}
		return ServeFetch(ctx, store, req)
	})
}

func (n *tcpNode) start() {
	store, err := streams.Open(streams.Options{Dir: n.dir, AutoCreate: true, Logger: testutil.Logger()})
	if err != nil {
		n.t.Fatal(err)
	}
	n.store.Store(store)
	if n.mux == nil {
		n.listen(n.self.RPC)
	}
	set, err := Start(Options{Self: n.self, Shards: len(n.layout.Shards), Store: store, Open: n.open, Drop: n.drop, Forward: n.mux,
		Timers: n.timers, WriteTimeout: 5 * time.Second, Logger: testutil.Logger()}, n.layout)
	if err != nil {
		n.t.Fatal(err)
	}
	n.set.Store(set)
}

func (n *tcpNode) open(group string) (GroupDeps, error) {
	if n.logs[group] == nil {
		n.logs[group], n.snapDirs[group] = raft.NewInmemStore(), n.t.TempDir()
	}
	snaps, err := raft.NewFileSnapshotStore(n.snapDirs[group], 2, io.Discard)
	if err != nil {
		return GroupDeps{}, err
	}
	tr := raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{Stream: n.mux.StreamLayer(group), MaxPool: 3,
		Timeout: 2 * time.Second, Logger: RaftLogger(testutil.Logger(), group, nil)})
	n.closers = append(n.closers, func() { _ = tr.Close() })
	return GroupDeps{Logs: n.logs[group], Stable: n.logs[group], Snapshots: snaps, Transport: tr}, nil
}

// drop forgets the group's Raft state (Options.Drop); the manager
// goroutine calls it, as it calls open.
func (n *tcpNode) drop(group string) error {
	delete(n.logs, group)
	delete(n.snapDirs, group)
	return nil
}

// stop shuts the node down, its listener included.
func (n *tcpNode) stop() {
	if s := n.set.Swap(nil); s != nil {
		_ = s.Close()
	}
	for _, c := range n.closers {
		c()
	}
	n.closers = nil
	if n.mux != nil {
		_ = n.mux.Close()
		n.mux = nil
	}
	if s := n.store.Swap(nil); s != nil {
		_ = s.Close()
	}
}

// startTCPNodes starts three tcpNodes holding shards shards (RF 3).
func startTCPNodes(t *testing.T, shards int, timers Timers) ([]*tcpNode, Layout) {
	var nodes []*tcpNode
	var peers []Peer
	for i := 1; i <= 3; i++ {
		n := &tcpNode{t: t, self: Peer{ID: fmt.Sprintf("n%d", i)}, timers: timers, dir: t.TempDir(),
			snapDirs: map[string]string{}, logs: map[string]*raft.InmemStore{}}
		n.listen("127.0.0.1:0")
		nodes = append(nodes, n)
		peers = append(peers, n.self)
	}
	layout, err := Plan(peers, shards, 3)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range nodes {
		n.layout = layout
		n.start()
		t.Cleanup(n.stop)
	}
	return nodes, layout
}

// TestCatchUpOverRPCMux: the catch-up of a replica behind a compacted log
// over the transports nodes use: Raft's network transport sends the
// snapshot, and the replica fetches the records over the RPC mux.
func TestCatchUpOverRPCMux(t *testing.T) {
	nodes, _ := startTCPNodes(t, 2, compactingTimers())
	holders := func(int) map[string]Store {
		out := map[string]Store{}
		for _, n := range nodes {
			if n.set.Load() != nil {
				out[n.self.ID] = n.store.Load()
			}
		}
		return out
	}
	ctx := context.Background()
	appendAll := func(k int) {
		t.Helper()
		for _, s := range []string{streamOfShard(t, 0, 2), streamOfShard(t, 1, 2)} {
			// Through n2, which forwards to the leaders it does not lead.
			testutil.Eventually(t, 10*time.Second, "an append to "+s, func() bool {
				_, err := nodes[1].set.Load().Append(ctx, s, recs(fmt.Sprint(s, k), 50)...)
				return err == nil
			})
		}
	}
	appendAll(0)
	waitIdentical(t, 2, holders)

	n3 := nodes[2]
	n3.stop()
	for k := 1; k <= 20; k++ {
		appendAll(k)
	}
	for _, n := range nodes[:2] {
		set := n.set.Load()
		for i := range set.replicas {
			if err := set.replica(i).raft.Snapshot().Error(); err != nil {
				t.Fatal(err)
			}
		}
	}
	n3.start()
	waitIdentical(t, 2, holders)
	for shard := 0; shard < 2; shard++ {
		if got, _ := n3.store.Load().AppliedIndexOf(groupName(shard) + restoreSuffix); got == 0 {
			t.Fatalf("shard %d: caught up without a snapshot", shard)
		}
	}
}

// TestReplicaMovedAwayAndBackOverRPCMux: a replica moved away from a node
// and given back reopens its group's channel of the RPC mux (the closed
// transport gave it up) and catches up over it.
func TestReplicaMovedAwayAndBackOverRPCMux(t *testing.T) {
	nodes, layout := startTCPNodes(t, 1, LocalTimers())
	update := func(l Layout) {
		t.Helper()
		for _, n := range nodes {
			if err := n.set.Load().Update(l); err != nil {
				t.Fatal(err)
			}
		}
	}
	holders := func(l Layout) func(int) map[string]Store {
		return func(int) map[string]Store {
			out := map[string]Store{}
			for _, n := range nodes {
				if l.Holds(0, n.self.ID) {
					out[n.self.ID] = n.store.Load()
				}
			}
			return out
		}
	}
	ctx := context.Background()
	appendSome := func(k int) {
		t.Helper()
		testutil.Eventually(t, 10*time.Second, "an append", func() bool {
			_, err := nodes[0].set.Load().Append(ctx, "s", recs(fmt.Sprint("s", k), 5)...)
			return err == nil
		})
	}
	appendSome(0)
	away := replaced(layout, "n3", nil)
	update(away)
	n3 := nodes[2].set.Load()
	testutil.Eventually(t, 15*time.Second, "n3 to close its replica", func() bool { return n3.replica(0) == nil })
	appendSome(1)
	back := away.clone()
	back.Version++
	back.Shards[0] = append(back.Shards[0], nodes[2].self)
	update(back)
	appendSome(2)
	waitIdentical(t, 1, holders(back))
	if n3.replica(0) == nil {
		t.Fatal("n3 has no replica of the shard given back")
	}
}

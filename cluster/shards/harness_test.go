package shards

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cockroachdb/pebble/v2/vfs/errorfs"
	"github.com/hashicorp/raft"

	"github.com/mqstream/mqstream/cluster/rpcmux"
	"github.com/mqstream/mqstream/internal/testutil"
	"github.com/mqstream/mqstream/streams"
)

// cluster is an in-process set of nodes whose Raft groups talk over
// raft's in-memory transport and whose forwards are direct calls. Each
// node's store, logs and snapshots survive a stop, so it can restart.
type cluster struct {
	t testing.TB
	// layout is the layout nodes start with and the last given to them
	// (update); the test goroutine's.
	layout Layout
	nodes  []*testNode

	mu     sync.Mutex // guards groups, dropAnswers, the nodes' Raft state maps
	groups map[string]map[raft.ServerAddress]*raft.InmemTransport
	// dropAnswers: this many forwards are delivered and served, but their
	// answers are lost (the caller sees an error).
	dropAnswers int
	// cut holds the node ids cut off from all others (both ways).
	cut map[string]bool
	// fetchFault, if set, is asked before a fetch is served by the node
	// at addr: an error fails the fetch.
	fetchFault func(addr string) error
	// forwardFault, if set, is asked before a forward to addr is
	// delivered: an error fails it (the call may block first).
	forwardFault func(addr string) error
	// forwardGate, if set, is asked before a forward to addr is
	// delivered, with the caller's context: it may hold the call until
	// the caller gives up on it.
	forwardGate func(ctx context.Context, addr string) error
	// callerHook, if set, is asked before a forward from the node with
	// id from to addr is delivered: an error fails it (the call may
	// block first).
	callerHook func(from, addr string, req []byte) error
	// timers are the nodes' Raft timers (LocalTimers unless a test
	// changes them before the nodes start).
	timers Timers
	// fileSnapshots: the groups keep their snapshots in files (the two
	// newest, as nodes do) instead of in memory (the newest).
	fileSnapshots bool
	// noDrop: the nodes give no Options.Drop (a replica moved away keeps
	// its Raft state).
	noDrop bool
	// noAdminIDs: the nodes create and delete streams without ids, as in
	// a cluster with a member of an earlier version (Options.AdminIDs).
	noAdminIDs bool
	// noFloors: the leaders write no entries of version 5, as in a
	// cluster with a member of an earlier version (Options.DedupeFloors).
	noFloors bool
	// faultyStores: each node's store is on a file system that fails
	// the WAL's writes while the node's faults are on.
	faultyStores bool
	// seenAlive holds node ids the nodes' Options.Alive reports up
	// whether or not they run (membership that sees a node come back
	// before it answers); under mu.
	seenAlive map[string]bool
	// suspects holds node ids membership suspects (under mu): not alive,
	// and not down either, whether or not they run.
	suspects map[string]bool
}

type testNode struct {
	c     *cluster
	self  Peer
	dir   string
	store *streams.Store
	set   *Set
	// faults fails its store's WAL writes while on (c.faultyStores).
	faults *errorfs.Toggle
	// Raft state per group, kept across restarts, deleted by Drop;
	// under c.mu.
	logs  map[string]*raft.InmemStore
	snaps map[string]raft.SnapshotStore
}

func newCluster(t testing.TB, n, shards, rf int) *cluster {
	t.Helper()
	return newClusterWith(t, n, shards, rf, LocalTimers())
}

// newClusterWith starts a cluster whose Raft groups use timers, after
// the changes of opts.
func newClusterWith(t testing.TB, n, shards, rf int, timers Timers, opts ...func(*cluster)) *cluster {
	t.Helper()
	c := &cluster{t: t, groups: map[string]map[raft.ServerAddress]*raft.InmemTransport{}, timers: timers}
	for _, o := range opts {
		o(c)
	}
	var peers []Peer
	for i := 0; i < n; i++ {
		peers = append(peers, Peer{ID: fmt.Sprintf("n%d", i+1), RPC: fmt.Sprintf("n%d:7947", i+1)})
	}
	var err error
	if c.layout, err = Plan(peers, shards, rf); err != nil {
		t.Fatal(err)
	}
	for _, p := range peers {
		c.addNode(p)
	}
	t.Cleanup(func() {
		for _, nd := range c.nodes {
			nd.stop()
		}
	})
	return c
}

// addNode starts a node with an empty store and the cluster's current
// layout (which may place nothing on it).
func (c *cluster) addNode(p Peer) *testNode {
	c.t.Helper()
	nd := &testNode{c: c, self: p, dir: c.t.TempDir(), logs: map[string]*raft.InmemStore{}, snaps: map[string]raft.SnapshotStore{}}
	c.mu.Lock()
	c.nodes = append(c.nodes, nd) // read by other goroutines under c.mu
	c.mu.Unlock()
	nd.start()
	return nd
}

// nodeList returns the nodes; safe to call from any goroutine.
func (c *cluster) nodeList() []*testNode {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.nodes)
}

// update makes l the cluster's layout and gives it to every running node.
func (c *cluster) update(l Layout) {
	c.t.Helper()
	c.layout = l
	for _, nd := range c.nodes {
		if set, _ := nd.running(); set != nil {
			if err := set.Update(l); err != nil {
				c.t.Fatalf("update %s to version %d: %v", nd.self.ID, l.Version, err)
			}
		}
	}
}

// alive reports whether node id runs (the nodes' Options.Alive).
func (c *cluster) alive(id string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.suspects[id] {
		return false
	}
	if c.seenAlive[id] {
		return true
	}
	for _, nd := range c.nodes {
		if nd.self.ID == id {
			return nd.set != nil
		}
	}
	return false
}

// down reports whether node id is down (the nodes' Options.Down): not
// alive, and not a suspect.
func (c *cluster) down(id string) bool {
	c.mu.Lock()
	suspect := c.suspects[id]
	c.mu.Unlock()
	return !suspect && !c.alive(id)
}

func (nd *testNode) start() {
	t := nd.c.t
	t.Helper()
	var fs vfs.FS
	if nd.c.faultyStores {
		if nd.faults == nil {
			nd.faults = &errorfs.Toggle{Injector: errorfs.InjectorFunc(failWAL)}
		}
		fs = errorfs.Wrap(vfs.Default, nd.faults)
	}
	store, err := streams.Open(streams.Options{Dir: nd.dir, FS: fs, AutoCreate: true, MaxRecordBytes: 1 << 20, Logger: testutil.Logger()})
	if err != nil {
		t.Fatal(err)
	}
	opts := Options{
		Self: nd.self, Shards: len(nd.c.layout.Shards), Store: store, Open: nd.open, Drop: nd.drop, HasRaftState: nd.hasRaftState, Forward: &callerForwarder{c: nd.c, from: nd.self.ID},
		Alive: nd.c.alive, Timers: nd.c.timers, WriteTimeout: 5 * time.Second, Logger: testutil.Logger(),
		AdminIDs:     func() bool { return !nd.c.noAdminIDs },
		DedupeFloors: func() bool { return !nd.c.noFloors },
		Down:         nd.c.down,
	}
	if nd.c.noDrop {
		opts.Drop = nil
	}
	set, err := Start(opts, nd.c.layout)
	if err != nil {
		t.Fatal(err)
	}
	// Under c.mu: forwards from other nodes' goroutines look them up
	// (running).
	nd.c.mu.Lock()
	nd.store, nd.set = store, set
	nd.c.mu.Unlock()
}

// running returns the node's Set and store, nil while it is stopped;
// safe to call from any goroutine.
func (nd *testNode) running() (*Set, *streams.Store) {
	nd.c.mu.Lock()
	defer nd.c.mu.Unlock()
	return nd.set, nd.store
}

// stop shuts the node down (its Raft state and data dir stay).
func (nd *testNode) stop() {
	if nd.set == nil {
		return
	}
	c := nd.c
	c.mu.Lock()
	set, store := nd.set, nd.store
	nd.set = nil
	c.mu.Unlock()
	_ = set.Close()
	_ = store.Close()
	c.mu.Lock()
	for _, g := range c.groups {
		if tr, ok := g[raft.ServerAddress(nd.self.RPC)]; ok {
			tr.DisconnectAll()
			delete(g, raft.ServerAddress(nd.self.RPC))
			for _, other := range g {
				other.Disconnect(raft.ServerAddress(nd.self.RPC))
			}
		}
	}
	c.mu.Unlock()
}

func (nd *testNode) open(group string) (GroupDeps, error) {
	c := nd.c
	var snaps raft.SnapshotStore = raft.NewInmemSnapshotStore()
	if c.fileSnapshots {
		fs, err := raft.NewFileSnapshotStore(nd.c.t.TempDir(), 2, io.Discard)
		if err != nil {
			return GroupDeps{}, err
		}
		snaps = fs
	}
	addr, tr := raft.NewInmemTransport(raft.ServerAddress(nd.self.RPC))
	c.mu.Lock()
	defer c.mu.Unlock()
	if nd.logs[group] == nil {
		nd.logs[group], nd.snaps[group] = raft.NewInmemStore(), snaps
	}
	g := c.groups[group]
	if g == nil {
		g = map[raft.ServerAddress]*raft.InmemTransport{}
		c.groups[group] = g
	}
	for a, other := range g {
		if a != addr {
			tr.Connect(a, other)
			other.Connect(addr, tr)
		}
	}
	g[addr] = tr
	return GroupDeps{Logs: nd.logs[group], Stable: nd.logs[group], Snapshots: nd.snaps[group], Transport: tr}, nil
}

// drop deletes the group's Raft state (Options.Drop).
func (nd *testNode) drop(group string) error {
	nd.c.mu.Lock()
	defer nd.c.mu.Unlock()
	delete(nd.logs, group)
	delete(nd.snaps, group)
	return nil
}

// hasRaftState reports whether the node keeps Raft state of group.
func (nd *testNode) hasRaftState(group string) bool {
	nd.c.mu.Lock()
	defer nd.c.mu.Unlock()
	return nd.logs[group] != nil
}

// partition cuts node nd off from the others (Raft traffic and forwards,
// both ways) until heal.
func (c *cluster) partition(nd *testNode) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cut == nil {
		c.cut = map[string]bool{}
	}
	c.cut[nd.self.ID] = true
	self := raft.ServerAddress(nd.self.RPC)
	for _, g := range c.groups {
		if tr, ok := g[self]; ok {
			tr.DisconnectAll()
		}
		for a, other := range g {
			if a != self {
				other.Disconnect(self)
			}
		}
	}
}

// cutOneWay stops node nd's Raft messages to the others (its requests
// and so its answers through them), while theirs still reach it, until
// heal. Forwards are not affected (the harness cannot tell their sender).
func (c *cluster) cutOneWay(nd *testNode) {
	c.mu.Lock()
	defer c.mu.Unlock()
	self := raft.ServerAddress(nd.self.RPC)
	for _, g := range c.groups {
		if tr, ok := g[self]; ok {
			tr.DisconnectAll()
		}
	}
}

// heal reconnects every running node's transports.
func (c *cluster) heal() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.cut = nil
	for _, g := range c.groups {
		for a, tr := range g {
			for b, other := range g {
				if a != b {
					tr.Connect(b, other)
				}
			}
		}
	}
}

// Call delivers a forward to the node at addr, if it runs.
func (c *cluster) Call(ctx context.Context, addr, service string, req []byte) ([]byte, error) {
	c.mu.Lock()
	cut := len(c.cut) > 0
	c.mu.Unlock()
	if cut {
		// Any forward to or from a cut node fails; callers are found by
		// address only on the receiving side, so the test forwards only
		// between nodes that are not cut, or expects the failure.
		for _, nd := range c.nodeList() {
			c.mu.Lock()
			isCut := c.cut[nd.self.ID]
			c.mu.Unlock()
			if isCut && nd.self.RPC == addr {
				return nil, fmt.Errorf("%w: %s unreachable (partitioned)", rpcmux.ErrNotSent, addr)
			}
		}
	}
	for _, nd := range c.nodeList() {
		set, store := nd.running()
		if nd.self.RPC == addr && set != nil && service == FetchService {
			if err := c.fault(&c.fetchFault, addr); err != nil {
				return nil, err
			}
			return ServeFetch(ctx, store, req)
		}
		if nd.self.RPC == addr && set != nil && service == MembersService {
			return set.HandleMembers(ctx, "", req)
		}
		if nd.self.RPC == addr && set != nil && service == ForwardService {
			if err := c.fault(&c.forwardFault, addr); err != nil {
				return nil, err
			}
			c.mu.Lock()
			gate := c.forwardGate
			c.mu.Unlock()
			if gate != nil {
				if err := gate(ctx, addr); err != nil {
					return nil, err
				}
			}
			resp, err := set.HandleForward(ctx, "", req)
			c.mu.Lock()
			drop := c.dropAnswers > 0
			if drop {
				c.dropAnswers--
			}
			c.mu.Unlock()
			if drop {
				return nil, fmt.Errorf("%s: connection reset after the request was served", addr)
			}
			return resp, err
		}
	}
	return nil, fmt.Errorf("%w: %s unreachable", rpcmux.ErrNotSent, addr)
}

// newSteadyCluster starts n nodes holding one shard on three replicas,
// whose balancer does not move the leadership during the test (the
// tests that move it themselves).
func newSteadyCluster(t testing.TB, n int) *cluster {
	t.Helper()
	timers := LocalTimers()
	timers.Balance = time.Hour
	return newClusterWith(t, n, 1, 3, timers)
}

// stallFirstForward makes the next forward call wait until release is
// closed and then fail, as one to a leader that died (the later calls go
// through); entered is closed once it waits.
func (c *cluster) stallFirstForward() (entered, release chan struct{}) {
	entered, release = make(chan struct{}), make(chan struct{})
	var once sync.Once
	c.mu.Lock()
	c.forwardFault = func(string) error {
		first := false
		once.Do(func() { first = true })
		if !first {
			return nil
		}
		close(entered)
		<-release
		return errors.New("forward timed out (the leader is gone)")
	}
	c.mu.Unlock()
	return entered, release
}

// fault asks the fault hook *hook (read under c.mu) about a call to
// addr: nil when no hook is set.
func (c *cluster) fault(hook *func(addr string) error, addr string) error {
	c.mu.Lock()
	f := *hook
	c.mu.Unlock()
	if f == nil {
		return nil
	}
	return f(addr)
}

// waitLeaders waits until every shard has a leader all running replicas
// agree on, and returns the leaders' node indexes.
func (c *cluster) waitLeaders() []int {
	c.t.Helper()
	leaders := make([]int, len(c.layout.Shards))
	testutil.Eventually(c.t, 15*time.Second, "every shard to have a leader", func() bool {
		for i := range c.layout.Shards {
			leaders[i] = -1
			for k, nd := range c.nodes {
				if nd.set != nil && nd.set.replica(i) != nil && nd.set.replica(i).isLeader() {
					leaders[i] = k
				}
			}
			if leaders[i] < 0 {
				return false
			}
			for _, nd := range c.nodes {
				if nd.set == nil || nd.set.replica(i) == nil {
					continue
				}
				if p, ok := nd.set.replica(i).leader(); !ok || p.ID != c.nodes[leaders[i]].self.ID {
					return false
				}
			}
		}
		return true
	})
	return leaders
}

// memSink is a raft.SnapshotSink in memory.
type memSink struct{ buf []byte }

func (m *memSink) Write(p []byte) (int, error) { m.buf = append(m.buf, p...); return len(p), nil }
func (m *memSink) Close() error                { return nil }
func (m *memSink) ID() string                  { return "mem" }
func (m *memSink) Cancel() error               { return nil }
func (m *memSink) reader() io.ReadCloser       { return io.NopCloser(bytes.NewReader(m.buf)) }

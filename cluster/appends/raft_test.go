package appends

import (
	"fmt"
	"io"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"

	"github.com/mqstream/mqstream/cluster/heartbeat"
	"github.com/mqstream/mqstream/cluster/rpcmux"
	"github.com/mqstream/mqstream/internal/testutil"
)

// countFSM counts the commands applied.
type countFSM struct{ n atomic.Int64 }

func (f *countFSM) Apply(*raft.Log) any                 { f.n.Add(1); return nil }
func (f *countFSM) Snapshot() (raft.FSMSnapshot, error) { return nopSnapshot{}, nil }
func (f *countFSM) Restore(r io.ReadCloser) error       { return r.Close() }

type nopSnapshot struct{}

func (nopSnapshot) Persist(s raft.SnapshotSink) error { return s.Close() }
func (nopSnapshot) Release()                          {}

// raftCluster is nodes each running every group, wired as the node wires
// its shard groups: a NetworkTransport on the node's mux per group, its
// appends through the node's Batcher and its heartbeats through the
// node's heartbeat coalescer.
type raftCluster struct {
	t      testing.TB
	nodes  []*raftNode
	groups []string
	hb     time.Duration
	// direct: the appends go through the groups' own transports, not
	// the Batchers (to compare, in benchmarks).
	direct bool
}

// raftNode is one node: its mux, Batcher and coalescer, and its replica
// of every group.
type raftNode struct {
	*testNode
	beats *heartbeat.Coalescer
	rafts map[string]*raft.Raft
	fsms  map[string]*countFSM
	trans map[string]raft.Transport
	logs  map[string]*raft.InmemStore
	gates map[string]*gate // hold the replica's log writes while shut
}

// gate holds log writes while shut.
type gate struct {
	mu sync.Mutex    // guards ch
	ch chan struct{} // nil: open
}

func (g *gate) shut() { g.mu.Lock(); g.ch = make(chan struct{}); g.mu.Unlock() }

func (g *gate) open() {
	g.mu.Lock()
	if g.ch != nil {
		close(g.ch)
		g.ch = nil
	}
	g.mu.Unlock()
}

func (g *gate) wait() {
	g.mu.Lock()
	ch := g.ch
	g.mu.Unlock()
	if ch != nil {
		<-ch
	}
}

// gatedLogs is a log whose writes wait at its gate: a slow disk.
type gatedLogs struct {
	*raft.InmemStore
	g *gate
}

func (l gatedLogs) StoreLog(e *raft.Log) error { l.g.wait(); return l.InmemStore.StoreLog(e) }

func (l gatedLogs) StoreLogs(es []*raft.Log) error { l.g.wait(); return l.InmemStore.StoreLogs(es) }

func startRaftCluster(t testing.TB, faults *rpcmux.Faults, nodes, groups int) *raftCluster {
	return startRaftClusterWith(t, faults, nodes, groups, false)
}

func startRaftClusterWith(t testing.TB, faults *rpcmux.Faults, nodes, groups int, direct bool) *raftCluster {
	t.Helper()
	c := &raftCluster{t: t, hb: 500 * time.Millisecond, direct: direct}
	for i := range nodes {
		id := "n" + strconv.Itoa(i+1)
		tn := newNode(t, id, faults, Options{})
		hbOpts := heartbeat.ForHeartbeatTimeout(c.hb)
		hbOpts.Logger = testutil.Logger().With("node", id)
		n := &raftNode{testNode: tn, beats: heartbeat.New(tn.mux, hbOpts), rafts: map[string]*raft.Raft{},
			fsms: map[string]*countFSM{}, trans: map[string]raft.Transport{}, logs: map[string]*raft.InmemStore{},
			gates: map[string]*gate{}}
		tn.mux.Handle(heartbeat.Service, n.beats.Serve)
		t.Cleanup(func() { _ = n.beats.Close() })
		c.nodes = append(c.nodes, n)
	}
	for g := range groups {
		group := fmt.Sprintf("shard-%d", g)
		c.groups = append(c.groups, group)
		for _, n := range c.nodes {
			n.logs[group] = raft.NewInmemStore()
			n.gates[group] = &gate{}
			c.start(n, group)
		}
		// The group's first leader: spread over the nodes.
		var servers []raft.Server
		for _, n := range c.nodes {
			servers = append(servers, raft.Server{ID: raft.ServerID(n.id), Address: n.addr()})
		}
		if err := c.nodes[g%nodes].rafts[group].BootstrapCluster(raft.Configuration{Servers: servers}).Error(); err != nil {
			t.Fatal(err)
		}
	}
	return c
}

// start starts n's replica of group, over the log it kept.
func (c *raftCluster) start(n *raftNode, group string) {
	conf := raft.DefaultConfig()
	conf.LocalID = raft.ServerID(n.id)
	conf.HeartbeatTimeout, conf.ElectionTimeout, conf.LeaderLeaseTimeout = c.hb, c.hb, c.hb
	conf.CommitTimeout = 20 * time.Millisecond
	conf.Logger = raftLogger(n.id + "/" + group)
	inner := raft.NewNetworkTransport(n.mux.StreamLayer(group), 3, 2*time.Second, io.Discard)
	var trans raft.Transport = inner
	if !c.direct {
		trans = n.b.Wrap(group, inner)
	}
	trans = n.beats.Wrap(group, trans)
	fsm := &countFSM{}
	logs := n.logs[group]
	r, err := raft.NewRaft(conf, fsm, gatedLogs{logs, n.gates[group]}, logs, raft.NewInmemSnapshotStore(), trans)
	if err != nil {
		c.t.Fatal(err)
	}
	n.rafts[group], n.fsms[group], n.trans[group] = r, fsm, trans
	c.t.Cleanup(func() { c.stop(n, group) })
}

// stop shuts n's replica of group down and closes its transport.
func (c *raftCluster) stop(n *raftNode, group string) {
	_ = n.rafts[group].Shutdown().Error()
	_ = n.trans[group].(raft.WithClose).Close()
}

// leader waits for group's leader among the nodes not in except.
func (c *raftCluster) leader(group string, except ...*raftNode) *raftNode {
	c.t.Helper()
	var out *raftNode
	testutil.Eventually(c.t, 15*time.Second, group+" to have a leader", func() bool {
		for _, n := range c.nodes {
			if n.rafts[group].State() == raft.Leader && !containsNode(except, n) {
				out = n
				return true
			}
		}
		return false
	})
	return out
}

func containsNode(s []*raftNode, n *raftNode) bool {
	for _, x := range s {
		if x == n {
			return true
		}
	}
	return false
}

// apply applies count commands to group through its leader (among the
// nodes not in except), retrying those that fail while leadership moves.
func (c *raftCluster) apply(group string, count int, except ...*raftNode) {
	c.t.Helper()
	for i := 0; i < count; {
		l := c.leader(group, except...)
		if err := l.rafts[group].Apply([]byte("x"), 5*time.Second).Error(); err != nil {
			continue
		}
		i++
	}
}

// applied waits until every replica of group on nodes has applied want
// commands.
func (c *raftCluster) applied(group string, want int64, nodes ...*raftNode) {
	c.t.Helper()
	testutil.Eventually(c.t, 20*time.Second, fmt.Sprintf("every replica of %s to apply %d", group, want), func() bool {
		for _, n := range nodes {
			if n.fsms[group].n.Load() < want {
				return false
			}
		}
		return true
	})
}

func raftLogger(name string) hclog.Logger {
	if os.Getenv("MQSTREAM_TEST_LOG") != "" {
		return hclog.New(&hclog.LoggerOptions{Name: name, Output: os.Stderr, Level: hclog.Info})
	}
	return hclog.New(&hclog.LoggerOptions{Name: name, Output: io.Discard, Level: hclog.Error})
}

// TestRaftReplicatesOverBatches: the groups' entries reach every replica,
// the appends going through the Batchers, several groups' in one frame.
func TestRaftReplicatesOverBatches(t *testing.T) {
	c := startRaftCluster(t, nil, 3, 6)
	var wg sync.WaitGroup
	for _, g := range c.groups {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Concurrent applies, so that entries are in flight together.
			var futures []raft.ApplyFuture
			l := c.leader(g)
			for range 200 {
				futures = append(futures, l.rafts[g].Apply([]byte("x"), 10*time.Second))
			}
			for _, f := range futures {
				if err := f.Error(); err != nil {
					t.Errorf("%s: %v", g, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	for _, g := range c.groups {
		c.applied(g, 200, c.nodes...)
	}
	var st Stats
	for _, n := range c.nodes {
		s := n.b.Stats()
		st.Frames += s.Frames
		st.Requests += s.Requests
	}
	t.Logf("%d appends in %d frames", st.Requests, st.Frames)
	if st.Frames == 0 || st.Requests < st.Frames {
		t.Fatalf("stats %+v: the appends did not go through the Batchers", st)
	}
}

// TestRaftLeaderChangeAndPeerBack: a group's leader that goes away is
// replaced, the group takes writes without it, and once it is back it
// catches up over the batched transport; a node cut off by a partition
// catches up after the heal.
func TestRaftLeaderChangeAndPeerBack(t *testing.T) {
	faults := rpcmux.NewFaults()
	c := startRaftCluster(t, faults, 3, 3)
	g := c.groups[0]
	c.apply(g, 20)
	c.applied(g, 20, c.nodes...)

	// The leader's replica stops: another takes over and the group goes
	// on; restarted over its log, it catches up.
	old := c.leader(g)
	c.stop(old, g)
	c.apply(g, 20, old)
	c.applied(g, 40, otherNodes(c.nodes, old)...)
	c.start(old, g)
	c.applied(g, 40, old)

	// A partitioned node misses entries of every group and catches up
	// after the heal; the others go on meanwhile.
	cut := c.nodes[2]
	for _, n := range c.nodes[:2] {
		faults.Partition(string(cut.addr()), string(n.addr()))
	}
	for _, grp := range c.groups {
		c.apply(grp, 30, cut)
	}
	faults.Heal()
	for _, grp := range c.groups {
		want := int64(30)
		if grp == g {
			want = 70
		}
		c.applied(grp, want, c.nodes...)
	}
}

func otherNodes(all []*raftNode, except *raftNode) []*raftNode {
	var out []*raftNode
	for _, n := range all {
		if n != except {
			out = append(out, n)
		}
	}
	return out
}

// TestRaftSlowGroupDoesNotHoldOthers: while one group's followers cannot
// write their logs (their appends wait), another group, whose appends
// share the same connections, goes on committing; once the writes go
// through, the slow group commits too.
func TestRaftSlowGroupDoesNotHoldOthers(t *testing.T) {
	c := startRaftCluster(t, nil, 3, 2)
	slow, fast := c.groups[0], c.groups[1]
	c.apply(slow, 5)
	c.apply(fast, 5)
	leader := c.leader(slow)
	for _, n := range otherNodes(c.nodes, leader) {
		n.gates[slow].shut()
	}
	t.Cleanup(func() { // before the replicas shut down
		for _, n := range c.nodes {
			n.gates[slow].open()
		}
	})
	// It cannot commit: neither follower can store it.
	stuck := leader.rafts[slow].Apply([]byte("x"), 30*time.Second)
	c.apply(fast, 50)
	c.applied(fast, 55, c.nodes...)
	for _, n := range c.nodes {
		n.gates[slow].open()
	}
	// The command waiting on the slow followers commits, unless the
	// leadership moved meanwhile; then it is applied again.
	if err := stuck.Error(); err != nil {
		t.Logf("the slow group's command failed (%v); applied again", err)
		c.apply(slow, 1)
	}
	c.applied(slow, 6, c.nodes...)
}

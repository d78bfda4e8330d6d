package raftlog

import (
	"encoding/binary"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
)

// countFSM counts the commands applied to it.
type countFSM struct{ n atomic.Uint64 }

func (f *countFSM) Apply(*raft.Log) any { f.n.Add(1); return nil }

func (f *countFSM) Snapshot() (raft.FSMSnapshot, error) { return countSnapshot(f.n.Load()), nil }

func (f *countFSM) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	var b [8]byte
	if _, err := io.ReadFull(rc, b[:]); err != nil {
		return err
	}
	f.n.Store(binary.BigEndian.Uint64(b[:]))
	return nil
}

type countSnapshot uint64

func (c countSnapshot) Persist(sink raft.SnapshotSink) error {
	if _, err := sink.Write(binary.BigEndian.AppendUint64(nil, uint64(c))); err != nil {
		_ = sink.Cancel()
		return err
	}
	return sink.Close()
}

func (countSnapshot) Release() {}

// raftNode is one node: one DB, and per group a Raft, its FSM and its
// in-memory transport.
type raftNode struct {
	id    raft.ServerID
	dir   string
	db    *DB
	rafts map[string]*raft.Raft
	fsms  map[string]*countFSM
	trans map[string]*raft.InmemTransport
}

func nodeAddr(id raft.ServerID, group string) raft.ServerAddress {
	return raft.ServerAddress(fmt.Sprintf("%s/%s", id, group))
}

// raftCluster runs every group on every node.
type raftCluster struct {
	t      *testing.T
	groups []string
	nodes  []*raftNode
}

func newRaftCluster(t *testing.T, n int, groups ...string) *raftCluster {
	c := &raftCluster{t: t, groups: groups}
	for i := range n {
		id := raft.ServerID(fmt.Sprintf("node-%d", i))
		c.nodes = append(c.nodes, &raftNode{id: id, dir: filepath.Join(t.TempDir(), string(id))})
	}
	for _, nd := range c.nodes {
		c.start(nd)
	}
	t.Cleanup(func() {
		for _, nd := range c.nodes {
			if nd.db != nil {
				c.stop(nd)
			}
		}
	})
	return c
}

// start opens nd's DB and starts its Rafts, connected to the running nodes.
func (c *raftCluster) start(nd *raftNode) {
	t := c.t
	db, err := Open(nd.dir, Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	nd.db = db
	nd.rafts, nd.fsms, nd.trans = map[string]*raft.Raft{}, map[string]*countFSM{}, map[string]*raft.InmemTransport{}
	for _, g := range c.groups {
		_, trans := raft.NewInmemTransport(nodeAddr(nd.id, g))
		for _, peer := range c.nodes {
			if peer != nd && peer.db != nil {
				trans.Connect(nodeAddr(peer.id, g), peer.trans[g])
				peer.trans[g].Connect(nodeAddr(nd.id, g), trans)
			}
		}
		conf := raft.DefaultConfig()
		conf.LocalID = nd.id
		// Fast, but not so fast that a loaded CI machine (-race, two
		// cores) misses heartbeats and the test's applies lose their
		// leader ("leadership lost while committing log").
		conf.HeartbeatTimeout = 600 * time.Millisecond
		conf.ElectionTimeout = 600 * time.Millisecond
		conf.LeaderLeaseTimeout = 300 * time.Millisecond
		conf.CommitTimeout = 5 * time.Millisecond
		conf.Logger = hclog.New(&hclog.LoggerOptions{Name: string(nd.id) + "/" + g, Level: hclog.Error, Output: io.Discard})
		store := db.Group(g)
		fsm := &countFSM{}
		r, err := raft.NewRaft(conf, fsm, store, store, raft.NewInmemSnapshotStore(), trans)
		if err != nil {
			t.Fatalf("%s/%s: %v", nd.id, g, err)
		}
		nd.rafts[g], nd.fsms[g], nd.trans[g] = r, fsm, trans
	}
}

// stop shuts nd's Rafts down, disconnects it and closes its DB.
func (c *raftCluster) stop(nd *raftNode) {
	for _, g := range c.groups {
		if err := nd.rafts[g].Shutdown().Error(); err != nil {
			c.t.Errorf("%s/%s: shutdown: %v", nd.id, g, err)
		}
		for _, peer := range c.nodes {
			if peer != nd && peer.db != nil {
				peer.trans[g].Disconnect(nodeAddr(nd.id, g))
			}
		}
	}
	if err := nd.db.Close(); err != nil {
		c.t.Errorf("%s: close: %v", nd.id, err)
	}
	nd.db = nil
}

func (c *raftCluster) bootstrap() {
	for _, g := range c.groups {
		var conf raft.Configuration
		for _, nd := range c.nodes {
			conf.Servers = append(conf.Servers, raft.Server{ID: nd.id, Address: nodeAddr(nd.id, g)})
		}
		if err := c.nodes[0].rafts[g].BootstrapCluster(conf).Error(); err != nil {
			c.t.Fatalf("bootstrap %s: %v", g, err)
		}
	}
}

// leader waits for one running node to lead group g and returns it.
func (c *raftCluster) leader(g string) *raftNode {
	var leader *raftNode
	waitFor(c.t, "a leader of "+g, func() bool {
		leader = nil
		for _, nd := range c.nodes {
			if nd.db != nil && nd.rafts[g].State() == raft.Leader {
				if leader != nil {
					return false
				}
				leader = nd
			}
		}
		return leader != nil
	})
	return leader
}

// apply applies n commands to group g through its leader.
func (c *raftCluster) apply(g string, n int) {
	r := c.leader(g).rafts[g]
	futures := make([]raft.ApplyFuture, n)
	for i := range futures {
		futures[i] = r.Apply(fmt.Appendf(nil, "command %d", i), 5*time.Second)
	}
	for _, f := range futures {
		if err := f.Error(); err != nil {
			c.t.Fatalf("apply to %s: %v", g, err)
		}
	}
}

// converge waits until every running node applied want commands of g and
// holds the leader's last index.
func (c *raftCluster) converge(g string, want uint64) {
	leaderStore := c.leader(g).db.Group(g)
	waitFor(c.t, fmt.Sprintf("%d commands applied on every node of %s", want, g), func() bool {
		last, err := leaderStore.LastIndex()
		if err != nil {
			return false
		}
		for _, nd := range c.nodes {
			if nd.db == nil {
				continue
			}
			l, err := nd.db.Group(g).LastIndex()
			if err != nil || l != last || nd.fsms[g].n.Load() != want {
				return false
			}
		}
		return true
	})
}

// waitFor polls cond until it holds, failing the test after 5 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		<-tick.C
	}
}

// TestRaftCluster runs two Raft groups on three nodes, one DB per node:
// it replicates through a leader, replaces a stopped leader and lets the
// stopped node catch up from its reopened DB.
func TestRaftCluster(t *testing.T) {
	groups := []string{"meta", "shard-7"}
	c := newRaftCluster(t, 3, groups...)
	c.bootstrap()
	for _, g := range groups {
		c.apply(g, 200)
		c.converge(g, 200)
	}

	old := c.leader("shard-7")
	c.stop(old)
	for _, g := range groups {
		if nd := c.leader(g); nd == old {
			t.Fatalf("%s: the stopped node still leads", g)
		}
		c.apply(g, 100)
		c.converge(g, 300)
	}

	c.start(old)
	for _, g := range groups {
		if term, err := old.db.Group(g).GetUint64([]byte("CurrentTerm")); err != nil || term == 0 {
			t.Fatalf("%s: reopened node's current term: %d %v", g, term, err)
		}
		c.converge(g, 300)
	}
	// The caught-up node serves again: it votes and replicates.
	c.apply("shard-7", 10)
	c.converge("shard-7", 310)
}

package rpcmux

import (
	"encoding/binary"
	"fmt"
	"io"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	"github.com/mqstream/mqstream/internal/testutil"
)

// counter is a state machine that counts and sums the uint64s applied.
type counter struct {
	mu         sync.Mutex
	count, sum uint64
}

func (c *counter) Apply(l *raft.Log) any {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.count++
	c.sum += binary.BigEndian.Uint64(l.Data)
	return c.count
}

func (c *counter) state() (count, sum uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.count, c.sum
}

func (c *counter) Snapshot() (raft.FSMSnapshot, error) {
	count, sum := c.state()
	return counterSnapshot{count, sum}, nil
}

func (c *counter) Restore(r io.ReadCloser) error {
	defer r.Close()
	var b [16]byte
	if _, err := io.ReadFull(r, b[:]); err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.count, c.sum = binary.BigEndian.Uint64(b[:8]), binary.BigEndian.Uint64(b[8:])
	return nil
}

type counterSnapshot struct{ count, sum uint64 }

func (s counterSnapshot) Persist(sink raft.SnapshotSink) error {
	b := binary.BigEndian.AppendUint64(binary.BigEndian.AppendUint64(nil, s.count), s.sum)
	if _, err := sink.Write(b); err != nil {
		_ = sink.Cancel()
		return err
	}
	return sink.Close()
}

func (counterSnapshot) Release() {}

// raftNode is one member of a test Raft group, over its own mux.
type raftNode struct {
	id  string
	mux *Mux
	r   *raft.Raft
	fsm *counter
}

// startRaftGroup starts a Raft group "g1" over a mux per id, sharing faults,
// with fast timers, bootstrapped with every member.
func startRaftGroup(t *testing.T, faults *Faults, ids ...string) []*raftNode {
	t.Helper()
	var nodes []*raftNode
	var servers []raft.Server
	for _, id := range ids {
		n := &raftNode{id: id, mux: listen(t, id, faults), fsm: &counter{}}
		nodes = append(nodes, n)
		servers = append(servers, raft.Server{ID: raft.ServerID(id), Address: raft.ServerAddress(addr(n.mux))})
	}
	for i, n := range nodes {
		conf := raft.DefaultConfig()
		conf.LocalID = raft.ServerID(n.id)
		conf.HeartbeatTimeout = 200 * time.Millisecond
		conf.ElectionTimeout = 200 * time.Millisecond
		conf.LeaderLeaseTimeout = 100 * time.Millisecond
		conf.CommitTimeout = 5 * time.Millisecond
		conf.Logger = hclog.New(&hclog.LoggerOptions{Name: n.id, Output: io.Discard, Level: hclog.Error})
		trans := raft.NewNetworkTransport(n.mux.StreamLayer("g1"), 3, 2*time.Second, io.Discard)
		logs, snaps := raft.NewInmemStore(), raft.NewInmemSnapshotStore()
		r, err := raft.NewRaft(conf, n.fsm, logs, logs, snaps, trans)
		if err != nil {
			t.Fatal(err)
		}
		n.r = r
		t.Cleanup(func() {
			if err := r.Shutdown().Error(); err != nil {
				t.Errorf("%s: shutdown: %v", n.id, err)
			}
			_ = trans.Close()
		})
		if i == 0 {
			if err := r.BootstrapCluster(raft.Configuration{Servers: servers}).Error(); err != nil {
				t.Fatal(err)
			}
		}
	}
	return nodes
}

// leaderAmong waits for one of nodes to lead and returns it.
func leaderAmong(t *testing.T, nodes ...*raftNode) *raftNode {
	t.Helper()
	var leader *raftNode
	testutil.Eventually(t, 10*time.Second, "a leader", func() bool {
		for _, n := range nodes {
			if n.r.State() == raft.Leader {
				leader = n
				return true
			}
		}
		return false
	})
	return leader
}

// apply applies the values from..to-1 on leader.
func apply(t *testing.T, leader *raftNode, from, to uint64) {
	t.Helper()
	for v := from; v < to; v++ {
		if err := leader.r.Apply(binary.BigEndian.AppendUint64(nil, v), 2*time.Second).Error(); err != nil {
			t.Fatalf("apply %d on %s: %v", v, leader.id, err)
		}
	}
}

// converged waits until every node's state machine has applied n values
// summing to sum.
func converged(t *testing.T, nodes []*raftNode, n, sum uint64) {
	t.Helper()
	testutil.Eventually(t, 10*time.Second, fmt.Sprintf("all nodes at %d entries summing to %d", n, sum), func() bool {
		for _, node := range nodes {
			if c, s := node.fsm.state(); c != n || s != sum {
				return false
			}
		}
		return true
	})
}

// sumTo is 0 + 1 + ... + n-1.
func sumTo(n uint64) uint64 { return n * (n - 1) / 2 }

func TestRaftGroupOverMuxSurvivesPartition(t *testing.T) {
	faults := NewFaults()
	nodes := startRaftGroup(t, faults, "n1", "n2", "n3")
	leader := leaderAmong(t, nodes...)
	apply(t, leader, 0, 50)
	converged(t, nodes, 50, sumTo(50))

	// Cut the leader off from both followers: they elect one of them.
	var followers []*raftNode
	for _, n := range nodes {
		if n != leader {
			followers = append(followers, n)
			faults.Partition(addr(leader.mux), addr(n.mux))
		}
	}
	newLeader := leaderAmong(t, followers...)
	testutil.Eventually(t, 10*time.Second, "the old leader to step down", func() bool {
		return leader.r.State() != raft.Leader
	})
	apply(t, newLeader, 50, 100)
	converged(t, followers, 100, sumTo(100))
	if c, _ := leader.fsm.state(); c != 50 {
		t.Fatalf("the cut-off old leader applied %d entries; want 50", c)
	}

	// Heal: the old leader catches up and follows.
	faults.Heal()
	converged(t, nodes, 100, sumTo(100))
	apply(t, leaderAmong(t, nodes...), 100, 110)
	converged(t, nodes, 110, sumTo(110))
	if got := leaderAmong(t, nodes...); got == leader {
		t.Logf("%s leads again after the heal", got.id) // allowed: a later election may pick it
	}
}

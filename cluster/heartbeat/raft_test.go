package heartbeat

import (
	"fmt"
	"io"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"

	"github.com/mqstream/mqstream/cluster/rpcmux"
	"github.com/mqstream/mqstream/internal/testutil"
)

// nopFSM is a state machine that keeps nothing.
type nopFSM struct{}

func (nopFSM) Apply(*raft.Log) any                    { return nil }
func (nopFSM) Snapshot() (raft.FSMSnapshot, error)    { return nopSnapshot{}, nil }
func (nopFSM) Restore(r io.ReadCloser) error          { return r.Close() }
func (nopSnapshot) Persist(s raft.SnapshotSink) error { return s.Close() }
func (nopSnapshot) Release()                          {}

type nopSnapshot struct{}

// raftCluster is nodes each running every group, over NetworkTransports on
// their muxes, with heartbeats through their coalescers.
type raftCluster struct {
	nodes  []*testNode
	groups []string
	rafts  map[string][]*raft.Raft // by group, in the order of nodes
}

// startRaftCluster starts groups on nodes; spread: the groups' first
// leaders are spread over the nodes, else the first node leads them all.
// The groups' timers are the node's (raft's defaults, with a lease as long
// as the heartbeat timeout) for heartbeat timeout hb, and the coalescer's
// in proportion, as the node wires it.
func startRaftCluster(t *testing.T, faults *rpcmux.Faults, nodes, groups int, spread bool, hb time.Duration) *raftCluster {
	t.Helper()
	c := &raftCluster{rafts: map[string][]*raft.Raft{}}
	for i := range nodes {
		c.nodes = append(c.nodes, newNode(t, "n"+strconv.Itoa(i+1), faults, ForHeartbeatTimeout(hb)))
	}
	var servers []raft.Server
	for _, n := range c.nodes {
		servers = append(servers, raft.Server{ID: raft.ServerID(n.id), Address: n.addr()})
	}
	for g := range groups {
		group := fmt.Sprintf("shard-%d", g)
		c.groups = append(c.groups, group)
		for i, n := range c.nodes {
			conf := raft.DefaultConfig()
			conf.LocalID = raft.ServerID(n.id)
			conf.HeartbeatTimeout, conf.ElectionTimeout, conf.LeaderLeaseTimeout = hb, hb, hb
			conf.CommitTimeout = 50 * time.Millisecond
			conf.Logger = raftLogger(n.id + "/" + group)
			inner := raft.NewNetworkTransport(n.mux.StreamLayer(group), 3, 2*time.Second, io.Discard)
			trans := n.beats.Wrap(group, inner)
			logs := raft.NewInmemStore()
			r, err := raft.NewRaft(conf, nopFSM{}, logs, logs, raft.NewInmemSnapshotStore(), trans)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() {
				_ = r.Shutdown().Error()
				_ = trans.(raft.WithClose).Close()
			})
			// The node that bootstraps a group is the only candidate.
			if (spread && i == g%nodes) || (!spread && i == 0) {
				if err := r.BootstrapCluster(raft.Configuration{Servers: servers}).Error(); err != nil {
					t.Fatal(err)
				}
			}
			c.rafts[group] = append(c.rafts[group], r)
		}
	}
	return c
}

// leaders waits until every group has one leader among the nodes not in
// except and returns each group's leader's index.
func (c *raftCluster) leaders(t *testing.T, except ...int) map[string]int {
	t.Helper()
	out := map[string]int{}
	testutil.Eventually(t, 15*time.Second, "a leader in every group", func() bool {
		for _, g := range c.groups {
			out[g] = -1
			for i, r := range c.rafts[g] {
				if r.State() == raft.Leader && !contains(except, i) {
					out[g] = i
				}
			}
			if out[g] < 0 {
				return false
			}
		}
		return true
	})
	return out
}

// configured waits until every replica of every group knows the group's
// servers (its leader's bootstrap configuration has reached it): a
// replica that does not yet is no candidate, so a group cut off from its
// first leader before then could never elect another.
func (c *raftCluster) configured(t *testing.T) {
	t.Helper()
	testutil.Eventually(t, 15*time.Second, "every replica to know its group's servers", func() bool {
		for _, g := range c.groups {
			for _, r := range c.rafts[g] {
				f := r.GetConfiguration()
				if f.Error() != nil || len(f.Configuration().Servers) != len(c.nodes) {
					return false
				}
			}
		}
		return true
	})
}

func contains(s []int, x int) bool {
	for _, v := range s {
		if v == x {
			return true
		}
	}
	return false
}

// terms returns every replica's current term.
func (c *raftCluster) terms() map[string][]uint64 {
	out := map[string][]uint64{}
	for _, g := range c.groups {
		for _, r := range c.rafts[g] {
			term, _ := strconv.ParseUint(r.Stats()["term"], 10, 64)
			out[g] = append(out[g], term)
		}
	}
	return out
}

// TestLeadershipHoldsOverBatchedHeartbeats: groups whose heartbeats go in
// batches keep their leaders (no election in several lease periods and
// heartbeat timeouts), and the heartbeats did go in batches.
func TestLeadershipHoldsOverBatchedHeartbeats(t *testing.T) {
	// The node's timings (a shorter heartbeat timeout would make a busy
	// test machine's pauses look like a dead leader).
	const hb = time.Second
	c := startRaftCluster(t, nil, 3, 6, false, hb)
	before := c.leaders(t)
	// Every follower knows its leader's term (one may not have heard
	// from it yet right after the election).
	var terms map[string][]uint64
	testutil.Eventually(t, 10*time.Second, "every replica in its leader's term", func() bool {
		terms = c.terms()
		for _, ts := range terms {
			for _, term := range ts {
				if term == 0 || term != ts[0] {
					return false
				}
			}
		}
		return true
	})
	callsBefore, beatsBefore := c.sent()
	// Ten heartbeat rounds to each follower, counted rather than timed
	// (each batch carries one round to one follower; with this timeout a
	// round goes out about every 0.4 s, so about four heartbeat timeouts):
	// any missed lease or heartbeat timeout would have moved a term on.
	want := int64(10 * 2)
	lost := ""
	testutil.Eventually(t, 30*hb, "ten heartbeat rounds to each follower", func() bool {
		for _, g := range c.groups {
			if r := c.rafts[g][before[g]]; r.State() != raft.Leader {
				lost = fmt.Sprintf("%s: node %d lost its leadership (%s)", g, before[g], r.State())
				return true
			}
		}
		calls, _ := c.sent()
		return calls-callsBefore >= want
	})
	if lost != "" {
		t.Fatal(lost)
	}
	if after := c.terms(); fmt.Sprint(after) != fmt.Sprint(terms) {
		t.Fatalf("terms moved without a fault: %v, then %v", terms, after)
	}
	calls, beats := c.sent()
	calls, beats = calls-callsBefore, beats-beatsBefore
	t.Logf("%d heartbeats in %d batches", beats, calls)
	// One node leads the six groups: its batches to each follower carry
	// the heartbeats of most of them.
	if calls == 0 || beats < 3*calls {
		t.Fatalf("%d heartbeats in %d batches; want more than 3 a batch", beats, calls)
	}
}

// TestPartitionedLeaderStepsDown: a leader cut off from both followers
// (once they have its groups' configurations) gets no heartbeat answers, loses its lease and steps down in every
// group it led; the others elect leaders among themselves, and after the
// heal every group has one leader.
func TestPartitionedLeaderStepsDown(t *testing.T) {
	faults := rpcmux.NewFaults()
	c := startRaftCluster(t, faults, 3, 6, true, 250*time.Millisecond)
	// Cut only once the followers can elect a leader without it.
	c.configured(t)
	leaders := c.leaders(t)
	cut := leaders[c.groups[0]]
	var led []string
	for g, i := range leaders {
		if i == cut {
			led = append(led, g)
		}
	}
	for i, n := range c.nodes {
		if i != cut {
			faults.Partition(string(c.nodes[cut].addr()), string(n.addr()))
		}
	}
	cutAt := time.Now()
	testutil.Eventually(t, 10*time.Second, "the cut-off node to step down everywhere", func() bool {
		for _, g := range led {
			if c.rafts[g][cut].State() == raft.Leader {
				return false
			}
		}
		return true
	})
	t.Logf("%s stepped down in %v within %s", c.nodes[cut].id, led, time.Since(cutAt).Round(time.Millisecond))
	c.leaders(t, cut)
	faults.Heal()
	c.leaders(t)
}

// sent sums the batches and heartbeats every node sent.
func (c *raftCluster) sent() (calls, beats int64) {
	for _, n := range c.nodes {
		calls += n.calls.calls.Load()
		beats += n.calls.beats.Load()
	}
	return calls, beats
}

// raftLogger discards raft's logs unless MQSTREAM_TEST_LOG is set.
func raftLogger(name string) hclog.Logger {
	if os.Getenv("MQSTREAM_TEST_LOG") != "" {
		return hclog.New(&hclog.LoggerOptions{Name: name, Output: os.Stderr, Level: hclog.Info})
	}
	return hclog.New(&hclog.LoggerOptions{Name: name, Output: io.Discard, Level: hclog.Error})
}

package node

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mqstream/mqstream/cluster"
	"github.com/mqstream/mqstream/cluster/shards"
	"github.com/mqstream/mqstream/config"
	"github.com/mqstream/mqstream/internal/testutil"
)

// deleteNode asks n's REST API to remove node id and returns the status.
func deleteNode(t *testing.T, n *Node, id string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest("DELETE", "http://"+n.HTTPAddr()+"/v1/cluster/nodes/"+id, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body struct {
		Error struct{ Message string } `json:"error"`
	}
	_ = json.NewDecoder(resp.Body).Decode(&body)
	return resp.StatusCode, body.Error.Message
}

// replicasOn reports whether every shard, as n sees it, is replicated on
// exactly the nodes ids.
func replicasOn(n *Node, ids ...string) bool {
	list := n.Shards()
	if len(list) == 0 {
		return false
	}
	for _, s := range list {
		got := slices.Clone(s.Replicas)
		slices.Sort(got)
		if !slices.Equal(got, ids) {
			return false
		}
	}
	return true
}

// TestDeadNodeRemovedAndReplaced: a node of three is stopped for good and
// removed with `node remove` (REST): the shards go on with the other two,
// writes keep being acknowledged; a new node joins in its place, receives
// every shard and every record at the same offsets; the removed node,
// started again with its data, is refused. (When the planners start late,
// as when announcing the formed cluster times out, n3 is removed before any
// layout is recorded: the founding layout is then recorded without it.
// A 12 s sleep at the start of replication.plan reproduces that every
// time; before the fix the metadata group refused the founding layout
// forever and this test failed about one CI run in two.)
func TestDeadNodeRemovedAndReplaced(t *testing.T) {
	nodes, cfgs := startClusterConfigs(t, nil)
	n1, n2, n3 := nodes[0], nodes[1], nodes[2]
	publishSeq(t, n3.MQTTAddr(), "before", "crash/x", "before", 20)
	sameRecords(t, nodes, "crash", 20)

	// Bad requests first: an alive node, this node, an unknown one.
	if code, msg := deleteNode(t, n1, "n2"); code != http.StatusConflict || !strings.Contains(msg, "alive") {
		t.Fatalf("removing an alive node: %d %q, want 409 saying it is alive", code, msg)
	}
	if code, _ := deleteNode(t, n1, "n1"); code != http.StatusConflict {
		t.Fatalf("a node removing itself: %d, want 409", code)
	}
	if code, _ := deleteNode(t, n1, "nope"); code != http.StatusNotFound {
		t.Fatalf("removing an unknown node: %d, want 404", code)
	}
	if code, msg := deleteNode(t, n1, "n3?force=maybe"); code != http.StatusBadRequest || !strings.Contains(msg, "force") {
		t.Fatalf("force that is not a boolean: %d %q, want 400 naming force", code, msg)
	}

	if err := n3.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 20*time.Second, "n3 seen down", func() bool {
		for _, m := range n1.Members() {
			if m.ID == "n3" {
				return m.Status != "alive" && m.Status != "suspect"
			}
		}
		return true
	})
	if code, msg := deleteNode(t, n2, "n3"); code != http.StatusOK {
		t.Fatalf("remove n3: %d %s", code, msg)
	}
	for _, n := range []*Node{n1, n2} {
		// Each shard group removes n3 through its own log: on two busy
		// cores running other packages' tests this once took over 20 s.
		testutil.Eventually(t, 60*time.Second, n.ID()+": every shard on n1 and n2 only", func() bool { return replicasOn(n, "n1", "n2") })
	}
	publishSeq(t, n1.MQTTAddr(), "after-remove", "crash/x", "removed", 20)
	sameRecords(t, []*Node{n1, n2}, "crash", 40)
	if code, _ := deleteNode(t, n1, "n3"); code != http.StatusOK {
		t.Fatalf("removing a removed node again: %d, want 200", code)
	}
	notListed := func(what string) {
		t.Helper()
		testutil.Eventually(t, 20*time.Second, what, func() bool {
			return !slices.ContainsFunc(n1.Members(), func(m cluster.Member) bool { return m.ID == "n3" })
		})
	}
	notListed("the removed n3 gone from the member list")

	// A new node takes n3's place.
	c4 := clusterConfig(t, "n4", 3, cfgs[0].Cluster.Gossip)
	c4.Cluster.Shards = 4
	n4 := startNode(t, c4)
	testutil.Eventually(t, 30*time.Second, "n4 ready with its shards", n4.Ready)
	for _, n := range []*Node{n1, n2, n4} {
		testutil.Eventually(t, 30*time.Second, n.ID()+": every shard on n1, n2 and n4", func() bool { return replicasOn(n, "n1", "n2", "n4") })
	}
	publishSeq(t, n4.MQTTAddr(), "after-join", "crash/x", "joined", 20)
	sameRecords(t, []*Node{n1, n2, n4}, "crash", 60)

	// n3 comes back with its data: refused.
	old, err := Open(cfgs[2], testutil.Logger())
	if err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 1)
	go func() { errc <- old.Run(context.Background(), 5*time.Second) }()
	refused := func(want string) {
		t.Helper()
		select {
		case err := <-errc:
			if !errors.Is(err, ErrNodeRemoved) || !strings.Contains(err.Error(), want) {
				t.Fatalf("the removed node stopped with %v, want ErrNodeRemoved saying %q", err, want)
			}
		case <-time.After(30 * time.Second):
			t.Fatal("the removed node did not stop")
		}
	}
	refused("delete its data directory")
	// With an empty data dir but the same node.id: refused, and the data
	// dir is not blamed.
	fresh := cfgs[2]
	fresh.Node.DataDir = t.TempDir()
	again, err := Open(fresh, testutil.Logger())
	if err != nil {
		t.Fatal(err)
	}
	go func() { errc <- again.Run(context.Background(), 5*time.Second) }()
	refused("start this node with a new node.id (its data directory")
	sameRecords(t, []*Node{n1, n2, n4}, "crash", 60)
	// Its refused start met the others' gossip and went again (without
	// leaving: the others see it fail): it is not listed among the members
	// (serf keeps a failed or left member for hours).
	notListed("the refused n3 gone from the member list again")
}

// holdersOf returns the nodes (of nodes) whose replica of stream's shard
// is open, as each sees itself.
func holdersOf(nodes []*Node, stream string) []*Node {
	var out []*Node
	for _, n := range nodes {
		list := n.Shards()
		if len(list) > 0 && list[shards.ShardOf(stream, len(list))].Local {
			out = append(out, n)
		}
	}
	return out
}

// settled reports whether the nodes agree on every shard's replicas and
// each holds an open replica exactly where the layout places one.
func settled(nodes []*Node) bool {
	var ref []shards.ShardStatus
	for _, n := range nodes {
		list := n.Shards()
		if len(list) == 0 {
			return false
		}
		if ref == nil {
			ref = list
		}
		for i, s := range list {
			if !slices.Equal(s.Replicas, ref[i].Replicas) || s.Local != slices.Contains(s.Replicas, n.ID()) {
				return false
			}
		}
	}
	return true
}

// spread reports whether n sees every shard on rf replicas, every node
// of ids holding within one of the others.
func spread(n *Node, rf int, ids ...string) bool {
	held := map[string]int{}
	for _, s := range n.Shards() {
		if len(s.Replicas) != rf {
			return false
		}
		for _, id := range s.Replicas {
			held[id]++
		}
	}
	lo, hi := 1<<30, 0
	for _, id := range ids {
		lo, hi = min(lo, held[id]), max(hi, held[id])
	}
	return len(held) == len(ids) && hi-lo <= 1 && lo > 0
}

// TestFourthNodeJoinsAndTakesItsShare: a node (whose id sorts first)
// meets a formed cluster of three (replication factor 3): it joins, the
// metadata group's leader gives it its share of the replicas and of the
// preferred leaders, writes go on through every node meanwhile, and every
// node reads every stream.
func TestFourthNodeJoinsAndTakesItsShare(t *testing.T) {
	nodes, cfgs := startClusterConfigs(t, nil)
	publishSeq(t, nodes[0].MQTTAddr(), "before", "crash/x", "before", 20)
	c0 := clusterConfig(t, "n0", 3, cfgs[1].Cluster.Gossip)
	c0.Cluster.Shards = 4
	n0 := startNode(t, c0)
	all := append([]*Node{n0}, nodes...)
	testutil.Eventually(t, 30*time.Second, "n0 ready with its shards", n0.Ready)
	for _, n := range all {
		testutil.Eventually(t, 30*time.Second, n.ID()+" sees the shards spread over four nodes", func() bool {
			return spread(n, 3, "n0", "n1", "n2", "n3")
		})
	}
	testutil.Eventually(t, 30*time.Second, "n0 leads a shard", func() bool {
		for _, s := range n0.Shards() {
			if s.Leader == "n0" {
				return true
			}
		}
		return false
	})
	testutil.Eventually(t, 30*time.Second, "every node's replicas where the layout places them", func() bool { return settled(all) })
	for i, n := range all {
		publishSeq(t, n.MQTTAddr(), fmt.Sprintf("after-%d", i), "crash/x", fmt.Sprintf("after-%d", i), 5)
	}
	sameRecords(t, holdersOf(all, "crash"), "crash", 40)
	for _, n := range all {
		info, err := n.repl.store.DescribeStream("crash")
		if err != nil || info.Records != 40 {
			t.Fatalf("%s describes crash: %+v %v", n.ID(), info, err)
		}
	}
}

// TestDeadNodeReplacedAfterTimeout: a node of four (a founder, so one of
// the metadata group's voters) stays down past cluster.dead_node_timeout:
// its replicas are recreated on the three others (every shard back on
// three replicas), its metadata vote goes to the node that joined last,
// nothing acknowledged is lost, and writes go on.
func TestDeadNodeReplacedAfterTimeout(t *testing.T) {
	nodes, cfgs := startClusterConfigs(t, func(c *config.Config) { c.Cluster.DeadNodeTimeout = 2 * time.Second })
	c4 := clusterConfig(t, "n4", 3, cfgs[0].Cluster.Gossip)
	c4.Cluster.Shards, c4.Cluster.DeadNodeTimeout = 4, 2*time.Second
	n4 := startNode(t, c4)
	all := append(nodes, n4)
	testutil.Eventually(t, 30*time.Second, "n4 ready with its shards", n4.Ready)
	// 60 s: a fourth node takes its replicas by snapshots and fetches,
	// slow under -race and the whole suite's load (30 s timed out once).
	testutil.Eventually(t, 60*time.Second, "the shards spread over four nodes", func() bool {
		return spread(nodes[0], 3, "n1", "n2", "n3", "n4") && settled(all)
	})
	publishSeq(t, n4.MQTTAddr(), "before", "crash/x", "before", 20)
	sameRecords(t, holdersOf(all, "crash"), "crash", 20)
	if err := nodes[2].Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	survivors := []*Node{nodes[0], nodes[1], n4}
	for _, n := range survivors {
		testutil.Eventually(t, 40*time.Second, n.ID()+": every shard back on n1, n2 and n4", func() bool {
			return replicasOn(n, "n1", "n2", "n4")
		})
	}
	testutil.Eventually(t, 20*time.Second, "n4 to vote in the metadata group in n3's place", func() bool {
		voters := nodes[0].repl.meta.Voters()
		slices.Sort(voters)
		return slices.Equal(voters, []string{"n1", "n2", "n4"})
	})
	testutil.Eventually(t, 30*time.Second, "every node's replicas where the layout places them", func() bool { return settled(survivors) })
	publishSeq(t, nodes[1].MQTTAddr(), "after", "crash/x", "after", 20)
	sameRecords(t, survivors, "crash", 40)
}

// A planner that stopped leading forgets its sightings of down nodes
// (plan calls forget while it does not lead): when it leads again, a
// node seen down in its earlier leadership, up since and down again only
// now, is not given up for dead at once. Found by review: its replicas
// were recreated elsewhere and its metadata vote handed over at the first
// pass of the new leadership.
func TestDownSinceForgetsEarlierSightings(t *testing.T) {
	const timeout = 50 * time.Millisecond
	var d downSince
	ids := []string{"n1", "n2", "n3", "n4"}
	alive := map[string]bool{"n1": true, "n2": true, "n3": true}
	d.deadFor(ids, alive, timeout) // n4 seen down
	time.Sleep(2 * timeout)
	if !d.dead("n4", timeout) {
		t.Fatal("n4, down for twice the timeout, is not dead")
	}
	d.forget() // another node leads for a while
	if dead := d.deadFor(ids, alive, timeout); dead["n4"] || d.dead("n4", timeout) {
		t.Fatal("n4, first seen down now by the new leadership, is given up for dead at once")
	}
}

// TestNodeNeededForAMajority: removing a node is refused (unless forced)
// when a shard it replicates has fewer than a majority of its other
// replicas up: removed, the node could never give that shard its
// majority back.
func TestNodeNeededForAMajority(t *testing.T) {
	p := func(ids ...string) []shards.Peer {
		var out []shards.Peer
		for _, id := range ids {
			out = append(out, shards.Peer{ID: id})
		}
		return out
	}
	l := shards.Layout{Shards: [][]shards.Peer{p("a", "b", "d"), p("a", "c", "e"), p("d"), p("b", "d")}}
	up := map[string]bool{"a": true, "c": true, "e": true}
	alive := func(id string) bool { return up[id] }
	for _, tc := range []struct {
		id, want string
	}{
		{"e", ""}, // shard 1: a and c up
		{"c", ""}, // shard 1: a and e up
		{"d", "shard 0 has 1 of its 3 replicas up besides d [a]; shard 2 has 0 of its 1 replicas up besides d []; shard 3 has 0 of its 2 replicas up besides d []"},
		{"b", "shard 0 has 1 of its 3 replicas up besides b [a]; shard 3 has 0 of its 2 replicas up besides b []"},
		{"x", ""}, // holds nothing
	} {
		if got := needsNode(l, tc.id, alive); got != tc.want {
			t.Errorf("removing %s: %q, want %q", tc.id, got, tc.want)
		}
	}
}

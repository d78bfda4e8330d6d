package node

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	paho3 "github.com/eclipse/paho.mqtt.golang"

	"github.com/mqstream/mqstream/cluster/shards"
	"github.com/mqstream/mqstream/config"
	"github.com/mqstream/mqstream/internal/testutil"
	"github.com/mqstream/mqstream/streams"
)

// startCluster starts three nodes that form a cluster with 4 shards
// replicated 3 times, and waits until every shard has a leader.
func startCluster(t *testing.T) []*Node { return startClusterWith(t, nil) }

// startClusterWith is startCluster with each node's configuration adjusted
// by adjust (nil: none).
func startClusterWith(t *testing.T, adjust func(*config.Config)) []*Node {
	t.Helper()
	nodes, _ := startClusterConfigs(t, adjust)
	return nodes
}

// startClusterConfigs is startClusterWith that also returns each node's
// configuration with the addresses it bound, so that a node can be started
// again as it was.
func startClusterConfigs(t *testing.T, adjust func(*config.Config)) ([]*Node, []config.Config) {
	t.Helper()
	return startClusterLogged(t, adjust, nil)
}

// startClusterLogged is startClusterConfigs with each node logging to
// logger(node id) (nil: testutil.Logger).
func startClusterLogged(t *testing.T, adjust func(*config.Config), logger func(id string) *slog.Logger) ([]*Node, []config.Config) {
	t.Helper()
	var cfgs []config.Config
	cfg := func(id string, seeds ...string) *Node {
		c := clusterConfig(t, id, 3, seeds...)
		c.Cluster.Shards = 4
		if adjust != nil {
			adjust(&c)
		}
		log := testutil.Logger()
		if logger != nil {
			log = logger(id)
		}
		n := startNodeLogged(t, c, log)
		c.MQTT.TCP, c.HTTP.Listen, c.Cluster.Gossip, c.Cluster.RPC = n.MQTTAddr(), n.HTTPAddr(), gossipAddr(n), n.repl.rpcAddr()
		cfgs = append(cfgs, c)
		return n
	}
	n1 := cfg("n1")
	nodes := []*Node{n1, cfg("n2", gossipAddr(n1)), cfg("n3", gossipAddr(n1))}
	for _, n := range nodes {
		testutil.Eventually(t, 20*time.Second, n.ID()+" ready with its shards", n.Ready)
	}
	cfgs[0].Cluster.Seeds = []string{cfgs[1].Cluster.Gossip, cfgs[2].Cluster.Gossip}
	return nodes, cfgs
}

// publishSeq publishes n QoS 1 messages on topic through addr, one at a
// time, each acknowledged before the next.
func publishSeq(t *testing.T, addr, id, topic, prefix string, n int) {
	t.Helper()
	c := paho3.NewClient(paho3.NewClientOptions().AddBroker("tcp://" + addr).SetClientID(id).SetAutoReconnect(false))
	if tok := c.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("connect to %s: %v", addr, tok.Error())
	}
	defer c.Disconnect(0)
	for i := 0; i < n; i++ {
		if tok := c.Publish(topic, 1, false, fmt.Sprintf("%s-%d", prefix, i)); !tok.WaitTimeout(20*time.Second) || tok.Error() != nil {
			t.Fatalf("publish %s-%d through %s: %v", prefix, i, addr, tok.Error())
		}
	}
}

// sameRecords waits until every node's replica of stream holds want
// payloads (any order across publishers), and checks that they hold them
// at the same offsets with the same timestamps.
func sameRecords(t *testing.T, nodes []*Node, stream string, want int) {
	t.Helper()
	var ref []streams.Record
	testutil.Eventually(t, 20*time.Second, fmt.Sprintf("%d records of %s on every node", want, stream), func() bool {
		ref = nil
		for _, n := range nodes {
			got, err := n.Store().Read(stream, 0, streams.ReadOptions{MaxRecords: 100000})
			if err != nil || len(got) != want {
				return false
			}
			if ref != nil {
				for i := range got {
					if string(got[i].Payload) != string(ref[i].Payload) || got[i].Offset != ref[i].Offset || !got[i].Timestamp.Equal(ref[i].Timestamp) {
						t.Fatalf("%s differs at %d: %s has %q@%d %v, another node %q@%d %v", stream, i, n.ID(),
							got[i].Payload, got[i].Offset, got[i].Timestamp, ref[i].Payload, ref[i].Offset, ref[i].Timestamp)
					}
				}
			}
			ref = got
		}
		return true
	})
	seen := map[string]bool{}
	for _, r := range ref {
		if seen[string(r.Payload)] {
			t.Fatalf("%q stored twice", r.Payload)
		}
		seen[string(r.Payload)] = true
	}
}

func leaderOf(t *testing.T, n *Node, stream string) string {
	t.Helper()
	shard := shards.ShardOf(stream, 4)
	for _, s := range n.Shards() {
		if s.ID == shard {
			return s.Leader
		}
	}
	t.Fatalf("no shard %d", shard)
	return ""
}

// TestClusterReplicatesPublishesAndSurvivesLeaderLoss: MQTT publishes
// through every node of three are stored once on all three, at the same
// offsets; the shard's leader goes away, the others elect a new one, and
// publishes through the survivors go on with nothing acknowledged lost.
func TestClusterReplicatesPublishesAndSurvivesLeaderLoss(t *testing.T) {
	nodes := startCluster(t)
	for _, n := range nodes {
		publishSeq(t, n.MQTTAddr(), "pub-"+n.ID(), "crash/"+n.ID(), n.ID(), 30)
	}
	sameRecords(t, nodes, "crash", 90)
	// Every member announces entries of version 5: the leaders write them.
	for _, n := range nodes {
		if known := n.repl.floors.has(n.members, featureDedupeFloors); !known() || !known() {
			t.Fatalf("%s: not every member announces %s: %+v", n.ID(), featureDedupeFloors, n.members.Members())
		}
	}

	var cl struct {
		Shards []shards.ShardStatus `json:"shards"`
	}
	if getJSON(t, nodes[1], "/v1/cluster", &cl); len(cl.Shards) != 4 || len(cl.Shards[0].Replicas) != 3 || cl.Shards[0].Leader == "" {
		t.Fatalf("/v1/cluster shards: %+v", cl.Shards)
	}
	// Every replica has applied everything: each shard's lag, from the
	// three nodes' applied indexes, comes down to 0.
	testutil.Eventually(t, 10*time.Second, "every shard's replication lag 0", func() bool {
		var lags struct {
			Shards []struct {
				Lag *uint64 `json:"lag"`
			} `json:"shards"`
		}
		getJSON(t, nodes[2], "/v1/cluster", &lags)
		for _, s := range lags.Shards {
			if s.Lag == nil || *s.Lag != 0 {
				return false
			}
		}
		return len(lags.Shards) == 4
	})
	// Raft's own figures of every group the node holds: the four shards
	// and the metadata group.
	var rs struct {
		Groups map[string]map[string]string `json:"groups"`
	}
	if st := getJSON(t, nodes[2], "/v1/cluster/raft", &rs); st != 200 || len(rs.Groups) != 5 ||
		rs.Groups["meta"]["state"] == "" || rs.Groups["shard-0"]["commit_index"] == "" ||
		rs.Groups["shard-3"]["last_log_index"] == "" {
		t.Fatalf("/v1/cluster/raft: %d %+v", st, rs.Groups)
	}

	leader := leaderOf(t, nodes[0], "crash")
	var survivors []*Node
	for _, n := range nodes {
		if n.ID() == leader {
			if err := n.Close(context.Background()); err != nil {
				t.Fatal(err)
			}
			continue
		}
		survivors = append(survivors, n)
	}
	for _, n := range survivors {
		publishSeq(t, n.MQTTAddr(), "after-"+n.ID(), "crash/"+n.ID(), "after-"+n.ID(), 20)
	}
	sameRecords(t, survivors, "crash", 130)
	if l := leaderOf(t, survivors[0], "crash"); l == leader || l == "" {
		t.Fatalf("leader after the loss: %q", l)
	}
}

// TestClusterStreamAdministrationThroughAnyNode: a stream created over
// REST on one node exists on every node; deleted on another, it is gone
// everywhere; a second creation is a 409.
func TestClusterStreamAdministrationThroughAnyNode(t *testing.T) {
	nodes := startCluster(t)
	post := func(n *Node, body string) int {
		resp, err := http.Post("http://"+n.HTTPAddr()+"/v1/streams", "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := post(nodes[2], `{"name": "orders", "retention": {"max_records": 1000}}`); code != http.StatusCreated {
		t.Fatalf("create through n3: %d", code)
	}
	for _, n := range nodes {
		testutil.Eventually(t, 10*time.Second, "orders on "+n.ID(), func() bool {
			info, err := n.Store().DescribeStream("orders")
			return err == nil && info.Retention.MaxRecords == 1000
		})
	}
	if code := post(nodes[0], `{"name": "orders"}`); code != http.StatusConflict {
		t.Fatalf("second create through n1: %d", code)
	}
	req, _ := http.NewRequest(http.MethodDelete, "http://"+nodes[1].HTTPAddr()+"/v1/streams/orders", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		t.Fatalf("delete through n2: %d", resp.StatusCode)
	}
	for _, n := range nodes {
		testutil.Eventually(t, 10*time.Second, "orders gone on "+n.ID(), func() bool {
			_, err := n.Store().DescribeStream("orders")
			return err != nil
		})
	}
}

// TestNodeClosesWhileItsPeersAreDown: the last node of three stops
// promptly although its groups' appends to the stopped peers wait for
// them to come back (appends.Options.PeerHold, a minute): its shards and
// its metadata member release their transports before raft shuts down,
// which waits for its replication.
func TestNodeClosesWhileItsPeersAreDown(t *testing.T) {
	nodes := startCluster(t)
	publishSeq(t, nodes[2].MQTTAddr(), "pub", "held/x", "m", 10)
	// The metadata group's leader stops last, so that its member's
	// appends wait for the others too.
	var leader string
	testutil.Eventually(t, 10*time.Second, "a metadata leader", func() bool {
		_, id, ok := nodes[0].Metadata()
		leader = id
		return ok && id != ""
	})
	slices.SortStableFunc(nodes, func(a, b *Node) int {
		return cmp.Compare(boolInt(a.ID() == leader), boolInt(b.ID() == leader))
	})
	for _, n := range nodes[:2] {
		if err := n.Close(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	done := make(chan error, 1)
	go func() { done <- nodes[2].Close(context.Background()) }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("%s still stopping 30 s after its peers stopped", nodes[2].ID())
	}
}

// TestRestartWhileANodeIsDownServes: with one node of three down, a
// survivor that restarts (its data dir keeps the layout) is ready, and
// lets MQTT clients in, once it joined the other survivor: it was a
// member of the formed cluster, and two of three are a majority. Before,
// it waited for bootstrap_expect members alive ("waiting for the cluster
// to form: 2 of 3") however long the third stayed down.
func TestRestartWhileANodeIsDownServes(t *testing.T) {
	nodes, cfgs := startClusterConfigs(t, nil)
	publishSeq(t, nodes[0].MQTTAddr(), "pub", "down/x", "m", 5)
	for _, i := range []int{2, 0} {
		if err := nodes[i].Close(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	n1 := startNode(t, cfgs[0])
	last := ""
	testutil.Eventually(t, 30*time.Second, "the restarted node to be ready with one node of three down", func() bool {
		ok, reason := n1.Readiness()
		if reason != last {
			t.Logf("ready %v: %s", ok, reason)
			last = reason
		}
		return ok
	})
	if code := connackCode(t, n1.MQTTAddr()); code != 0 {
		t.Fatalf("CONNACK 0x%02x on the restarted node, want success", code)
	}
	publishSeq(t, n1.MQTTAddr(), "pub2", "down/x", "n", 5)
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

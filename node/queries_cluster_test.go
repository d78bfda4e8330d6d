package node

import (
	"context"
	"encoding/json"
	"fmt"
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

// publishJSON publishes {"i": from} .. {"i": to-1} on topic through addr,
// QoS 1, each acknowledged before the next.
func publishJSON(t *testing.T, addr, id, topic string, from, to int) {
	t.Helper()
	c := paho3.NewClient(paho3.NewClientOptions().AddBroker("tcp://" + addr).SetClientID(id).SetAutoReconnect(false))
	if tok := c.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("connect to %s: %v", addr, tok.Error())
	}
	defer c.Disconnect(0)
	for i := from; i < to; i++ {
		if tok := c.Publish(topic, 1, false, fmt.Sprintf(`{"i":%d}`, i)); !tok.WaitTimeout(20*time.Second) || tok.Error() != nil {
			t.Fatalf("publish %d through %s: %v", i, addr, tok.Error())
		}
	}
}

// outputIs waits until n's replica of stream holds exactly the rows
// {"i": 0} .. {"i": want-1}, in order: none lost, none repeated.
func outputIs(t *testing.T, n *Node, stream string, want int) {
	t.Helper()
	var got []streams.Record
	testutil.Eventually(t, 30*time.Second, fmt.Sprintf("%d rows in %s on %s", want, stream, n.ID()), func() bool {
		var err error
		got, err = n.Store().Read(stream, 0, streams.ReadOptions{MaxRecords: 10000})
		return err == nil && len(got) >= want
	})
	for i, r := range got {
		var row struct{ I int }
		if err := json.Unmarshal(r.Payload, &row); err != nil || row.I != i || i >= want {
			t.Fatalf("%s on %s: row %d is %s, want {\"i\":%d} and %d rows", stream, n.ID(), i, r.Payload, i, want)
		}
	}
}

// queryNodes returns, for query id, the node each node's queries table
// names (one row per query, cluster-wide).
func queryNodes(t *testing.T, nodes []*Node, id string) []string {
	t.Helper()
	var out []string
	for _, n := range nodes {
		out = append(out, sqlRows(t, n, "SELECT node, status FROM queries WHERE id = '"+id+"'"))
	}
	return out
}

// TestQueryMovesWithItsHome: in a cluster a continuous query runs on the
// leader of its output stream's shard whichever node it was created on,
// is administered through any node, and when that leader stops, the new
// leader takes the query over from its replicated progress: no row lost,
// none repeated. A view runs on every node holding its source, so any
// node answers a read of it.
func TestQueryMovesWithItsHome(t *testing.T) {
	nodes := startCluster(t)
	home := leaderOf(t, nodes[0], "hot")
	var via *Node // a node that does not lead hot's shard: CREATE is carried
	for _, n := range nodes {
		if n.ID() != home {
			via = n
			break
		}
	}
	publishJSON(t, nodes[0].MQTTAddr(), "p1", "temps/a", 0, 20)
	if got := sqlRows(t, via, "CREATE STREAM hot AS SELECT i FROM temps WHERE i >= 0"); !strings.Contains(got, "created") {
		t.Fatalf("CREATE through %s: %s", via.ID(), got)
	}
	if got := sqlRows(t, via, "CREATE VIEW per_i AS SELECT i, count(*) AS n FROM temps GROUP BY i"); !strings.Contains(got, "created") {
		t.Fatalf("CREATE VIEW through %s: %s", via.ID(), got)
	}
	for _, n := range nodes {
		outputIs(t, n, "hot", 20)
	}
	want := fmt.Sprintf("[[%s running]]", home)
	for i, got := range queryNodes(t, nodes, "hot") {
		if got != want {
			t.Fatalf("queries table on %s: %s, want %s", nodes[i].ID(), got, want)
		}
	}
	// Its definition is in hot's shard's namespace on every replica, under
	// the queries' prefix, away from the consumer groups' keys.
	for _, n := range nodes {
		var keys []string
		set := n.repl.store.set.Load()
		if err := set.ScanKV(shards.ShardOf("hot", 4), nil, func(k, _ []byte) error {
			keys = append(keys, string(k))
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		if !slices.Contains(keys, "cq/d/hot") || slices.ContainsFunc(keys, func(k string) bool { return !strings.HasPrefix(k, "cq/") }) {
			t.Fatalf("hot's shard's namespace on %s: %q", n.ID(), keys)
		}
	}
	// Its metrics come from its node only; SHOW QUERIES lists it on all.
	for _, n := range nodes {
		if has := strings.Contains(scrape(t, n), `mqstream_query_running{query="hot"} 1`); has != (n.ID() == home) {
			t.Errorf("hot's metrics on %s: %v, want them only on %s", n.ID(), has, home)
		}
		if got := sqlRows(t, n, "SHOW QUERIES"); !strings.Contains(got, "hot") {
			t.Errorf("SHOW QUERIES on %s: %s", n.ID(), got)
		}
	}
	for _, n := range nodes {
		testutil.Eventually(t, 10*time.Second, "the view on "+n.ID(), func() bool {
			return sqlRows(t, n, "SELECT n FROM per_i WHERE i = 19") == "[[1]]"
		})
	}
	// Administered through a node that does not run it.
	if got := sqlRows(t, via, "PAUSE QUERY hot"); !strings.Contains(got, "paused") {
		t.Fatalf("PAUSE through %s: %s", via.ID(), got)
	}
	publishJSON(t, via.MQTTAddr(), "p2", "temps/a", 20, 30)
	if got := queryNodes(t, nodes[:1], "hot")[0]; got != fmt.Sprintf("[[%s paused]]", home) {
		t.Fatalf("after PAUSE: %s", got)
	}
	if got := sqlRows(t, via, "RESUME QUERY hot"); !strings.Contains(got, "running") && !strings.Contains(got, "starting") {
		t.Fatalf("RESUME through %s: %s", via.ID(), got)
	}
	outputIs(t, via, "hot", 30)

	// The leader stops: the query moves with the shard's leadership.
	var survivors []*Node
	for _, n := range nodes {
		if n.ID() == home {
			if err := n.Close(context.Background()); err != nil {
				t.Fatal(err)
			}
			continue
		}
		survivors = append(survivors, n)
	}
	publishJSON(t, survivors[0].MQTTAddr(), "p3", "temps/a", 30, 50)
	var next string
	testutil.Eventually(t, 20*time.Second, "a new leader of hot's shard", func() bool {
		next = leaderOf(t, survivors[0], "hot")
		return next != "" && next != home
	})
	for _, n := range survivors {
		outputIs(t, n, "hot", 50)
	}
	testutil.Eventually(t, 10*time.Second, "hot listed on its new node", func() bool {
		return queryNodes(t, survivors[:1], "hot")[0] == fmt.Sprintf("[[%s running]]", next)
	})
	publishJSON(t, survivors[1].MQTTAddr(), "p4", "temps/a", 50, 60)
	for _, n := range survivors {
		outputIs(t, n, "hot", 60)
		if got := sqlRows(t, n, "SELECT n FROM per_i WHERE i = 59"); got != "[[1]]" {
			t.Errorf("the view on %s: %s", n.ID(), got)
		}
	}
	if got := sqlRows(t, survivors[0], "TERMINATE QUERY hot"); strings.HasPrefix(got, "4") || strings.HasPrefix(got, "5") {
		t.Fatalf("TERMINATE QUERY hot: %s", got)
	}
	if got := sqlRows(t, survivors[1], "SELECT id FROM queries WHERE id = 'hot'"); got != "[]" {
		t.Fatalf("hot after TERMINATE: %s", got)
	}
	if got := sqlRows(t, survivors[1], "DROP VIEW per_i"); strings.HasPrefix(got, "4") || strings.HasPrefix(got, "5") {
		t.Fatalf("DROP VIEW per_i: %s", got)
	}
	for _, n := range survivors {
		testutil.Eventually(t, 10*time.Second, "the view gone on "+n.ID(), func() bool {
			return strings.HasPrefix(sqlRows(t, n, "SELECT n FROM per_i"), "4")
		})
	}
}

// TestQueryReadsAnInputHeldElsewhere: with replication factor 2 of three
// nodes, a query whose output's leader holds no replica of its input's
// shard reads the input from another node, and its output is exact.
func TestQueryReadsAnInputHeldElsewhere(t *testing.T) {
	nodes := startClusterWith(t, func(c *config.Config) { c.Cluster.ReplicationFactor = 2 })
	publishJSON(t, nodes[0].MQTTAddr(), "p1", "temps/a", 0, 20)
	// A node knows the leaders of the shards it holds: ask them all.
	leaders := func() []string {
		out := make([]string, 4)
		for _, n := range nodes {
			for _, s := range n.Shards() {
				if s.Local && s.Leader != "" {
					out[s.ID] = s.Leader
				}
			}
		}
		return out
	}
	in := nodes[0].Shards()[shards.ShardOf("temps", 4)]
	out := ""
	testutil.Eventually(t, 20*time.Second, "a shard led by a node without a replica of temps' shard", func() bool {
		l := leaders()
		for i := 0; i < 200 && out == ""; i++ {
			name := fmt.Sprintf("far%d", i)
			if o := l[shards.ShardOf(name, 4)]; o != "" && !slices.Contains(in.Replicas, o) {
				out = name
			}
		}
		return out != ""
	})
	if got := sqlRows(t, nodes[0], "CREATE STREAM "+out+" AS SELECT i FROM temps WHERE i >= 0"); !strings.Contains(got, "created") {
		t.Fatalf("CREATE: %s", got)
	}
	publishJSON(t, nodes[1].MQTTAddr(), "p2", "temps/a", 20, 40)
	home := func() *Node {
		id := leaders()[shards.ShardOf(out, 4)]
		for _, n := range nodes {
			if n.ID() == id {
				return n
			}
		}
		t.Fatalf("no node %q", id)
		return nil
	}
	outputIs(t, home(), out, 40)
	if got := sqlRows(t, nodes[2], "SELECT status, `lag` FROM queries WHERE id = '"+out+"'"); got != "[[running 0]]" {
		t.Errorf("the query in the queries table: %s", got)
	}
}

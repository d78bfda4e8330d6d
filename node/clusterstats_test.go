package node

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	paho3 "github.com/eclipse/paho.mqtt.golang"

	"github.com/mqstream/mqstream/internal/testutil"
)

// TestStatsTablesCoverEveryNode: the sessions, groups, consumers and
// queries tables of any node list the rows of every node, each with its
// node.
func TestStatsTablesCoverEveryNode(t *testing.T) {
	nodes := startClusterWith(t, storedAndLive)
	for i, n := range nodes {
		connectV3(t, n.MQTTAddr(), fmt.Sprintf("client-%d", i+1), true)
	}
	member := connectCollectorTo(t, nodes[2].MQTTAddr(), "member-3")
	if tok := member.Subscribe("$share/workers/stored/#", 1, nil); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	query := func(n *Node, sql string) []string {
		res, err := n.Query().Query(context.Background(), sql)
		if err != nil {
			t.Fatalf("%s on %s: %v", sql, n.ID(), err)
		}
		var out []string
		for _, r := range res.Rows {
			out = append(out, fmt.Sprint(r...))
		}
		slices.Sort(out)
		return out
	}
	testutil.Eventually(t, 5*time.Second, "every node's sessions on n2", func() bool {
		got := query(nodes[1], "SELECT client_id, node FROM sessions WHERE client_id LIKE 'client-%' OR client_id = 'member-3'")
		return strings.Join(got, ",") == "client-1n1,client-2n2,client-3n3,member-3n3"
	})
	testutil.Eventually(t, 5*time.Second, "n3's group member on n1", func() bool {
		got := query(nodes[0], "SELECT `group`, client_id, node FROM consumers")
		return strings.Join(got, ",") == "workersmember-3n3"
	})
	// The group is run by the leader of its shard, wherever its members are.
	owner := dispatcherOf(t, nodes[0], "workers", "stored/#")
	if got := query(nodes[0], "SELECT `group`, node FROM groups WHERE `group` = 'workers'"); !slices.Equal(got, []string{"workers" + owner}) {
		t.Fatalf("groups on n1: %v, want it once, on %s", got, owner)
	}
	// Its metrics come from that node only, so a sum over the nodes
	// counts it once.
	for _, n := range nodes {
		has := strings.Contains(scrape(t, n), `mqstream_group_lag_records{filter="stored/#",group="workers"}`)
		if has != (n.ID() == owner) {
			t.Fatalf("%s's /metrics has the series of group workers (run by %s): %v", n.ID(), owner, has)
		}
	}
	// The REST group detail says the member's node too, wherever the
	// group runs.
	var g struct {
		Members []struct {
			ClientID string `json:"client_id"`
			Node     string `json:"node"`
		} `json:"members"`
	}
	if st := getJSON(t, nodes[0], "/v1/groups/workers", &g); st != 200 || len(g.Members) != 1 || g.Members[0].Node != "n3" {
		t.Fatalf("group workers on n1: %d %+v, want member-3 on n3", st, g)
	}
	// A continuous query runs on the leader of its output's shard,
	// wherever it was created; the queries table of any node lists it
	// once, with that node, and so does SHOW QUERIES.
	publishSeq(t, nodes[0].MQTTAddr(), "pub", "stored/x", "a", 1)
	testutil.Eventually(t, 5*time.Second, "a query created on n3 once it sees the stream", func() bool {
		_, err := nodes[2].Query().Query(context.Background(), "CREATE STREAM hot AS SELECT count(*) AS n FROM `stored` GROUP BY TUMBLING(INTERVAL 1 SECOND)")
		return err == nil
	})
	home := leaderOf(t, nodes[0], "hot")
	if got := query(nodes[0], "SELECT id, node FROM queries"); !slices.Equal(got, []string{"hot" + home}) {
		t.Fatalf("queries on n1: %v, want hot on %s", got, home)
	}
	for _, n := range nodes {
		if got := query(n, "SHOW QUERIES"); len(got) != 1 {
			t.Fatalf("SHOW QUERIES on %s: %v", n.ID(), got)
		}
	}
	// Every node's disk space, from any node: the nodes table and the
	// members of GET /v1/cluster.
	if got := query(nodes[1], "SELECT id FROM nodes WHERE disk_free_bytes >= 0 AND disk_total_bytes > 0 AND disk_free_bytes <= disk_total_bytes"); strings.Join(got, ",") != "n1,n2,n3" {
		t.Fatalf("nodes with disk figures on n2: %v", got)
	}
	// Each node's shards, and each shard's term and lag, from any node.
	if got := query(nodes[1], "SELECT id FROM nodes WHERE shards_held > 0 AND shards_led >= 0"); strings.Join(got, ",") != "n1,n2,n3" {
		t.Fatalf("nodes holding shards on n2: %v", got)
	}
	testutil.Eventually(t, 10*time.Second, "every shard's term and lag in the shards table", func() bool {
		return len(query(nodes[1], "SELECT id FROM shards WHERE term IS NULL OR `lag` IS NULL")) == 0
	})
	var cl struct {
		Members []struct {
			ID        string `json:"id"`
			DiskFree  *int64 `json:"disk_free_bytes"`
			DiskTotal *int64 `json:"disk_total_bytes"`
			Uptime    *int64 `json:"uptime_seconds"`
		} `json:"members"`
	}
	if st := getJSON(t, nodes[2], "/v1/cluster", &cl); st != 200 || len(cl.Members) != 3 {
		t.Fatalf("cluster on n3: %d %+v", st, cl)
	}
	for _, m := range cl.Members {
		if m.DiskFree == nil || m.DiskTotal == nil || m.Uptime == nil || *m.DiskTotal <= 0 || *m.DiskFree > *m.DiskTotal || *m.Uptime < 0 {
			t.Errorf("member %s's figures on n3: free %v, total %v, uptime %v", m.ID, m.DiskFree, m.DiskTotal, m.Uptime)
		}
	}
}

func connectCollectorTo(t *testing.T, addr, id string) paho3.Client {
	t.Helper()
	c := paho3.NewClient(paho3.NewClientOptions().AddBroker("tcp://" + addr).SetClientID(id).SetAutoReconnect(false))
	if tok := c.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	t.Cleanup(func() { c.Disconnect(0) })
	return c
}

// TestGroupOnALeaderlessShardIsUnavailableNotMissing: a group runs on
// its shard's leader; with two nodes of three gone, its shard has no
// leader and no node runs it. Asked for by name, it is 503 (not known not
// to exist), not 404, and the list of groups says what it left out.
func TestGroupOnALeaderlessShardIsUnavailableNotMissing(t *testing.T) {
	nodes := startCluster(t)
	n := nodes[0]
	testutil.Eventually(t, 15*time.Second, "group g1 declared", func() bool {
		var ans map[string]any
		st := postAPI(t, n, "/v1/groups", `{"name":"g1","filter":"stored/#","start":"earliest"}`, &ans)
		if st != http.StatusCreated && st != http.StatusServiceUnavailable {
			t.Fatalf("POST /v1/groups: %d %v", st, ans)
		}
		return st == http.StatusCreated
	})
	testutil.Eventually(t, 15*time.Second, "group g1 listed", func() bool {
		var ans map[string]any
		return getJSON(t, n, "/v1/groups/g1", &ans) == http.StatusOK
	})
	for _, other := range nodes[1:] {
		if err := other.Close(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	testutil.Eventually(t, 30*time.Second, "GET /v1/groups/g1 to be 503 with its shard leaderless", func() bool {
		var ans map[string]any
		st := getJSON(t, n, "/v1/groups/g1", &ans)
		if st == http.StatusNotFound {
			t.Fatalf("GET /v1/groups/g1: 404 %v, while its shard has no leader", ans)
		}
		return st == http.StatusServiceUnavailable
	})
	var list struct {
		Warnings []string `json:"warnings"`
	}
	if getJSON(t, n, "/v1/groups", &list); len(list.Warnings) == 0 {
		t.Fatal("GET /v1/groups says nothing of the groups it left out")
	}
	// So for a continuous query: it may run on that shard's leader.
	var ans map[string]any
	if st := getJSON(t, n, "/v1/queries/q1", &ans); st != http.StatusServiceUnavailable {
		t.Fatalf("GET /v1/queries/q1 with a shard leaderless: %d %v, want 503", st, ans)
	}
}

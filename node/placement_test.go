package node

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mqstream/mqstream/cluster/shards"
	"github.com/mqstream/mqstream/internal/testutil"
)

// placementJSON is what GET /v1/streams/{name} says of where a stream lives.
type placementJSON struct {
	Name     string   `json:"name"`
	Shard    *int     `json:"shard"`
	Leader   *string  `json:"leader"`
	Replicas []string `json:"replicas"`
}

// TestClusterShowsPlacement: every node tells the same shard, leader and
// replicas of a stream, the shard being ShardOf its name; /v1/cluster
// counts each member's shards; SQL lists the shards with their leaders;
// /metrics reports the shards this node leads.
func TestClusterShowsPlacement(t *testing.T) {
	nodes := startCluster(t)
	// Streams on every shard, published through different nodes.
	byShard := map[int]string{}
	for i := 0; len(byShard) < 4; i++ {
		name := fmt.Sprintf("placed%d", i)
		if _, ok := byShard[shards.ShardOf(name, 4)]; !ok {
			byShard[shards.ShardOf(name, 4)] = name
			n := nodes[len(byShard)%len(nodes)]
			publishSeq(t, n.MQTTAddr(), "pub-"+name, name+"/x", name, 1)
		}
	}
	for shard, name := range byShard {
		sameRecords(t, nodes, name, 1)
		var seen []placementJSON
		testutil.Eventually(t, 20*time.Second, "the same placement of "+name+" on every node", func() bool {
			seen = seen[:0]
			for _, n := range nodes {
				var p placementJSON
				if code := getJSON(t, n, "/v1/streams/"+name, &p); code != http.StatusOK {
					t.Fatalf("GET /v1/streams/%s on %s: %d", name, n.ID(), code)
				}
				seen = append(seen, p)
			}
			for _, p := range seen {
				if p.Shard == nil || p.Leader == nil || *p.Leader == "" || *p.Leader != *seen[0].Leader {
					return false
				}
			}
			return true
		})
		for i, p := range seen {
			if *p.Shard != shard || len(p.Replicas) != 3 || !slices.Equal(p.Replicas, seen[0].Replicas) || !slices.Contains(p.Replicas, *p.Leader) {
				t.Fatalf("%s on %s: shard %d leader %s replicas %v, want shard %d", name, nodes[i].ID(), *p.Shard, *p.Leader, p.Replicas, shard)
			}
		}
		if want := nodes[0].Shards()[shard].Replicas; !slices.Equal(seen[0].Replicas, want) {
			t.Fatalf("%s replicas %v, the shard's %v", name, seen[0].Replicas, want)
		}
	}

	// Every node holds every shard (3 nodes, 3 replicas); the four
	// leaders are spread over the members.
	testutil.Eventually(t, 20*time.Second, "members' shard counts", func() bool {
		var cl struct {
			Members []struct {
				ID         string `json:"id"`
				ShardsLed  *int   `json:"shards_led"`
				ShardsHeld *int   `json:"shards_held"`
			} `json:"members"`
		}
		getJSON(t, nodes[1], "/v1/cluster", &cl)
		led := 0
		for _, m := range cl.Members {
			if m.ShardsHeld == nil || *m.ShardsHeld != 4 || m.ShardsLed == nil {
				return false
			}
			led += *m.ShardsLed
		}
		return len(cl.Members) == 3 && led == 4
	})

	testutil.Eventually(t, 20*time.Second, "4 shards with leaders in SQL", func() bool {
		res, err := nodes[2].Query().Query(context.Background(), "SELECT id, leader, local FROM shards WHERE leader IS NOT NULL")
		if err != nil {
			t.Fatal(err)
		}
		return len(res.Rows) == 4 && res.Rows[0][2] == true
	})

	testutil.Eventually(t, 20*time.Second, "mqstream_shard_leader on every node, 4 leaders in all", func() bool {
		leaders := 0
		for _, n := range nodes {
			body := scrape(t, n)
			if !strings.Contains(body, "mqstream_shard_leader{") || !strings.Contains(body, `mqstream_cluster_members{status="alive"} 3`) ||
				!strings.Contains(body, "mqstream_cluster_layout_version 0") {
				return false
			}
			for _, line := range strings.Split(body, "\n") {
				if strings.HasPrefix(line, "mqstream_shard_leader{") && strings.HasSuffix(line, " 1") {
					leaders++
				}
			}
		}
		return leaders == 4
	})

	// Every node's Raft log is a storage engine of its own in /metrics:
	// its WAL carried the entries.
	for _, n := range nodes {
		body := scrape(t, n)
		for _, db := range []string{"store", "raftlog"} {
			series := `mqstream_engine_wal_bytes_total{db="` + db + `"} `
			i := strings.Index(body, series)
			if i < 0 {
				t.Fatalf("%s: no %s", n.ID(), series)
			}
			v, err := strconv.ParseFloat(strings.Fields(body[i+len(series):])[0], 64)
			if err != nil || v <= 0 {
				t.Fatalf("%s: %s%s (%v)", n.ID(), series, strings.Fields(body[i+len(series):])[0], err)
			}
		}
	}

	// A write through a node that does not lead the shard is forwarded.
	name := byShard[0]
	tries := 0
	testutil.Eventually(t, 20*time.Second, "a forward counted on both sides", func() bool {
		leader := leaderOf(t, nodes[0], name)
		for _, n := range nodes {
			if n.ID() != leader && leader != "" {
				tries++
				publishSeq(t, n.MQTTAddr(), fmt.Sprintf("fwd-%d", tries), name+"/x", "fwd", 1)
				break
			}
		}
		var sent, received uint64
		for _, n := range nodes {
			fc := n.ForwardCounters()
			sent += fc.Sent
			received += fc.Received
		}
		return sent > 0 && received > 0 && strings.Contains(scrape(t, nodes[0]), `mqstream_forwards_total{direction="sent"}`)
	})

	// Once those writes stopped, their shards' leaders told the
	// followers with commit notices.
	testutil.Eventually(t, 10*time.Second, "commit notices counted", func() bool {
		var notices uint64
		for _, n := range nodes {
			notices += n.CommitNotices()
		}
		return notices > 0 && strings.Contains(scrape(t, nodes[0]), "mqstream_shard_commit_notices_total ")
	})
}

// scrape returns a node's /metrics.
func scrape(t *testing.T, n *Node) string {
	t.Helper()
	_, body := callAPI(t, n, "GET", "/metrics", "", "")
	return body
}

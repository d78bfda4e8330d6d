package node

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/mqstream/mqstream/cluster"
	"github.com/mqstream/mqstream/config"
	"github.com/mqstream/mqstream/internal/testutil"
)

// clusterConfig is testConfig in cluster mode, with gossip on a random port.
func clusterConfig(t *testing.T, id string, expect int, seeds ...string) config.Config {
	cfg := testConfig(t.TempDir())
	cfg.Node.ID = id
	cfg.Cluster.Name = "test"
	cfg.Cluster.Gossip, cfg.Cluster.RPC = "127.0.0.1:0", "127.0.0.1:0"
	cfg.Cluster.Seeds = seeds
	cfg.Cluster.BootstrapExpect = expect
	return cfg
}

func gossipAddr(n *Node) string {
	for _, m := range n.Members() {
		if m.ID == n.ID() {
			return m.Gossip
		}
	}
	return ""
}

// getJSON fetches path from a node's HTTP API.
func getJSON(t *testing.T, n *Node, path string, out any) int {
	t.Helper()
	resp, err := http.Get("http://" + n.HTTPAddr() + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return resp.StatusCode
}

func memberStatuses(ms []cluster.Member) string {
	var parts []string
	for _, m := range ms {
		parts = append(parts, m.ID+"="+m.Status)
	}
	return strings.Join(parts, " ")
}

// TestThreeNodesFormACluster: nodes started from cluster configuration meet
// through seeds; every node lists all three over REST and SQL; readiness
// waits for bootstrap_expect nodes and says why.
func TestThreeNodesFormACluster(t *testing.T) {
	n1 := startNode(t, clusterConfig(t, "n1", 3))
	var ready map[string]string
	if st := getJSON(t, n1, "/readyz", &ready); st != http.StatusServiceUnavailable || !strings.Contains(ready["reason"], "1 of 3") {
		t.Fatalf("readyz alone: %d %v", st, ready)
	}
	if code := connackCode(t, n1.MQTTAddr()); code != 0x88 {
		t.Fatalf("MQTT 5 CONNECT before the cluster formed: reason 0x%02x, want 0x88 server unavailable", code)
	}
	seed := gossipAddr(n1)
	n2 := startNode(t, clusterConfig(t, "n2", 3, seed))
	n3 := startNode(t, clusterConfig(t, "n3", 3, seed))
	for _, n := range []*Node{n1, n2, n3} {
		testutil.Eventually(t, 10*time.Second, n.ID()+" to see three alive members", func() bool {
			var cl struct {
				Name    string           `json:"name"`
				Members []cluster.Member `json:"members"`
			}
			getJSON(t, n, "/v1/cluster", &cl)
			return cl.Name == "test" && memberStatuses(cl.Members) == "n1=alive n2=alive n3=alive"
		})
		testutil.Eventually(t, 5*time.Second, n.ID()+" ready", n.Ready)
	}
	if code := connackCode(t, n1.MQTTAddr()); code != 0 {
		t.Fatalf("MQTT 5 CONNECT once formed: reason 0x%02x", code)
	}
	res, err := n2.Query().Query(context.Background(), "SELECT id, status, mqtt FROM nodes ORDER BY id")
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Rows) != 3 || res.Rows[0][0] != "n1" || res.Rows[2][2] != n3.MQTTAddr() {
		t.Fatalf("nodes table on n2: %v", res.Rows)
	}
	if err := n3.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 10*time.Second, "n3 seen as left", func() bool {
		return strings.Contains(memberStatuses(n1.Members()), "n3=left")
	})
}

// TestSecondNodeWithTheSameIDIsRefused: the second process with one
// node.id does not start, naming the id and the address that holds it;
// the first is unaffected.
func TestSecondNodeWithTheSameIDIsRefused(t *testing.T) {
	n1 := startNode(t, clusterConfig(t, "dup", 1))
	testutil.Eventually(t, 10*time.Second, "the first node ready", n1.Ready)
	_, err := Open(clusterConfig(t, "dup", 1, gossipAddr(n1)), testutil.Logger())
	if !errors.Is(err, cluster.ErrRefused) || !strings.Contains(err.Error(), `"dup"`) || !strings.Contains(err.Error(), gossipAddr(n1)) {
		t.Fatalf("second node with id dup: %v", err)
	}
	if !n1.Ready() || memberStatuses(n1.Members()) != "dup=alive" {
		t.Fatalf("first node after the refusal: ready %v, members %s", n1.Ready(), memberStatuses(n1.Members()))
	}
}

// TestStandaloneListsItself: without a cluster section the node is its
// own one-member cluster in REST and SQL.
func TestStandaloneListsItself(t *testing.T) {
	n := startNode(t, testConfig(t.TempDir()))
	var cl struct {
		Name    string           `json:"name"`
		Members []cluster.Member `json:"members"`
		Shards  []any            `json:"shards"`
	}
	if st := getJSON(t, n, "/v1/cluster", &cl); st != 200 || cl.Name != "" || len(cl.Members) != 1 ||
		cl.Members[0].ID != "test" || cl.Members[0].MQTT != n.MQTTAddr() || cl.Shards == nil {
		t.Fatalf("standalone /v1/cluster: %d %+v", st, cl)
	}
	var e struct {
		Error struct {
			Message string `json:"message"`
		} `json:"error"`
	}
	if st := getJSON(t, n, "/v1/cluster/raft", &e); st != 404 || !strings.Contains(e.Error.Message, "standalone") {
		t.Fatalf("standalone /v1/cluster/raft: %d %+v", st, e)
	}
}

// TestDifferentClusterWideSettingsAreRefused: a node whose cluster-wide
// settings differ from the cluster's is refused at start, naming the keys.
func TestDifferentClusterWideSettingsAreRefused(t *testing.T) {
	n1 := startNode(t, clusterConfig(t, "n1", 1))
	cfg := clusterConfig(t, "n2", 1, gossipAddr(n1))
	cfg.Cluster.Shards = 24
	cfg.Streams.DefaultRule = "none"
	cfg.Groups.AckTimeout *= 2 // one of the group defaults, named as itself
	_, err := Open(cfg, testutil.Logger())
	if !errors.Is(err, cluster.ErrRefused) || !strings.Contains(err.Error(), "cluster.shards, groups.ack_timeout, streams.default_rule") {
		t.Fatalf("n2 with other shards and default rule: %v", err)
	}
	if got := memberStatuses(n1.Members()); got != "n1=alive" {
		t.Fatalf("n1 lists %s", got)
	}
}

// connackCode connects with MQTT 5 and returns the CONNACK's reason code.
func connackCode(t *testing.T, addr string) byte {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	var buf bytes.Buffer
	pk := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Connect}, ProtocolVersion: 5,
		Connect: packets.ConnectParams{ProtocolName: []byte("MQTT"), ClientIdentifier: "probe", Keepalive: 30, Clean: true}}
	if err := pk.ConnectEncode(&buf); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Write(buf.Bytes()); err != nil {
		t.Fatal(err)
	}
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	ack := make([]byte, 5)
	if _, err := io.ReadFull(conn, ack[:4]); err != nil {
		t.Fatalf("no CONNACK: %v", err)
	}
	if ack[0] != packets.Connack<<4 {
		t.Fatalf("not a CONNACK: % x", ack[:4])
	}
	return ack[3]
}

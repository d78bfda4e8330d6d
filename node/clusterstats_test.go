package node

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	paho3 "github.com/eclipse/paho.mqtt.golang"

	"github.com/mqstream/mqstream/internal/testutil"
)

// TestStatsTablesCoverEveryNode: the sessions, groups and consumers tables
// of any node list the rows of every node, each with its node.
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

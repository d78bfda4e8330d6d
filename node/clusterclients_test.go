package node

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/mqstream/mqstream/internal/testutil"
)

// clientRow is one row of GET /v1/clients as the test reads it.
type clientRow struct {
	ClientID      string `json:"client_id"`
	Node          string `json:"node"`
	Connected     bool   `json:"connected"`
	Subscriptions int    `json:"subscriptions"`
}

// clientRows lists GET /v1/clients of n as "id@node" (with "-away" for a
// disconnected session), in the answer's order.
func clientRows(t *testing.T, n *Node) string {
	t.Helper()
	var list struct {
		Clients []clientRow `json:"clients"`
	}
	if st := getJSON(t, n, "/v1/clients", &list); st != http.StatusOK {
		t.Fatalf("GET /v1/clients on %s: %d", n.ID(), st)
	}
	var out []string
	for _, c := range list.Clients {
		row := c.ClientID + "@" + c.Node
		if !c.Connected {
			row += "-away"
		}
		out = append(out, row)
	}
	return strings.Join(out, ",")
}

// deleteClient sends DELETE /v1/clients/{id} to n and returns the status.
func deleteClient(t *testing.T, n *Node, id string) int {
	t.Helper()
	req, _ := http.NewRequest(http.MethodDelete, "http://"+n.HTTPAddr()+"/v1/clients/"+id, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

type overviewFigures struct {
	Node          string `json:"node"`
	Connections   int64  `json:"connections"`
	Subscriptions int64  `json:"subscriptions"`
	ClientNodes   int    `json:"client_nodes"`
}

// TestClientViewsCoverTheCluster: GET /v1/clients of any node lists every
// node's clients with their node, DELETE /v1/clients/{id} through one node
// disconnects a client connected to another, the overview's connections
// and subscriptions sum over the nodes, and a node that does not answer
// is left out.
func TestClientViewsCoverTheCluster(t *testing.T) {
	nodes := startCluster(t)
	connectV3(t, nodes[0].MQTTAddr(), "client-1", true)
	c2, _ := connectV3(t, nodes[1].MQTTAddr(), "client-2", false)
	c3, lost3 := connectV3(t, nodes[2].MQTTAddr(), "client-3", true)
	for _, f := range []string{"a/1", "a/2"} {
		if tok := c3.Subscribe(f, 1, nil); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
			t.Fatal(tok.Error())
		}
	}
	if tok := c2.Subscribe("b/#", 1, nil); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	for _, n := range nodes {
		if got := clientRows(t, n); got != "client-1@n1,client-2@n2,client-3@n3" {
			t.Fatalf("clients on %s: %s", n.ID(), got)
		}
	}
	var ov overviewFigures
	getJSON(t, nodes[1], "/v1/overview", &ov)
	if ov.Node != "n2" || ov.Connections != 3 || ov.Subscriptions != 3 || ov.ClientNodes != 3 {
		t.Fatalf("overview on n2: %+v, want 3 connections, 3 subscriptions, 3 nodes", ov)
	}

	// n1 disconnects n3's client; client-2's persistent session stays on
	// n2 when its client leaves.
	if st := deleteClient(t, nodes[0], "client-3"); st != http.StatusNoContent {
		t.Fatalf("DELETE /v1/clients/client-3 on n1: %d", st)
	}
	select {
	case <-lost3:
	case <-time.After(5 * time.Second):
		t.Fatal("client-3 was not disconnected")
	}
	c2.Disconnect(0)
	testutil.Eventually(t, 5*time.Second, "client-3 gone and client-2 away, seen from n3", func() bool {
		return clientRows(t, nodes[2]) == "client-1@n1,client-2@n2-away"
	})
	if st := deleteClient(t, nodes[0], "client-2"); st != http.StatusNotFound {
		t.Fatalf("DELETE of a client connected nowhere: %d, want 404", st)
	}
	testutil.Eventually(t, 5*time.Second, "1 connection left in the overview", func() bool {
		getJSON(t, nodes[2], "/v1/overview", &ov)
		return ov.Connections == 1 && ov.ClientNodes == 3
	})

	// n2 stops answering calls (its RPC mux closes; gossip still has it
	// up): the others' views leave it out and say so.
	if err := nodes[1].repl.mux.Close(); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if got := clientRows(t, nodes[0]); got != "client-1@n1" {
		t.Fatalf("clients on n1 without n2's: %s", got)
	}
	getJSON(t, nodes[2], "/v1/overview", &ov)
	if ov.Connections != 1 || ov.ClientNodes != 2 {
		t.Fatalf("overview on n3 without n2's figures: %+v", ov)
	}
	if d := time.Since(start); d > 2*statsTimeout+time.Second {
		t.Fatalf("the views took %v without n2", d)
	}
}

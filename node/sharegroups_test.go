package node

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	paho3 "github.com/eclipse/paho.mqtt.golang"

	"github.com/mqstream/mqstream/config"
	"github.com/mqstream/mqstream/internal/testutil"
	"github.com/mqstream/mqstream/shared"
)

// groupWorker is a $share member over MQTT 3.1.1 that acks what it gets
// and counts each payload.
type groupWorker struct {
	c   paho3.Client
	mu  sync.Mutex
	got map[string]int
	n   int
}

func groupMember(t *testing.T, addr, id, filter string) *groupWorker {
	t.Helper()
	w := &groupWorker{got: map[string]int{}}
	o := paho3.NewClientOptions().AddBroker("tcp://" + addr).SetClientID(id).SetAutoReconnect(false).SetCleanSession(true)
	o.SetDefaultPublishHandler(func(_ paho3.Client, m paho3.Message) {
		w.mu.Lock()
		w.got[string(m.Payload())]++
		w.n++
		w.mu.Unlock()
	})
	w.c = paho3.NewClient(o)
	if tok := w.c.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("connect %s to %s: %v", id, addr, tok.Error())
	}
	t.Cleanup(func() { w.c.Disconnect(0) })
	if tok := w.c.Subscribe(filter, 1, nil); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("subscribe %s: %v", id, tok.Error())
	}
	return w
}

func (w *groupWorker) count() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.n
}

// distinctAcross counts the distinct payloads with prefix the workers
// got, and the deliveries beyond the first of each.
func distinctAcross(prefix string, ws ...*groupWorker) (distinct, dups int) {
	seen := map[string]int{}
	for _, w := range ws {
		w.mu.Lock()
		for p, n := range w.got {
			if len(p) >= len(prefix) && p[:len(prefix)] == prefix {
				seen[p] += n
			}
		}
		w.mu.Unlock()
	}
	for _, n := range seen {
		dups += n - 1
	}
	return len(seen), dups
}

// dispatcherOf returns the node that runs group name/filter, as n sees it.
func dispatcherOf(t *testing.T, n *Node, name, filter string) string {
	t.Helper()
	var node string
	testutil.Eventually(t, 10*time.Second, "a dispatcher for the group", func() bool {
		var ok bool
		node, _, ok = n.groupPlace.Dispatcher(name, filter)
		return ok
	})
	return node
}

// TestSharedGroupSpansNodes: members of one $share group connected to
// three different nodes share its records: each record goes to one of
// them, every member gets some, and the group (run by one node) counts
// every ack.
func TestSharedGroupSpansNodes(t *testing.T) {
	nodes := startClusterWith(t, storedAndLive)
	var ws []*groupWorker
	for i, n := range nodes {
		ws = append(ws, groupMember(t, n.MQTTAddr(), fmt.Sprintf("w%d", i), "$share/g/stored/#"))
	}
	// The members on other nodes reach the group through its dispatcher's
	// relay: publish once it counts all three, or a fast group could hand
	// every record to the members it knows before the others join.
	owner := dispatcherOf(t, nodes[0], "g", "stored/#")
	for _, nd := range nodes {
		if nd.ID() == owner {
			testutil.Eventually(t, 10*time.Second, "the dispatcher counts three members", func() bool {
				st, err := nd.Groups().Group(context.Background(), "g", "stored/#")
				return err == nil && len(st.Members) == 3
			})
		}
	}
	// Eight publishers spread over the three nodes, 50 messages each.
	const n = 400
	var wg sync.WaitGroup
	for p := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			publishAll(t, nodes[p%3].MQTTAddr(), fmt.Sprintf("pub%d", p), 1, n/8, fmt.Sprintf("stored/p%d", p))
		}()
	}
	wg.Wait()
	testutil.Eventually(t, 20*time.Second, "every record delivered to a member", func() bool {
		d, _ := distinctAcross("stored/p", ws...)
		return d == n
	})
	for i, w := range ws {
		if w.count() == 0 {
			t.Errorf("the member on %s got nothing: records are not shared across nodes", nodes[i].ID())
		}
	}
	if _, dups := distinctAcross("stored/p", ws...); dups != 0 {
		t.Errorf("%d records delivered twice without a failure", dups)
	}
	for _, nd := range nodes {
		st, err := nd.Groups().Group(context.Background(), "g", "stored/#")
		if nd.ID() != owner {
			if err == nil {
				t.Errorf("%s, not the dispatcher, runs the group too", nd.ID())
			}
			continue
		}
		testutil.Eventually(t, 10*time.Second, "the dispatcher counts every ack", func() bool {
			st, err = nd.Groups().Group(context.Background(), "g", "stored/#")
			return err == nil && st.Acked == n && st.Lag == 0 && len(st.Members) == 3
		})
	}
}

// TestSharedGroupSurvivesDispatcherLoss: when the node running a group
// is lost, another node takes the group over from its replicated
// progress: members on the survivors get what is published next, and
// what was acknowledged before is not handed out again.
func TestSharedGroupSurvivesDispatcherLoss(t *testing.T) {
	nodes := startClusterWith(t, func(c *config.Config) {
		storedAndLive(c)
		c.Groups.FlushInterval = 20 * time.Millisecond
	})
	owner := dispatcherOf(t, nodes[0], "g", "stored/#")
	var ws []*groupWorker
	var survivors []*Node
	var lost *Node
	for i, n := range nodes {
		ws = append(ws, groupMember(t, n.MQTTAddr(), fmt.Sprintf("w%d", i), "$share/g/stored/#"))
		if n.ID() == owner {
			lost = n
		} else {
			survivors = append(survivors, n)
		}
	}
	publishAll(t, survivors[0].MQTTAddr(), "pub-before", 1, 100, "stored/a")
	testutil.Eventually(t, 20*time.Second, "the first 100 acked and persisted", func() bool {
		st, err := lost.Groups().Group(context.Background(), "g", "stored/#")
		return err == nil && st.Acked == 100 && st.Lag == 0
	})
	testutil.Eventually(t, 10*time.Second, "the acks replicated to the survivors", func() bool {
		for _, n := range survivors {
			p, err := shared.StoredProgress(groupProgress{r: n.repl.store, self: n.id}, "g", "stored/#")
			if err != nil || p["stored"].AckFloor != 100 {
				return false
			}
		}
		return true
	})
	if err := lost.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 30*time.Second, "another node runs the group", func() bool {
		node, _, ok := survivors[0].groupPlace.Dispatcher("g", "stored/#")
		return ok && node != owner
	})
	var onSurvivors []*groupWorker
	for i, n := range nodes {
		if n != lost {
			onSurvivors = append(onSurvivors, ws[i])
		}
	}
	d, dups := distinctAcross("stored/a-", onSurvivors...)
	before := d + dups
	publishAll(t, survivors[1].MQTTAddr(), "pub-after", 1, 100, "stored/b")
	testutil.Eventually(t, 30*time.Second, "the records published after the loss reach the survivors' members", func() bool {
		d, _ := distinctAcross("stored/b-", onSurvivors...)
		return d == 100
	})
	d, dups = distinctAcross("stored/a-", onSurvivors...)
	if after := d + dups; after != before {
		t.Errorf("records acked (and their progress replicated) before the loss were handed out again: %d deliveries before, %d after", before, after)
	}
}

// restCall sends a JSON request to n's REST API and returns the status.
func restCall(t *testing.T, n *Node, method, path, body string) int {
	t.Helper()
	req, err := http.NewRequest(method, "http://"+n.HTTPAddr()+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// TestGroupAdministrationThroughAnyNode: a group declared, described,
// moved and deleted over REST through nodes that do not run it behaves
// as through the one that does, errors included.
func TestGroupAdministrationThroughAnyNode(t *testing.T) {
	nodes := startClusterWith(t, storedAndLive)
	publishAll(t, nodes[0].MQTTAddr(), "pub", 1, 20, "stored/a")
	sameRecords(t, nodes, "stored", 20)
	owner := dispatcherOf(t, nodes[0], "jobs", "stored/#")
	var other *Node
	for _, n := range nodes {
		if n.ID() != owner {
			other = n
		}
	}
	if code := restCall(t, other, "POST", "/v1/groups", `{"name":"jobs","filter":"stored/#","start":"earliest"}`); code != http.StatusCreated {
		t.Fatalf("declare through %s (not the dispatcher %s): %d", other.ID(), owner, code)
	}
	if code := restCall(t, nodes[2], "POST", "/v1/groups", `{"name":"jobs","filter":"stored/#"}`); code != http.StatusConflict {
		t.Fatalf("second declare: %d, want 409", code)
	}
	for _, n := range nodes {
		var g struct {
			Lag  int64  `json:"lag"`
			Node string `json:"node"`
		}
		if code := getJSON(t, n, "/v1/groups/jobs?filter=stored/%23", &g); code != http.StatusOK || g.Lag != 20 {
			t.Fatalf("group through %s: %d %+v, want 200 with lag 20", n.ID(), code, g)
		}
	}
	if code := restCall(t, other, "POST", "/v1/groups/jobs/seek?filter=stored/%23", `{"position":"offset:15"}`); code != http.StatusOK {
		t.Fatalf("seek through %s: %d", other.ID(), code)
	}
	testutil.Eventually(t, 10*time.Second, "lag 5 after the seek", func() bool {
		var g struct {
			Lag int64 `json:"lag"`
		}
		return getJSON(t, other, "/v1/groups/jobs?filter=stored/%23", &g) == http.StatusOK && g.Lag == 5
	})
	if code := restCall(t, other, "DELETE", "/v1/groups/jobs?filter=stored/%23", ""); code != http.StatusNoContent && code != http.StatusOK {
		t.Fatalf("delete through %s: %d", other.ID(), code)
	}
	if code := restCall(t, other, "DELETE", "/v1/groups/jobs?filter=stored/%23", ""); code != http.StatusNotFound {
		t.Fatalf("second delete: %d, want 404", code)
	}
}

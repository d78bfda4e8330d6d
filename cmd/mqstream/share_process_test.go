package main

import (
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	paho3 "github.com/eclipse/paho.mqtt.golang"
)

// procWorker is a $share member over MQTT 3.1.1 that acks what it gets
// (paho acks once the handler returns) and counts each payload.
type procWorker struct {
	mu  sync.Mutex
	got map[string]int
}

func startProcWorker(t *testing.T, nd *procNode, id, filter string) *procWorker {
	t.Helper()
	w := &procWorker{got: map[string]int{}}
	o := paho3.NewClientOptions().AddBroker("tcp://" + nd.mqtt).SetClientID(id).SetAutoReconnect(false).SetCleanSession(true)
	o.SetDefaultPublishHandler(func(_ paho3.Client, m paho3.Message) {
		w.mu.Lock()
		w.got[string(m.Payload())]++
		w.mu.Unlock()
	})
	c := paho3.NewClient(o)
	if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("connect %s to %s: %v", id, nd.id, tok.Error())
	}
	t.Cleanup(func() { c.Disconnect(0) })
	if tok := c.Subscribe(filter, 1, nil); !tok.WaitTimeout(15*time.Second) || tok.Error() != nil {
		t.Fatalf("subscribe %s on %s: %v", id, nd.id, tok.Error())
	}
	return w
}

// received counts, over workers, the acknowledged payloads some worker
// got, and the deliveries beyond the first of each payload.
func received(acked map[string]bool, workers ...*procWorker) (got, dups int) {
	seen := map[string]int{}
	for _, w := range workers {
		w.mu.Lock()
		for p, n := range w.got {
			seen[p] += n
		}
		w.mu.Unlock()
	}
	for p := range acked {
		if n := seen[p]; n > 0 {
			got++
			dups += n - 1
		}
	}
	return got, dups
}

// TestProcessSharedGroupSurvivesDispatcherKill runs three mqstream
// processes with one member of a $share group on each and publishers on
// two of them: every acknowledged publish reaches a member. Then the node
// running the group (with the member connected to it) is SIGKILLed under
// load: another node takes the group over, and every acknowledged publish,
// before and after the kill, still reaches a member; duplicates are only
// of what was in flight at the kill.
func TestProcessSharedGroupSurvivesDispatcherKill(t *testing.T) {
	c := startProcCluster(t)
	const filter = "$share/work/jobs/#"
	create, err := procHTTP.Post("http://"+c.nodes[0].http+"/v1/groups", "application/json",
		strings.NewReader(`{"name":"work","filter":"jobs/#","start":"earliest"}`))
	if err != nil {
		t.Fatal(err)
	}
	create.Body.Close()
	if create.StatusCode != http.StatusCreated {
		t.Fatalf("declare the group through %s: %d", c.nodes[0].id, create.StatusCode)
	}
	var group struct {
		Node string `json:"node"`
	}
	if code, err := c.nodes[1].getJSON("/v1/groups/work?filter=jobs/%23", &group); code != http.StatusOK || group.Node == "" {
		t.Fatalf("the group through %s: %d %v %+v", c.nodes[1].id, code, err, group)
	}
	dispatcher := c.node(t, group.Node)
	var workers, surviving []*procWorker
	var others []*procNode
	for _, nd := range c.nodes {
		w := startProcWorker(t, nd, "worker-"+nd.id, filter)
		workers = append(workers, w)
		if nd != dispatcher {
			surviving = append(surviving, w)
			others = append(others, nd)
		}
	}
	t.Logf("group run by %s; members on every node; publishers on %s and %s", dispatcher.id, others[0].id, others[1].id)

	l := newLoad()
	for i := range 2 {
		for _, nd := range others {
			name := fmt.Sprintf("pub-%s-%d", nd.id, i)
			l.publish(nd, name, "jobs/"+name, 16)
		}
	}
	defer func() {
		select {
		case <-l.stop:
		default:
			l.finish()
		}
	}()
	waitFor(t, 20*time.Second, "300 acknowledged publishes before the kill", func() (bool, string) {
		n, _ := l.ackedSince(time.Time{})
		return n >= 300, fmt.Sprintf("%d acknowledged", n)
	})
	dispatcher.kill(t)
	killedAt := time.Now()
	waitFor(t, 30*time.Second, "100 publishes sent after the kill acknowledged", func() (bool, string) {
		n, _ := l.ackedSince(killedAt)
		return n >= 100, fmt.Sprintf("%d acknowledged", n)
	})
	acked, _ := l.finish()
	// Every acknowledged publish reached a member: before the kill any of
	// the three, after it one of the survivors' (the group's new node
	// redelivers what its replicated progress does not show as acked).
	var got, dups int
	waitFor(t, 60*time.Second, "every acknowledged publish delivered to a member", func() (bool, string) {
		got, dups = received(acked, workers...)
		return got == len(acked), fmt.Sprintf("%d of %d delivered", got, len(acked))
	})
	after := map[string]bool{}
	l.mu.Lock()
	for p, a := range l.mu.acked {
		if a.sent.After(killedAt) {
			after[p] = true
		}
	}
	l.mu.Unlock()
	if n, _ := received(after, surviving...); n != len(after) {
		t.Fatalf("%d of the %d publishes acknowledged after the kill reached the survivors' members", n, len(after))
	}
	t.Logf("%d acknowledged publishes, all delivered; %d deliveries were duplicates (in flight at the kill); %d after the kill went to the survivors' members",
		len(acked), dups, len(after))
}

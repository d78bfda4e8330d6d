package node

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	paho3 "github.com/eclipse/paho.mqtt.golang"

	"github.com/mqstream/mqstream/internal/testutil"
)

// heldBy returns the nodes among nodes that keep a session of client id.
func heldBy(nodes []*Node, id string) []string {
	var out []string
	for _, n := range nodes {
		if _, ok := sessionOn(n, id); ok {
			out = append(out, n.id)
		}
	}
	return out
}

// TestSessionsOfAStoppingNodeMoveToAnother: a node stopped gracefully
// hands its persistent sessions over before it leaves. A client that was
// away gets, on whichever node it reconnects to, session present, what
// was queued for it on the stopped node and what was published after the
// stop; a client that was connected with messages unacknowledged gets
// them again. Nothing of them stays on the stopped node.
func TestSessionsOfAStoppingNodeMoveToAnother(t *testing.T) {
	nodes, cfgs := startClusterConfigs(t, storedAndLive)
	const away, busy = "away-client", "busy-client"
	a, _ := connectCollector(t, nodes[0].MQTTAddr(), away, true)
	if tok := a.c.Subscribe("live/away", 1, nil); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	a.c.Disconnect(0)
	b, _ := connectCollector(t, nodes[0].MQTTAddr(), busy, false) // never acknowledges
	if tok := b.c.Subscribe("live/busy", 1, nil); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	testutil.Eventually(t, 10*time.Second, "n3 knows n1's filters", func() bool {
		return nodes[2].routes.Stats().RemoteFilters["n1"] >= 2
	})
	publishWindow(t, nodes[2].MQTTAddr(), "live/away", "queued", 5, false)
	publishWindow(t, nodes[2].MQTTAddr(), "live/busy", "unacked", 3, false)
	testutil.Eventually(t, 10*time.Second, "5 queued and 3 in flight on n1", func() bool {
		s, _ := sessionOn(nodes[0], away)
		return s.Queued == 5 && len(b.payloads()) == 3
	})

	if err := nodes[0].Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	rest := nodes[1:]
	for _, id := range []string{away, busy} {
		if got := heldBy(rest, id); len(got) != 1 {
			t.Fatalf("%s's session is held by %v once n1 stopped, want one node", id, got)
		}
	}
	// Routed to the session's new node: published after the stop.
	publishWindow(t, nodes[2].MQTTAddr(), "live/away", "after", 2, false)

	// Reconnected on the node that does not hold it: it is claimed from
	// the one that does.
	var elsewhere *Node
	for _, n := range rest {
		if !slices.Equal(heldBy([]*Node{n}, away), []string{n.id}) {
			elsewhere = n
		}
	}
	back, present := connectCollector(t, elsewhere.MQTTAddr(), away, true)
	if !present {
		t.Fatalf("no session present for %s on %s", away, elsewhere.id)
	}
	want := append(sequenceOf("queued", 5), sequenceOf("after", 2)...)
	testutil.Eventually(t, 10*time.Second, "the 7 messages", func() bool { return len(back.payloads()) >= len(want) })
	if got := back.payloads(); !slices.Equal(got, want) {
		t.Fatalf("%s got %v, want %v", away, got, want)
	}

	again, present := connectCollector(t, nodes[1].MQTTAddr(), busy, true)
	if !present {
		t.Fatalf("no session present for %s on n2", busy)
	}
	testutil.Eventually(t, 10*time.Second, "the 3 unacknowledged sent again", func() bool { return len(again.payloads()) >= 3 })
	if got := again.payloads(); !slices.Equal(got[:3], sequenceOf("unacked", 3)) {
		t.Fatalf("%s got %v", busy, got)
	}

	// n1 kept nothing of them: restarted, it restores no session.
	n1 := startNode(t, cfgs[0])
	testutil.Eventually(t, 20*time.Second, "n1 ready again", n1.Ready)
	if got := heldBy([]*Node{n1}, away); len(got) != 0 {
		t.Fatalf("restarted n1 restored %s's session", away)
	}
	if got := heldBy([]*Node{n1}, busy); len(got) != 0 {
		t.Fatalf("restarted n1 restored %s's session", busy)
	}
}

// TestNothingIsLostWhileASessionMoves: a persistent subscriber moves from
// node to node (it disconnects and connects to the next) while a
// publisher on another node publishes without pause: every message
// reaches it.
func TestNothingIsLostWhileASessionMoves(t *testing.T) {
	nodes := startClusterWith(t, storedAndLive)
	const id = "roamer"
	first, _ := connectCollector(t, nodes[0].MQTTAddr(), id, true)
	if tok := first.c.Subscribe("live/roam", 1, nil); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	testutil.Eventually(t, 10*time.Second, "n3 knows n1's filter", func() bool {
		return nodes[2].routes.Stats().RemoteFilters["n1"] >= 1
	})
	pub := paho3.NewClient(paho3.NewClientOptions().AddBroker("tcp://" + nodes[2].MQTTAddr()).SetClientID("roam-pub").SetOrderMatters(true))
	if tok := pub.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	defer pub.Disconnect(0)
	const total = 3000
	published := make(chan error, 1)
	go func() {
		for i := range total {
			tok := pub.Publish("live/roam", 1, false, fmt.Sprintf("m-%d", i))
			if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
				published <- fmt.Errorf("publish %d: %v", i, tok.Error())
				return
			}
		}
		published <- nil
	}()
	got := map[string]bool{}
	all := []*collector{first} // a handler may still run after Disconnect
	collect := func() {
		for _, c := range all {
			for _, p := range c.payloads() {
				got[p] = true
			}
		}
	}
	cur := first
	for hop := range 6 {
		testutil.Eventually(t, 10*time.Second, "messages on this hop", func() bool { return len(cur.payloads()) >= 20 })
		cur.c.Disconnect(0)
		next, present := connectCollector(t, nodes[(hop+1)%2].MQTTAddr(), id, true)
		if !present {
			t.Fatalf("hop %d: no session present", hop)
		}
		cur = next
		all = append(all, cur)
	}
	if err := <-published; err != nil {
		t.Fatal(err)
	}
	defer func() {
		if t.Failed() {
			var missing []string
			for i := range total {
				if p := fmt.Sprintf("m-%d", i); !got[p] {
					missing = append(missing, p)
				}
			}
			t.Logf("%d of %d missing: %v", len(missing), total, missing)
		}
	}()
	testutil.Eventually(t, 10*time.Second, "every message", func() bool {
		collect()
		return len(got) >= total
	})
}

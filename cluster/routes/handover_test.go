package routes

import (
	"errors"
	"sync/atomic"
	"testing"
	"time"
)

// taker answers hand-overs as its node: taken, or an error once refuse
// is set.
type taker struct {
	id     string
	refuse atomic.Bool
	got    chan string
}

func (k *taker) HandleClaim([]byte) ([]byte, error)  { return nil, errors.New("no claims here") }
func (k *taker) HandleSettle([]byte) ([]byte, error) { return nil, errors.New("no claims here") }
func (k *taker) HandleHandOver(req []byte) ([]byte, error) {
	if k.refuse.Load() {
		return nil, errors.New("stopping")
	}
	k.got <- string(req)
	return []byte("taken by " + k.id), nil
}

// TestHandOverGoesToOneNodePerClient: a session goes to exactly one other
// node, the same for a client id every time, and different clients spread
// over the nodes; a node that answers with an error is passed over for
// the next; with no other node the hand-over fails.
func TestHandOverGoesToOneNodePerClient(t *testing.T) {
	takers := map[string]*taker{}
	var nodes []*testNode
	for _, id := range []string{"a", "b", "c"} {
		k := &taker{id: id, got: make(chan string, 100)}
		takers[id] = k
		o := fastOptions()
		o.Claims = k
		n := startNode(t, id, "", nil, o)
		n.mux.Handle(HandOverService, n.r.HandleHandOver)
		nodes = append(nodes, n)
	}
	a := nodes[0]
	if _, _, err := a.r.HandOver("c1", []byte("s"), time.Second); err == nil {
		t.Fatal("handed over with no peer")
	}
	mesh(nodes...)
	first := map[string]string{}
	chosen := map[string]int{}
	for i := range 40 {
		client := string(rune('A'+i%26)) + string(rune('a'+i/26))
		peer, answer, err := a.r.HandOver(client, []byte(client), time.Second)
		if err != nil || string(answer) != "taken by "+peer || peer == "a" {
			t.Fatalf("%s: %q %q %v", client, peer, answer, err)
		}
		if got := <-takers[peer].got; got != client {
			t.Fatalf("%s got %q", peer, got)
		}
		again, _, _ := a.r.HandOver(client, []byte(client), time.Second)
		<-takers[again].got
		if again != peer {
			t.Fatalf("%s went to %s, then to %s", client, peer, again)
		}
		first[client] = peer
		chosen[peer]++
	}
	if chosen["b"] == 0 || chosen["c"] == 0 {
		t.Fatalf("40 clients all went to one node: %v", chosen)
	}
	takers["b"].refuse.Store(true)
	for client, peer := range first {
		got, _, err := a.r.HandOver(client, []byte(client), time.Second)
		if err != nil || got != "c" {
			t.Fatalf("%s (first %s): went to %q, %v; want c, b refuses", client, peer, got, err)
		}
		<-takers["c"].got
	}
	takers["c"].refuse.Store(true)
	if peer, _, err := a.r.HandOver("Aa", []byte("s"), time.Second); err == nil {
		t.Fatalf("handed over to %s though every node refused", peer)
	}
}

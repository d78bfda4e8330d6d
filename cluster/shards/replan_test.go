package shards

import (
	"fmt"
	"testing"
)

func peersN(n int) []Peer {
	var ps []Peer
	for i := 1; i <= n; i++ {
		ps = append(ps, Peer{ID: fmt.Sprintf("n%d", i), RPC: fmt.Sprintf("127.0.0.1:%d", 7000+i)})
	}
	return ps
}

func up(ps ...Peer) []Candidate {
	var cs []Candidate
	for _, p := range ps {
		cs = append(cs, Candidate{Peer: p, Place: true})
	}
	return cs
}

// checkSpread fails unless every shard has want replicas, no node holds
// one shard twice, and replicas and preferred leaders are spread within
// one per node over the placeable candidates.
func checkSpread(t *testing.T, l Layout, cands []Candidate, want int) {
	t.Helper()
	held, led := map[string]int{}, map[string]int{}
	for i, peers := range l.Shards {
		if len(peers) != want {
			t.Fatalf("shard %d on %d replicas, want %d: %v", i, len(peers), want, peers)
		}
		seen := map[string]bool{}
		for _, p := range peers {
			if seen[p.ID] {
				t.Fatalf("shard %d on %s twice", i, p.ID)
			}
			seen[p.ID] = true
			held[p.ID]++
		}
		led[peers[0].ID]++
	}
	lo, hi, llo, lhi := 1<<30, -1, 1<<30, -1
	for _, c := range cands {
		if !c.Place {
			continue
		}
		lo, hi = min(lo, held[c.ID]), max(hi, held[c.ID])
		llo, lhi = min(llo, led[c.ID]), max(lhi, led[c.ID])
	}
	if hi-lo > 1 || lhi-llo > 1 {
		t.Fatalf("not spread: replicas %v, preferred leaders %v", held, led)
	}
}

func moved(a, b Layout) int {
	n := 0
	for i := range a.Shards {
		for _, p := range b.Shards[i] {
			if !a.Holds(i, p.ID) {
				n++
			}
		}
	}
	return n
}

func TestReplanKeepsAPlannedLayout(t *testing.T) {
	ps := peersN(3)
	l, _ := Plan(ps, 12, 3)
	got := Replan(l, up(ps...), 3)
	if got.Version != l.Version || !sameShards(got, l) {
		t.Fatalf("a balanced layout changed: %v -> %v", l, got)
	}
}

func TestReplanReplacesARemovedNode(t *testing.T) {
	ps := peersN(4)
	l, _ := Plan(ps[:3], 12, 3)
	// n3 removed: two replicas each.
	two := Replan(l, up(ps[0], ps[1]), 3)
	if two.Version != 1 {
		t.Fatalf("version %d, want 1", two.Version)
	}
	checkSpread(t, two, up(ps[0], ps[1]), 2)
	if moved(l, two) != 0 {
		t.Fatalf("removing a node moved %d replicas", moved(l, two))
	}
	// n4 joins in its place: every shard gets it, nothing else moves.
	three := Replan(two, up(ps[0], ps[1], ps[3]), 3)
	checkSpread(t, three, up(ps[0], ps[1], ps[3]), 3)
	if three.Version != 2 || moved(two, three) != 12 {
		t.Fatalf("version %d, %d replicas added; want 2 and 12", three.Version, moved(two, three))
	}
	if again := Replan(three, up(ps[0], ps[1], ps[3]), 3); again.Version != three.Version {
		t.Fatal("planning twice changed the layout")
	}
}

func TestReplanSpreadsOverMoreNodesThanTheFactor(t *testing.T) {
	ps := peersN(4)
	l, _ := Plan(ps[:3], 12, 3)
	four := Replan(l, up(ps...), 3)
	checkSpread(t, four, up(ps...), 3)
	// 36 replicas over 4 nodes: the new node gets 9, all of them moved.
	if m := moved(l, four); m != 9 {
		t.Fatalf("%d replicas moved, want 9", m)
	}
	// Back to three: the shards return to three replicas each.
	three := Replan(four, up(ps[:3]...), 3)
	checkSpread(t, three, up(ps[:3]...), 3)
}

func TestReplanLeavesADownNodesReplicas(t *testing.T) {
	ps := peersN(4)
	l, _ := Plan(ps, 8, 3)
	cands := up(ps...)
	cands[3].Place = false // n4 is down, not yet given up
	got := Replan(l, cands, 3)
	for i := range l.Shards {
		if l.Holds(i, "n4") != got.Holds(i, "n4") {
			t.Fatalf("shard %d: n4's replica moved while n4 is only down", i)
		}
	}
}

func TestReplanFollowsANewAddress(t *testing.T) {
	ps := peersN(3)
	l, _ := Plan(ps, 4, 3)
	ps[1].RPC = "127.0.0.1:9999"
	got := Replan(l, up(ps...), 3)
	if got.Version != l.Version+1 || got.Shards[0][1].RPC != "127.0.0.1:9999" && got.Shards[0][0].RPC != "127.0.0.1:9999" && got.Shards[0][2].RPC != "127.0.0.1:9999" {
		t.Fatalf("the new address of n2 is not in the plan: %v", got)
	}
}

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
	got := Replan(l, up(ps...), 3, nil)
	if got.Version != l.Version || !sameShards(got, l) {
		t.Fatalf("a balanced layout changed: %v -> %v", l, got)
	}
}

func TestReplanReplacesARemovedNode(t *testing.T) {
	ps := peersN(4)
	l, _ := Plan(ps[:3], 12, 3)
	// n3 removed: two replicas each.
	two := Replan(l, up(ps[0], ps[1]), 3, nil)
	if two.Version != 1 {
		t.Fatalf("version %d, want 1", two.Version)
	}
	checkSpread(t, two, up(ps[0], ps[1]), 2)
	if moved(l, two) != 0 {
		t.Fatalf("removing a node moved %d replicas", moved(l, two))
	}
	// n4 joins in its place: every shard gets it, nothing else moves.
	three := Replan(two, up(ps[0], ps[1], ps[3]), 3, nil)
	checkSpread(t, three, up(ps[0], ps[1], ps[3]), 3)
	if three.Version != 2 || moved(two, three) != 12 {
		t.Fatalf("version %d, %d replicas added; want 2 and 12", three.Version, moved(two, three))
	}
	if again := Replan(three, up(ps[0], ps[1], ps[3]), 3, nil); again.Version != three.Version {
		t.Fatal("planning twice changed the layout")
	}
}

func TestReplanSpreadsOverMoreNodesThanTheFactor(t *testing.T) {
	ps := peersN(4)
	l, _ := Plan(ps[:3], 12, 3)
	four := Replan(l, up(ps...), 3, nil)
	checkSpread(t, four, up(ps...), 3)
	// 36 replicas over 4 nodes: the new node gets 9, all of them moved.
	if m := moved(l, four); m != 9 {
		t.Fatalf("%d replicas moved, want 9", m)
	}
	// Back to three: the shards return to three replicas each.
	three := Replan(four, up(ps[:3]...), 3, nil)
	checkSpread(t, three, up(ps[:3]...), 3)
}

func TestReplanLeavesADownNodesReplicas(t *testing.T) {
	ps := peersN(4)
	l, _ := Plan(ps, 8, 3)
	cands := up(ps...)
	cands[3].Place = false // n4 is down, not yet given up
	got := Replan(l, cands, 3, nil)
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
	got := Replan(l, up(ps...), 3, nil)
	if got.Version != l.Version+1 || got.Shards[0][1].RPC != "127.0.0.1:9999" && got.Shards[0][0].RPC != "127.0.0.1:9999" && got.Shards[0][2].RPC != "127.0.0.1:9999" {
		t.Fatalf("the new address of n2 is not in the plan: %v", got)
	}
}

// ledShare returns each node's share of the load it leads.
func ledShare(l Layout, load []float64) map[string]float64 {
	var total float64
	led := map[string]float64{}
	for i, peers := range l.Shards {
		led[peers[0].ID] += load[i]
		total += load[i]
	}
	for id := range led {
		led[id] /= total
	}
	return led
}

// TestRebalanceSpreadsTheAppends: 24 equally busy streams hashed into 12
// shards on three nodes: whatever the hash does, after Rebalance no node
// leads more than 40% of the appends; no replica moves.
func TestRebalanceSpreadsTheAppends(t *testing.T) {
	ps := peersN(3)
	base, _ := Plan(ps, 12, 3)
	for _, pattern := range []string{"s%d", "sensors/%d", "dev-%d", "x%dy", "t%d"} {
		load := make([]float64, 12)
		for i := range 24 {
			load[ShardOf(fmt.Sprintf(pattern, i), 12)] += 1000
		}
		got := Rebalance(base, load, nil)
		for id, share := range ledShare(got, load) {
			if share > 0.40 {
				t.Errorf("%s: %s leads %.0f%% of the appends: %v", pattern, id, share*100, ledShare(got, load))
			}
		}
		if moved(base, got) != 0 {
			t.Fatalf("%s: Rebalance moved replicas", pattern)
		}
		if again := Rebalance(got, load, nil); again.Version != got.Version {
			t.Fatalf("%s: a balanced layout was rebalanced again", pattern)
		}
	}
}

func TestRebalanceLeavesAnEvenLoadAndUnknownLoads(t *testing.T) {
	ps := peersN(3)
	base, _ := Plan(ps, 12, 3)
	even := make([]float64, 12)
	for i := range even {
		even[i] = 500
	}
	if got := Rebalance(base, even, nil); got.Version != base.Version {
		t.Fatal("an even load moved leaders")
	}
	if got := Rebalance(base, make([]float64, 12), nil); got.Version != base.Version {
		t.Fatal("no load moved leaders")
	}
	if got := Rebalance(base, []float64{1}, nil); got.Version != base.Version {
		t.Fatal("loads of another shard count moved leaders")
	}
	// One hot shard: it stays where it is (moving it only moves the
	// hot spot), the others move away from its leader.
	hot := make([]float64, 12)
	hot[0] = 10000
	for i := 1; i < 12; i++ {
		hot[i] = 100
	}
	got := Rebalance(base, hot, nil)
	if got.Shards[0][0].ID != base.Shards[0][0].ID {
		t.Fatal("the hot shard's leader moved")
	}
	for i := 1; i < 12; i++ {
		if got.Shards[i][0].ID == got.Shards[0][0].ID {
			t.Fatalf("shard %d still led with the hot shard", i)
		}
	}
}

// TestReplanByLoadIsStable: planned with loads, a layout planned again
// with the same loads does not change (count-spreading does not undo the
// leaders placed by load).
func TestReplanByLoadIsStable(t *testing.T) {
	ps := peersN(3)
	base, _ := Plan(ps, 12, 3)
	load := make([]float64, 12)
	for i := range 24 {
		load[ShardOf(fmt.Sprintf("s%d", i), 12)] += 1000
	}
	load[3] += 9000
	first := Replan(base, up(ps...), 3, load)
	if again := Replan(first, up(ps...), 3, load); again.Version != first.Version {
		t.Fatal("planning again with the same loads changed the leaders")
	}
	for id, share := range ledShare(first, load) {
		if share > 0.45 {
			t.Errorf("%s leads %.0f%%", id, share*100)
		}
	}
}

// TestReplanByLoadSpreadsIdleShardsLeaders: a fourth node joins three
// whose shards are mostly idle; leaders follow the load, and the idle
// shards' leaders are spread within one per node too, instead of staying
// with whichever node the new replicas put first (the new node led 8 of
// 12 in a hands-on test).
func TestReplanByLoadSpreadsIdleShardsLeaders(t *testing.T) {
	ps := peersN(4)
	l, _ := Plan(ps[:3], 12, 3)
	load := make([]float64, 12)
	load[1], load[6] = 20, 15
	four := Replan(l, up(ps...), 3, load)
	checkSpread(t, four, up(ps...), 3)
	checkSpread(t, Replan(l, up(ps...), 3, make([]float64, 12)), up(ps...), 3) // every shard idle
	if again := Replan(four, up(ps...), 3, load); again.Version != four.Version {
		t.Fatalf("a second plan over the same load moved leaders again: %v, then %v", four.Shards, again.Shards)
	}
}

// Preferred leaders stay within one per node when the nodes that lead
// too many share no shard with those that lead too few: the counts are
// evened through a chain of moves. Found by review: direct swaps left
// eight nodes leading 2 to 4 shards of 24.
func TestReplanSpreadsLeadersThroughChains(t *testing.T) {
	all := peersN(8)
	l, _ := Plan(all[:3], 24, 3)
	for n := 4; n <= 8; n++ {
		l = Replan(l, up(all[:n]...), 3, nil)
		checkSpread(t, l, up(all[:n]...), 3)
	}
	// 4 shards, RF 2: eight nodes, then n1..n4 leave one by one.
	l, _ = Plan(all[:3], 4, 2)
	for n := 4; n <= 8; n++ {
		l = Replan(l, up(all[:n]...), 2, nil)
	}
	for k := 1; k <= 4; k++ {
		l = Replan(l, up(all[k:]...), 2, nil)
		checkSpread(t, l, up(all[k:]...), 2)
	}
}

// The same by load: four equally busy shards on [[n6 n8] [n7 n8] [n5 n6]
// [n5 n7]], n5 leading two and n8 none. No direct move helps (n5's
// replicas lead one each already); the chain n5 -> n6 -> n8 does.
func TestRebalanceEvensLoadThroughAChain(t *testing.T) {
	p := peersN(8)
	n5, n6, n7, n8 := p[4], p[5], p[6], p[7]
	l := Layout{Version: 1, Shards: [][]Peer{{n6, n8}, {n7, n8}, {n5, n6}, {n5, n7}}}
	got := Rebalance(l, []float64{100, 100, 100, 100}, nil)
	led := map[string]int{}
	for _, peers := range got.Shards {
		led[peers[0].ID]++
	}
	for _, n := range []Peer{n5, n6, n7, n8} {
		if led[n.ID] != 1 {
			t.Fatalf("preferred leaders %v, want one each: %v", led, got.Shards)
		}
	}
	if got.Version != 2 || moved(l, got) != 0 {
		t.Fatalf("version %d, %d replicas moved: want 2 and none", got.Version, moved(l, got))
	}
}

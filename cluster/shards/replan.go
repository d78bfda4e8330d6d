package shards

import "slices"

// Layout changes.
//
// Replan is the planner of a cluster whose members change: it starts from
// the current layout and moves as few replicas as it can, so that every
// shard is on min(rf, nodes) nodes, every node holds within one replica
// of the others and prefers to lead within one shard of the others.

// Candidate is a node Replan may place replicas on.
type Candidate struct {
	Peer
	// Place: the node may be given replicas (it is up). A candidate that
	// may not (down, but not yet given up for dead) keeps the replicas it
	// has and is given none.
	Place bool
}

// Replan returns cur changed as little as it can so that it places every
// shard on min(rf, len(cands)) of cands, spread evenly; nodes not among
// cands lose their replicas. Preferred leaders are spread by load when
// load gives each shard's appends per second (and some shard has any),
// otherwise by count. The result has cur's version when nothing changed,
// the next version otherwise. Every node computes the same plan from the
// same inputs.
func Replan(cur Layout, cands []Candidate, rf int, load []float64) Layout {
	byID := make(map[string]Candidate, len(cands))
	for _, c := range cands {
		byID[c.ID] = c
	}
	ids := make([]string, 0, len(cands))
	for _, c := range cands {
		ids = append(ids, c.ID)
	}
	slices.Sort(ids)
	want := min(rf, len(cands))
	out := Layout{Version: cur.Version, Shards: make([][]Peer, len(cur.Shards))}
	held := map[string]int{}
	for i, peers := range cur.Shards {
		for _, p := range peers {
			if c, ok := byID[p.ID]; ok && len(out.Shards[i]) < want {
				out.Shards[i] = append(out.Shards[i], c.Peer) // the candidate's address is the current one
				held[p.ID]++
			}
		}
	}
	holds := func(i int, id string) bool {
		return slices.ContainsFunc(out.Shards[i], func(p Peer) bool { return p.ID == id })
	}
	// fewest returns the placeable node not holding shard i that holds
	// the fewest replicas (the first by id among equals).
	fewest := func(i int) (string, bool) {
		best, found := "", false
		for _, id := range ids {
			if !byID[id].Place || holds(i, id) {
				continue
			}
			if !found || held[id] < held[best] {
				best, found = id, true
			}
		}
		return best, found
	}
	// Fill the shards that lack replicas.
	for i := range out.Shards {
		for len(out.Shards[i]) < want {
			id, ok := fewest(i)
			if !ok {
				break
			}
			out.Shards[i] = append(out.Shards[i], byID[id].Peer)
			held[id]++
		}
	}
	// Move replicas from the most to the least loaded placeable nodes
	// until they are within one of each other.
	for moves := 0; moves < len(out.Shards)*max(want, 1); moves++ {
		hi, lo := "", ""
		for _, id := range ids {
			if !byID[id].Place {
				continue
			}
			if hi == "" || held[id] > held[hi] {
				hi = id
			}
			if lo == "" || held[id] < held[lo] {
				lo = id
			}
		}
		if hi == "" || held[hi]-held[lo] <= 1 {
			break
		}
		moved := false
		for i := range out.Shards {
			j := slices.IndexFunc(out.Shards[i], func(p Peer) bool { return p.ID == hi })
			if j < 0 || holds(i, lo) {
				continue
			}
			out.Shards[i][j] = byID[lo].Peer
			held[hi]--
			held[lo]++
			moved = true
			break
		}
		if !moved {
			break
		}
	}
	if byLoad(out, load) {
		out = Rebalance(out, load, func(id string) bool { return byID[id].Place })
	} else {
		spreadLeaders(out)
	}
	if !sameShards(cur, out) {
		out.Version = cur.Version + 1
	}
	return out
}

// spreadLeaders reorders each shard's replicas so that the preferred
// leaders (the first of each) are spread within one per node, moving as
// few as it can.
func spreadLeaders(l Layout) {
	spreadChains(l, func(int, string, int) bool { return true }, func(int, string, string) {})
}

// spreadChains moves preferred leaders of l, in chains, until no node
// leads two shards more than a node it can pass one to: shard a, led by
// u, goes to its replica v, which passes one of its own shards b on to
// w, and so on, so that only the chain's ends change their counts (a
// direct swap is the chain of one). Between two nodes that share no
// shard, only a chain evens the counts. can reports whether shard i's
// leadership may go to node to when to passes shard passes on (-1: to is
// the chain's end); moved is told of each move, in order.
// The chains are the shortest, found in the order of node ids and shard
// indexes, so every node computes the same moves.
func spreadChains(l Layout, can func(i int, to string, passes int) bool, moved func(i int, from, to string)) {
	count := map[string]int{}
	var nodes []string
	for _, peers := range l.Shards {
		for k, p := range peers {
			if _, ok := count[p.ID]; !ok {
				nodes = append(nodes, p.ID)
				count[p.ID] = 0
			}
			if k == 0 {
				count[p.ID]++
			}
		}
	}
	slices.Sort(nodes)
	// Each chain lowers the sum of the squared counts: this bounds them.
	for range len(l.Shards) * len(l.Shards) {
		chain := findChain(l, nodes, count, can)
		if chain == nil {
			return
		}
		for _, m := range chain {
			peers := l.Shards[m.shard]
			from := peers[0].ID
			peers[0], peers[m.to] = peers[m.to], peers[0]
			count[from]--
			count[peers[0].ID]++
			moved(m.shard, from, peers[0].ID)
		}
	}
}

// leaderMove gives shard's leadership to its replica at index to.
type leaderMove struct{ shard, to int }

// findChain returns the shortest chain of moves from a node leading the
// most shards (then the next most, ...) to a node leading at least two
// fewer than it, in the order to apply them; nil when there is none.
func findChain(l Layout, nodes []string, count map[string]int, can func(int, string, int) bool) []leaderMove {
	sources := slices.Clone(nodes)
	slices.SortStableFunc(sources, func(a, b string) int { return count[b] - count[a] })
	type step struct {
		from string // the node the chain came from
		move leaderMove
	}
	for _, src := range sources {
		prev := map[string]step{src: {}}
		queue := []string{src}
		for len(queue) > 0 {
			u := queue[0]
			queue = queue[1:]
			for i, peers := range l.Shards {
				if len(peers) < 2 || peers[0].ID != u {
					continue
				}
				if u != src && !can(prev[u].move.shard, u, i) {
					continue // u may not take its shard while passing on this one
				}
				for j := 1; j < len(peers); j++ {
					v := peers[j].ID
					if _, seen := prev[v]; seen {
						continue
					}
					if count[v] <= count[src]-2 && can(i, v, -1) {
						prev[v] = step{from: u, move: leaderMove{i, j}}
						var chain []leaderMove
						for at := v; at != src; at = prev[at].from {
							chain = append(chain, prev[at].move)
						}
						slices.Reverse(chain)
						return chain
					}
					prev[v] = step{from: u, move: leaderMove{i, j}}
					queue = append(queue, v)
				}
			}
		}
	}
	return nil
}

// sameShards reports whether a and b place the same replicas in the same
// order with the same addresses.
func sameShards(a, b Layout) bool {
	if len(a.Shards) != len(b.Shards) {
		return false
	}
	for i := range a.Shards {
		if !slices.Equal(a.Shards[i], b.Shards[i]) {
			return false
		}
	}
	return true
}

// Leaders by load.
//
// Spreading preferred leaders by count leaves the appends uneven when
// the streams are: a shard's appends all go to its leader. Rebalance
// reorders each shard's replicas by measured load instead, moving no
// replica, so that every node leads a near-equal share of the appends.

// rebalanceSlack is how far above the mean a node's share of the load
// may be before Rebalance moves a preferred leader (so that measurement
// noise does not move leaders back and forth).
const rebalanceSlack = 1.2

// byLoad reports whether load can place the leaders of l.
func byLoad(l Layout, load []float64) bool {
	if len(load) != len(l.Shards) {
		return false
	}
	for _, x := range load {
		if x > 0 {
			return true
		}
	}
	return false
}

// Rebalance returns l with preferred leaders chosen so that no node
// leads more than rebalanceSlack times the mean load while a move helps;
// load[i] is shard i's appends per second (any unit). It changes as few
// shards as it can, and returns l as it is (same version) when the
// leaders are balanced enough or the loads are unknown. Nodes that may
// not lead (nil: any may) are left out.
func Rebalance(l Layout, load []float64, canLead func(id string) bool) Layout {
	if len(load) != len(l.Shards) {
		return l
	}
	out := Layout{Version: l.Version, Shards: make([][]Peer, len(l.Shards))}
	led := map[string]float64{}
	var total float64
	nodes := map[string]bool{}
	for i, peers := range l.Shards {
		out.Shards[i] = slices.Clone(peers)
		for _, p := range peers {
			if canLead == nil || canLead(p.ID) {
				nodes[p.ID] = true
			}
		}
		if len(peers) > 0 {
			led[peers[0].ID] += load[i]
		}
		total += load[i]
	}
	if total <= 0 || len(nodes) < 2 {
		return l
	}
	mean := total / float64(len(nodes))
	for range len(l.Shards) {
		// The node leading the most load.
		var hi string
		for id := range nodes {
			if hi == "" || led[id] > led[hi] || (led[id] == led[hi] && id < hi) {
				hi = id
			}
		}
		if led[hi] <= rebalanceSlack*mean {
			break
		}
		// The move of one of hi's shards to another of its replicas
		// that lowers the larger of the two loads the most.
		bestShard, bestTo, bestMax := -1, -1, led[hi]
		for i, peers := range out.Shards {
			if len(peers) < 2 || peers[0].ID != hi || load[i] <= 0 {
				continue
			}
			for j := 1; j < len(peers); j++ {
				to := peers[j].ID
				if !nodes[to] {
					continue
				}
				if m := max(led[hi]-load[i], led[to]+load[i]); m < bestMax {
					bestShard, bestTo, bestMax = i, j, m
				}
			}
		}
		if bestShard < 0 {
			break
		}
		peers := out.Shards[bestShard]
		led[hi] -= load[bestShard]
		led[peers[bestTo].ID] += load[bestShard]
		peers[0], peers[bestTo] = peers[bestTo], peers[0]
	}
	spreadCounts(out, load, led, nodes, rebalanceSlack*mean)
	if !sameShards(l, out) {
		out.Version = l.Version + 1
	}
	return out
}

// spreadCounts moves preferred leaders of l, in chains (spreadChains),
// from nodes leading the most shards to nodes leading at least two fewer,
// while no node on the way is taken past limit by the load of the shard
// it is given, less that of the shard it passes on (an idle shard always
// can be given): the load stays balanced, and
// the counts come within one per node as far as it allows (a node joining
// a cluster whose shards are idle would otherwise lead whichever shards
// it was given first). led, each node's load, is kept up to date.
func spreadCounts(l Layout, load []float64, led map[string]float64, nodes map[string]bool, limit float64) {
	can := func(i int, to string, passes int) bool {
		took := led[to] + load[i]
		if passes >= 0 {
			took -= load[passes]
		}
		return nodes[to] && (load[i] <= 0 || took <= limit)
	}
	spreadChains(l, can, func(i int, from, to string) {
		led[from] -= load[i]
		led[to] += load[i]
	})
}

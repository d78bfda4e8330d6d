package node

import (
	"strings"
	"testing"

	"github.com/mqstream/mqstream/cluster/shards"
)

// TestCatchUpCheck: a node is caught up once each replica it holds has
// applied what its leader had applied when first asked; the leader is
// asked once per shard, and shards led here or held elsewhere need
// nothing.
func TestCatchUpCheck(t *testing.T) {
	list := []shards.ShardStatus{
		{ID: 0, Leader: "a", Local: true, Applied: 10}, // led here
		{ID: 1, Leader: "b", Local: true, Applied: 5},
		{ID: 2, Leader: "c", Local: false}, // not held here
	}
	asked := 0
	peers := map[string]map[string]uint64{"b": {"1": 8}}
	ask := func() map[string]map[string]uint64 { asked++; return peers }
	targets := map[int]uint64{}
	step := func(want bool, reason string) {
		t.Helper()
		ok, got := catchUpCheck(list, "a", targets, ask)
		if ok != want || !strings.Contains(got, reason) {
			t.Fatalf("catchUpCheck = %v %q, want %v and a reason with %q", ok, got, want, reason)
		}
	}
	step(false, "shard 1 has applied 5 of the 8")
	peers["b"]["1"] = 100 // the leader goes on: the target stays
	list[1].Applied = 8
	step(true, "")
	if asked != 1 {
		t.Fatalf("the leaders were asked %d times, want once", asked)
	}

	// A leader that does not answer, and a shard without a leader, keep
	// the node unready and say why.
	targets = map[int]uint64{}
	peers = map[string]map[string]uint64{}
	step(false, "waiting for b, the leader of shard 1")
	list[1].Leader = ""
	step(false, "shard 1 has no leader")
}

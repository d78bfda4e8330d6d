package node

import (
	"maps"
	"testing"

	"github.com/mqstream/mqstream/cluster/shards"
)

func TestShardLagsFromAppliedIndexes(t *testing.T) {
	list := []shards.ShardStatus{
		{ID: 0, Replicas: []string{"a", "b", "c"}},
		{ID: 1, Replicas: []string{"b", "c", "d"}},
		{ID: 2, Replicas: []string{"c", "d", "a"}},
		{ID: 3, Replicas: []string{"a", "b"}},
	}
	byNode := map[string]map[string]uint64{
		"a": {"0": 100, "2": 7, "3": 5},
		"b": {"0": 90, "1": 40, "3": 5},
		"c": {"0": 95, "1": 42, "2": 9},
		// d did not answer; e answered for shard 1, which the layout
		// does not place on it (a replica moved away): not counted.
		"e": {"1": 1},
	}
	want := map[int]uint64{0: 10, 1: 2, 2: 2, 3: 0}
	if got := shardLags(list, byNode); !maps.Equal(got, want) {
		t.Errorf("lags %v, want %v", got, want)
	}
	// A shard with a single replica answering has no lag to tell.
	delete(byNode, "b")
	delete(byNode, "c")
	if got := shardLags(list, byNode); !maps.Equal(got, map[int]uint64{}) {
		t.Errorf("lags with only a answering: %v, want none", got)
	}
}

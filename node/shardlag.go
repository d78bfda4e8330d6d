package node

import (
	"context"
	"encoding/json"
	"strconv"

	"github.com/mqstream/mqstream/cluster/shards"
)

// Replication lag: how far the slowest replica of a shard is behind the
// most advanced one, in Raft entries applied. Each node knows only its own
// replicas' applied indexes, so the node asked (GET /v1/cluster, a
// Prometheus scrape) asks every other member for theirs, waiting at most
// figuresTimeout; replicas that do not answer are left out.

// appliedService answers the applied index of each replica the node holds.
const appliedService = "shards.applied"

// serveApplied registers appliedService.
func (n *Node) serveApplied() {
	n.repl.mux.Handle(appliedService, func(context.Context, string, []byte) ([]byte, error) {
		return json.Marshal(localApplied(n.Shards()))
	})
}

// localApplied is the applied index of each shard held here, by shard id
// (JSON object keys are strings).
func localApplied(list []shards.ShardStatus) map[string]uint64 {
	out := map[string]uint64{}
	for _, st := range list {
		if st.Local {
			out[strconv.Itoa(st.ID)] = st.Applied
		}
	}
	return out
}

// ShardLags returns, by shard id, how many entries the slowest replica of
// each shard has applied fewer than the most advanced one, among the
// replicas that answered (at least two; a shard with fewer is left out).
// Nil when the node runs no shards.
func (n *Node) ShardLags(ctx context.Context) map[int]uint64 {
	list := n.Shards()
	if list == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, figuresTimeout)
	defer cancel()
	byNode := fromPeers[map[string]uint64](ctx, n, appliedService, nil)
	byNode[n.id] = localApplied(list)
	return shardLags(list, byNode)
}

// shardLags computes the lags from each node's applied indexes: for each
// shard, over the nodes the layout places a replica on that reported one.
func shardLags(list []shards.ShardStatus, byNode map[string]map[string]uint64) map[int]uint64 {
	out := map[int]uint64{}
	for _, st := range list {
		key := strconv.Itoa(st.ID)
		var lo, hi uint64
		seen := 0
		for _, id := range st.Replicas {
			applied, ok := byNode[id][key]
			if !ok {
				continue
			}
			if seen == 0 || applied < lo {
				lo = applied
			}
			if seen == 0 || applied > hi {
				hi = applied
			}
			seen++
		}
		if seen >= 2 {
			out[st.ID] = hi - lo
		}
	}
	return out
}

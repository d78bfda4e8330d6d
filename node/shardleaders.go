package node

import (
	"context"
	"encoding/json"
	"strconv"

	"github.com/mqstream/mqstream/cluster/shards"
	"github.com/mqstream/mqstream/query"
)

// Shard leaders seen from any node: only a shard's replicas know its
// leader, so for the shards it holds no replica of, the node asked (the
// shards table, GET /v1/cluster) asks every other member for the leaders
// of theirs, waiting at most figuresTimeout, and takes for each shard the
// view of the highest term; a shard none of whose replicas answered keeps
// no leader.

// leadersService answers the leader and term of each replica the node
// holds whose leader it knows.
const leadersService = "shards.leaders"

// shardLeader is a replica's view of its shard's leader.
type shardLeader struct {
	Leader string `json:"leader"`
	Term   uint64 `json:"term"`
}

// serveLeaders registers leadersService.
func (n *Node) serveLeaders() {
	n.repl.mux.Handle(leadersService, func(context.Context, string, []byte) ([]byte, error) {
		return json.Marshal(localLeaders(n.Shards()))
	})
}

// localLeaders are the leaders of the shards held here, by shard id (JSON
// object keys are strings).
func localLeaders(list []shards.ShardStatus) map[string]shardLeader {
	out := map[string]shardLeader{}
	for _, st := range list {
		if st.Local && st.Leader != "" {
			out[strconv.Itoa(st.ID)] = shardLeader{Leader: st.Leader, Term: st.Term}
		}
	}
	return out
}

// ClusterShards returns the shards as this node sees them, with the
// leader and term of each shard it holds no replica of as that shard's
// replicas see it (Applied stays this node's: 0 there). Nil when the node
// runs no shards.
func (n *Node) ClusterShards(ctx context.Context) []shards.ShardStatus {
	list := n.Shards()
	if !holdsNotAll(list) {
		return list
	}
	ctx, cancel := context.WithTimeout(ctx, figuresTimeout)
	defer cancel()
	return withLeaders(list, fromPeers[map[string]shardLeader](ctx, n, leadersService, nil))
}

func holdsNotAll(list []shards.ShardStatus) bool {
	for _, st := range list {
		if !st.Local {
			return true
		}
	}
	return false
}

// withLeaders fills the leader of each shard not held here from the
// replicas' views (byNode), the highest term's.
func withLeaders(list []shards.ShardStatus, byNode map[string]map[string]shardLeader) []shards.ShardStatus {
	for i, st := range list {
		if st.Local {
			continue
		}
		key := strconv.Itoa(st.ID)
		var best shardLeader
		for _, id := range st.Replicas {
			if v, ok := byNode[id][key]; ok && (best.Leader == "" || v.Term > best.Term) {
				best = v
			}
		}
		list[i].Leader, list[i].Term = best.Leader, best.Term
	}
	return list
}

// shardRows adapts the node's shards to the SQL engine's shards table.
type shardRows struct{ n *Node }

func (r shardRows) Shards(ctx context.Context) []query.ShardRow {
	list := r.n.ClusterShards(ctx)
	var lags map[int]uint64
	if len(list) > 0 {
		lags = r.n.ShardLags(ctx)
	}
	out := make([]query.ShardRow, len(list))
	for i, st := range list {
		out[i] = query.ShardRow{ID: st.ID, Leader: st.Leader, Term: st.Term, Replicas: st.Replicas, Applied: st.Applied, Local: st.Local}
		if lag, ok := lags[st.ID]; ok {
			out[i].Lag = &lag
		}
	}
	return out
}

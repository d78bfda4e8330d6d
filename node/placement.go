package node

import (
	"github.com/mqstream/mqstream/query"
)

// shardRows adapts the node's shards to the SQL engine's shards table.
type shardRows struct{ n *Node }

func (r shardRows) Shards() []query.ShardRow {
	list := r.n.Shards()
	out := make([]query.ShardRow, len(list))
	for i := range list {
		out[i] = query.ShardRow(list[i])
	}
	return out
}

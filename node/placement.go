package node

import (
	"context"

	"github.com/mqstream/mqstream/cluster/routes"
	"github.com/mqstream/mqstream/cluster/shards"
)

// What the API and SQL show of the shards: where a stream lives and the
// forward counters (the shards table: shardleaders.go). Standalone (and before the
// cluster formed) there are no shards.

// StreamPlacement says where stream name lives: its shard, the shard's
// leader ("" while none is known) and the nodes holding its replicas, the
// preferred leader first. The leader of a shard this node holds no
// replica of is the one its replicas name (ClusterShards: they are asked,
// at most figuresTimeout), "" when none of them answers. ok is false when
// the node runs no shards.
func (n *Node) StreamPlacement(ctx context.Context, name string) (shard int, leader string, replicas []string, ok bool) {
	list := n.Shards()
	if len(list) == 0 {
		return 0, "", nil, false
	}
	i := shards.ShardOf(name, len(list))
	if !list[i].Local {
		if all := n.ClusterShards(ctx); i < len(all) {
			list = all
		}
	}
	st := list[i]
	return st.ID, st.Leader, st.Replicas, true
}

// ForwardCounters count the writes this node forwarded to other nodes
// and served for them (zero when it runs no shards).
func (n *Node) ForwardCounters() shards.ForwardCounters {
	if s := n.shardSet(); s != nil {
		return s.Counters()
	}
	return shards.ForwardCounters{}
}

// LeaderHandoffs counts the shard leaderships this node handed to their
// preferred leaders (zero when it runs no shards).
func (n *Node) LeaderHandoffs() uint64 {
	if s := n.shardSet(); s != nil {
		return s.Handoffs()
	}
	return 0
}

// CommitNotices counts the commit notices this node's shard leaders sent
// (zero when it runs no shards).
func (n *Node) CommitNotices() uint64 {
	if s := n.shardSet(); s != nil {
		return s.CommitNotices()
	}
	return 0
}

// Routes is this node's share of the MQTT route table and its forwarding
// counters (zero when standalone).
func (n *Node) Routes() routes.Stats {
	if n.routes == nil {
		return routes.Stats{}
	}
	return n.routes.Stats()
}

// Package cluster makes mqstream nodes started from config files one
// cluster. It sits between a node's wiring (package node) and the store,
// and offers the rest of the node small answers ("who is in the cluster",
// a change feed) rather than its machinery.
//
// # Membership
//
// Membership and failure detection come from Serf (hashicorp/serf, over
// memberlist's SWIM gossip). Every node carries tags: the cluster name and
// its advertised RPC, MQTT and HTTP addresses and version. A node joins
// through any reachable seed; unreachable seeds are retried with capped
// exponential backoff, each logged once. Two checks run on every merge of
// gossip state, on both sides (Serf's merge delegate): a member that
// carries another cluster name is refused, and so is a second node with
// this node's id at another address. A refused node is never listed; the
// node that tried to join stops with an error naming both sides.
//
// A member gossip calls alive is shown as suspect once it has missed two
// of this node's own pings in a row, spanning a second at least (memberlist keeps its suspicion out of
// reach); Member.Up still counts it, so suspicion is for people, and only
// gossip's failure detection changes what the node does with a member.
//
// Member events are coalesced by Serf before the change feed fires, so a
// burst of joins is acted on once. Membership never alone decides which
// node may write a shard: that needs agreement, not gossip.
//
// # Below
//
//   - cluster/shards: streams replicated in shards, one Raft group per
//     shard whose state machine is the stream store; placement, routing,
//     forwarding and deduplication of retried appends (see its doc.go).
//   - cluster/raftlog: the Raft log and stable store of every group of a
//     node in one Pebble database, so their fsyncs coalesce.
//   - cluster/rpcmux: one TCP listener (cluster.rpc) multiplexing every
//     group's Raft traffic and the forwarding calls between nodes, with
//     fault injection for partition tests.
package cluster

// Package meta keeps the cluster's metadata in a Raft group of its own
// (hashicorp/raft), apart from the shards' groups: the shard layout
// (which nodes replicate each shard, the preferred leader first), under
// a version that grows with each change, the nodes removed for good, and
// each node's data directory incarnation (Register; Vouch for a node with
// a new directory, before it opens its member: the group refuses an id it
// knows with another directory, ErrLostData, since a member that lost its
// log must not vote).
//
// Every node of the cluster is a member of the group: up to three voters
// (the founders, then whoever replaces one), the others non-voters, so
// every node applies the same metadata in the same order and follows each
// new layout (node wiring hands it to the shards). Writes go to the
// group's leader, forwarded over the cluster's RPC connection from any
// node (service "meta.ops"): a new layout is applied only over the
// version it was planned from (compare and set), so two planners never
// overwrite each other; a removal is applied once and for good. A node
// asks to join the group (Join) before anything else: the leader refuses
// a removed node and adds any other as a non-voter.
//
// A member that leads the group hands the leadership to another voter
// when it closes (a node stopping gracefully), so the group has a leader
// again at once rather than after the followers' election timeout. A
// write the closing leader could not finish is answered "no leader" and
// its sender tries it on the new leader: a layout that was committed all
// the same then fails as stale (planners plan again), and removals and
// joins are idempotent.
//
// The state is small (a layout of a few hundred peers at most); a
// snapshot is the whole state in JSON.
package meta

// Package shards replicates the stream store over the cluster: every
// stream belongs to one of a fixed number of shards (a hash of its name),
// and every shard is a Raft group (hashicorp/raft) whose replicas are
// nodes of the cluster and whose state machine is each replica's stream
// store.
//
// # Writes
//
// An append goes to its shard's leader: directly when this node leads the
// shard, otherwise forwarded over the cluster's RPC connection to the
// leader this node knows of (or to a replica holder, which forwards it
// again; a forward is never forwarded more than twice). The leader
// gathers the appends queued for a shard while the previous proposal is
// in flight into one Raft entry, stamped with the leader's clock, and
// proposes it. Raft commits an entry once a majority of the shard's
// replicas has it in its log, fsynced; then every replica applies it to
// its store in log order, so replicas hold the same records at the same
// offsets with the same timestamps. The appender is answered (PUBACK,
// REST reply) once the entry is committed and applied on the leader, so
// a deposed leader can never acknowledge a write: Raft fails its pending
// proposals.
//
// # Durability without a second fsync
//
// The Raft log is the durable copy: a replica applies entries to its
// store without syncing, and records the entry's index (the applied-index
// marker of the shard's log) in the same batch. After a crash the store
// may have lost its last unsynced batches; Raft replays the log from its
// latest snapshot, and the state machine skips entries at or below the
// store's marker. A snapshot carries only that index, taken after the
// store was synced, so Raft may forget the log up to it.
//
// # Placement
//
// When the cluster forms, its first BootstrapExpect members (sorted by
// id) are laid out round-robin: shard i is replicated on the
// ReplicationFactor members from i mod n on, and prefers the first of
// them as its leader. Every founding member computes the same layout (the
// node wiring has the first founder to lay it out announce the founders in
// gossip, and the others take those), records it in its data directory
// and bootstraps its Raft groups with it; the groups keep their
// configuration in their logs from then on. A
// balancer hands leadership back to a shard's preferred leader when it is
// a healthy voter, so leaders stay spread evenly.
package shards

// Package reads serves a cluster node's reads of every stream, wherever
// its shard is held: a stream whose shard this node replicates is read
// from the local store; any other is read from a node that replicates it,
// over the cluster's RPC connection (service "reads"). With more nodes
// than the replication factor a node holds only some shards, and REST
// reads and follows, SQL and the consumer groups it runs still see every
// stream.
//
// A remote read sees what the answering replica has applied: the shard's
// holders are asked in the layout's order, those membership has up
// first, the preferred leader (most often the leader) first among them (a
// follower applies an entry a moment after the leader acknowledged it). A
// holder whose replica does not serve reads yet (not caught up with its
// group after a restart, or just added) refuses (ErrNotServing), and the
// next one is asked; so is the next one when a holder has not answered
// within half a second (a stopped or partitioned node that membership
// has not noticed yet), the first answer winning.
// Listing the streams asks one holder of every shard this node does not
// hold, all shards at once, and each shard's answer is kept for a short
// while (and used only while the shard is still held elsewhere), so that
// pages polling the list do not multiply the calls. Waiting for a remote stream to grow
// (Notify) is a long poll: the holder answers when the stream grows past
// the offset asked for, or after a few seconds, and the waiter reads
// again either way.
package reads

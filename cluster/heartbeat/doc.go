// Package heartbeat sends the Raft heartbeats of all of a node's groups to
// each peer node in batches, one call carrying the heartbeats of every
// group that is due, answered with every group's own response.
//
// # Why
//
// A node runs a Raft group (hashicorp/raft) per shard. The leader of each
// group sends each follower a heartbeat every HeartbeatTimeout/10 to
// HeartbeatTimeout/5 (100-200 ms with raft's defaults), one RPC each over
// the group's own transport: with 12 shards replicated three times, an
// idle three-node cluster makes about 160 heartbeat round trips a second,
// each a write, a wake-up and a read on both sides; on an idle node,
// wake-ups are what costs CPU. Batching them per node pair makes that two
// round trips a second per pair and direction, whatever the number of
// groups.
//
// # Sending
//
// Each group's transport is wrapped (Coalescer.Wrap). Raft sends a
// heartbeat as an AppendEntries request with a term and a leader address
// and nothing else; the wrapper recognises it as raft's NetworkTransport
// does on the receiving side, queues it for the peer node's address and
// blocks, as raft expects, until the answer comes. Everything else (appends
// with entries or a commit index, votes, snapshots, TimeoutNow) goes
// through the transport it wraps, untouched: the group's own, or package
// cluster/appends's, which batches the other appends per peer node.
//
// The heartbeats queued for one peer go in one call of the rpcmux service
// "raft.heartbeats", no sooner than Options.Interval after the previous
// batch to that peer (half of HeartbeatTimeout, 500 ms with raft's default
// of 1 s: ForHeartbeatTimeout), and then as soon as
//
//   - every group of the previous batch has queued its next heartbeat: a
//     batch's answers reach all its groups at once and raft waits
//     HeartbeatTimeout/10 to /5 before each group's next heartbeat, so in
//     a steady state every group is in by then and each batch carries the
//     heartbeats of all the groups the node leads with that peer as a
//     follower, one batch every Interval; or
//   - Options.Wait (HeartbeatTimeout/10) has passed since the first
//     heartbeat of the batch was queued: a group that stopped leading, or
//     one that starts, does not hold the others back longer.
//
// So a group heartbeats every 500 ms (plus the answer's round trip)
// rather than every 100-200 ms: half the followers' shortest election
// timeout (HeartbeatTimeout, 1 s) and of the leader's lease, which the
// node sets as long (LeaderLeaseTimeout, 1 s; raft's default of 500 ms
// would leave a late batch no room). The lease only decides
// how soon a leader cut off from its followers steps down; a leader never
// acknowledges a write a majority of its group has not stored, lease or
// not.
// A heartbeat is never answered by the coalescer itself: each
// answer is the follower group's own, made when the batch arrived, so a
// leader's lease and its stepping down on a newer term rest on what its
// followers said, as without batching. A failed call fails every
// heartbeat of the batch; raft backs off and retries each as it would
// after a failed RPC.
//
// # Receiving
//
// Coalescer.Serve hands each heartbeat of a batch to its group's heartbeat
// handler (raft sets one with SetHeartbeatHandler; it answers a heartbeat
// at once, outside its main loop) and answers with the responses in the
// batch's order. A group that is not open on the node is answered with an
// error; a group that has not answered within Options.AnswerTimeout too,
// so that it cannot hold up the others' answers, whose freshness their
// leaders' leases depend on.
//
// # Wire format
//
// A batch is a version byte (1), a uvarint count, and per heartbeat: the
// group name, the request's protocol version, server id, address, the
// deprecated leader address (length-prefixed bytes and uvarints) and term.
// The answer is a version byte, a count and per heartbeat a status byte: 0
// and the response (protocol version, server id, address, term, last log
// index, a flags byte: success, no retry backoff), or 1 and an error
// message.
package heartbeat

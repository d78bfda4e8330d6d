// Package appends sends the Raft AppendEntries of all of a node's groups
// to each peer node over one connection, several groups' requests in one
// frame, with a compact encoding of our own; the peer answers each group
// as soon as that group has answered.
//
// # Why
//
// A node runs a Raft group (hashicorp/raft) per shard. With raft's
// NetworkTransport every group sends each entry to each follower as its
// own msgpack-encoded RPC over a TCP connection per group and peer: a
// write and a read system call and several goroutine hand-offs on each
// side per request, and msgpack's reflection to encode and decode it. At
// 10k msg/s (about 3,400 entries a second over twelve groups) the
// follower side of the transport alone was 14% of the cluster's CPU.
// Here every request to a peer node goes over one connection (the rpcmux
// stream channel "raft.appends"), whatever is queued when the writer
// gets to it in one frame, and the answers that are ready come back in
// one frame: the groups' entries share system calls and wake-ups.
//
// In-process it saves 20 to 25 us of CPU per replicated entry, half for
// small entries (BenchmarkReplicate); three nodes on a quiet two-core
// machine spend about 7% less CPU per acknowledged publish
// (docs/performance.md, "AppendEntries batched per peer node"). A node
// without a Batcher refuses the connections of the channel, so a
// Batcher sends to a peer only when Options.Supports says the peer takes
// batched appends (the node asks the peer's membership tags); appends to
// other peers go through the group's own transport.
//
// # Sending
//
// Each group's transport is wrapped (Batcher.Wrap). AppendEntries and
// AppendEntriesPipeline go through the Batcher; votes, pre-votes,
// snapshots and TimeoutNow through the group's own transport, untouched.
// (In the node, the heartbeat coalescer, package cluster/heartbeat, wraps
// this transport in turn and takes the heartbeats before they get here.)
//
// Per peer node address, a link queues the requests of every group; one
// goroutine writes whatever is queued as one frame (up to
// Options.MaxFrame, about 1 MiB, then the next frame), dialing the
// connection first if there is none. A request gets an id unique on its
// connection; a reader per connection settles each request with the
// answer that carries its id. Nothing waits to gather a batch: requests
// share a frame when they queue while the previous frame is written,
// which is when there is load.
//
// A pipeline (AppendEntriesPipeline) has at most Options.MaxInFlight
// requests in flight (2, as raft's NetworkTransport) and delivers their
// futures to raft in the order they were sent. A synchronous
// AppendEntries waits for its answer.
//
// Failures fail requests, as raft expects of a transport, and never
// block another peer: each link writes and dials on its own goroutine. A
// peer that cannot be reached is dialed again every Options.DialHold/10
// while its requests wait, and they fail once DialHold (1 s) has passed:
// raft waits before its next request to a follower after each failure,
// doubling the wait up to 10 s, so requests failed at once to a follower
// down for ten seconds left its leader waiting up to ten more once it was
// back; held, a follower that restarts is reached at once. A group's
// synchronous append (raft's replication to a follower that failed) is
// sent again through DialHold after DialHold for up to Options.PeerHold
// (a minute), so that raft counts one failure a minute of a follower's
// absence rather than one a second; a group about to shut down is
// released first (Release), since raft waits for its replication. A connection
// that breaks, or stays silent for Options.Timeout (10 s) while requests
// are in flight, is closed and its requests in flight fail, in the order
// they were sent; the next request dials again. So is one on which a
// request stays unanswered for six Timeouts (a minute) while others are
// answered (the peer's groups answer each request within AnswerTimeout,
// one at a time): a lost answer would otherwise hold its group's
// pipeline for ever, as the other answers keep moving the read deadline. A failed pipelined
// request settles with a zero response (no success), which ends raft's
// pipeline; raft then retries with synchronous appends and backs off as
// after any failed RPC.
//
// # Receiving
//
// The Batcher accepts the peers' connections on the channel. Each
// request goes to its group's queue (a group not open on the node is
// answered with an error at once); per group, one goroutine hands the
// requests to raft in the order they came, one at a time, as raft's
// NetworkTransport does with a connection's requests: the group's
// transport's Consumer carries both these and the RPCs of the group's own
// transport. Each answer is queued on its connection as soon as its group
// has answered, and one goroutine per connection writes the answers that
// are ready in one frame: a group whose log write is slow holds up its
// own answers, not the others'. A group that does not take or answer a
// request within Options.AnswerTimeout (5 s; checked by a ticker per
// group, so between half of it and all of it) is answered with an error,
// before the sender would give up on the whole connection.
//
// Per group, the order of the requests is kept: one link and one
// connection carry all of a group's requests to a peer, the peer queues
// them per group in the order they came, and hands them to raft one at a
// time.
//
// # Wire format
//
// Every frame is a uint32 length (big endian) and a body; a body starts
// with a version byte (1) and a uvarint count. A request frame (dialer to
// acceptor) carries per request its id, the group's name, and the
// AppendEntries fields: protocol version, server id, address, term,
// (deprecated) leader address, previous log index and term, leader commit
// index, then the entries, each with its index, term, type byte, data,
// extensions and append time (varint Unix nanoseconds, 0 for none).
// An answer frame (acceptor to dialer) carries per answer the request's
// id and a status byte: 0 and the response (protocol version, server id,
// address, term, last log index, a flags byte: success, no retry
// backoff), or 1 and an error message. Integers are uvarints, byte
// strings a uvarint length and the bytes.
package appends

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
// store's marker. A snapshot is taken after the store was synced, so Raft
// may forget the log up to it. All of one entry's writes (appends to
// several streams, key/value writes) go to the store as one streams.Unit,
// committed in one batch: a crash never keeps part of an entry with its
// marker and loses the rest. A stream's creation or deletion is a write
// of its own, so the leader never puts one after other commands in an
// entry (replica.go, admin): it starts the entry, and a replay that
// finds it done already refuses it and applies the rest.
//
// # Snapshots and catching up from a peer
//
// A snapshot holds no records: it says what the log up to its index made
// of the shard (snapshot.go): the applied index, the window of recent
// append ids (and those of stream creations and deletions) with their results (dedupe.go, replay.go), for every stream of the shard its creation time (the
// leader's, the same on every replica), retention, next offset and newest
// timestamp, and the shard's key/value namespace. A replica that was away while the others compacted the log
// it missed is sent a snapshot instead, and is then behind it. It catches
// up from its peers (catchup.go): it deletes the shard's streams the
// snapshot does not list, replaces a stream of the same name but another
// creation time, creates the ones it lacks, and fetches each stream's
// missing records from a peer replica over the cluster's RPC connection
// ("shards.fetch", fetch.go), in pages of at most 4,096 records or 4 MiB,
// storing the bytes the peer stored: same offsets, same timestamps, no
// decoding. Records retention trimmed on the peer are skipped: the stream
// goes on from the peer's first offset; a stream the peers deleted after
// the snapshot is left empty at its next offset (the log after the
// snapshot deletes it here too). The peers are asked in turn, the
// leader first, then the servers of the snapshot's configuration and of
// the layout; a peer that is unreachable, behind the snapshot (its stream
// is another or shorter) or answers a malformed page is passed over, and
// when none can help the restore fails and Raft sends the snapshot again.
// The applied-index marker is written once every page is in, synced, and
// every stream was checked to end where the snapshot says (a recovery of
// the store from a failed write may have lost pages installed without a
// sync), so the store claims the snapshot's index only once it holds all
// of it.
//
// A catch-up interrupted (a crash, peers gone) leaves some streams ahead
// of the applied index, where applying the log again would store records
// twice. Its first write records its target index ("<log>/restore"); while
// the target is ahead of the applied index the replica takes no snapshot
// and applies no entry before it has finished the catch-up, which resumes
// from where each stream stands. Raft restores the newest snapshot when
// the group starts, so a restarted replica finishes there; if its peers
// cannot be reached then, it finishes before applying the next entry.
//
// # Key/value namespaces
//
// Every shard has a small key/value namespace replicated through its log
// (kv.go), for state that must follow the shard's leadership, such as the
// progress of the consumer groups its leader dispatches. The leader
// writes with the Raft term of its leadership (Set.Lead), in the same
// entries as appends; each replica applies the writes to the store's
// namespace "shardkv/<shard>" in log order with the appends, the entry's
// index as the applied-index marker in the same batch. Fencing: a write
// is applied only in an entry of the term it carries, so a write of a
// deposed leader that reaches the log in a later term is applied nowhere
// (ErrFenced). Lead reports a leader only once it has applied the entries
// before its term, so its namespace holds what its predecessors wrote.
// Snapshots carry the namespace (encoding 3); a replica catching up from
// peers takes it in place of its own, first thing, and a snapshot of an
// older encoding leaves it empty.
//
// # Transport and timings
//
// Each group reaches its peers through the transport the node gives it
// (GroupDeps): in the node, raft's NetworkTransport over a channel of the
// RPC mux named after the group, wrapped so that the group's heartbeats
// go to each peer node in one batch with the other groups' (package
// cluster/heartbeat) and its appends over one connection per peer node
// with the other groups' (package cluster/appends, towards peers that
// announce it: batchAppends in node/shards.go). Votes, the TimeoutNow of
// leadership transfers and snapshots keep the group's own connections, a
// new one per call (groupTransport in node/shards.go: a connection kept
// idle is dead once the peer restarted, and raft does not retry a call
// that fails on it). DefaultTimers keep hashicorp/raft's heartbeat and election
// timeouts (1 s: how soon followers notice a dead leader, so failover is
// as fast as with raft's defaults) but set the leader lease as long as the
// heartbeat timeout (raft: 500 ms), so that batched heartbeats, 500 ms
// apart, leave a late batch room; and the commit timeout, how often an
// idle leader repeats the commit index to its followers, to 5 s (raft: 50
// ms; 1 s for the metadata group). A follower learns that an entry is
// committed from the next entry, so a leader whose last entries have been
// applied, with nothing queued for a while (10 ms, or twice the shard's
// usual gap between entries when that is 10 to 100 ms), proposes an empty barrier entry
// that tells its followers (a commit notice, at most one every 100 ms per
// shard; replica.go): a follower applies the last entries of a burst, and
// the records of a shard written now and then, about as soon as the
// leader, instead of one or two commit timeouts later. An idle three-node
// cluster of 12 shards wakes far less (docs/performance.md, "Idle cost").
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
//
// # Layout changes
//
// Layouts have versions: the founding one is 0 (Plan), and each change
// (Replan, agreed in the cluster's metadata group) the next. Only a
// founding layout bootstraps groups, in Start; the node hands each later
// layout to Update, which refuses one with another shard count or an
// older version and ignores the current one again. The layout is kept
// behind an atomic pointer and never modified, so every reader (Status,
// forwarding, the balancer, catch-up's peer list) sees one whole layout;
// replicas sit behind atomic pointers too, and one goroutine, the
// manager (reconfigure.go), opens and closes them:
//
//   - a shard placed on this node that has no replica here gets one,
//     without bootstrapping: its group's leader adds it as a voter and
//     sends it the log, or a snapshot it then catches up to from its peers
//     (an empty store fetches every stream's records).
//   - each shard's leader changes its group's configuration toward the
//     layout, one awaited change at a time: it removes the servers the
//     layout dropped that are down (Options.Alive), adds the layout's
//     replicas that are up, then removes the other servers the layout
//     dropped, once the layout's replicas have applied what the leader
//     had (a fetch of no stream answers a store's applied index). A leader
//     the layout dropped hands its leadership over first (after the same
//     wait), and the new leader removes it. Each change is logged.
//   - a replica the layout moved away closes once its group's leader
//     confirms, over MembersService, that a committed configuration no
//     longer lists this node (confirmRemoved). The replica asks when its
//     own latest configuration lacks it (the leader sends a removed
//     server the entry that removes it, maybe before that entry is
//     committed) or after Timers.Orphaned without a leader (it was
//     removed while cut off, or the group lost its leader and still needs
//     this vote). The shard's part of the store goes: its streams
//     (deleted locally, not through the log), its key/value namespace,
//     its applied-index and restore markers, and its Raft log and
//     snapshots (Options.Drop, first). A voter must never come back with
//     an empty log (it could vote in a leader that lacks committed
//     entries), nor close while its group needs it. A replica given back
//     after a drop starts clean; a store left with a shard's markers by a drop that
//     was interrupted is cleared before the replica opens (its group has
//     no Raft state, or the clearing marker, set before the first stream
//     goes and deleted with the other markers, is still there; while it
//     is set the node answers no fetch of the shard, whose streams it
//     deleted outside the log), and the data of a shard moved away while
//     the node was down is dropped after Timers.Orphaned. Raft state kept this way
//     (Options.HasRaftState says which groups have some) is dropped once
//     the shard's leader says, over MembersService, that a committed
//     configuration of its group no longer lists this node (it reads its
//     latest configuration, then commits a barrier); the node asks once
//     per Timers.Orphaned (leftover.go).
package shards

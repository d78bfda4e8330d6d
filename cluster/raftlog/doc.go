// Package raftlog stores the logs and stable state of many Raft groups
// (hashicorp/raft) in one Pebble database per node.
//
// A node runs dozens of Raft groups: one per shard it replicates plus the
// metadata group. Each group appends to its log and syncs before it
// acknowledges, so with one database per group every append would be an
// fsync of its own. Here every group writes to the same Pebble database,
// whose commit pipeline gathers the batches committed at the same moment
// into one write-ahead-log sync: fifty groups appending at once cost about
// one fsync, not fifty.
//
// # Key layout
//
// Every key of a group starts with the group's prefix: the length of the
// group id as a uvarint, then the id. The length makes prefixes
// prefix-free, so "a" and "ab" never share a key. After the prefix comes a
// kind byte:
//
//	uvarint(len(id)) id 0x01 uint64-big-endian(index)  a log entry
//	uvarint(len(id)) id 0x02 key                       a stable-store key
//
// Big-endian indexes sort log entries in index order, so the first and
// last entries are one seek each and DeleteRange is one Pebble range
// deletion. Removing a group (DB.DeleteGroup) deletes the range of its
// prefix.
//
// # Values
//
// A log entry is encoded by this package (see codec.go): a version byte,
// then index, term, type, data, extensions and append time. A value that
// cannot be decoded, or whose index differs from its key's, is reported
// as ErrCorrupt. A uint64 stable value is 8 bytes big-endian.
//
// # Durability
//
// Every write (StoreLogs, DeleteRange, Set, SetUint64, DeleteGroup) is one
// Pebble batch committed with pebble.Sync: when the call returns, the
// write is in the synced WAL. Options.NoSync skips the sync and is meant
// for tests only.
//
// # Concurrency
//
// Stores of different groups are used concurrently and never wait for one
// another; no lock is held across a Pebble write or sync, and none is
// shared by all groups' commits. Each Store keeps its first and last log
// index in memory under its own mutex, because Raft asks for them on every
// append and replication round: read from Pebble on first use, updated
// after each write commits, read again after a truncation moved a bound to
// an entry only Pebble knows (logs may have gaps after a snapshot). Raft
// never writes to one group's log from two goroutines at once; should it
// happen, the cache is dropped rather than updated in the wrong order.
//
// Operations after DB.Close return ErrClosed; Close waits for the
// operations in progress.
package raftlog

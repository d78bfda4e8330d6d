// Package streams is mqstream's durable, ordered record store: named streams of
// records kept in one Pebble database.
//
// # Data model
//
// A stream is an append-only sequence of records. Every record gets a per-stream
// offset (uint64, dense, starting at 0, increasing by one per record) and a server
// timestamp that never decreases within a stream, so both offsets and timestamps
// can be searched by bisection and no secondary index is needed.
//
// # Key layout
//
// All keys live in one Pebble keyspace, distinguished by a one-byte tag:
//
//	'x'                         next stream id (uint64)
//	'm' name                    stream metadata (id, creation time, retention)
//	's' id(8)                   stream state (first offset, next offset, bytes, last timestamp)
//	'r' id(8) offset(8)         the records one commit group appended to the stream
//	                            from that offset: a block (block.go), or one record
//	                            alone, encoded by appendRecord
//	'a' <log name>              the applied-index marker of a replicated log (a shard's Raft group)
//	'k' namespace 0x00 key      small key/value state kept for other packages (see KV)
//
// A block keeps the per-record work of the database (memtable inserts,
// flushes, compactions) to one key per stream and commit group. A read from
// any offset starts at the block that holds it. Blocks are cut at 32 KiB.
//
// Streams are addressed internally by a numeric id that is never reused, so a
// stream deleted and created again under the same name never sees old records,
// even while a range deletion of the old ones is still being compacted away.
//
// # Group commit
//
// One goroutine, the committer, owns every write. Callers queue append requests
// (and administrative commands) on a mutex-protected slice and return at once;
// the committer takes everything queued, assigns offsets and timestamps, writes
// it as one Pebble batch with one WAL sync (under SyncAlways), and only then
// makes the new records visible to readers and calls each request's completion.
// While one batch syncs, the next one accumulates, so the number of fsyncs per
// second stays near the disk's limit while the records per fsync grow with the
// load. Because only the committer assigns offsets and writes, the store is a
// deterministic state machine over its command sequence.
//
// The committer is a role (Store.writer), not only a goroutine: a caller
// that waits for each of its writes anyway (a shard's state machine
// applying Raft entries, unsynced) commits its Unit on its own goroutine
// when the committer is idle (Unit.Commit), together with whatever was
// queued before it, and so spares two goroutine wake-ups per entry.
//
// # Reads
//
// Readers see records up to the committed (durable) watermark of each stream.
// A tail reader waits on a channel that the committer closes and replaces each
// time it commits records to the stream, always also watching its context.
//
// # Replicas
//
// In cluster mode the store is each shard replica's state machine: it
// applies the records its leader encoded, at the leader's timestamps, and
// creates streams at the leader's time (CreateStreamAt). A replica that
// fell behind copies a peer's records in their stored form (ReadStored on
// the peer, Install here: same bytes, same offsets, no re-encoding).
//
// # Retention
//
// A background loop computes, for each stream with limits, the first offset to
// keep (by age, bytes and record count) and submits a trim command; the committer
// deletes the range of older records and updates the stream state in one batch.
// The block that holds the first record kept stays whole until a later trim
// passes it; its records before the first offset are never read again.
package streams

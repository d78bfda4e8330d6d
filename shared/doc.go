// Package shared turns MQTT shared subscriptions ($share/<group>/<filter>)
// into durable consumer groups over the stored streams.
//
// # Model
//
// A group is identified by its name and topic filter. It reads every stream
// that can hold topics matching the filter (the mapping rules say which; see
// topic.Mapper.Sources) and hands each stored record whose topic matches to
// exactly one connected member, waits for the member's acknowledgement
// (PUBACK, or PUBCOMP for QoS 2), and redelivers what is not acknowledged.
//
// The package knows nothing of MQTT transport. It talks to the outside
// through small interfaces: a RecordSource to read (Read, Notify, OffsetAt,
// stream lists), an Appender for dead letters, a ProgressStore for
// definitions and cursors, and a Member per subscription. Package mqtt
// implements Member for a local connection: it joins and leaves members on
// SUBSCRIBE, UNSUBSCRIBE, disconnect and takeover (Manager.Join), and takes
// shared subscriptions out of mochi's own fan-out. A member connected to
// another node is just another implementation.
//
// # One goroutine per group
//
// Each group runs one goroutine that owns all of its state: members, cursors,
// read-ahead buffer, redelivery queue and in-flight deliveries. Hooks (on
// client goroutines), stream watchers, the committer and API calls never
// touch that state; they post closures to the group's inbox (a mutex-guarded
// slice plus a wake-up channel, so posting never blocks) or poke its
// data-available channel. Member.Deliver only queues: a slow member's socket
// never stalls the group.
//
// # Cursors and progress
//
// Per source stream a cursor keeps the ack floor (every offset below it is
// done: acknowledged, skipped because its topic does not match, or
// dead-lettered), the set of done offsets above the floor, and the delivery
// count of every delivered but unfinished offset. Changed cursors are
// persisted every FlushInterval through the store's KV namespace (so they
// share its group commit); a restart redelivers only records never
// acknowledged, even above a hole. Reading stops when MaxUnackedSpan offsets
// separate the floor from the read position, which bounds memory however
// far behind the group is: a group 10 million records behind holds at most
// ReadAhead records plus the members' windows in memory.
//
// # Dispatch
//
// Redeliveries go first, then new records in stream order. round-robin and
// least-inflight pick any member with room in its window; hash-topic and
// hash-client assign a record to the member its key hashes to and queue it
// there until that member has room, which keeps per-key order while
// membership is stable. A member's window is its MQTT 5 Receive Maximum, or
// GroupOptions.Window for MQTT 3.1.1, capped by MaxWindow. Delivery QoS is
// min(subscription QoS, record QoS); a QoS 0 delivery is done when written
// (at most once).
//
// # Acknowledgement, timeout, redelivery
//
// A member's deliveries share the client's one window, packet-id space and
// writer with its ordinary subscriptions and its other groups (package
// mqtt's session queue), so a client never has more than its Receive
// Maximum unacknowledged [MQTT-3.3.4-9]; Member.Room says how many more it
// can take, and the member wakes the group when room frees. The transport
// reports the end of each delivery (PUBACK, PUBCOMP, a negative PUBACK or
// PUBREC, a packet too large for the client) through a callback that posts
// to the group, matched by the delivery itself, never by a packet id that
// may have been reused. Like nsqd's in-flight queue, deliveries sit in a
// min-heap by deadline and one tick loop redelivers the expired ones,
// preferably to another member, with DUP=1, after withdrawing them from the
// member (Deliver's cancel). A member that disconnects releases everything
// it holds at once, and its transport drops its deliveries: records are
// never parked on an offline member, nor resent on reconnect. A negative
// ack (reason >= 0x80) releases the record at once. After
// MaxDeliveries deliveries a record is appended to the dead-letter stream
// with the reason and count as user properties, and the group moves on.
package shared

// Package groups runs MQTT shared subscriptions ($share consumer groups)
// across the nodes of a cluster: members connect to any node, and one node
// dispatches for each group.
//
// # Who dispatches
//
// A group belongs to the shard its key ("$share/<name>/<filter>") hashes
// to, and the leader of that shard runs it (package shared, whose
// Options.Owner says so). Its progress goes through that shard's Raft log,
// fenced by the leader's term, so a new leader resumes from what the old
// one persisted. This package does not decide placement: a Placement says
// which node dispatches a group now and in which epoch (the term).
//
// # Members on other nodes
//
// Package mqtt joins a client's shared subscription through Relay.Join, as
// it would join a local group. The relay attaches the membership to the
// dispatching node: directly to the local groups when that is this node,
// otherwise with a join call to that node, which joins a proxy member to
// its group. The proxy's deliveries travel back as frames over the
// cluster's ordered per-peer channel (package cluster/routes); the
// member's node hands them to the client's one session queue (so the
// client's Receive Maximum holds across its ordinary subscriptions and
// every group [MQTT-3.3.4-9]), and sends the end of each delivery (PUBACK,
// PUBCOMP, a negative ack) back with the room left in the client's window.
//
// Frames may be lost (a peer's queue overflowed, a node restarted): a lost
// delivery or ack costs an ack timeout and a redelivery, never a record,
// as at-least-once delivery allows. Joins and leaves are calls, answered;
// a failed one is followed by a leave. Both sides heal what the other
// forgot: a delivery for an attachment the member's node does not know
// is answered "gone" (the dispatcher drops that proxy, releasing its
// records), and an ack or room report for a proxy the dispatcher does not
// hold is answered "detach" (the member's node attaches again). Refs are
// drawn from a random start per process, so a restarted node's
// attachments never collide with its old process's.
//
// # Hand-over
//
// When placement changes (Reconcile: a shard's leader changed or its term
// moved), both sides act on their own view: the dispatcher drops proxies
// whose group it no longer runs in the epoch they joined and tells their
// nodes (a detach frame); a member's node moves each membership whose
// dispatcher or epoch changed: it withdraws the deliveries of the old
// attachment that the client has not been sent yet and joins the new
// dispatcher. A membership that cannot attach (no leader yet, the call
// failed) is retried every RetryInterval. When a node fails (NodeGone),
// the dispatcher releases its members at once, so their records go to
// members elsewhere (NodeGone); a node found restarted, or whose frames
// were dropped, has every attachment with it started afresh (NodeReset).
package groups

// Package routes carries MQTT messages between the nodes of a cluster to
// the subscribers connected elsewhere, without Raft: a route table says
// which node has clients subscribed to which topic filters, and the node
// where a message arrives forwards it to the nodes whose filters match.
//
// # The route table
//
// Every node keeps the set of filters its own clients subscribe to
// (ordinary subscriptions; shared ones are served by consumer groups),
// counted per client, and numbers every change of that set: a filter
// appears when its first client subscribes and goes with its last. A sync
// loop per peer sends the peer the changes since the version it
// acknowledged, or the whole set when the peer lacks that version (it
// restarted, dropped this node, or fell behind the kept changes); every
// Resync interval it checks that the peer still holds the current version.
// A random incarnation id per process tells a restarted sender from its
// previous life. Each node matches topics against the other nodes' filters
// with a trie and caches the answer per topic until the table changes.
//
// A SUBSCRIBE that brings a filter new to its node is answered (SUBACK)
// once every peer acknowledged the change, or after SyncWait (logged), so
// a message published on any node after the SUBACK reaches the
// subscriber. A peer that leaves the membership has its filters dropped
// and the messages queued for it discarded; one that (re)joins is sent the
// filters whole. A node takes filters only from its peers: one that does
// not count the sender up yet (gossip of its restart has not arrived)
// could not forward to it, so it answers "not a peer yet" and the sender
// tries again; the sender's SUBACK waits for it like for any peer.
//
// # Forwarding
//
// A message published on a node is delivered to that node's subscribers
// and queued for every other node with a matching filter, as an opaque
// byte string (the broker encodes it). One send loop per peer carries the
// queue in batches, one call at a time, so a publisher's messages reach
// every node in the order they were published. A batch that fails is sent
// again until it goes through or the peer leaves (a retried batch may be
// delivered twice); a peer that cannot keep up has its oldest queued
// messages dropped beyond MaxQueuedBytes, counted and logged. The
// publisher's acknowledgement does not wait for other nodes: a message in
// transit when its subscriber's node fails, or while the nodes are
// partitioned, is lost to that subscriber (docs/design.md).
package routes

// Package rpcmux carries all of a node's cluster traffic over one TCP
// listener, the node's cluster.rpc address, split into independent named
// channels.
//
// # Why one listener
//
// A node runs dozens of Raft groups ("meta", "shard-0" .. "shard-11") and
// our own request/response services (an append forwarded to a shard's
// leader). A listener per group would mean a port per group to configure,
// open in firewalls and advertise through membership, and the set of groups
// changes as shards are placed. With one listener, a node is one address;
// each connection says in its first bytes what it is for, and the acceptor
// hands it to that channel.
//
// # Wire header
//
// Every connection starts with a header written by the dialer:
//
//	"MQSX"         4 bytes, magic
//	version        1 byte, currently 1
//	kind           1 byte: 1 = stream channel, 2 = call service
//	name length    1 byte, then the channel or service name (1..255 bytes)
//	node id length 1 byte, then the caller's node id (0..255 bytes)
//
// The acceptor reads it under a deadline (HeaderTimeout); a connection with
// a bad magic, version or kind, or a stream channel nobody listens on, is
// closed (logged at debug: a peer that is starting or stopping a group
// dials channels that are not open yet or any more).
//
// # Stream channels
//
// StreamLayer returns a raft.StreamLayer for one channel, for
// raft.NewNetworkTransport. After the header the connection is the
// channel's: rpcmux adds no framing and reads nothing more from it. (A
// node's groups send their heartbeats in batches through a call service
// instead, "raft.heartbeats": see package cluster/heartbeat.)
//
// # Calls
//
// After a call header, the connection carries request/response pairs, one
// at a time:
//
//	request   uint32 length (big endian), then the request bytes
//	response  status byte (0 = ok, 1 = error), uint32 length, then the
//	          response bytes or the handler's error message
//
// A frame over MaxFrame (64 MiB) is refused on both sides. Call uses one
// connection per call in flight: it takes an idle pooled connection to
// (address, service), or dials one, and puts it back after a complete
// exchange; concurrent calls use distinct connections. This keeps the
// protocol free of request ids and a slow handler delays nobody else's
// call. A connection whose call was cancelled or failed midway is closed,
// never reused, since its stream position is unknown. A pooled connection
// is checked before reuse (the server never writes unasked, so a readable
// idle connection is a closed one) and discarded if the peer went away;
// Call never re-sends a request on its own, so a handler runs at most once
// per Call.
//
// # Fault injection
//
// Faults, shared by the Muxes of one test, drop traffic between listener
// addresses: new dials fail with ErrUnreachable and connections already
// open over a blocked direction are closed, at both ends. A connection
// belongs to the direction it was dialed in (dialer -> acceptor), which
// is how Block is one-way: a blocked side can still answer calls its peer
// makes over connections the peer dialed.
package rpcmux

// Package mqtt is mqstream's MQTT front end: an embedded mochi-mqtt broker
// and the hooks that make it store every mapped publish in a stream before
// acknowledging it, deliver to subscribers from ordered per-session queues,
// keep broker state on disk, and carry consumer groups' records to their
// members. One hook per concern, each declaring the events it handles; the
// order they are added in (broker.go) is part of the design.
//
// Files, by data path:
//
//   - broker.go: Options, Broker (New, Start, Close), the hook order, the
//     limits and open-access hooks. listeners.go: TCP, WebSocket and TLS
//     listeners; linger.go: a connection the server ends with a reason
//     (DISCONNECT, refusing CONNACK) lingers so the client can read it;
//     readburst.go: an idle connection holds a small read buffer, a busy
//     one reads in pooled bursts.
//     connect.go: CONNECT refusals with MQTT 3.1.1's own return codes, and
//     the Maximum Packet Size in an MQTT 5 CONNACK.
//     takeover.go: a session takeover and the taken-over
//     connection's departure in an order that keeps the new connection in
//     mochi's client list; connections with one client id established
//     one at a time.
//   - Publish to PUBACK: ingest.go (ingestHook: maps a publish to its stream,
//     queues it for the store's group commit, acknowledges in arrival order
//     once durable), inbound.go (the client's own packet ids, kept out of
//     mochi's in-flight map), publish.go (Broker.Publish, for the REST API).
//   - Message to subscriber: selection.go (corrections to mochi's choice of
//     subscribers), routes.go (the selector's own index of the plain
//     subscriptions, which ingest's fan-out selects from),
//     delivery.go (deliveryHook: queues each message on its subscribers'
//     sessions, follows acks and the sessions' life, $SYS counters),
//     outbound.go (a session's one queue, window, packet ids and writer),
//     retained.go (retained messages on SUBSCRIBE).
//   - Record to $share member: groups.go (groupsHook joins and leaves
//     members of consumer groups run by package shared; groupMember queues
//     their records on the member's session, so they share its window).
//   - Broker state on disk: state.go (the store of broker state and its
//     durability marks), statecodec.go (its encoding), statehook.go
//     (stateHook: sessions, subscriptions, wills, retained messages),
//     sessionstore.go (persistent sessions' queues on disk),
//     staterestore.go (everything read back at start).
//   - sessions.go: the session listing behind SQL's sessions table.
//
// Topic names, filters and topic-to-stream mapping live in package topic.
package mqtt

package shared

import (
	"time"

	"github.com/mqstream/mqstream/streams"
)

// Member is one subscription of a client to a group, as the group sees it:
// the transport that carries records to the client (package mqtt for a
// local connection; later, a member connected to another node). The group
// calls it only from its own goroutine.
//
// It is a type alias of an interface literal so that a transport can
// declare the identical interface (and a Groups interface with Join) without
// importing this package; *Manager then satisfies the transport's
// interface as it is.
type Member = interface {
	// ClientID names the client (logs, statistics, hash-client strategy).
	ClientID() string
	// QoS is the subscription's granted QoS.
	QoS() byte
	// ReceiveMaximum is the window the client announced (MQTT 5 Receive
	// Maximum); 0 if it announced none (MQTT 3.1.1).
	ReceiveMaximum() int
	// Room is how many more deliveries the client can take now: its one
	// window, shared with its ordinary subscriptions and its other groups
	// [MQTT-3.3.4-9], less what is already queued for it.
	Room() int
	// Deliver sends rec at qos (DUP set if dup). For qos > 0, acked is
	// called exactly once, from any goroutine, when the delivery ends while
	// the client is attached: with the reason code of the client's
	// PUBACK/PUBCOMP/PUBREC, or with 0x95 when the packet is too large for
	// the client; it must not block. It is not called for a cancelled
	// delivery, nor when the client leaves (the group learns that through
	// the Leave of its membership). cancel withdraws the delivery (ack
	// timeout, leave) and frees its place in the window. An error means
	// nothing was sent: the client is gone.
	Deliver(rec *streams.Record, qos byte, dup bool, acked func(reason byte)) (cancel func(), err error)
	// OnRoom registers wake, called (from any goroutine, must not block)
	// whenever the client's window may have room again.
	OnRoom(wake func())
}

// member is a Member's state in one group. Everything but out is owned by
// the group goroutine.
type member struct {
	out      Member
	id       string // out.ClientID()
	qos      byte
	window   int
	joinedAt time.Time

	inflight  map[*pending]struct{}
	queue     []*pending // hash strategies: assigned, waiting for room
	delivered int64
	acked     int64
	left      bool
}

// room is how many more records the member may receive now: the group's
// window for it and the client's room, whichever is smaller.
func (m *member) room() int {
	return min(m.window-len(m.inflight), m.out.Room())
}

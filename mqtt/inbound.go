package mqtt

import (
	"errors"
	"sync"

	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// Inbound packet identifiers.
//
// The ids a client gives its PUBLISH, SUBSCRIBE and UNSUBSCRIBE packets are
// independent of the ids the server gives its deliveries to that client
// [MQTT-2.2.1-3] [MQTT-2.2.1-4]. mochi v2.7.9 keeps both in the client's one
// in-flight map, so a client publishing QoS 1 with id N erases the server's
// pending delivery N (never resent, its PUBACK ignored, the MQTT 5 send
// window never freed), a QoS 2 PUBREC overwrites it, and a SUBSCRIBE with
// id N is refused with 0x91.
//
// mqstream leaves mochi's in-flight map to the server's deliveries and
// keeps the client's own ids out of it:
//   - OnPacketRead hands mochi every QoS 1/2 PUBLISH as QoS 0 without id, so
//     mochi neither looks the id up nor stores it. The real QoS, DUP flag and
//     id travel with the packet in its Mods field (mochi's encoding controls,
//     which nothing reads on an inbound packet and no client can set), so
//     the hot path needs no per-connection lookup; OnPublish restores them
//     and ingest acknowledges the publish itself, as it does for every
//     stored publish.
//   - The ids of QoS 2 publishes acknowledged with PUBREC wait for their
//     PUBREL in qos2Sessions, per client id, so they survive a resumed
//     session [MQTT-4.3.3-10].
//   - PUBREL is answered here with PUBCOMP [MQTT-4.3.3-11] and handed to
//     mochi as a no-op (a PUBACK with id 0, which mochi ignores).
//   - SUBSCRIBE and UNSUBSCRIBE reach mochi with id 0 (so mochi finds no
//     collision) and their SUBACK/UNSUBACK get the real id back when encoded.

// inboundMark flags, in Mods.MaxSize, a publish OnPacketRead handed to
// mochi as QoS 0; the low bits hold the QoS (bits 17-18), DUP (bit 16) and
// packet id.
const inboundMark = 1 << 31

// markInbound moves pk's QoS, DUP flag and packet id into its Mods.
func markInbound(pk *packets.Packet) {
	m := uint32(inboundMark) | uint32(pk.FixedHeader.Qos)<<17 | uint32(pk.PacketID)
	if pk.FixedHeader.Dup {
		m |= 1 << 16
	}
	pk.Mods.MaxSize = m
	pk.FixedHeader.Qos, pk.FixedHeader.Dup, pk.PacketID = 0, false, 0
}

// unmarkInbound restores what markInbound moved; it reports whether pk was
// marked.
func unmarkInbound(pk *packets.Packet) bool {
	m := pk.Mods.MaxSize
	if m&inboundMark == 0 {
		return false
	}
	pk.Mods.MaxSize = 0
	pk.FixedHeader.Qos, pk.FixedHeader.Dup, pk.PacketID = byte(m>>17&3), m&(1<<16) != 0, uint16(m)
	return true
}

// qos2Sessions holds, per client id, the packet ids of QoS 2 publishes
// acknowledged with PUBREC and waiting for their PUBREL, and those taken
// whose outcome is not known yet (pending).
type qos2Sessions struct {
	mu  sync.Mutex // guards ids, pending and epochs
	ids map[string]map[uint16]struct{}
	// pending holds the QoS 2 publishes being stored, per client id and
	// packet id, whatever connection of the client took them: a DUP
	// resent on the client's next connection meanwhile waits for the
	// first copy's outcome instead of being stored a second time.
	pending map[string]map[uint16]*qos2Pending
	// epochs counts the sessions of a client id that ended (drop): a copy
	// taken in an earlier one records nothing in the new one (add).
	epochs map[string]uint64
}

// qos2Pending is a QoS 2 publish being stored, and the copies of it
// resent meanwhile that wait for its outcome.
type qos2Pending struct {
	settled bool
	err     error // the first copy's refusal; nil: stored
	waiters []func(err error)
}

// qos2Taken is what pend says of a QoS 2 publish just read.
type qos2Taken struct {
	awaiting bool         // stored and acknowledged with PUBREC already
	wait     *qos2Pending // a DUP of a copy being stored: wait for it
	first    *qos2Pending // else: this copy is being stored; settle it
	epoch    uint64       // the session this copy belongs to (add)
}

// pend looks at the QoS 2 publish id of client, just read (dup: its DUP
// flag), in one step with the flows' changes: it is awaiting its PUBREL;
// or, a DUP of a copy being stored (taken on this or an earlier
// connection of the client), it is to wait for that one's outcome; or it
// is registered as being stored, replacing the record of a copy it is
// not a DUP of (a new session reusing the id).
func (s *qos2Sessions) pend(client string, id uint16, dup bool) qos2Taken {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.ids[client][id]; ok {
		return qos2Taken{awaiting: true}
	}
	if p := s.pending[client][id]; p != nil && dup {
		return qos2Taken{wait: p, epoch: s.epochs[client]}
	}
	if s.pending == nil {
		s.pending = map[string]map[uint16]*qos2Pending{}
	}
	m := s.pending[client]
	if m == nil {
		m = map[uint16]*qos2Pending{}
		s.pending[client] = m
	}
	p := &qos2Pending{}
	m[id] = p
	return qos2Taken{first: p, epoch: s.epochs[client]}
}

// wait calls fn with the outcome of p's first copy once it is known
// (now, if it is).
func (s *qos2Sessions) wait(p *qos2Pending, fn func(err error)) {
	s.mu.Lock()
	if !p.settled {
		p.waiters = append(p.waiters, fn)
		s.mu.Unlock()
		return
	}
	err := p.err
	s.mu.Unlock()
	fn(err)
}

// settle ends p, the pending QoS 2 publish id of client, with its outcome
// (after add, when stored: a DUP then finds it awaited) and tells the
// copies waiting for it. The record goes only if it is still p's.
func (s *qos2Sessions) settle(client string, id uint16, p *qos2Pending, err error) {
	s.mu.Lock()
	if s.pending[client][id] == p {
		delete(s.pending[client], id)
		if len(s.pending[client]) == 0 {
			delete(s.pending, client)
		}
	}
	p.settled, p.err = true, err
	waiters := p.waiters
	p.waiters = nil
	s.mu.Unlock()
	for _, fn := range waiters {
		fn(err)
	}
}

// add records that the QoS 2 publish id of client, taken in its session
// epoch, is acknowledged with PUBREC (or stored and left unacknowledged)
// and awaits its PUBREL; nothing if that session has ended since.
func (s *qos2Sessions) add(client string, id uint16, epoch uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.epochs[client] != epoch {
		return
	}
	if s.ids == nil {
		s.ids = map[string]map[uint16]struct{}{}
	}
	m := s.ids[client]
	if m == nil {
		m = map[uint16]struct{}{}
		s.ids[client] = m
	}
	m[id] = struct{}{}
}

// awaiting reports whether id was acknowledged with PUBREC and its PUBREL
// has not come yet.
func (s *qos2Sessions) awaiting(client string, id uint16) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.ids[client][id]
	return ok
}

// count returns the number of client's flows waiting for PUBREL.
func (s *qos2Sessions) count(client string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.ids[client])
}

// release ends the flow of id; it reports whether the id was awaited.
func (s *qos2Sessions) release(client string, id uint16) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := s.ids[client]
	if _, ok := m[id]; !ok {
		return false
	}
	delete(m, id)
	if len(m) == 0 {
		delete(s.ids, client)
	}
	return true
}

// drop forgets a session's flows (the session ended): those awaiting
// their PUBREL, and the records of those being stored, whose copies
// record nothing in the next session (epochs).
func (s *qos2Sessions) drop(client string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.ids, client)
	delete(s.pending, client)
	if s.epochs == nil {
		s.epochs = map[string]uint64{}
	}
	s.epochs[client]++
}

// noop is the packet mochi gets instead of one mqstream handled: mochi
// ignores a PUBACK for an id that is not in flight, and 0 never is.
func noop(pk packets.Packet) packets.Packet {
	return packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Puback}, ProtocolVersion: pk.ProtocolVersion}
}

// OnPacketRead keeps the client's packet ids away from mochi's in-flight
// map; see the comment at the top of this file.
func (h *ingestHook) OnPacketRead(cl *mochi.Client, pk packets.Packet) (packets.Packet, error) {
	switch pk.FixedHeader.Type {
	case packets.Publish:
		pk.Mods.MaxSize = 0
		if pk.FixedHeader.Qos > 0 && pk.PacketID != 0 { // else mochi refuses it [MQTT-2.2.1-3]
			markInbound(&pk)
		}
	case packets.Pubrel:
		code := packets.CodeSuccess
		if !h.qos2.release(cl.ID, pk.PacketID) {
			code = packets.ErrPacketIdentifierNotFound
		}
		_ = cl.WritePacket(packets.Packet{
			FixedHeader: packets.FixedHeader{Type: packets.Pubcomp},
			PacketID:    pk.PacketID,
			ReasonCode:  code.Code,
		})
		return noop(pk), nil
	case packets.Subscribe, packets.Unsubscribe:
		if pk.PacketID != 0 {
			h.conn(cl).subID = pk.PacketID
			pk.PacketID, pk.FixedHeader.Qos = 0, 0
		}
	}
	return pk, nil
}

// OnPacketEncode gives a SUBACK or UNSUBACK the id of its request back.
func (h *ingestHook) OnPacketEncode(cl *mochi.Client, pk packets.Packet) packets.Packet {
	if t := pk.FixedHeader.Type; (t == packets.Suback || t == packets.Unsuback) && pk.PacketID == 0 {
		if v, ok := h.conns.Load(cl); ok {
			pk.PacketID = v.(*conn).subID
		}
	}
	return pk
}

// OnPacketProcessed answers a QoS 1/2 publish that mochi refused before
// OnPublish saw it (it gets the packet as read, still marked), where mochi
// would leave the client waiting for an ack forever:
//   - a publish to a $SYS topic (which clients may not publish to) is
//     refused like mosquitto does: MQTT 5 gets reason 0x87, MQTT 3.1.1 an
//     ordinary ack, and the message is dropped [MQTT-4.3.2-4];
//   - with an access hook that can refuse (aclMayRefuse), a publish it
//     denied gets 0x87, or 0x80 with Options.HideDenialReason (MQTT 5), or
//     a disconnect (MQTT 3.1.1).
func (h *ingestHook) OnPacketProcessed(cl *mochi.Client, pk packets.Packet, _ error) {
	if pk.FixedHeader.Type != packets.Publish || pk.Mods.MaxSize&inboundMark == 0 || cl.Closed() {
		return
	}
	unmarkInbound(&pk)
	v5 := cl.Properties.ProtocolVersion == 5
	if !mochi.IsValidFilter(pk.TopicName, true) {
		e := &entry{pk: pk, done: true, sent: true}
		if v5 {
			e.err, e.code = errSysTopic, packets.ErrNotAuthorized
		}
		c := h.conn(cl)
		c.enqueue(e, false)
		c.kick()
		return
	}
	if !h.aclMayRefuse {
		return
	}
	v, ok := h.conns.Load(cl)
	if ok && v.(*conn).published {
		v.(*conn).published = false // OnPublish took it
		return
	}
	c := h.conn(cl)
	e := &entry{pk: pk, done: true, sent: true, err: errDenied, code: h.denied}
	c.enqueue(e, false)
	c.kick()
}

var (
	// errSysTopic: clients may not publish to $SYS topics.
	errSysTopic = errors.New("clients may not publish to $SYS topics")
	// errDenied: the access hook refused a publish.
	errDenied = errors.New("denied by the access rules")
)

package mqtt

import (
	"bytes"
	"log/slog"
	"math"
	"sync"
	"sync/atomic"
	"time"

	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// Outbound delivery.
//
// mqstream, not mochi, sends messages to ordinary subscribers. mochi v2.7.9
// drops QoS 1/2 deliveries to a client once 8192 are in flight, parks
// those beyond an MQTT 5 client's Receive Maximum and sends them later in
// no particular order (and then no longer tracks them), and on reconnect
// resends everything in flight at once, ordered by one-second timestamps.
//
// Each session (client id) has one ordered queue of deliveries. A
// delivery is sent when the client's window has room: its Receive Maximum
// (MQTT 5) capped by Options.MaxInflight [MQTT-3.3.4-9]. Beyond the window,
// deliveries wait in the queue, up to Options.MaxQueued of them per
// session; more are dropped and counted (Info.InflightDropped for QoS 1/2,
// $SYS/broker/publish/messages/dropped for all). A persistent session
// keeps its queue while the client is away; when it resumes, the
// deliveries that were sent but not acknowledged go out again first, in
// their original order and with DUP set (PUBREL for QoS 2 deliveries
// already past PUBREC), then the rest [MQTT-4.4.0-1] [MQTT-4.6.0-1].
//
// Packet ids come from mochi (NextPacketID) and each delivery in flight
// has an entry in the client's mochi in-flight map, so mochi never reuses
// the id (consumer groups allocate from the same map), runs the QoS 2
// handshake, and reports acknowledgements (OnQosComplete, OnQosDropped).
// While no connection is attached the entries are taken out of mochi's
// map, so mochi never resends them itself.
//
// With broker state kept on disk (Options.State), a persistent session's
// QoS 1/2 deliveries are also written to the store (sessionstore.go), and
// while its client is away they are kept on disk only.

// outbound owns every session's delivery queue.
type outbound struct {
	server      *mochi.Server
	maxInflight int // window cap for every client
	maxQueued   int // deliveries waiting beyond the window, per session
	// maxQueuedBytes bounds the topic and payload bytes of those
	// deliveries, per session (0 = no bound).
	maxQueuedBytes int64
	st             *stateStore // nil: sessions are kept in memory only
	log            *slog.Logger

	sessions sync.Map // client id -> *session
	// loaded, if set (tests), is called by attach once a session's queue
	// was read back from disk, before the connection is attached.
	loaded func()

	dropped atomic.Int64 // deliveries dropped because a session's queue was full
	queued  atomic.Int64 // deliveries waiting beyond a window or on disk, all sessions
}

// delivery is one message on its way to one session.
type delivery struct {
	pk     *packets.Packet // the message as published; shared, never modified
	qos    byte            // the QoS granted: min(message, subscription)
	retain bool            // the RETAIN flag to send
	subIDs []int           // subscription identifiers [MQTT-3.3.4-3]
	seq    uint64          // its key in the session's queue on disk (0: not on disk)
	idKept bool            // its packet id is on disk too (keySent)
	size   int             // topic and payload bytes, for the queue's bound
	// group deliveries come from consumer groups (groups.go): never kept
	// for an absent client nor written to disk.
	group bool
	dup   bool         // a group's redelivery: DUP set from the first send
	from  *groupMember // the group member a group delivery is for

	// Guarded by the session's mu:
	// acked reports the end of a group delivery (see GroupMember.Deliver).
	acked func(reason byte)

	id     uint16 // packet id, once sent (QoS 1/2)
	sent   bool   // sent on the attached connection
	done   bool   // acknowledged (or sent, for QoS 0), or dropped
	pubrel bool   // QoS 2 past PUBREC: only the PUBREL is resent
}

// session is the delivery queue of one client id.
type session struct {
	o  *outbound
	id string

	// sendMu is held by the writer while it takes a batch, gives it packet
	// ids and encodes it (not while it writes to the socket), and by
	// attach and detach, so that a batch's ids are reserved in the
	// connection it is written to. A client that does not read therefore
	// never holds up a takeover of its session.
	sendMu sync.Mutex

	mu struct {
		sync.Mutex
		cl *mochi.Client // the attached connection; nil while away
		// owner is the connection the session belongs to (attached or
		// not; nil for a session restored from disk): only its
		// departure or expiry ends the session.
		owner  *mochi.Client
		window int // QoS 1/2 deliveries cl may have unacknowledged
		// queue holds deliveries from index head on, oldest first:
		// queue[head:next] were sent on cl (or are done), queue[next:] were
		// not (never sent, or sent on an earlier connection).
		queue       []*delivery
		head        int
		next        int
		inflight    int   // QoS 1/2 deliveries in queue[head:next] not done
		unsent      int   // deliveries never sent (what MaxQueued bounds)
		unsentBytes int64 // their topic and payload bytes
		byID        map[uint16]*delivery
		writing     bool // a writer goroutine is running

		// Kept on disk (sessionstore.go):
		persist bool   // QoS 1/2 deliveries are written to the store
		seq     uint64 // the last queue key used
		offline struct {
			count int   // deliveries on disk only (the client is away)
			bytes int64 // their topic and payload bytes
		}
		loading    bool // attach is reading the queue from disk, until it attaches
		dropLogged bool // a full queue was logged
		ended      bool // discarded: the session is over, nothing is queued any more
		// wakers are the consumer-group members of the attached
		// connection, told when its window may have room again.
		wakers []*groupMember
		// pubrels are the ids of group QoS 2 deliveries that were past
		// PUBREC when the client left: PUBREL is resent on resume.
		pubrels []uint16
	}
}

func newOutbound(s *mochi.Server, maxInflight, maxQueued int, log *slog.Logger) *outbound {
	return &outbound{server: s, maxInflight: maxInflight, maxQueued: maxQueued, log: log}
}

// session returns the session of client cl, creating it (attached to cl if
// cl is connected) on first use. It returns nil for a client that has left
// and whose session ended with its connection.
func (o *outbound) session(cl *mochi.Client) *session {
	if v, ok := o.sessions.Load(cl.ID); ok {
		return v.(*session)
	}
	if cl.Closed() && (endsWithConnection(cl) || o.expired(cl)) {
		return nil
	}
	s := o.newSession(cl)
	attached := !cl.Closed() && cl.Net.Conn != nil
	if attached {
		s.mu.cl, s.mu.window = cl, o.window(cl)
	}
	v, loaded := o.sessions.LoadOrStore(cl.ID, s)
	if !loaded && attached && cl.Closed() {
		// It closed meanwhile; OnDisconnect may have run already.
		if endsWithConnection(cl) {
			o.sessions.CompareAndDelete(cl.ID, s)
			s.discard()
			return nil
		}
		s.detach(cl)
	}
	return v.(*session)
}

// newSession makes a session owned by cl, attached to no connection.
func (o *outbound) newSession(cl *mochi.Client) *session {
	s := &session{o: o, id: cl.ID}
	s.mu.byID = map[uint16]*delivery{}
	s.mu.persist = o.st != nil && !endsWithConnection(cl)
	s.mu.owner = cl
	return s
}

// handover returns the session of client cl, which is taking it over
// from another connection, making it (owned by cl, attached to no
// connection) if there is none yet: a message delivered from now on is
// kept for cl, never put in flight on the connection being taken over,
// whose in-flight map mochi is about to clear.
func (o *outbound) handover(cl *mochi.Client) *session {
	v, _ := o.sessions.LoadOrStore(cl.ID, o.newSession(cl))
	return v.(*session)
}

// expired reports whether absent client cl's session has expired by
// mochi's reckoning (mochi deletes it at its next check, after
// OnClientExpired): no session may be made for it.
func (o *outbound) expired(cl *mochi.Client) bool {
	left := cl.StopTime()
	if left == 0 {
		return false
	}
	expiry := int64(o.server.Options.Capabilities.MaximumSessionExpiryInterval)
	if cl.Properties.ProtocolVersion == 5 && cl.Properties.Props.SessionExpiryIntervalFlag {
		expiry = int64(cl.Properties.Props.SessionExpiryInterval)
	}
	return left+expiry < time.Now().Unix()
}

// setOwner hands the session to connection cl.
func (s *session) setOwner(cl *mochi.Client) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.mu.owner = cl
}

// currentOwner returns the connection the session belongs to.
func (s *session) currentOwner() *mochi.Client {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.mu.owner
}

// ownedBy reports whether the session belongs to cl (or to no connection
// yet: restored from disk).
func (s *session) ownedBy(cl *mochi.Client) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.mu.owner == nil || s.mu.owner == cl
}

// endsWithConnection reports whether cl's session ends when its connection
// does (MQTT 5 session expiry 0, MQTT 3.1.1 clean session), as mochi decides.
func endsWithConnection(cl *mochi.Client) bool {
	if cl.Properties.ProtocolVersion == 5 {
		return cl.Properties.Props.SessionExpiryInterval == 0
	}
	return cl.Properties.Clean
}

// window is the number of QoS 1/2 deliveries cl may have unacknowledged.
func (o *outbound) window(cl *mochi.Client) int {
	w := o.maxInflight
	if cl.Properties.ProtocolVersion == 5 && cl.Properties.Props.ReceiveMaximum > 0 {
		w = min(w, int(cl.Properties.Props.ReceiveMaximum))
	}
	return w
}

// enqueue queues d for the session and starts the writer if d can go out.
// It returns the broker-state submission that must be durable before the
// message's publisher is acknowledged (0: none).
func (s *session) enqueue(d *delivery) uint64 {
	s.mu.Lock()
	if s.mu.ended {
		s.mu.Unlock()
		return 0 // a delivery selected while the session ended
	}
	absent := s.mu.cl == nil && !s.mu.loading
	if absent && d.qos == 0 {
		s.mu.Unlock()
		return 0 // QoS 0 messages are not kept for absent clients
	}
	d.size = len(d.pk.TopicName) + len(d.pk.Payload)
	spill := absent && s.mu.persist // kept on disk only
	count, size := s.mu.unsent, s.mu.unsentBytes
	if spill {
		count, size = s.mu.offline.count, s.mu.offline.bytes
	}
	if count >= s.o.maxQueued || (s.o.maxQueuedBytes > 0 && size+int64(d.size) > s.o.maxQueuedBytes) {
		first := !s.mu.dropLogged
		s.mu.dropLogged = true
		s.mu.Unlock()
		s.o.drop(d)
		if first {
			s.o.log.Warn("session queue full: new messages for the client are dropped",
				"client", s.id, "queued", count, "queued_bytes", size,
				"max_queued", s.o.maxQueued, "max_queued_bytes", s.o.maxQueuedBytes)
		}
		return 0
	}
	var mark uint64
	if s.mu.persist && d.qos > 0 {
		mark = s.storeLocked(d)
	}
	if spill {
		s.o.queued.Add(1)
		s.mu.offline.count++
		s.mu.offline.bytes += int64(d.size)
		s.mu.Unlock()
		return mark
	}
	s.pushUnlock(d)
	return mark
}

// pushUnlock appends d to the queue, unlocks mu and starts the writer if d
// can go out.
func (s *session) pushUnlock(d *delivery) {
	s.o.queued.Add(1)
	s.mu.queue = append(s.mu.queue, d)
	s.mu.unsent++
	s.mu.unsentBytes += int64(d.size)
	start := s.startLocked()
	s.mu.Unlock()
	if start {
		go s.write()
	}
}

// enqueueGroup queues a consumer group's delivery for connection cl,
// which must hold the session: group deliveries are never kept for an
// absent client, nor written to disk, nor bounded by MaxQueued (the group
// sends only what Room allows).
func (s *session) enqueueGroup(cl *mochi.Client, d *delivery) error {
	d.size = len(d.pk.TopicName) + len(d.pk.Payload)
	s.mu.Lock()
	if s.mu.ended || s.mu.cl != cl {
		s.mu.Unlock()
		return errNotAttached
	}
	s.pushUnlock(d)
	return nil
}

// cancel withdraws a group delivery (ack timeout, the member left): it is
// not sent, or no longer expected to be acknowledged, and frees its place
// in the window.
func (s *session) cancel(d *delivery) {
	s.mu.Lock()
	if d.done || s.mu.ended {
		s.mu.Unlock()
		return
	}
	if d.id != 0 {
		// Sent with a packet id: the client may still acknowledge it, so
		// the id and the window slot stay taken until it does (or its
		// connection ends) [MQTT-3.3.4-9]; only the group stops caring.
		d.acked = nil
		s.mu.Unlock()
		return
	}
	d.done, d.acked = true, nil
	switch {
	case d.sent && d.qos > 0: // taken by the writer, not yet encoded
		s.mu.inflight--
	case !d.sent:
		s.mu.unsent--
		s.mu.unsentBytes -= int64(d.size)
		s.o.queued.Add(-1)
	}
	s.compactLocked()
	start := s.startLocked()
	wakers := s.othersLocked(d)
	s.mu.Unlock()
	if start {
		go s.write()
	}
	wake(wakers)
}

// othersLocked lists the group members to wake when d frees a place in
// the window: all but the member d was for (its group pumps by itself
// after an ack or a withdrawal). s.mu is held.
func (s *session) othersLocked(d *delivery) []*groupMember {
	if d.from == nil {
		return s.mu.wakers
	}
	var out []*groupMember
	for _, m := range s.mu.wakers {
		if m != d.from {
			out = append(out, m)
		}
	}
	return out
}

// room is how many more deliveries connection cl can take now: its window
// less what is in flight and what waits to be sent (0 if cl does not hold
// the session).
func (s *session) room(cl *mochi.Client) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.mu.ended || s.mu.cl != cl {
		return 0
	}
	return s.mu.window - s.mu.inflight - s.mu.unsent
}

// addWaker registers a group member to be told when the window may have room.
func (s *session) addWaker(m *groupMember) {
	s.mu.Lock()
	s.mu.wakers = append(s.mu.wakers, m)
	s.mu.Unlock()
	wake([]*groupMember{m})
}

// removeWaker unregisters a group member.
func (s *session) removeWaker(m *groupMember) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, o := range s.mu.wakers {
		if o == m {
			// A new slice: callers iterate over copies taken under mu.
			s.mu.wakers = append(s.mu.wakers[:i:i], s.mu.wakers[i+1:]...)
			return
		}
	}
}

func (o *outbound) drop(d *delivery) {
	o.dropped.Add(1)
	if d.qos > 0 {
		atomic.AddInt64(&o.server.Info.InflightDropped, 1)
	}
}

// startLocked reports whether a writer must be started (and marks it
// running): a connection is attached and the next delivery fits.
func (s *session) startLocked() bool {
	if s.mu.writing || s.mu.cl == nil || s.mu.next >= len(s.mu.queue) {
		return false
	}
	if d := s.mu.queue[s.mu.next]; d.qos > 0 && !d.done && s.mu.inflight >= s.mu.window {
		return false
	}
	s.mu.writing = true
	return true
}

// acked marks the delivery with packet id done (PUBACK, PUBCOMP, or a
// PUBREC with an error code; reason is the packet's reason code) if cl is
// the attached connection.
func (s *session) acked(cl *mochi.Client, id uint16, reason byte) {
	s.mu.Lock()
	d, ok := s.mu.byID[id]
	if !ok || s.mu.cl != cl {
		s.mu.Unlock()
		return
	}
	delete(s.mu.byID, id)
	d.done = true
	if d.sent {
		s.mu.inflight--
	}
	fn := d.acked
	d.acked = nil
	s.forgetLocked(d)
	s.compactLocked()
	start := s.startLocked()
	var wakers []*groupMember
	if fn != nil {
		wakers = s.othersLocked(d) // the delivery's group hears of it (fn) and pumps after it
	} else {
		wakers = s.mu.wakers
	}
	s.mu.Unlock()
	if fn != nil {
		fn(reason)
	}
	if start {
		go s.write()
	}
	wake(wakers)
}

// compactLocked drops done deliveries from the head of the queue.
func (s *session) compactLocked() {
	for s.mu.head < len(s.mu.queue) && s.mu.head < s.mu.next && s.mu.queue[s.mu.head].done {
		s.mu.queue[s.mu.head] = nil
		s.mu.head++
	}
	if s.mu.head == len(s.mu.queue) {
		s.mu.queue, s.mu.head, s.mu.next = s.mu.queue[:0], 0, 0
	} else if s.mu.head > 1024 && s.mu.head > len(s.mu.queue)/2 {
		n := copy(s.mu.queue, s.mu.queue[s.mu.head:])
		clear(s.mu.queue[n:])
		s.mu.queue, s.mu.next, s.mu.head = s.mu.queue[:n], s.mu.next-s.mu.head, 0
	}
}

// attach makes cl the session's connection (a new or resumed session):
// the deliveries in flight get their ids back in cl's in-flight map and
// everything unacknowledged is (re)sent in order as the window allows.
func (s *session) attach(cl *mochi.Client) {
	s.sendMu.Lock()
	defer s.sendMu.Unlock()
	s.mu.Lock()
	if s.mu.cl == cl {
		s.mu.Unlock()
		return
	}
	if s.mu.cl != nil {
		s.detachLocked()
	}
	s.mu.persist = s.o.st != nil && !endsWithConnection(cl)
	if s.mu.offline.count > 0 {
		s.mu.Unlock()
		s.load() // with sendMu held: no writer runs meanwhile
		if s.o.loaded != nil {
			s.o.loaded()
		}
		s.mu.Lock()
	}
	// Until now a delivery queued meanwhile stayed in memory too (load
	// set loading): had it gone to disk only, as for an absent client,
	// nothing would read it back for this connection.
	s.mu.loading = false
	s.mu.cl, s.mu.window = cl, s.o.window(cl)
	s.resumePubrelsLocked()
	s.mu.next, s.mu.inflight = s.mu.head, 0
	for _, d := range s.mu.queue[s.mu.head:] {
		d.sent = false
		if d.id != 0 && !d.done {
			s.o.reserve(cl, d, d.id)
		}
	}
	start := s.startLocked()
	wakers := s.mu.wakers
	s.mu.Unlock()
	if start {
		go s.write()
	}
	wake(wakers)
}

// resumePubrelsLocked puts the PUBRELs of group QoS 2 deliveries that
// were past PUBREC when the client left at the head of the queue, so they
// are resent first under their ids (kept in memory only: a group's
// deliveries never reach the disk). s.mu and sendMu are held.
func (s *session) resumePubrelsLocked() {
	if len(s.mu.pubrels) == 0 {
		return
	}
	rels := make([]*delivery, 0, len(s.mu.pubrels)+len(s.mu.queue)-s.mu.head)
	for _, id := range s.mu.pubrels {
		if _, taken := s.mu.byID[id]; taken {
			continue // the id came back from disk for another delivery
		}
		d := &delivery{pk: &packets.Packet{}, qos: 2, id: id, pubrel: true}
		s.mu.byID[id] = d
		rels = append(rels, d)
	}
	s.mu.pubrels = nil
	s.mu.queue = append(rels, s.mu.queue[s.mu.head:]...)
	s.mu.head, s.mu.next = 0, 0
}

// detach takes the session off cl (disconnected or taken over; nil: off
// whatever connection it is on): its deliveries in flight leave the
// connection's in-flight map, so mochi does not resend them, and wait to be
// resent on the next connection.
func (s *session) detach(cl *mochi.Client) {
	s.sendMu.Lock()
	defer s.sendMu.Unlock()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.mu.cl == nil || (cl != nil && s.mu.cl != cl) {
		return
	}
	s.detachLocked()
}

// detachLocked detaches the session; sendMu and mu are held.
func (s *session) detachLocked() {
	cl := s.mu.cl
	s.mu.cl = nil
	for id, d := range s.mu.byID {
		if d.group {
			// Never kept for an absent client: the group releases it
			// when the member leaves. A QoS 2 delivery past PUBREC keeps
			// its id, though: the client holds it until it gets PUBREL,
			// which is resent on resume [MQTT-4.4.0-1].
			delete(s.mu.byID, id)
			if pk, ok := cl.State.Inflight.Get(id); ok && pk.FixedHeader.Type == packets.Pubrel {
				s.mu.pubrels = append(s.mu.pubrels, id)
			}
			if cl.State.Inflight.Delete(id) {
				atomic.AddInt64(&s.o.server.Info.Inflight, -1)
			}
			continue
		}
		pk, ok := cl.State.Inflight.Get(id)
		if !ok {
			// mochi takes the entry out before it reports the ack
			// (OnQosComplete, which finds the session detached): the
			// client acknowledged this delivery.
			delete(s.mu.byID, id)
			d.done = true
			s.forgetLocked(d)
			continue
		}
		d.pubrel = pk.FixedHeader.Type == packets.Pubrel
		if cl.State.Inflight.Delete(id) {
			atomic.AddInt64(&s.o.server.Info.Inflight, -1)
		}
	}
	// Absent clients keep only QoS 1/2 deliveries.
	kept := s.mu.queue[:s.mu.head]
	for _, d := range s.mu.queue[s.mu.head:] {
		switch {
		case d.done:
		case d.group:
			d.done, d.acked = true, nil
			if !d.sent && d.id == 0 {
				s.mu.unsent--
				s.mu.unsentBytes -= int64(d.size)
				s.o.queued.Add(-1)
			}
		case d.qos == 0:
			d.done = true
			s.mu.unsent--
			s.mu.unsentBytes -= int64(d.size)
			s.o.queued.Add(-1)
		default:
			d.sent = false
			kept = append(kept, d)
		}
	}
	clear(s.mu.queue[len(kept):])
	s.mu.queue = kept
	s.mu.next, s.mu.inflight = s.mu.head, 0
	if s.mu.persist {
		s.spillLocked()
	}
}

// discard drops everything (the session ended).
func (s *session) discard() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.o.queued.Add(-int64(s.mu.unsent + s.mu.offline.count))
	s.mu.queue, s.mu.head, s.mu.next, s.mu.unsent, s.mu.inflight = nil, 0, 0, 0, 0
	s.mu.unsentBytes, s.mu.offline.count, s.mu.offline.bytes = 0, 0, 0
	s.mu.byID = map[uint16]*delivery{}
	s.mu.pubrels = nil
	s.mu.cl = nil
	s.mu.ended = true
}

// reserve puts d's id in cl's in-flight map, so that mochi does not reuse
// it and recognises the acknowledgements (and runs the QoS 2 handshake).
// The entry carries only the type, QoS and id: mochi never resends it (the
// entries are taken out before mochi could, see detach), and no expiry, so
// mochi never expires it: delivery has started [MQTT-3.3.2-5].
func (o *outbound) reserve(cl *mochi.Client, d *delivery, id uint16) {
	entry := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: d.qos}, PacketID: id, Created: d.pk.Created}
	if d.pubrel {
		entry.FixedHeader = packets.FixedHeader{Type: packets.Pubrel, Qos: 1}
	}
	if cl.State.Inflight.Set(entry) {
		atomic.AddInt64(&o.server.Info.Inflight, 1)
	}
}

// maxBatch bounds the deliveries encoded into one write.
const maxBatch = 256

// write sends queued deliveries while the window has room; it runs on its
// own goroutine, one per session at a time.
func (s *session) write() {
	var buf bytes.Buffer
	batch := make([]*delivery, 0, 16)
	for {
		s.sendMu.Lock()
		s.mu.Lock()
		cl := s.mu.cl
		batch = batch[:0]
		qos0 := false
		for cl != nil && s.mu.next < len(s.mu.queue) && len(batch) < maxBatch {
			d := s.mu.queue[s.mu.next]
			if d.done {
				s.mu.next++
				continue
			}
			if d.qos > 0 && s.mu.inflight >= s.mu.window {
				break
			}
			if d.id == 0 {
				s.mu.unsent--
				s.mu.unsentBytes -= int64(d.size)
				s.o.queued.Add(-1)
			}
			if d.qos > 0 {
				s.mu.inflight++
			} else {
				d.done = true
				qos0 = true
			}
			d.sent = true
			s.mu.next++
			batch = append(batch, d)
		}
		if len(batch) == 0 {
			s.mu.writing = false
			s.compactLocked()
			s.mu.Unlock()
			s.sendMu.Unlock()
			return
		}
		s.mu.Unlock()
		buf.Reset()
		n := s.encode(cl, batch, &buf)
		s.sendMu.Unlock()
		if n > 0 && !cl.Closed() && cl.Net.Conn != nil {
			cl.Lock()
			written, _ := cl.Net.Conn.Write(buf.Bytes())
			cl.Unlock()
			atomic.AddInt64(&s.o.server.Info.BytesSent, int64(written))
			atomic.AddInt64(&s.o.server.Info.PacketsSent, int64(n))
			atomic.AddInt64(&s.o.server.Info.MessagesSent, int64(n))
		}
		if qos0 {
			// Written QoS 0 deliveries free room (QoS 1/2 ones only
			// move from waiting to in flight).
			s.mu.Lock()
			wakers := s.mu.wakers
			s.mu.Unlock()
			wake(wakers)
		}
	}
}

// nextID takes from cl a packet id that the session does not track
// either, and returns with s.mu held. mochi releases an id as its ack
// arrives, a moment before the session hears of the ack, and may offer it
// again meanwhile: that one is skipped (never handed out twice), not a
// reason to drop the delivery. The id is taken without s.mu:
// NextPacketID takes the client's lock, which mochi holds across a
// blocked socket write, and nothing may wait for that with s.mu held
// (Room, enqueue and acks need it). Only the writer (holding sendMu)
// allocates the session's ids.
func (s *session) nextID(cl *mochi.Client) (uint16, error) {
	for range math.MaxUint16 {
		id, err := cl.NextPacketID()
		s.mu.Lock()
		if err != nil {
			return 0, err
		}
		if _, busy := s.mu.byID[uint16(id)]; !busy {
			return uint16(id), nil
		}
		s.mu.Unlock()
	}
	s.mu.Lock()
	return 0, errIDBusy
}

// encode gives the batch's new QoS 1/2 deliveries packet ids and appends
// their packets to buf; it returns the number of packets.
func (s *session) encode(cl *mochi.Client, batch []*delivery, buf *bytes.Buffer) int {
	n := 0
	now := time.Now().Unix()
	for _, d := range batch {
		resend := d.id != 0
		if !resend && d.pk.Expiry > 0 && d.pk.Expiry <= now {
			s.finish(d, 0) // expired before delivery started [MQTT-3.3.2-5]
			continue
		}
		if d.qos > 0 && !resend {
			id, err := s.nextID(cl)
			if d.done {
				s.mu.Unlock()
				continue // a group delivery withdrawn meanwhile: the id stays unused
			}
			if err != nil {
				s.mu.Unlock()
				s.finish(d, packets.ErrReceiveMaximum.Code) // every packet id in use: dropped, as mochi does
				s.o.drop(d)
				continue
			}
			s.o.reserve(cl, d, id)
			d.id = id
			s.mu.byID[d.id] = d
			if d.qos == 2 {
				s.sentLocked(d) // QoS 1 ids are written only when the client leaves
			}
			s.mu.Unlock()
		}
		start := buf.Len()
		var err error
		if resend && d.pubrel {
			pk := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Pubrel, Qos: 1}, PacketID: d.id,
				ProtocolVersion: cl.Properties.ProtocolVersion}
			err = pk.PubrelEncode(buf)
		} else {
			pk := d.packet(cl, d.id, resend)
			err = pk.PublishEncode(buf)
		}
		if max := cl.Properties.Props.MaximumPacketSize; err != nil || (max > 0 && uint32(buf.Len()-start) > max) {
			// Too large for the client: discard it as if sent [MQTT-3.1.2-25].
			buf.Truncate(start)
			if d.id != 0 && cl.State.Inflight.Delete(d.id) {
				atomic.AddInt64(&s.o.server.Info.Inflight, -1)
			}
			s.finish(d, packets.ErrPacketTooLarge.Code)
			continue
		}
		n++
	}
	return n
}

// finish marks a delivery taken for sending as done without an ack; a
// group delivery's group hears reason.
func (s *session) finish(d *delivery, reason byte) {
	s.mu.Lock()
	if d.done {
		s.mu.Unlock()
		return
	}
	d.done = true
	if d.id != 0 {
		delete(s.mu.byID, d.id)
	}
	if d.sent && d.qos > 0 {
		s.mu.inflight--
	}
	fn := d.acked
	d.acked = nil
	s.forgetLocked(d)
	wakers := s.othersLocked(d)
	s.mu.Unlock()
	if fn != nil {
		fn(reason)
	}
	wake(wakers)
}

// packet builds the PUBLISH of d for cl.
func (d *delivery) packet(cl *mochi.Client, id uint16, dup bool) packets.Packet {
	pk := *d.pk
	pk.FixedHeader = packets.FixedHeader{Type: packets.Publish, Qos: d.qos, Retain: d.retain, Dup: (dup || d.dup) && d.qos > 0}
	pk.PacketID = 0
	if d.qos > 0 {
		pk.PacketID = id
	}
	pk.ProtocolVersion = cl.Properties.ProtocolVersion
	pk.Properties.SubscriptionIdentifier = d.subIDs
	pk.Properties.TopicAlias, pk.Properties.TopicAliasFlag = 0, false
	if pk.Expiry > 0 {
		pk.Properties.MessageExpiryInterval = uint32(max(pk.Expiry-time.Now().Unix(), 1)) // [MQTT-3.3.2-6]
	}
	if cl.Properties.Props.TopicAliasMaximum > 0 && !dup && !d.dup {
		alias, known := cl.State.TopicAliases.Outbound.Set(pk.TopicName)
		if alias > 0 {
			pk.Properties.TopicAlias, pk.Properties.TopicAliasFlag = alias, true
			if known {
				pk.TopicName = ""
			}
		}
	}
	pk.Mods = packets.Mods{MaxSize: cl.Properties.Props.MaximumPacketSize, AllowResponseInfo: true}
	return pk
}

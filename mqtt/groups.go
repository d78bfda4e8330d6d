package mqtt

import (
	"errors"
	"log/slog"
	"strings"
	"sync"

	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/mqstream/mqstream/streams"
)

// Consumer groups ($share/<group>/<filter>) are run by package shared; this
// file is their MQTT transport. groupsHook turns SUBSCRIBE, UNSUBSCRIBE,
// disconnects and session takeovers into joins and leaves, and takes every
// shared subscription out of mochi's own fan-out. A member's deliveries go
// through the client's one session queue (outbound.go), so they share its
// in-flight window, its packet ids and its writer with the client's
// ordinary subscriptions [MQTT-3.3.4-9].

// Groups runs consumer groups (*shared.Manager).
type Groups interface {
	// Check says whether $share/<name>/<filter> can be served.
	Check(name, filter string) error
	// Join adds a member; leave removes it and releases what it holds.
	Join(name, filter string, m GroupMember) (leave func(), err error)
}

// GroupMember is one shared subscription of a connection, as a group sees
// it. It is the same type as shared.Member (an alias of the same interface
// literal, so neither package imports the other); see there for the
// contract of each method.
type GroupMember = interface {
	ClientID() string
	QoS() byte
	ReceiveMaximum() int
	Room() int
	Deliver(rec *streams.Record, qos byte, dup bool, acked func(reason byte)) (cancel func(), err error)
	OnRoom(wake func())
}

// errNotAttached: the member's connection no longer holds its session.
var errNotAttached = errors.New("mqtt: group member's connection is gone")

// errIDBusy: every packet id mochi offered is still tracked by the session.
var errIDBusy = errors.New("mqtt: packet id still in use")

// groupsHook joins and leaves the members of consumer groups.
type groupsHook struct {
	mochi.HookBase
	server *mochi.Server
	groups Groups
	out    *outbound
	log    *slog.Logger
	conns  sync.Map // *mochi.Client -> *memberships
}

// memberships are one connection's group members, by full filter.
type memberships struct {
	mu sync.Mutex // guards byFilter
	// byFilter holds the members by "$share/<group>/<filter>".
	byFilter map[string]*groupMember
}

func (h *groupsHook) ID() string { return "mqstream-groups" }

func (h *groupsHook) Provides(b byte) bool {
	switch b {
	case mochi.OnSubscribe, mochi.OnSubscribed, mochi.OnUnsubscribed, mochi.OnDisconnect,
		mochi.OnSessionEstablish, mochi.OnSessionEstablished:
		return true
	}
	return false
}

// splitShare parses "$share/<group>/<filter>".
func splitShare(filter string) (name, f string, ok bool) {
	if !mochi.IsSharedFilter(filter) {
		return "", "", false
	}
	_, rest, ok := strings.Cut(filter, "/")
	if !ok {
		return "", "", false
	}
	name, f, ok = strings.Cut(rest, "/")
	if !ok || name == "" || f == "" {
		return "", "", false
	}
	return name, f, true
}

// invalidFilter makes mochi refuse a subscription with 0x8F (topic filter
// invalid): '#' must be the last level.
const invalidFilter = "#/mqstream-not-stored"

// OnSubscribe refuses shared subscriptions that no group can serve.
func (h *groupsHook) OnSubscribe(cl *mochi.Client, pk packets.Packet) packets.Packet {
	for i, sub := range pk.Filters {
		name, f, ok := splitShare(sub.Filter)
		if !ok {
			continue
		}
		if err := h.groups.Check(name, f); err != nil {
			h.log.Warn("shared subscription refused", "client", cl.ID, "group", name, "filter", f, "error", err)
			pk.Filters[i].Filter = invalidFilter
		}
	}
	return pk
}

// OnSubscribed joins the client to the groups it subscribed to.
func (h *groupsHook) OnSubscribed(cl *mochi.Client, pk packets.Packet, codes []byte) {
	for i, sub := range pk.Filters {
		if i < len(codes) && codes[i] <= 2 {
			h.join(cl, sub, codes[i])
		}
	}
}

// OnUnsubscribed removes the client from the groups it left.
func (h *groupsHook) OnUnsubscribed(cl *mochi.Client, pk packets.Packet) {
	for _, sub := range pk.Filters {
		h.leave(cl, sub.Filter)
	}
}

// OnDisconnect releases everything the connection holds, at once.
func (h *groupsHook) OnDisconnect(cl *mochi.Client, _ error, _ bool) { h.leaveAll(cl) }

// OnSessionEstablish runs before mochi moves a session to a new
// connection: the old connection's members leave.
func (h *groupsHook) OnSessionEstablish(cl *mochi.Client, _ packets.Packet) {
	if old, ok := h.server.Clients.Get(cl.ID); ok && old != cl {
		h.leaveAll(old)
	}
}

// OnSessionEstablished rejoins a resumed session's shared subscriptions
// (after the delivery hook attached the session to the connection).
func (h *groupsHook) OnSessionEstablished(cl *mochi.Client, _ packets.Packet) {
	for _, sub := range cl.State.Subscriptions.GetAll() {
		h.join(cl, sub, sub.Qos)
	}
}

// join adds cl to the group of a $share subscription (replacing an earlier
// membership through the same filter: a re-SUBSCRIBE).
func (h *groupsHook) join(cl *mochi.Client, sub packets.Subscription, qos byte) {
	name, f, ok := splitShare(sub.Filter)
	if !ok {
		return
	}
	s := h.out.session(cl)
	if s == nil {
		return // the client has left
	}
	m := &groupMember{cl: cl, s: s, qos: qos, rap: sub.RetainAsPublished}
	if sub.Identifier > 0 {
		m.subIDs = []int{sub.Identifier}
	}
	leave, err := h.groups.Join(name, f, m)
	if err != nil {
		h.log.Error("joining consumer group failed", "client", cl.ID, "group", name, "filter", f, "error", err)
		return
	}
	m.leave = leave
	v, _ := h.conns.LoadOrStore(cl, &memberships{byFilter: map[string]*groupMember{}})
	ms := v.(*memberships)
	ms.mu.Lock()
	old := ms.byFilter[sub.Filter]
	ms.byFilter[sub.Filter] = m
	ms.mu.Unlock()
	if old != nil {
		old.end()
	}
	s.addWaker(m)
	if cl.Closed() {
		h.leaveAll(cl) // it left meanwhile; its OnDisconnect may have run already
	}
}

// leave removes cl from the group of filter.
func (h *groupsHook) leave(cl *mochi.Client, filter string) {
	v, ok := h.conns.Load(cl)
	if !ok {
		return
	}
	ms := v.(*memberships)
	ms.mu.Lock()
	m := ms.byFilter[filter]
	delete(ms.byFilter, filter)
	ms.mu.Unlock()
	if m != nil {
		m.end()
	}
}

// leaveAll removes cl from every group.
func (h *groupsHook) leaveAll(cl *mochi.Client) {
	v, ok := h.conns.LoadAndDelete(cl)
	if !ok {
		return
	}
	ms := v.(*memberships)
	ms.mu.Lock()
	all := ms.byFilter
	ms.byFilter = map[string]*groupMember{}
	ms.mu.Unlock()
	for _, m := range all {
		m.end()
	}
}

// groupMember delivers a group's records to one connection through its
// session. cl, s and the subscription fields never change; wake is set
// once (OnRoom, during Join) before the member is registered with the
// session.
type groupMember struct {
	cl     *mochi.Client
	s      *session
	qos    byte
	rap    bool  // Retain As Published
	subIDs []int // the subscription identifier, if any
	wake   func()
	leave  func()
	once   sync.Once
}

func (m *groupMember) ClientID() string { return m.cl.ID }
func (m *groupMember) QoS() byte        { return m.qos }

// ReceiveMaximum is the client's Receive Maximum; an MQTT 5 client that
// sends none allows 65535 [MQTT-3.1.2-20]; 0 for MQTT 3.1.1.
func (m *groupMember) ReceiveMaximum() int {
	if m.cl.Properties.ProtocolVersion < 5 {
		return 0
	}
	if rm := m.cl.Properties.Props.ReceiveMaximum; rm > 0 {
		return int(rm)
	}
	return 65535
}

func (m *groupMember) Room() int { return m.s.room(m.cl) }

func (m *groupMember) OnRoom(wake func()) { m.wake = wake }

// Deliver queues a record on the session.
func (m *groupMember) Deliver(rec *streams.Record, qos byte, dup bool, acked func(reason byte)) (func(), error) {
	gd := &groupDelivery{delivery: delivery{qos: qos, subIDs: m.subIDs, dup: dup && qos > 0, group: true, from: m}}
	d := &gd.delivery
	d.pk = recordPacket(&gd.pk, rec)
	// RETAIN goes out as published only with Retain As Published [MQTT-3.3.1-12].
	d.retain = rec.Retain && m.rap && m.cl.Properties.ProtocolVersion == 5
	if qos > 0 {
		d.acked = acked
	}
	if err := m.s.enqueueGroup(m.cl, d); err != nil {
		return nil, err
	}
	if qos == 0 {
		return nil, nil
	}
	return func() { m.s.cancel(d) }, nil
}

// end leaves the group (once) and stops the session's wake-ups.
func (m *groupMember) end() {
	m.once.Do(func() {
		m.s.removeWaker(m)
		m.leave()
	})
}

// groupDelivery is a group delivery and its packet, in one allocation.
type groupDelivery struct {
	delivery
	pk packets.Packet
}

// recordPacket fills pk with a stored record as the PUBLISH mochi would
// have fanned out (delivery.packet fits it to each client).
func recordPacket(pk *packets.Packet, rec *streams.Record) *packets.Packet {
	*pk = packets.Packet{
		FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: rec.QoS, Retain: rec.Retain},
		TopicName:   rec.Topic,
		Payload:     rec.Payload,
		Origin:      rec.ClientID,
	}
	p := &pk.Properties
	p.PayloadFormat, p.PayloadFormatFlag = rec.PayloadFormat, rec.HasPayloadFormat
	p.ContentType = rec.ContentType
	p.ResponseTopic = rec.ResponseTopic
	p.CorrelationData = rec.CorrelationData
	if len(rec.UserProperties) > 0 {
		p.User = make([]packets.UserProperty, len(rec.UserProperties))
		for i, up := range rec.UserProperties {
			p.User[i] = packets.UserProperty{Key: up.Key, Val: up.Value}
		}
	}
	return pk
}

// wake tells group members that their connection's window may have room.
func wake(members []*groupMember) {
	for _, m := range members {
		if m.wake != nil {
			m.wake()
		}
	}
}

package shared

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"time"

	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// The Manager is a mochi hook: it learns about members from SUBSCRIBE,
// UNSUBSCRIBE, disconnects and session take-overs, about acks from the
// packets members send, and it takes shared subscriptions out of mochi's
// own fan-out.

func (m *Manager) ID() string { return "mqstream-groups" }

func (m *Manager) Provides(b byte) bool {
	switch b {
	case mochi.OnSubscribe, mochi.OnSubscribed, mochi.OnUnsubscribed, mochi.OnDisconnect,
		mochi.OnSessionEstablish, mochi.OnSessionEstablished, mochi.OnPacketRead,
		mochi.OnSelectSubscribers:
		return true
	}
	return false
}

// splitShare parses "$share/<group>/<filter>".
func splitShare(filter string) (groupKey, bool) {
	if !mochi.IsSharedFilter(filter) {
		return groupKey{}, false
	}
	_, rest, ok := strings.Cut(filter, "/")
	if !ok {
		return groupKey{}, false
	}
	name, f, ok := strings.Cut(rest, "/")
	if !ok || name == "" || f == "" {
		return groupKey{}, false
	}
	return groupKey{name, f}, true
}

// invalidFilter makes mochi refuse a subscription with 0x8F (topic filter
// invalid): '#' must be the last level.
const invalidFilter = "#/mqstream-not-stored"

// OnSubscribe refuses shared subscriptions that no stream can serve.
func (m *Manager) OnSubscribe(cl *mochi.Client, pk packets.Packet) packets.Packet {
	for i, sub := range pk.Filters {
		k, ok := splitShare(sub.Filter)
		if !ok {
			continue
		}
		if err := validateKey(k.name, k.filter); err != nil || !m.storable(k.filter) {
			m.log.Warn("shared subscription refused: no mapping rule stores topics matching its filter",
				"client", cl.ID, "group", k.name, "filter", k.filter)
			pk.Filters[i].Filter = invalidFilter
		}
	}
	return pk
}

// OnSubscribed joins the client to the groups it subscribed to.
func (m *Manager) OnSubscribed(cl *mochi.Client, pk packets.Packet, codes []byte) {
	for i, sub := range pk.Filters {
		if i >= len(codes) || codes[i] > 2 {
			continue
		}
		if k, ok := splitShare(sub.Filter); ok {
			m.join(cl, k, sub, codes[i])
		}
	}
}

// OnUnsubscribed removes the client from the groups it left.
func (m *Manager) OnUnsubscribed(cl *mochi.Client, pk packets.Packet) {
	for _, sub := range pk.Filters {
		if k, ok := splitShare(sub.Filter); ok {
			m.leave(cl, k)
		}
	}
}

// OnDisconnect releases everything the connection holds, at once.
func (m *Manager) OnDisconnect(cl *mochi.Client, _ error, _ bool) { m.leaveAll(cl) }

// OnSessionEstablish runs before mochi moves a session to a new connection:
// the old connection's deliveries are released and removed from its
// in-flight state, so mochi does not resend them to the new one.
func (m *Manager) OnSessionEstablish(cl *mochi.Client, _ packets.Packet) {
	if m.server == nil {
		return
	}
	if old, ok := m.server.Clients.Get(cl.ID); ok && old != cl {
		m.leaveAll(old)
	}
}

// OnSessionEstablished rejoins a resumed session's shared subscriptions.
func (m *Manager) OnSessionEstablished(cl *mochi.Client, _ packets.Packet) {
	for filter, sub := range cl.State.Subscriptions.GetAll() {
		if k, ok := splitShare(filter); ok {
			m.join(cl, k, sub, sub.Qos)
		}
	}
}

// OnPacketRead routes a member's PUBACK, PUBCOMP and negative PUBREC to its group.
func (m *Manager) OnPacketRead(cl *mochi.Client, pk packets.Packet) (packets.Packet, error) {
	t := pk.FixedHeader.Type
	if t != packets.Puback && t != packets.Pubcomp && t != packets.Pubrec {
		return pk, nil
	}
	v, ok := m.clients.Load(cl)
	if !ok {
		return pk, nil
	}
	cs := v.(*clientState)
	if t == packets.Pubrec && pk.ReasonCode < 0x80 {
		return pk, nil // the QoS 2 flow goes on; PUBCOMP completes it
	}
	if mem := cs.take(pk.PacketID); mem != nil {
		reason, id := pk.ReasonCode, pk.PacketID
		mem.g.post(func() { mem.g.ack(mem, id, reason) })
	}
	return pk, nil
}

// OnSelectSubscribers takes every shared subscription out of mochi's fan-out:
// groups deliver from the streams.
func (m *Manager) OnSelectSubscribers(subs *mochi.Subscribers, _ packets.Packet) *mochi.Subscribers {
	for filter := range subs.Shared {
		delete(subs.Shared, filter)
	}
	return subs
}

// join adds cl to group k, creating the group (at latest) on first use.
func (m *Manager) join(cl *mochi.Client, k groupKey, sub packets.Subscription, qos byte) {
	g, ok := m.group(k)
	if !ok {
		start, opts := m.optionsFor(k)
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		var err error
		g, err = m.create(ctx, k, start, opts, false)
		cancel()
		if err != nil && !errors.Is(err, ErrGroupExists) {
			m.log.Error("creating consumer group failed", "group", k.name, "filter", k.filter, "client", cl.ID, "error", err)
			return
		}
	}
	v, _ := m.clients.LoadOrStore(cl, &clientState{ids: map[uint16]*member{}, members: map[groupKey]*member{}})
	cs := v.(*clientState)
	mem := g.newMember(cl, cs, sub, qos)
	cs.mu.Lock()
	old := cs.members[k]
	cs.members[k] = mem
	cs.mu.Unlock()
	g.post(func() {
		if old != nil {
			g.leave(old) // a re-SUBSCRIBE replaces the membership
		}
		g.join(mem)
	})
}

// leave removes cl from group k.
func (m *Manager) leave(cl *mochi.Client, k groupKey) {
	v, ok := m.clients.Load(cl)
	if !ok {
		return
	}
	cs := v.(*clientState)
	cs.mu.Lock()
	mem := cs.members[k]
	delete(cs.members, k)
	cs.mu.Unlock()
	if mem != nil {
		m.detach(mem)
	}
}

// leaveAll removes cl from every group.
func (m *Manager) leaveAll(cl *mochi.Client) {
	v, ok := m.clients.LoadAndDelete(cl)
	if !ok {
		return
	}
	cs := v.(*clientState)
	cs.mu.Lock()
	members := cs.members
	cs.members = map[groupKey]*member{}
	cs.mu.Unlock()
	for _, mem := range members {
		m.detach(mem)
	}
}

// detach removes a member's reservations from mochi's session right away
// (so mochi cannot resend them on a reconnect) and tells the group.
func (m *Manager) detach(mem *member) {
	cs := mem.cs
	cs.mu.Lock()
	for id, owner := range cs.ids {
		if owner == mem {
			delete(cs.ids, id)
			if pk, ok := mem.cl.State.Inflight.Get(id); ok && pk.FixedHeader.Type != packets.Pubrec {
				if mem.cl.State.Inflight.Delete(id) && m.server != nil {
					atomic.AddInt64(&m.server.Info.Inflight, -1)
				}
			}
		}
	}
	cs.mu.Unlock()
	mem.g.post(func() { mem.g.leave(mem) })
}

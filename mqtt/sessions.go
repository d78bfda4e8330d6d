package mqtt

import (
	"sort"
	"sync/atomic"
	"time"
)

// SessionInfo describes one client session, connected or kept for an
// absent client.
type SessionInfo struct {
	ClientID        string
	Connected       bool
	Persistent      bool // kept when the client disconnects (and on disk, with Options.State)
	ProtocolVersion byte
	// Expiry is the session expiry interval in seconds (MQTT 5; what is
	// left of it for a session restored from disk); NeverExpires is set
	// for MQTT 3.1.1 persistent sessions.
	Expiry       uint32
	NeverExpires bool
	// DisconnectedAt is when an absent client left (zero while connected).
	DisconnectedAt time.Time
	Subscriptions  int
	Queued         int // deliveries waiting to be sent (in memory or on disk)
	InFlight       int // deliveries sent and not acknowledged
}

// Sessions lists every session, by client id.
func (b *Broker) Sessions() []SessionInfo {
	clients := b.server.Clients.GetAll()
	out := make([]SessionInfo, 0, len(clients))
	for id, cl := range clients {
		if cl.Net.Inline {
			continue
		}
		info := SessionInfo{
			ClientID:        id,
			Connected:       !cl.Closed(),
			Persistent:      !endsWithConnection(cl),
			ProtocolVersion: cl.Properties.ProtocolVersion,
			Subscriptions:   cl.State.Subscriptions.Len(),
		}
		if cl.Properties.ProtocolVersion == 5 {
			info.Expiry = cl.Properties.Props.SessionExpiryInterval
		} else {
			info.NeverExpires = info.Persistent
		}
		if !info.Connected {
			t := cl.StopTime()
			if b.state != nil {
				t = b.state.leftAt(cl) // restored: when it left before the restart
			}
			if t > 0 {
				info.DisconnectedAt = time.Unix(t, 0)
			}
		}
		if v, ok := b.delivery.out.sessions.Load(id); ok {
			info.Queued, info.InFlight = v.(*session).counts()
		}
		out = append(out, info)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ClientID < out[j].ClientID })
	return out
}

// counts returns the deliveries waiting and in flight.
func (s *session) counts() (queued, inflight int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.mu.unsent + s.mu.offline.count, s.mu.inflight
}

// SessionCounters are broker-wide session figures for metrics.
type SessionCounters struct {
	Connected    int64 // clients connected
	Absent       int64 // sessions kept for clients that are away
	Persistent   int64 // sessions kept on disk
	Queued       int64 // deliveries waiting beyond a window or on disk
	QueueDropped int64 // deliveries dropped because a session's queue was full
}

// SessionCounters returns the session figures.
func (b *Broker) SessionCounters() SessionCounters {
	var c SessionCounters
	for _, cl := range b.server.Clients.GetAll() {
		switch {
		case cl.Net.Inline:
		case cl.Closed():
			c.Absent++
		default:
			c.Connected++
		}
	}
	if b.state != nil {
		c.Persistent = int64(b.state.persistedCount())
	}
	c.Queued = b.delivery.out.queued.Load()
	c.QueueDropped = b.delivery.out.dropped.Load()
	return c
}

// Traffic are the broker-wide client and message counters (mochi's).
type Traffic struct {
	ClientsConnected int64
	MessagesReceived int64
	MessagesSent     int64
	BytesReceived    int64
	BytesSent        int64
	Subscriptions    int64
	Retained         int64
	InflightDropped  int64 // QoS 1/2 deliveries dropped (a full session queue, no packet id)
}

// Traffic returns the client and message counters.
func (b *Broker) Traffic() Traffic {
	info := b.server.Info
	return Traffic{
		ClientsConnected: atomic.LoadInt64(&info.ClientsConnected),
		MessagesReceived: atomic.LoadInt64(&info.MessagesReceived),
		MessagesSent:     atomic.LoadInt64(&info.MessagesSent),
		BytesReceived:    atomic.LoadInt64(&info.BytesReceived),
		BytesSent:        atomic.LoadInt64(&info.BytesSent),
		Subscriptions:    atomic.LoadInt64(&info.Subscriptions),
		Retained:         atomic.LoadInt64(&info.Retained),
		InflightDropped:  atomic.LoadInt64(&info.InflightDropped),
	}
}

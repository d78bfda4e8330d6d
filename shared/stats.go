package shared

import (
	"context"
	"errors"
	"sort"
	"time"

	"github.com/mqstream/mqstream/streams"
)

// GroupStats is a snapshot of one group.
type GroupStats struct {
	Name       string    `json:"name"`
	Filter     string    `json:"filter"`
	Strategy   Strategy  `json:"strategy"`
	Start      string    `json:"start"`
	Created    time.Time `json:"created"`
	DeadLetter string    `json:"dead_letter"`
	// Lag is the number of matching-or-unread records not yet done.
	Lag int64 `json:"lag"`
	// InFlight counts deliveries awaiting an ack.
	InFlight     int64 `json:"in_flight"`
	Delivered    int64 `json:"delivered"`
	Acked        int64 `json:"acked"`
	Redelivered  int64 `json:"redelivered"`
	DeadLettered int64 `json:"dead_lettered"`
	Rejected     int64 `json:"rejected"`
	// OldestUnackedAge is how long the oldest delivery still awaiting an ack
	// has been waiting (0 if none).
	OldestUnackedAge time.Duration  `json:"oldest_unacked_age"`
	Members          []MemberStats  `json:"members"`
	Streams          []CursorStats  `json:"streams"`
	Options          map[string]any `json:"options"`
	// Node is the node whose group this is (set by the node's wiring in
	// cluster mode, where every node runs its own groups; empty
	// otherwise).
	Node string `json:"node,omitempty"`
}

// MemberStats describes one member of a group.
type MemberStats struct {
	ClientID    string    `json:"client_id"`
	InFlight    int       `json:"in_flight"`
	Window      int       `json:"window"`
	Delivered   int64     `json:"delivered"`
	Acked       int64     `json:"acked"`
	QoS         byte      `json:"qos"`
	ConnectedAt time.Time `json:"connected_at"`
	// Node is the node the member's client is connected to, when another
	// than the group's (cluster mode); empty for a local member (the REST
	// API fills it in with the group's node).
	Node string `json:"node,omitempty"`
}

// CursorStats describes a group's position in one source stream.
type CursorStats struct {
	Stream string `json:"stream"`
	// AckFloor: every offset below is done.
	AckFloor uint64 `json:"ack_floor"`
	// AckedAbove counts the offsets done above the floor.
	AckedAbove int    `json:"acked_above_floor"`
	ReadPos    uint64 `json:"read_position"`
	Next       uint64 `json:"next_offset"`
	Lag        int64  `json:"lag"`
}

func (g *group) snapshot() GroupStats {
	st := GroupStats{
		Name: g.key.name, Filter: g.key.filter, Strategy: g.opts.Strategy, Start: g.start.String(),
		Created: g.created, DeadLetter: g.deadLetterStream(),
		InFlight: int64(g.inflight.Len()), Delivered: g.counters.delivered, Acked: g.counters.acked,
		Redelivered: g.counters.redelivered, DeadLettered: g.counters.deadLettered, Rejected: g.counters.rejected,
		Options: map[string]any{
			"ack_timeout": g.opts.AckTimeout.String(), "max_deliveries": g.opts.MaxDeliveries,
			"window": g.opts.Window, "max_window": g.opts.MaxWindow, "read_ahead": g.opts.ReadAhead,
			"max_unacked_span": g.opts.MaxUnackedSpan,
		},
	}
	if t := g.inflight.oldest(); !t.IsZero() {
		st.OldestUnackedAge = g.m.opts.Now().Sub(t)
	}
	for _, m := range g.members {
		ms := MemberStats{ClientID: m.id, InFlight: len(m.inflight), Window: m.window,
			Delivered: m.delivered, Acked: m.acked, QoS: m.qos, ConnectedAt: m.joinedAt}
		if r, ok := m.out.(interface{ Node() string }); ok {
			ms.Node = r.Node()
		}
		st.Members = append(st.Members, ms)
	}
	for _, c := range g.order {
		if seen := c.nextSeen.Load(); seen > c.next {
			c.next = seen
		}
		lag := int64(c.lag())
		st.Lag += lag
		st.Streams = append(st.Streams, CursorStats{Stream: c.stream, AckFloor: c.floor, AckedAbove: len(c.done),
			ReadPos: c.readPos, Next: c.next, Lag: lag})
	}
	sort.Slice(st.Streams, func(i, j int) bool { return st.Streams[i].Stream < st.Streams[j].Stream })
	return st
}

// ctx returns a context that ends when the group stops or cancel is called.
func (g *group) ctx() (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		select {
		case <-g.quit:
		case <-ctx.Done():
		}
		cancel()
	}()
	return ctx, cancel
}

func isExists(err error) bool { return errors.Is(err, streams.ErrStreamExists) }

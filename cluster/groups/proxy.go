package groups

import (
	"context"
	"encoding/binary"
	"fmt"
	"sync"
	"time"

	"github.com/mqstream/mqstream/internal/bincode"
	"github.com/mqstream/mqstream/streams"
)

// proxyKey names a member another node attached here.
type proxyKey struct {
	node string
	ref  uint64
}

// proxy is a member connected to another node, as a group dispatched here
// sees it: deliveries become frames to that node, and the frames it sends
// back end them.
type proxy struct {
	r        *Relay
	key      proxyKey
	clientID string
	qos      byte
	rmax     int
	epoch    uint64 // the placement epoch it joined in
	name     string
	filter   string
	since    time.Time // when the client subscribed

	mu sync.Mutex // guards the fields below
	// room is the client's room as its node last reported it, less what
	// was delivered since.
	room   int
	wake   func()
	acks   map[uint64]func(byte) // QoS 1/2 deliveries not ended, by id
	nextID uint64
	left   bool
	exit   func() // the group's leave
}

func (p *proxy) ClientID() string { return p.clientID }

// JoinedAt is when the client subscribed: a group its join creates
// starts there (package shared).
func (p *proxy) JoinedAt() time.Time { return p.since }

// Node is the node the member's client is connected to (statistics).
func (p *proxy) Node() string        { return p.key.node }
func (p *proxy) QoS() byte           { return p.qos }
func (p *proxy) ReceiveMaximum() int { return p.rmax }

// Room is none once the member left: its group, whose leave is under
// way, must not offer it records that Deliver refuses (it would pick it
// again and again).
func (p *proxy) Room() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.left {
		return 0
	}
	return max(p.room, 0)
}

func (p *proxy) OnRoom(wake func()) {
	p.mu.Lock()
	p.wake = wake
	p.mu.Unlock()
}

// Deliver sends rec to the member's node.
func (p *proxy) Deliver(rec *streams.Record, qos byte, dup bool, acked func(byte)) (func(), error) {
	p.mu.Lock()
	if p.left {
		p.mu.Unlock()
		return nil, fmt.Errorf("groups: member %s on %s left", p.clientID, p.key.node)
	}
	p.nextID++
	id := p.nextID
	if qos > 0 {
		p.acks[id] = acked
	}
	p.room--
	p.mu.Unlock()
	r := p.r
	r.opts.Transport.Send(p.key.node, encodeFrame(frame{kind: frameDeliver, from: r.opts.Self, ref: p.key.ref, id: id, qos: qos, dup: dup, rec: rec}))
	return func() {
		p.mu.Lock()
		_, open := p.acks[id]
		delete(p.acks, id)
		if open {
			// Withdrawn (ack timeout, the group stops): its place is
			// free again, also when the delivery or its ack was lost on
			// the way, which no room report would ever tell. (A delivery
			// the client holds unacknowledged keeps its place in the
			// session's window: the proxy may then send a few records
			// more than the client can take, which wait in its session,
			// bounded by the group's window.)
			p.room++
		}
		p.mu.Unlock()
		if open {
			r.opts.Transport.Send(p.key.node, encodeFrame(frame{kind: frameCancel, from: r.opts.Self, ref: p.key.ref, id: id}))
		}
	}, nil
}

// leave takes the proxy out of its group (its records are released).
func (p *proxy) leave() {
	p.mu.Lock()
	if p.left {
		p.mu.Unlock()
		return
	}
	p.left = true
	exit := p.exit
	p.acks = nil
	p.mu.Unlock()
	if exit != nil {
		exit()
	}
}

// HandleJoin serves a member node's join: a proxy joins the local group.
// It fails if this node does not dispatch the group (the member's node
// retries where placement then says).
func (r *Relay) HandleJoin(_ context.Context, from string, req []byte) ([]byte, error) {
	j, err := decodeJoin(req)
	if err != nil {
		return nil, err
	}
	node, epoch, ok := r.opts.Placement.Dispatcher(j.name, j.filter)
	if !ok || node != r.opts.Self {
		return nil, fmt.Errorf("groups: %s does not dispatch $share/%s/%s", r.opts.Self, j.name, j.filter)
	}
	p := &proxy{r: r, key: proxyKey{from, j.ref}, clientID: j.clientID, qos: j.qos, rmax: int(j.receiveMax),
		epoch: epoch, name: j.name, filter: j.filter, room: int(j.room), acks: map[uint64]func(byte){}}
	if j.since != 0 {
		p.since = time.Unix(0, j.since)
	}
	// Registered first: frames (room) may come as soon as it joined.
	r.pmu.Lock()
	old := r.proxies[p.key]
	r.proxies[p.key] = p
	r.pmu.Unlock()
	if old != nil {
		old.leave()
	}
	exit, err := r.opts.Local.Join(j.name, j.filter, p)
	if err != nil {
		r.pmu.Lock()
		if r.proxies[p.key] == p {
			delete(r.proxies, p.key)
		}
		r.pmu.Unlock()
		return nil, err
	}
	p.mu.Lock()
	left := p.left
	p.exit = exit
	p.mu.Unlock()
	if left {
		exit() // left (or its node went) while joining
	}
	return nil, nil
}

// HandleLeave serves a member node's leave.
func (r *Relay) HandleLeave(_ context.Context, from string, req []byte) ([]byte, error) {
	ref, err := decodeRef(req)
	if err != nil {
		return nil, err
	}
	k := proxyKey{from, ref}
	r.pmu.Lock()
	p := r.proxies[k]
	delete(r.proxies, k)
	r.pmu.Unlock()
	if p != nil {
		p.leave()
	}
	return nil, nil
}

// proxyFrame handles what a member's node sends back: the end of a
// delivery, or the client's room.
func (r *Relay) proxyFrame(f frame) {
	k := proxyKey{f.from, f.ref}
	r.pmu.Lock()
	p := r.proxies[k]
	if p != nil && f.kind == frameGone {
		delete(r.proxies, k)
	}
	r.pmu.Unlock()
	switch {
	case p == nil && f.kind != frameGone:
		// The member's node thinks it is attached here and is not (a
		// detach lost): it attaches again.
		r.opts.Transport.Send(f.from, encodeFrame(frame{kind: frameDetach, from: r.opts.Self, ref: f.ref}))
		return
	case p == nil:
		return
	case f.kind == frameGone:
		p.leave() // its records go to other members at once
		return
	}
	p.mu.Lock()
	var acked func(byte)
	if f.kind == frameAck {
		acked = p.acks[f.id]
		delete(p.acks, f.id)
	}
	p.room = int(f.room)
	wake := p.wake
	p.mu.Unlock()
	if acked != nil {
		acked(f.reason)
	}
	if wake != nil {
		wake()
	}
}

// reconcileProxies drops the proxies of groups this node no longer
// dispatches in the epoch they joined, and tells their nodes.
func (r *Relay) reconcileProxies() {
	r.pmu.Lock()
	var stale []*proxy
	for k, p := range r.proxies {
		node, epoch, ok := r.opts.Placement.Dispatcher(p.name, p.filter)
		if !ok || node != r.opts.Self || epoch != p.epoch {
			stale = append(stale, p)
			delete(r.proxies, k)
		}
	}
	r.pmu.Unlock()
	for _, p := range stale {
		p.leave()
		r.opts.Transport.Send(p.key.node, encodeFrame(frame{kind: frameDetach, from: r.opts.Self, ref: p.key.ref}))
	}
}

func encodeRef(ref uint64) []byte { return binary.AppendUvarint([]byte{1}, ref) }

func decodeRef(b []byte) (uint64, error) {
	d := bincode.Reader{B: b}
	if v := d.Byte(); d.Err == nil && v != 1 {
		return 0, fmt.Errorf("%w: leave version %d", ErrBadFrame, v)
	}
	ref := d.Uvarint()
	d.End()
	if d.Err != nil {
		return 0, fmt.Errorf("%w: leave: %v", ErrBadFrame, d.Err)
	}
	return ref, nil
}

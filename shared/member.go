package shared

import (
	"encoding/binary"
	"sync"
	"sync/atomic"
	"time"

	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/mqstream/mqstream/wire"
)

// member is one connection subscribed to a group. Fields below "group
// state" belong to the group goroutine.
type member struct {
	g        *group
	cl       *mochi.Client
	cs       *clientState
	qos      byte // granted subscription QoS
	rap      bool // retain as published
	subID    int  // MQTT 5 subscription identifier (0 = none)
	window   int
	joinedAt time.Time
	w        *writer

	// group state
	inflight  map[uint16]*pending
	queue     []*pending // hash strategies: assigned, waiting for room
	delivered int64
	acked     int64
	left      bool
}

// room is how many more records the member may receive now.
func (m *member) room() int {
	if m.qos == 0 {
		return m.window - int(m.w.unwritten.Load())
	}
	return m.window - len(m.inflight)
}

// clientState is what the hooks know about one connection that is a member
// of one or more groups.
type clientState struct {
	mu      sync.Mutex // guards ids and members
	ids     map[uint16]*member
	members map[groupKey]*member
}

func (cs *clientState) register(id uint16, m *member) {
	cs.mu.Lock()
	cs.ids[id] = m
	cs.mu.Unlock()
}

func (cs *clientState) unregister(id uint16, m *member) {
	cs.mu.Lock()
	if cs.ids[id] == m {
		delete(cs.ids, id)
	}
	cs.mu.Unlock()
}

// take removes and returns the member a packet id was delivered for.
func (cs *clientState) take(id uint16) *member {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	m := cs.ids[id]
	delete(cs.ids, id)
	return m
}

// writer sends encoded packets to one member from its own goroutine, so the
// group never blocks on a member's socket. Everything buffered is written
// in one write.
type writer struct {
	cl     *mochi.Client
	server *mochi.Server
	mu     sync.Mutex // guards buf, packets, closed
	buf    []byte
	npk    int
	closed bool
	wake   chan struct{}
	// unwritten counts packets queued but not yet written.
	unwritten atomic.Int64
}

func newWriter(cl *mochi.Client, server *mochi.Server) *writer {
	w := &writer{cl: cl, server: server, wake: make(chan struct{}, 1)}
	go w.run()
	return w
}

func (w *writer) enqueue(b []byte) {
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		return
	}
	w.buf = append(w.buf, b...)
	w.npk++
	w.mu.Unlock()
	w.unwritten.Add(1)
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

func (w *writer) close() {
	w.mu.Lock()
	w.closed = true
	w.mu.Unlock()
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

func (w *writer) run() {
	var spare []byte
	for range w.wake {
		w.mu.Lock()
		buf, n, closed := w.buf, w.npk, w.closed
		w.buf, w.npk = spare[:0], 0
		w.mu.Unlock()
		if len(buf) > 0 && !w.cl.Closed() && w.cl.Net.Conn != nil {
			w.cl.Lock()
			written, _ := w.cl.Net.Conn.Write(buf)
			w.cl.Unlock()
			if w.server != nil {
				atomic.AddInt64(&w.server.Info.BytesSent, int64(written))
				atomic.AddInt64(&w.server.Info.PacketsSent, int64(n))
				atomic.AddInt64(&w.server.Info.MessagesSent, int64(n))
			}
		}
		w.unwritten.Add(-int64(n))
		spare = buf
		if closed {
			return
		}
	}
}

// appendPublish encodes a PUBLISH for a member (MQTT 3.1.1 or 5).
func appendPublish(b []byte, m *member, p *pending, qos byte, id uint16, dup bool) []byte {
	r := &p.rec
	v5 := m.cl.Properties.ProtocolVersion == 5
	var props []byte
	if v5 {
		if r.HasPayloadFormat {
			props = append(props, 0x01, r.PayloadFormat)
		}
		if r.ContentType != "" {
			props = wire.AppendString(append(props, 0x03), r.ContentType)
		}
		if r.ResponseTopic != "" {
			props = wire.AppendString(append(props, 0x08), r.ResponseTopic)
		}
		if len(r.CorrelationData) > 0 {
			props = append(append(props, 0x09), byte(len(r.CorrelationData)>>8), byte(len(r.CorrelationData)))
			props = append(props, r.CorrelationData...)
		}
		if m.subID > 0 {
			props = wire.AppendVarint(append(props, 0x0B), m.subID)
		}
		for _, up := range r.UserProperties {
			props = wire.AppendString(wire.AppendString(append(props, 0x26), up.Key), up.Value)
		}
	}
	n := 2 + len(r.Topic) + len(r.Payload)
	if qos > 0 {
		n += 2
	}
	if v5 {
		n += wire.VarintLen(len(props)) + len(props)
	}
	h := byte(packets.Publish<<4) | qos<<1
	if dup {
		h |= 0x08
	}
	if r.Retain && m.rap && v5 {
		h |= 0x01
	}
	b = wire.AppendVarint(append(b, h), n)
	b = wire.AppendString(b, r.Topic)
	if qos > 0 {
		b = binary.BigEndian.AppendUint16(b, id)
	}
	if v5 {
		b = wire.AppendVarint(b, len(props))
		b = append(b, props...)
	}
	return append(b, r.Payload...)
}

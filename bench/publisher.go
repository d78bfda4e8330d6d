package bench

import (
	"context"
	"encoding/binary"
	"fmt"
	"math"
	"sort"
	"strings"
	"sync"
	"time"
)

// A publisher sends its share of the messages over one connection at a
// time. When the connection drops (its node died, or refused a publish the
// MQTT 3.1.1 way, by closing it), it connects to the next broker of the
// list, backing off between failed attempts, and sends again every QoS 1/2
// publish that was not acknowledged, with the same payload (publisher,
// sequence number, first send time): subscribers count a message that
// arrives both times as a duplicate, and the ack latency covers the outage.

// Reconnection backoff: the first attempt goes to the next broker at once,
// each failed one doubles the wait up to the cap.
const (
	reconnectBackoff    = 50 * time.Millisecond
	maxReconnectBackoff = 2 * time.Second
)

type publisher struct {
	r      *run
	p      int
	topics []string
	// topicOff is where in topics the publisher starts (routes mode:
	// publishers share one long list).
	topicOff uint64
	payload  []byte
	// slots holds a token per publish in flight (the window).
	slots chan struct{}
	// limit is when the publisher gives up waiting for acks or a broker.
	limit time.Time
	// c is the current connection; conns counts those made (the next one
	// goes to the next broker). Both belong to the publishing goroutine.
	c     *client
	conns int

	mu sync.Mutex // guards the fields below; taken by the read loop's acks
	// pending are the publishes in flight by packet id (a zero sent
	// marks a free id), npending how many.
	pending  *[65536]pendingPub
	npending int
	nextID   uint16
	// lastAck is when the last ack came, or when a publish went out with
	// none in flight; maxGap is the longest wait for an ack since then.
	lastAck time.Time
	maxGap  time.Duration
	maxEnd  time.Time // when the wait of maxGap ended
	lat     []int32   // ack latencies, microseconds
}

// pendingPub is a QoS 1/2 publish sent and not yet acknowledged.
type pendingPub struct {
	seq  uint64
	sent int64 // unix ns of the first send, carried in the payload; 0 = none
	// received: a PUBREC came (QoS 2), so the broker has the message; it
	// counts as acknowledged if the connection drops before the PUBCOMP.
	received bool
}

func (r *run) newPublisher(p int, c *client, deadline time.Time) *publisher {
	o := r.o
	topics := []string{strings.ReplaceAll(o.Topic, "%d", fmt.Sprint(p))}
	if o.Topics > 0 {
		topics = topics[:0]
		for t := p % o.Topics; len(topics) == 0 || t != p%o.Topics; t = (t + o.Publishers) % o.Topics {
			topics = append(topics, strings.ReplaceAll(o.Topic, "%d", fmt.Sprint(t)))
		}
	}
	var off uint64
	if o.Mode == ModeRoutes {
		topics = r.routeTopics
		off = uint64(p * len(topics) / o.Publishers)
	}
	pb := &publisher{r: r, p: p, topics: topics, payload: make([]byte, o.PayloadSize), slots: make(chan struct{}, o.Window),
		topicOff: off, limit: deadline.Add(o.Drain), c: c, conns: 1}
	if o.QoS > 0 {
		pb.pending = new([65536]pendingPub)
	}
	binary.BigEndian.PutUint32(pb.payload, uint32(p))
	pb.attach(c)
	return pb
}

// attach sets the callbacks of a new connection and starts its read loop.
func (pb *publisher) attach(c *client) {
	if pb.r.o.QoS > 0 {
		c.onAck = pb.ack
		c.onRec = pb.rec
	}
	c.start()
}

// ack ends publish id (PUBACK, PUBCOMP, or a refusing PUBREC).
func (pb *publisher) ack(id uint16, reason byte) {
	now := time.Now()
	pb.mu.Lock()
	m := pb.pending[id]
	if m.sent == 0 {
		pb.mu.Unlock()
		return // nothing of ours in flight under this id
	}
	pb.pending[id] = pendingPub{}
	pb.npending--
	if len(pb.lat) < maxLatencySamples {
		pb.lat = append(pb.lat, int32(min(now.Sub(time.Unix(0, m.sent)).Microseconds(), math.MaxInt32)))
	}
	pb.noteGapLocked(now.Sub(pb.lastAck), now)
	pb.lastAck = now
	pb.mu.Unlock()
	if reason >= 0x80 {
		pb.r.refused.Add(1)
	} else {
		pb.r.acked.Add(1)
		if f := pb.r.o.onAcked; f != nil {
			f(pb.p, m.seq)
		}
	}
	pb.r.inflight.Add(-1)
	<-pb.slots
}

// rec notes a successful PUBREC (QoS 2).
func (pb *publisher) rec(id uint16) {
	pb.mu.Lock()
	if pb.pending[id].sent != 0 {
		pb.pending[id].received = true
	}
	pb.mu.Unlock()
}

// write buffers publish seq with send time sent under packet id.
func (pb *publisher) write(seq uint64, sent int64, id uint16) error {
	binary.BigEndian.PutUint64(pb.payload[4:], seq)
	binary.BigEndian.PutUint64(pb.payload[12:], uint64(sent))
	return pb.c.publish(pb.topics[(pb.topicOff+seq)%uint64(len(pb.topics))], pb.r.o.QoS, id, pb.payload)
}

// send publishes seq for the first time (QoS 1/2: under a free packet id,
// remembered until acknowledged).
func (pb *publisher) send(seq uint64) error {
	now := time.Now()
	if pb.r.o.QoS == 0 {
		return pb.write(seq, now.UnixNano(), 0)
	}
	pb.mu.Lock()
	if pb.npending == 0 {
		pb.lastAck = now // the wait for an ack starts now
	}
	id := pb.nextID
	for { // at most Window ids are in use, fewer than 65535
		if id++; id == 0 {
			id = 1
		}
		if pb.pending[id].sent == 0 {
			break
		}
	}
	pb.nextID = id
	pb.pending[id] = pendingPub{seq: seq, sent: now.UnixNano()}
	pb.npending++
	pb.mu.Unlock()
	return pb.write(seq, now.UnixNano(), id)
}

// run publishes the publisher's count of messages, then waits for the
// acks of those in flight (until limit).
func (pb *publisher) run(ctx context.Context, count int, deadline time.Time) {
	o := pb.r.o
	defer func() {
		pb.c.close()
		pb.mu.Lock()
		now := time.Now()
		pb.noteGapLocked(pb.openGapLocked(now), now)
		pb.r.ackMu.Lock()
		pb.r.ackLat = append(pb.r.ackLat, pb.lat...)
		if pb.maxGap > pb.r.maxAckGap {
			pb.r.maxAckGap, pb.r.maxAckGapEnd = pb.maxGap, pb.maxEnd
		}
		pb.r.ackMu.Unlock()
		pb.mu.Unlock()
	}()
	var interval time.Duration
	if o.Rate > 0 {
		interval = time.Duration(float64(time.Second) * float64(o.Publishers) / o.Rate)
	}
	start := time.Now()
	for i := 0; i < count; i++ {
		if i%256 == 0 && (time.Now().After(deadline) || ctx.Err() != nil) {
			break
		}
		if interval > 0 {
			if d := time.Until(start.Add(time.Duration(i) * interval)); d > 0 {
				if err := pb.c.flush(); err != nil && !pb.reconnect(ctx) {
					return
				}
				time.Sleep(d)
			}
		}
		select {
		case <-pb.c.done:
			if !pb.reconnect(ctx) {
				return
			}
		default:
		}
		if o.QoS > 0 {
			if !pb.acquire(ctx) {
				return
			}
			pb.r.inflight.Add(1)
		}
		err := pb.send(uint64(i))
		pb.r.published.Add(1)
		// A QoS 1/2 message that could not be written is in flight: the new
		// connection sends it.
		if err != nil && !pb.reconnect(ctx) {
			return
		}
		if interval > 0 {
			if err := pb.c.flush(); err != nil && !pb.reconnect(ctx) {
				return
			}
		}
	}
	if err := pb.c.flush(); err != nil && !pb.reconnect(ctx) {
		return
	}
	if o.QoS == 0 {
		return
	}
	// Wait for the outstanding acks: all slots free.
	for i := 0; i < o.Window; i++ {
		if !pb.acquire(ctx) {
			return
		}
	}
}

// acquire takes a window slot, sending what is buffered and waiting for an
// ack when the window is full, and reconnecting when the connection
// drops; false when the limit passed or no broker took the connection.
func (pb *publisher) acquire(ctx context.Context) bool {
	select {
	case pb.slots <- struct{}{}:
		return true
	default:
	}
	if err := pb.c.flush(); err != nil && !pb.reconnect(ctx) {
		return false
	}
	timer := time.NewTimer(time.Until(pb.limit))
	defer timer.Stop()
	for {
		select {
		case pb.slots <- struct{}{}:
			return true
		case <-pb.c.done:
			if !pb.reconnect(ctx) {
				return false
			}
		case <-ctx.Done():
			return false
		case <-timer.C:
			return false // the broker stopped acknowledging; report what we have
		}
	}
}

// reconnect replaces a dropped connection: it connects to the next broker
// (with capped backoff after failures, until the limit) and sends the
// publishes in flight again, in the order first sent. False when no
// broker took the connection in time.
func (pb *publisher) reconnect(ctx context.Context) bool {
	o := pb.r.o
	pb.c.conn.Close()
	<-pb.c.done // no ack of the old connection comes after this
	pb.r.disconnects.Add(1)
	for {
		c, err := pb.r.redial(ctx, pb.p, &pb.conns, pb.limit, clientOptions{id: fmt.Sprintf("%s-pub-%d", o.ClientPrefix, pb.p), version: o.Version, keepalive: 60})
		if err != nil {
			return false
		}
		pb.c = c
		pb.attach(c)
		if pb.resend() == nil {
			return true
		}
		c.conn.Close()
		<-c.done
		pb.r.disconnects.Add(1)
	}
}

// resend sends the publishes in flight on the new connection; those the
// broker had already received (PUBREC) count as acknowledged.
func (pb *publisher) resend() error {
	type entry struct {
		id uint16
		m  pendingPub
	}
	if pb.pending == nil {
		return pb.c.flush() // QoS 0: nothing waits for an ack
	}
	var again []entry
	var received []uint16
	pb.mu.Lock()
	for id, m := range pb.pending {
		switch {
		case m.sent == 0:
		case m.received:
			received = append(received, uint16(id))
		default:
			again = append(again, entry{uint16(id), m})
		}
	}
	pb.mu.Unlock()
	for _, id := range received {
		pb.ack(id, 0)
	}
	sort.Slice(again, func(i, j int) bool { return again[i].m.seq < again[j].m.seq })
	for _, e := range again {
		if err := pb.write(e.m.seq, e.m.sent, e.id); err != nil {
			return err
		}
		pb.r.resent.Add(1)
	}
	return pb.c.flush()
}

// noteGapLocked records a wait for an ack that ended at end, if it is the
// longest yet.
func (pb *publisher) noteGapLocked(gap time.Duration, end time.Time) {
	if gap > pb.maxGap {
		pb.maxGap, pb.maxEnd = gap, end
	}
}

// openGapLocked is how long the publisher has been waiting for an ack at
// now (0 with nothing in flight).
func (pb *publisher) openGapLocked(now time.Time) time.Duration {
	if pb.npending == 0 {
		return 0
	}
	return now.Sub(pb.lastAck)
}

// redial connects connection k's client to the next broker of the list
// (*conns counts the connections made so far), trying the brokers in turn
// with capped backoff until one accepts or limit passes.
func (r *run) redial(ctx context.Context, k int, conns *int, limit time.Time, co clientOptions) (*client, error) {
	ctx, cancel := context.WithDeadline(ctx, limit)
	defer cancel()
	backoff := reconnectBackoff
	for {
		addr := brokerFor(r.o.Broker, k+*conns)
		*conns++
		c, err := dial(ctx, addr, co)
		if err == nil {
			r.reconnects.Add(1)
			return c, nil
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("reconnecting to %s: %w", addr, err)
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, maxReconnectBackoff)
	}
}

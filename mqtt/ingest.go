package mqtt

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/mqstream/mqstream/streams"
	"github.com/mqstream/mqstream/topic"
)

// Appender is what ingest needs from the stream store.
type Appender interface {
	// Submit queues an append; req.Done reports when it is durable or failed.
	Submit(req streams.AppendRequest) error
}

// fanoutListener is the listener id of the inline clients that re-publish
// stored messages to ordinary subscribers. A network client cannot have it.
const fanoutListener = "mqstream.fanout"

// ingestHook stores every publish whose topic maps to a stream and
// acknowledges it only once the record is durable.
//
// The flow for a stored publish (see docs/design.md):
//  1. OnPublish (on the publisher's read goroutine) queues the packet on the
//     connection's FIFO, submits the record to the store's group commit and
//     tells mochi it is taken care of (takenFrom), so mochi sends no ack
//     and does no fan-out.
//  2. When the commit completes, a per-connection flush goroutine takes the
//     completed prefix of the FIFO in arrival order, re-publishes each stored
//     message to subscribers and retains it (through an inline client that
//     carries the publisher's id, so No Local holds), and writes all their
//     PUBACK/PUBREC packets in one write.
//
// Publishes whose topic is not stored pass straight through to mochi unless
// stored ones from the same connection are still pending; then they queue
// behind them so that the connection's order is kept.
type ingestHook struct {
	mochi.HookBase
	server     *mochi.Server
	store      Appender
	mapper     *topic.Mapper
	maxPayload int
	maxPending int
	// early delivers QoS 0/1 messages to subscribers on arrival instead of
	// after the commit.
	early bool
	log   *slog.Logger

	conns sync.Map    // *mochi.Client -> *conn
	subs  *routeIndex // the selector's, for the fan-out
	// order makes routing wait for subscription changes read before a publish.
	order *subscriptionOrder
	// publish retains and delivers a message (deliveryHook.publish); it
	// returns the broker-state submission to wait for before the ack.
	publish func(pk *packets.Packet, origin string, subs *mochi.Subscribers, seq uint64) uint64
	// recent numbers and keeps routed messages for catch-up (catchup.go;
	// nil: off).
	recent *recentPublishes
	// routing is held from a message's lookup until it is queued
	// (routingfence.go; nil: standalone).
	routing *routingFence
	// st is the broker state on disk (nil: none).
	st   *stateStore
	qos2 qos2Sessions // QoS 2 publishes waiting for PUBREL (inbound.go)
	// aclMayRefuse: the access hook can refuse publishes (inbound.go);
	// denied is the reason code of its refusals (Options.HideDenialReason).
	aclMayRefuse bool
	denied       packets.Code

	stored  atomic.Int64 // records acknowledged as stored
	refused atomic.Int64 // publishes refused (not stored, not acked as success)
	pending inFlight     // submissions not yet completed (Wait)
	// queued counts the entries taken into a connection's queue and not
	// yet through its flush (acknowledged, or refused); draining turns
	// away publishes while the broker stops (drain).
	queued   atomic.Int64
	draining atomic.Bool
	// entering counts the OnPublish calls under way: one that found
	// draining unset queues its entry before it returns, so drain waits
	// for it too (it once stored a publish after drain had found nothing
	// queued, and the client was disconnected without its ack).
	entering atomic.Int64
}

// conn is the ingest state of one client connection.
type conn struct {
	h  *ingestHook
	cl *mochi.Client
	// fanout is an inline client with the publisher's id, made on first use
	// (a fan-out to inline subscriptions, rare): idle connections, and
	// those whose messages go straight to sessions, never pay for one.
	fanout     *mochi.Client
	fanoutOnce sync.Once

	mu struct {
		sync.Mutex
		// queue holds the publishes not yet acknowledged, in arrival order,
		// from index head on.
		queue []*entry
		head  int
		// flushing is true while a flush goroutine runs for this connection.
		flushing bool
		// qos2 holds the packet ids of QoS 2 publishes queued but not yet
		// PUBREC'd, so a DUP resend is not stored twice.
		qos2 map[uint16]struct{}
		// unacked counts the QoS 1/2 publishes in the queue.
		unacked int
		// closed is set once the client has disconnected.
		closed bool
		// refusalsLogged holds the reason codes already logged for this connection.
		refusalsLogged map[byte]bool
	}
	space sync.Cond // on mu: signalled when the queue shrinks

	// Owned by the client's read goroutine (inbound.go): the id of the
	// SUBSCRIBE/UNSUBSCRIBE being processed, and whether OnPublish took the
	// QoS 1/2 publish being processed.
	subID     uint16
	published bool
}

// entry is one publish waiting for its ack.
type entry struct {
	pk     packets.Packet
	rec    [1]streams.Record
	stored bool // the record goes to a stream
	sent   bool // already delivered to subscribers
	done   bool // commit finished (or nothing to commit)
	dedup  bool // a QoS 2 publish registered in conn.mu.qos2
	// pending: a QoS 2 publish registered as being stored
	// (qos2Sessions.pend), settled once its outcome is known; epoch is
	// the client's session it was taken in.
	pending *qos2Pending
	epoch   uint64
	err     error        // why it was refused
	code    packets.Code // the reason code of a refusal
	// state is the broker-state submission (retained message, deliveries
	// queued for persistent sessions) to wait for before the ack.
	state uint64
}

func (h *ingestHook) ID() string { return "mqstream-ingest" }

func (h *ingestHook) Provides(b byte) bool {
	switch b {
	case mochi.OnPublish, mochi.OnDisconnect, mochi.OnWillSent, mochi.OnClientExpired,
		mochi.OnPacketRead, mochi.OnPacketEncode, mochi.OnPacketProcessed, mochi.OnSessionEstablish:
		return true
	}
	return false
}

func (h *ingestHook) OnClientExpired(cl *mochi.Client) {
	h.qos2.drop(cl.ID)
}

// OnSessionEstablish forgets the QoS 2 flows of a session a clean start
// discards.
func (h *ingestHook) OnSessionEstablish(cl *mochi.Client, pk packets.Packet) {
	if pk.Connect.Clean {
		h.qos2.drop(cl.ID)
	}
}

// errTaken and errRejected box mochi's codes once: returning a Code as
// an error allocates each time.
var (
	errTaken    error = packets.CodeSuccessIgnore
	errRejected error = packets.ErrRejectPacket
)

// takenFrom returns what OnPublish answers mochi for a publish it took
// over (stored, queued, acknowledged or refused by ingest itself), given
// the QoS mochi sees: mochi then neither acknowledges, retains nor
// delivers it. For QoS 0, which is every publish from the network
// (inbound.go hands QoS 1/2 publishes to mochi as QoS 0), that is
// CodeSuccessIgnore: with ErrRejectPacket mochi logs the rejection at
// debug level, and the log call boxes the 800-byte packet on every
// publish whether debug is on or not (6% of the broker's CPU under
// pub8). A QoS 1/2 publish as mochi sees it (an inline client's) is
// rejected, as mochi would acknowledge an ignored one.
func takenFrom(mochiQoS byte) error {
	if mochiQoS == 0 {
		return errTaken
	}
	return errRejected
}

// OnPublish queues a publish for storage; see the type documentation.
func (h *ingestHook) OnPublish(cl *mochi.Client, pk packets.Packet) (packets.Packet, error) {
	if cl.Net.Listener == fanoutListener {
		return pk, nil // our own re-publish of a stored message
	}
	taken := takenFrom(pk.FixedHeader.Qos)
	// Counted before draining is read: drain waits for every publish
	// that saw it unset to be queued (and then through its flush).
	h.entering.Add(1)
	defer h.entering.Add(-1)
	if h.draining.Load() {
		// The broker is stopping (drain): neither stored nor
		// acknowledged; the client sends it again elsewhere or later.
		return pk, taken
	}
	// QoS 1/2 publishes reach mochi as QoS 0 (inbound.go): ingest
	// acknowledges them all, stored or not.
	acked := unmarkInbound(&pk)
	h.order.wait() // after the subscription changes read before it (order.go)
	stream, store := h.mapper.StreamFor(pk.TopicName)
	if !store && !acked {
		v, ok := h.conns.Load(cl)
		if !ok || v.(*conn).idle() {
			return pk, nil // nothing queued ahead of it: mochi handles it now
		}
	}
	c := h.conn(cl)
	c.published = acked
	e := &entry{pk: pk, stored: store}
	// The topic alias was resolved by mochi; the re-publish must not rebind it.
	e.pk.Properties.TopicAlias, e.pk.Properties.TopicAliasFlag = 0, false
	qos := pk.FixedHeader.Qos
	if qos == 2 && h.qos2.awaiting(cl.ID, pk.PacketID) {
		// Stored and acknowledged with PUBREC already: acknowledge it again,
		// do not store or deliver it again [MQTT-4.3.3-10].
		e.stored, e.sent, e.done = false, true, true
		c.enqueue(e, false)
		c.kick()
		return pk, taken
	}
	if qos > 0 && h.receiveMaximumExceeded(c) {
		// [MQTT-3.3.4-9]: an MQTT 5 client that sends more unacknowledged
		// QoS 1/2 publishes than the Receive Maximum the server announced
		// is disconnected with 0x93; MQTT 3.1.1 clients, which are not
		// told a limit, wait instead (enqueue).
		_ = h.server.DisconnectClient(cl, packets.ErrReceiveMaximum)
		return pk, taken
	}

	switch {
	case !store:
		e.done = true
	case h.maxPayload > 0 && len(pk.Payload) > h.maxPayload:
		e.done = true
		e.code = packets.ErrPacketTooLarge
		e.err = fmt.Errorf("payload of %d bytes exceeds the limit of %d", len(pk.Payload), h.maxPayload)
	}
	if h.early && qos < 2 && e.err == nil {
		// Deliver now, in arrival order; only the ack waits for the disk.
		// Before the entry is queued: a flush running for earlier entries
		// would otherwise find it done (not stored) and deliver it too.
		h.fanout(c, e)
	}
	var wait *qos2Pending
	if qos == 2 {
		taken2 := h.qos2.pend(cl.ID, pk.PacketID, pk.FixedHeader.Dup)
		switch {
		case taken2.awaiting:
			// Acknowledged since the check above.
			e.stored, e.sent, e.done, e.err = false, true, true, nil
			c.enqueue(e, false)
			c.kick()
			return pk, taken
		case taken2.wait != nil:
			// A DUP of a copy being stored (queued here, or taken on
			// an earlier connection of the client): it waits for that
			// one's outcome, and is neither stored nor delivered again.
			wait, e.epoch = taken2.wait, taken2.epoch
			e.stored, e.sent, e.done, e.err = false, true, false, nil
		default:
			e.pending, e.epoch = taken2.first, taken2.epoch // before the entry is queued: a flush may take it at once
		}
	}
	if !c.enqueue(e, qos == 2) {
		if e.pending != nil {
			// A copy is queued on this connection after all: what this
			// one registered goes (the client sent an id in flight
			// again, not as a DUP).
			h.qos2.settle(cl.ID, pk.PacketID, e.pending, errResendQoS2)
		}
		return pk, taken // a DUP of a QoS 2 publish queued on this connection
	}
	if wait != nil {
		h.qos2.wait(wait, func(err error) { c.settle(e, err) })
		return pk, taken
	}
	if e.done {
		c.kick()
		return pk, taken
	}
	e.rec[0] = recordFromPacket(cl.ID, &pk)
	h.pending.add()
	err := h.store.Submit(streams.AppendRequest{
		Stream:  stream,
		Records: e.rec[:],
		NoSync:  qos == 0,
		Done:    func(_ uint64, err error) { c.complete(e, err) },
	})
	if err != nil {
		c.complete(e, err)
	}
	return pk, taken
}

// OnWillSent stores a will message that was published to subscribers.
func (h *ingestHook) OnWillSent(cl *mochi.Client, pk packets.Packet) {
	stream, ok := h.mapper.StreamFor(pk.TopicName)
	if !ok {
		return
	}
	rec := recordFromPacket(cl.ID, &pk)
	// Counted as pending, so a stopping broker waits for it (Wait): the
	// wills of the clients it disconnects are stored before the store,
	// or the cluster's shards, close.
	h.pending.add()
	err := h.store.Submit(streams.AppendRequest{Stream: stream, Records: []streams.Record{rec}, Done: func(_ uint64, err error) {
		defer h.pending.done()
		if err != nil {
			h.log.Warn("will message not stored", "client", cl.ID, "topic", pk.TopicName, "stream", stream, "error", err)
		}
	}})
	if err != nil {
		h.pending.done()
		h.log.Warn("will message not stored", "client", cl.ID, "topic", pk.TopicName, "stream", stream, "error", err)
	}
}

// OnDisconnect marks the connection closed; queued publishes still complete
// (stored messages are still fanned out) but their acks are not written.
func (h *ingestHook) OnDisconnect(cl *mochi.Client, _ error, expire bool) {
	if expire && !cl.IsTakenOver() {
		h.qos2.drop(cl.ID) // the session ends
	}
	v, ok := h.conns.Load(cl)
	if !ok {
		return
	}
	c := v.(*conn)
	c.mu.Lock()
	c.mu.closed = true
	empty := c.mu.head == len(c.mu.queue) && !c.mu.flushing
	c.space.Broadcast()
	c.mu.Unlock()
	if empty {
		h.conns.CompareAndDelete(cl, c)
	}
}

// Wait blocks until every submitted record has completed (shutdown).
func (h *ingestHook) Wait() { h.pending.wait() }

func (h *ingestHook) conn(cl *mochi.Client) *conn {
	if v, ok := h.conns.Load(cl); ok {
		return v.(*conn)
	}
	c := &conn{h: h, cl: cl}
	c.space.L = &c.mu
	c.mu.qos2 = map[uint16]struct{}{}
	v, _ := h.conns.LoadOrStore(cl, c)
	return v.(*conn)
}

func recordFromPacket(clientID string, pk *packets.Packet) streams.Record {
	r := streams.Record{
		Topic:            pk.TopicName,
		Payload:          pk.Payload,
		QoS:              pk.FixedHeader.Qos,
		Retain:           pk.FixedHeader.Retain,
		ClientID:         clientID,
		ContentType:      pk.Properties.ContentType,
		ResponseTopic:    pk.Properties.ResponseTopic,
		CorrelationData:  pk.Properties.CorrelationData,
		PayloadFormat:    pk.Properties.PayloadFormat,
		HasPayloadFormat: pk.Properties.PayloadFormatFlag,
	}
	if n := len(pk.Properties.User); n > 0 {
		r.UserProperties = make([]streams.UserProperty, n)
		for i, u := range pk.Properties.User {
			r.UserProperties[i] = streams.UserProperty{Key: u.Key, Value: u.Val}
		}
	}
	return r
}

// receiveMaximumExceeded reports whether c's client is an MQTT 5 client
// that already has as many QoS 1/2 publishes unacknowledged (queued, or
// QoS 2 waiting for PUBREL) as the server's Receive Maximum.
func (h *ingestHook) receiveMaximumExceeded(c *conn) bool {
	if h.maxPending <= 0 || c.cl.Properties.ProtocolVersion != 5 {
		return false
	}
	c.mu.Lock()
	n := c.mu.unacked
	c.mu.Unlock()
	return n+h.qos2.count(c.cl.ID) >= h.maxPending
}

// idle reports whether nothing is queued on the connection.
func (c *conn) idle() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.mu.head == len(c.mu.queue)
}

// enqueue appends e to the FIFO, waiting while the FIFO is full. It returns
// false (and queues nothing) for a DUP of a QoS 2 publish that is queued.
func (c *conn) enqueue(e *entry, qos2 bool) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if qos2 {
		if _, dup := c.mu.qos2[e.pk.PacketID]; dup {
			return false
		}
		c.mu.qos2[e.pk.PacketID] = struct{}{}
		e.dedup = true
	}
	if e.pk.FixedHeader.Qos > 0 {
		c.mu.unacked++
	}
	for c.h.maxPending > 0 && len(c.mu.queue)-c.mu.head >= c.h.maxPending && !c.mu.closed {
		c.space.Wait()
	}
	c.mu.queue = append(c.mu.queue, e)
	c.h.queued.Add(1)
	return true
}

// complete records the outcome of a commit; it runs on the store's committer
// goroutine and must not block.
func (c *conn) complete(e *entry, err error) {
	c.settle(e, err)
	c.h.pending.done()
}

// settle records e's outcome (a commit's, or, for a QoS 2 publish resent
// while its first copy was being stored, that copy's) and starts a flush
// if the head of the FIFO is ready. It must not block.
func (c *conn) settle(e *entry, err error) {
	if err != nil {
		e.err = err
		e.code = reasonForStoreError(err)
	}
	c.mu.Lock()
	e.done = true
	start := !c.mu.flushing && c.mu.head < len(c.mu.queue) && c.mu.queue[c.mu.head].done
	if start {
		c.mu.flushing = true
	}
	c.mu.Unlock()
	if start {
		go c.flush()
	}
}

// kick starts a flush if the head of the FIFO is ready.
func (c *conn) kick() {
	c.mu.Lock()
	start := !c.mu.flushing && c.mu.head < len(c.mu.queue) && c.mu.queue[c.mu.head].done
	if start {
		c.mu.flushing = true
	}
	c.mu.Unlock()
	if start {
		go c.flush()
	}
}

// flush acknowledges the completed prefix of the FIFO until it reaches an
// entry still being committed.
func (c *conn) flush() {
	var ready []*entry
	var acks bytes.Buffer
	for {
		ready = ready[:0]
		c.mu.Lock()
		for c.mu.head < len(c.mu.queue) && c.mu.queue[c.mu.head].done {
			ready = append(ready, c.mu.queue[c.mu.head])
			if c.mu.queue[c.mu.head].pk.FixedHeader.Qos > 0 {
				c.mu.unacked--
			}
			c.mu.queue[c.mu.head] = nil
			c.mu.head++
		}
		if c.mu.head == len(c.mu.queue) {
			c.mu.queue, c.mu.head = c.mu.queue[:0], 0
		}
		if len(ready) == 0 {
			c.mu.flushing = false
			drained := c.mu.closed && c.mu.head == len(c.mu.queue)
			c.mu.Unlock()
			if drained {
				c.h.conns.CompareAndDelete(c.cl, c)
			}
			return
		}
		c.space.Broadcast()
		c.mu.Unlock()

		acks.Reset()
		packetsOut, disconnect := c.process(ready, &acks)
		var first, last uint64
		for _, e := range ready {
			if e.state > 0 {
				if first == 0 || e.state < first {
					first = e.state
				}
				last = max(last, e.state)
			}
		}
		if last > 0 {
			if err := c.h.st.durableRange(first, last); err != nil {
				// A queued delivery or retained message is not on disk:
				// acknowledge nothing (and await no PUBREL); the client
				// sends the publishes again.
				c.h.log.Warn("broker state not written: disconnecting the publisher without acknowledging", "client", c.cl.ID, "error", err)
				for _, e := range ready {
					if e.err == nil && e.pk.FixedHeader.Qos == 2 {
						c.h.qos2.release(c.cl.ID, e.pk.PacketID)
					}
				}
				c.settlePending(ready, err)
				c.cl.Stop(err)
				c.h.queued.Add(-int64(len(ready)))
				continue
			}
		}
		// After process recorded them awaited, and after the broker
		// state is durable: a copy resent on another connection is then
		// answered with PUBREC.
		c.settlePending(ready, nil)
		c.writeAcks(acks.Bytes(), packetsOut)
		c.h.queued.Add(-int64(len(ready)))
		if disconnect != nil {
			c.cl.Stop(disconnect)
		}
	}
}

// drain turns away new publishes and waits, at most timeout, until every
// publish already taken is through: committed and acknowledged to its
// client, which is still connected (Broker.Close then disconnects it). So
// a stopping node acknowledges what it stored, and its clients need not
// send those publishes again. It reports whether everything went through.
func (h *ingestHook) drain(timeout time.Duration) bool {
	h.draining.Store(true)
	deadline := time.Now().Add(timeout)
	for h.queued.Load() > 0 || h.entering.Load() > 0 {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(2 * time.Millisecond)
	}
	return true
}

// process fans out and builds the acks of completed entries. It returns the
// number of ack packets written to acks and, for an MQTT 3.1.1 client whose
// publish was refused, the error to disconnect it with.
func (c *conn) process(ready []*entry, acks *bytes.Buffer) (int, error) {
	h := c.h
	v5 := c.cl.Properties.ProtocolVersion == 5
	n := 0
	var disconnect error
	for _, e := range ready {
		qos := e.pk.FixedHeader.Qos
		if e.dedup {
			defer c.forgetQoS2(e.pk.PacketID)
		}
		if e.err != nil {
			h.refused.Add(1)
			c.logRefusal(e)
			if qos == 0 || disconnect != nil {
				continue
			}
			if !v5 {
				// MQTT 3.1.1 has no negative ack: disconnect, the client
				// resends. Later entries are still fanned out, not acked.
				disconnect = fmt.Errorf("publish refused: %w", e.err)
				continue
			}
			ackType := packets.Puback
			if qos == 2 {
				ackType = packets.Pubrec
			}
			c.encodeRefusal(acks, ackType, e)
			n++
			continue
		}
		// Retain and deliver to subscribers before the ack, like mochi does.
		if !e.sent {
			h.fanout(c, e)
		}
		if e.stored {
			h.stored.Add(1)
		}
		if disconnect != nil {
			if qos == 2 {
				// Stored, not acknowledged (an earlier publish was
				// refused): the client sends it again, with DUP, and is
				// answered with PUBREC, not stored a second time.
				h.qos2.add(c.cl.ID, e.pk.PacketID, e.epoch)
			}
			continue
		}
		switch qos {
		case 1:
			acks.Write([]byte{packets.Puback << 4, 2, byte(e.pk.PacketID >> 8), byte(e.pk.PacketID)})
			n++
		case 2:
			// Awaited before the PUBREC goes out: the PUBREL follows it.
			h.qos2.add(c.cl.ID, e.pk.PacketID, e.epoch)
			acks.Write([]byte{packets.Pubrec << 4, 2, byte(e.pk.PacketID >> 8), byte(e.pk.PacketID)})
			n++
		}
	}
	return n, disconnect
}

// fanout retains the message and delivers it to ordinary subscribers,
// directly (deliveryHook.publish) or, when an inline subscription matches,
// by re-publishing it through the publisher's inline client.
func (h *ingestHook) fanout(c *conn, e *entry) {
	e.sent = true
	h.routing.enter()
	defer h.routing.exit()
	seq := h.recent.reserve() // before the lookup (catchup.go)
	subs, has := h.subs.lookup(e.pk.TopicName)
	if h.publish != nil && (subs == nil || len(subs.InlineSubscriptions) == 0) {
		e.state = h.publish(&e.pk, c.cl.ID, subs, seq) // e.pk is not changed any more
		return
	}
	h.recent.skip(seq) // mochi routes it (and records it)
	if !has && !e.pk.FixedHeader.Retain {
		return
	}
	c.fanoutOnce.Do(func() {
		c.fanout = h.server.NewClient(nil, fanoutListener, c.cl.ID, true)
		c.fanout.Properties.ProtocolVersion = c.cl.Properties.ProtocolVersion
	})
	if err := h.server.InjectPacket(c.fanout, e.pk); err != nil {
		h.log.Warn("fan-out failed", "client", c.cl.ID, "topic", e.pk.TopicName, "error", err)
	}
	if h.st != nil {
		e.state = h.st.syncedMark()
	}
	// InjectPacket counted the message as received a second time.
	atomic.AddInt64(&h.server.Info.PacketsReceived, -1)
	atomic.AddInt64(&h.server.Info.MessagesReceived, -1)
}

// errResendQoS2 answers the copies that waited for a QoS 2 publish whose
// outcome is not to be relied on: the client sends it again.
var errResendQoS2 = fmt.Errorf("%w: the first copy of this QoS 2 publish was not acknowledged; send it again", streams.ErrUnavailable)

// settlePending settles the QoS 2 publishes of ready that registered as
// being stored, with their outcome, or with failed when not nil (nothing
// of ready was acknowledged).
func (c *conn) settlePending(ready []*entry, failed error) {
	for _, e := range ready {
		if e.pending == nil {
			continue
		}
		err := e.err
		if failed != nil && err == nil {
			err = errResendQoS2
		}
		c.h.qos2.settle(c.cl.ID, e.pk.PacketID, e.pending, err)
	}
}

func (c *conn) forgetQoS2(id uint16) {
	c.mu.Lock()
	delete(c.mu.qos2, id)
	c.mu.Unlock()
}

// encodeRefusal appends an MQTT 5 PUBACK/PUBREC carrying a failure reason.
func (c *conn) encodeRefusal(buf *bytes.Buffer, ackType byte, e *entry) {
	pk := packets.Packet{
		FixedHeader:     packets.FixedHeader{Type: ackType},
		PacketID:        e.pk.PacketID,
		ReasonCode:      e.code.Code,
		ProtocolVersion: 5,
	}
	props := c.cl.Properties.Props
	if !(props.RequestProblemInfoFlag && props.RequestProblemInfo == 0) {
		pk.Properties.ReasonString = e.code.Reason
		if !errors.Is(e.err, errDenied) {
			// A denial's detail would repeat the code, or tell what the
			// code hides (Options.HideDenialReason).
			pk.Properties.ReasonString += ": " + e.err.Error()
		}
	} else {
		pk.Mods.DisallowProblemInfo = true
	}
	pk.Mods.MaxSize = props.MaximumPacketSize
	_ = pk.PubackEncode(buf) // PUBACK and PUBREC share one encoding
}

// writeAcks writes encoded acks to the client in one write.
func (c *conn) writeAcks(b []byte, count int) {
	if len(b) == 0 || c.cl.Net.Conn == nil || c.cl.Closed() {
		return
	}
	c.cl.Lock()
	n, err := c.cl.Net.Conn.Write(b)
	c.cl.Unlock()
	atomic.AddInt64(&c.h.server.Info.BytesSent, int64(n))
	atomic.AddInt64(&c.h.server.Info.PacketsSent, int64(count))
	if err != nil {
		c.h.log.Debug("writing acks failed", "client", c.cl.ID, "error", err)
	}
}

// logRefusal logs the first refusal of each reason on a connection.
func (c *conn) logRefusal(e *entry) {
	c.mu.Lock()
	if c.mu.refusalsLogged == nil {
		c.mu.refusalsLogged = map[byte]bool{}
	}
	first := !c.mu.refusalsLogged[e.code.Code]
	c.mu.refusalsLogged[e.code.Code] = true
	c.mu.Unlock()
	level := slog.LevelDebug
	if first {
		level = slog.LevelWarn
	}
	c.h.log.Log(context.Background(), level, "publish refused, not stored", "client", c.cl.ID, "topic", e.pk.TopicName,
		"qos", e.pk.FixedHeader.Qos, "reason_code", fmt.Sprintf("0x%02x", e.code.Code), "error", e.err)
}

// reasonForStoreError maps a store failure to an MQTT 5 reason code.
func reasonForStoreError(err error) packets.Code {
	switch {
	case errors.Is(err, streams.ErrRecordTooLarge):
		return packets.ErrPacketTooLarge
	case errors.Is(err, syscall.ENOSPC), errors.Is(err, syscall.EDQUOT):
		return packets.ErrQuotaExceeded
	}
	return packets.ErrUnspecifiedError
}

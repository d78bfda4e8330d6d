package mqtt

import (
	"context"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/mqstream/mqstream/streams"
)

// Wills of clients whose node fails (cluster mode).
//
// A node that fails cannot publish the wills of the clients connected to
// it. So every node tells the others the will of each client connected to
// it while the connection lasts (set when the session is established,
// cleared when the connection ends: the node itself then publishes it or
// not, as MQTT says). When membership declares a node failed, or a node
// is found to have restarted (a new incarnation: its previous process
// died), the node with the lowest id among those up publishes the wills
// that node held, each after its Will Delay Interval, unless its client
// connected again somewhere first (its claim reaches every node). The
// wills go through Broker.Publish (stored, retained and delivered
// cluster-wide; the records' publisher is the API's client id). A will
// still waiting for its delay on a node that then fails is not published.
//
// A will clear can be lost on the way: a peer's queue that overflows drops
// its oldest messages (cluster/routes). The repair that follows sends the
// hello, every current will, then a sweep naming the clients whose wills
// are current (and those connecting). The peer then forgets each will of
// that node it received before the hello unless the sweep names its
// client: what it keeps was either sent again after the hello or is still
// current, and what it forgets is a will whose clear was dropped, which
// would otherwise be published, should the node fail later, for a client
// that left cleanly. A will received after the hello (a client that
// connected meanwhile, a claim's) is never swept. Nodes of earlier
// versions send no sweep, and log one they receive as undecodable.

// Frames of will messages between nodes, after the kinds of remote.go and
// retainsync.go.
const (
	forwardWillSet   = 3 // a client's will while its connection lasts
	forwardWillClear = 4 // its connection ended
	forwardHello     = 5 // a broker process started (its incarnation)
	forwardWillSweep = 6 // the clients whose wills are current, after a hello
)

// clusterWills holds the other nodes' clients' wills and publishes those of
// a node that failed.
type clusterWills struct {
	b           *Broker
	node        string
	incarnation uint64

	mu sync.Mutex // guards peers, received and pending
	// peers holds, per node, the wills of its connected clients.
	peers map[string]*peerWills
	// received counts the will frames applied: each held will and hello
	// is stamped with the count when it arrived (a sweep's reference).
	received uint64
	// pending holds the wills of failed nodes waiting for their delay, by
	// client id.
	pending map[string]*time.Timer
	closed  bool
	// published counts wills published for failed nodes (tests, logs).
	published atomic.Int64
}

type peerWills struct {
	incarnation uint64
	wills       map[string]heldWill // by client id
	// helloAt is when (clusterWills.received) the latest hello of this
	// incarnation arrived; 0 before any.
	helloAt uint64
}

type heldWill struct {
	msg   Message
	delay time.Duration
	at    uint64 // when it arrived (clusterWills.received)
}

func newClusterWills(b *Broker, node string) *clusterWills {
	return &clusterWills{b: b, node: node, incarnation: rand.Uint64() | 1, peers: map[string]*peerWills{}, pending: map[string]*time.Timer{}}
}

// willOf returns cl's will as a message, and whether it has one.
func willOf(cl *mochi.Client) (Message, time.Duration, bool) {
	w := cl.Properties.Will
	if atomic.LoadUint32(&cl.Properties.Will.Flag) == 0 || w.TopicName == "" {
		return Message{}, 0, false
	}
	return willMessage(w), time.Duration(w.WillDelayInterval) * time.Second, true
}

// willMessage returns will as a message to publish.
func willMessage(w mochi.Will) Message {
	m := Message{Topic: w.TopicName, Payload: w.Payload, QoS: w.Qos, Retain: w.Retain}
	for _, u := range w.User {
		m.UserProperties = append(m.UserProperties, streams.UserProperty{Key: u.Key, Value: u.Val})
	}
	return m
}

// established tells the other nodes cl's will, if it has one.
func (w *clusterWills) established(cl *mochi.Client) {
	m, delay, ok := willOf(cl)
	if !ok || cl.Net.Inline {
		return
	}
	w.b.opts.Remote.Broadcast(encodeWillSet(w.node, w.incarnation, cl.ID, m, delay))
}

// disconnected tells the other nodes to forget cl's will.
func (w *clusterWills) disconnected(cl *mochi.Client) {
	if cl.Net.Inline {
		return
	}
	w.b.opts.Remote.Broadcast(encodeWillClear(w.node, w.incarnation, cl.ID))
}

// hello is what a node that joins (or restarted) is sent: this process's
// incarnation.
func (w *clusterWills) hello() []byte { return encodeHello(w.node, w.incarnation) }

func encodeHello(node string, inc uint64) []byte {
	b := []byte{forwardHello}
	b = appendStr(b, node)
	return binary.AppendUvarint(b, inc)
}

// apply takes a will frame another node sent.
func (w *clusterWills) apply(msg []byte) error {
	d := &stateDecoder{b: msg[1:]}
	node, inc := d.str(), d.uvarint()
	var client string
	var m Message
	var delay time.Duration
	var keep map[string]bool
	switch msg[0] {
	case forwardWillSet:
		client = d.str()
		delay = time.Duration(d.uvarint()) * time.Second
		m.Topic, m.Payload, m.QoS = d.str(), slices.Clone(d.raw()), byte(d.uvarint())
		m.Retain = d.uvarint() == 1
		for n := d.uvarint(); n > 0 && d.err == nil; n-- {
			m.UserProperties = append(m.UserProperties, streams.UserProperty{Key: d.str(), Value: d.str()})
		}
	case forwardWillClear:
		client = d.str()
	case forwardWillSweep:
		n := d.uvarint()
		if n > uint64(len(d.b)) { // each id takes a byte at least
			return fmt.Errorf("%w: will sweep of %d clients", errBadForward, n)
		}
		keep = make(map[string]bool, n)
		for ; n > 0 && d.err == nil; n-- {
			keep[d.str()] = true
		}
	}
	if d.err != nil || len(d.b) != 0 || node == "" {
		return fmt.Errorf("%w: will frame", errBadForward)
	}
	w.mu.Lock()
	p := w.peers[node]
	var orphans map[string]heldWill
	if p == nil || p.incarnation != inc {
		if p != nil {
			orphans = p.wills // its previous process died with them
		}
		p = &peerWills{incarnation: inc, wills: map[string]heldWill{}}
		w.peers[node] = p
	}
	w.received++
	switch msg[0] {
	case forwardWillSet:
		p.wills[client] = heldWill{msg: m, delay: delay, at: w.received}
	case forwardWillClear:
		delete(p.wills, client)
	case forwardHello:
		p.helloAt = w.received
	case forwardWillSweep:
		for id, hw := range p.wills {
			if hw.at < p.helloAt && !keep[id] {
				delete(p.wills, id) // its clear was lost
			}
		}
	}
	w.mu.Unlock()
	if len(orphans) > 0 {
		w.publish(node, orphans, "restarted")
	}
	return nil
}

// nodeFailed publishes the wills node's clients left, if this node is the
// one to (the lowest id up); a node that left gracefully published its
// clients' wills itself.
func (w *clusterWills) nodeGone(node string, failed bool) {
	w.mu.Lock()
	p := w.peers[node]
	delete(w.peers, node)
	w.mu.Unlock()
	if p != nil && failed && len(p.wills) > 0 {
		w.publish(node, p.wills, "failed")
	}
}

// publish schedules the wills of node's clients (once their delay passed),
// if this node publishes for it.
func (w *clusterWills) publish(node string, wills map[string]heldWill, why string) {
	if !w.b.opts.Remote.Designated(node) {
		return
	}
	w.b.log.Info("publishing the wills of a node's clients", "peer", node, "reason", why, "wills", len(wills))
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return
	}
	for client, hw := range wills {
		if t := w.pending[client]; t != nil {
			t.Stop()
		}
		w.pending[client] = time.AfterFunc(hw.delay, func() {
			w.mu.Lock()
			ok := w.pending[client] != nil && !w.closed
			delete(w.pending, client)
			w.mu.Unlock()
			if !ok {
				return
			}
			msg := hw.msg
			msg.ClientID = client // stored as its client's, as on the client's node
			if _, err := w.b.Publish(context.Background(), msg); err != nil {
				w.b.log.Warn("will of a failed node's client not published", "client", client, "peer", node, "error", err)
				return
			}
			w.published.Add(1)
		})
	}
}

// reconnected cancels the pending will of a client that connected again,
// and forgets the will another node held for it: that connection is being
// taken over (a node that died before it could say so must not have the
// will published for it).
func (w *clusterWills) reconnected(client string) {
	w.mu.Lock()
	if t := w.pending[client]; t != nil {
		t.Stop()
		delete(w.pending, client)
	}
	for _, p := range w.peers {
		delete(p.wills, client)
	}
	w.mu.Unlock()
}

// Wills are what a node that joined or restarted is sent after the hello:
// the wills of the clients connected here, then the sweep that makes it
// forget those it held whose clears it missed (cluster mode).
func (b *Broker) Wills(send func(msg []byte)) {
	if b.peerWills == nil {
		return
	}
	var current []string
	for _, cl := range b.server.Clients.GetAll() {
		if m, delay, ok := willOf(cl); ok && !cl.Net.Inline && !cl.Closed() {
			send(encodeWillSet(b.peerWills.node, b.peerWills.incarnation, cl.ID, m, delay))
			current = append(current, cl.ID)
		}
	}
	if b.claims != nil {
		// Connections whose sessions are being set up: their claims may
		// have given the peer their wills before the hello arrived, and
		// their own will frames follow.
		current = append(current, b.claims.connecting()...)
	}
	send(encodeWillSweep(b.peerWills.node, b.peerWills.incarnation, current))
}

func (w *clusterWills) close() {
	w.mu.Lock()
	w.closed = true
	for id, t := range w.pending {
		t.Stop()
		delete(w.pending, id)
	}
	w.mu.Unlock()
}

// NodeGone tells the broker that another node left the cluster (failed:
// it did not leave gracefully): the wills of its clients are published.
func (b *Broker) NodeGone(node string, failed bool) {
	if b.peerWills != nil {
		b.peerWills.nodeGone(node, failed)
	}
}

// Hello is what a node that joined, or restarted, is sent so that it knows
// this broker's process (cluster mode).
func (b *Broker) Hello() []byte {
	if b.peerWills == nil {
		return nil
	}
	return b.peerWills.hello()
}

func encodeWillSet(node string, inc uint64, client string, m Message, delay time.Duration) []byte {
	b := []byte{forwardWillSet}
	b = appendStr(b, node)
	b = binary.AppendUvarint(b, inc)
	b = appendStr(b, client)
	b = binary.AppendUvarint(b, uint64(delay/time.Second))
	b = appendStr(b, m.Topic)
	b = appendStr(b, string(m.Payload))
	b = binary.AppendUvarint(b, uint64(m.QoS))
	retain := uint64(0)
	if m.Retain {
		retain = 1
	}
	b = binary.AppendUvarint(b, retain)
	b = binary.AppendUvarint(b, uint64(len(m.UserProperties)))
	for _, u := range m.UserProperties {
		b = appendStr(b, u.Key)
		b = appendStr(b, u.Value)
	}
	return b
}

func encodeWillSweep(node string, inc uint64, clients []string) []byte {
	b := []byte{forwardWillSweep}
	b = appendStr(b, node)
	b = binary.AppendUvarint(b, inc)
	b = binary.AppendUvarint(b, uint64(len(clients)))
	for _, id := range clients {
		b = appendStr(b, id)
	}
	return b
}

func encodeWillClear(node string, inc uint64, client string) []byte {
	b := []byte{forwardWillClear}
	b = appendStr(b, node)
	b = binary.AppendUvarint(b, inc)
	return appendStr(b, client)
}

// willHook tells the other nodes the wills of this node's clients.
type willHook struct {
	mochi.HookBase
	w *clusterWills
}

func (h *willHook) ID() string { return "mqstream-cluster-wills" }

func (h *willHook) Provides(b byte) bool {
	return b == mochi.OnSessionEstablished || b == mochi.OnDisconnect
}

func (h *willHook) OnSessionEstablished(cl *mochi.Client, _ packets.Packet) { h.w.established(cl) }
func (h *willHook) OnDisconnect(cl *mochi.Client, _ error, _ bool)          { h.w.disconnected(cl) }

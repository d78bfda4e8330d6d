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
// its oldest messages (cluster/routes). The repair that follows (and what
// a joining peer is sent) is a run: a mark, every current will, then a
// sweep naming the clients whose wills are current and those whose
// sessions are being set up, both frames numbered with the run. The peer
// forgets each will of that node that it received before the run's mark
// and that the sweep does not name: what it forgets is a will whose clear
// was dropped, which would otherwise be published, should the node fail
// later, for a client that left cleanly. What the sweep spares:
//   - a will received after the mark: its client connected after the
//     list was taken, or its frame was sent again in the run;
//   - a will a claim brought (claims.go), for claimedSpared after it
//     came, unless the client's own will frame replaced it: a claim goes
//     straight to each node, so it can arrive before a mark queued ahead
//     of it (later, a will whose frame and clear were both dropped is
//     swept like any other);
//   - everything, when the sweep is not of the latest run whose mark
//     arrived: a batch sent again can be applied late, after newer ones.
//
// Nodes of earlier versions send no marks or sweeps, and log those they
// receive as undecodable (once).

// Frames of will messages between nodes, after the kinds of remote.go and
// retainsync.go.
const (
	forwardWillSet   = 3 // a client's will while its connection lasts
	forwardWillClear = 4 // its connection ended
	forwardHello     = 5 // a broker process started (its incarnation)
	forwardWillSweep = 6 // the clients whose wills are current, ending a run
	forwardWillMark  = 7 // a run starts: the will frames sent from here on are current
)

// claimedSpared is how long a will a claim brought is spared by sweeps
// that do not name its client: far longer than a claim takes to be
// followed by its connection's establishment, and by the next run's list.
const claimedSpared = 30 * time.Second

// maxSweepBytes bounds a sweep frame: one larger is not sent (a will
// whose clear was dropped then stays held, as without sweeps), so that
// it cannot fill the peer's queue and start the repair again.
const maxSweepBytes = 16 << 20

// clusterWills holds the other nodes' clients' wills and publishes those of
// a node that failed.
type clusterWills struct {
	b           *Broker
	node        string
	incarnation uint64

	mu sync.Mutex // guards peers, received and pending
	// peers holds, per node, the wills of its connected clients.
	peers map[string]*peerWills
	// received counts the will frames applied: each held will and mark
	// is stamped with the count when it arrived (a sweep's reference).
	received uint64
	// runs numbers this node's runs of Wills (marks and sweeps).
	runs atomic.Uint64
	// pending holds the wills of failed nodes waiting for their delay, by
	// client id.
	pending map[string]*time.Timer
	closed  bool

	// connMu guards conns, and is held while a will frame of this node's
	// clients is queued (and for a whole run of Wills), so that those of
	// one client id go out in the order their connections' decisions
	// were taken, and a run's list is what its frames say.
	connMu sync.Mutex
	// conns holds, per client id, the connection here whose will the
	// other nodes were last told (from its establishment until it ends).
	conns map[string]sentWill

	// published counts wills published for failed nodes (tests, logs).
	published atomic.Int64
}

type peerWills struct {
	incarnation uint64
	wills       map[string]heldWill // by client id
	// markRun is the latest run whose mark arrived, and markAt when
	// (clusterWills.received) it did; 0 before any.
	markRun, markAt uint64
}

type heldWill struct {
	msg   Message
	delay time.Duration
	at    uint64 // when it arrived (clusterWills.received)
	// claimed: a claim brought it, and no will frame of its client came
	// since. No sweep forgets it for claimedSpared after it came.
	claimed bool
	came    time.Time
}

// sentWill is the connection whose will the other nodes were told, and
// the frame that told them (its will as it was then: mochi clears a
// connection's will as it ends).
type sentWill struct {
	cl    *mochi.Client
	frame []byte
	// ended: cl ended while a newer connection with its id was being set
	// up here, which decides what the other nodes are told (frame nil).
	ended bool
}

func newClusterWills(b *Broker, node string) *clusterWills {
	return &clusterWills{b: b, node: node, incarnation: rand.Uint64() | 1, peers: map[string]*peerWills{}, pending: map[string]*time.Timer{},
		conns: map[string]sentWill{}}
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

// established tells the other nodes cl's will, if it has one. One that
// has none, established while an earlier connection with its id here had
// one, clears that (its claim did where it reached).
func (w *clusterWills) established(cl *mochi.Client) {
	if cl.Net.Inline {
		return
	}
	m, delay, ok := willOf(cl)
	w.connMu.Lock()
	defer w.connMu.Unlock()
	if ok {
		frame := encodeWillSet(w.node, w.incarnation, cl.ID, m, delay)
		w.conns[cl.ID] = sentWill{cl: cl, frame: frame}
		w.b.opts.Remote.Broadcast(frame)
		return
	}
	if prev, had := w.conns[cl.ID]; had && prev.cl != cl {
		delete(w.conns, cl.ID)
		w.b.opts.Remote.Broadcast(encodeWillClear(w.node, w.incarnation, cl.ID))
	}
}

// disconnected tells the other nodes to forget cl's will, unless another
// connection with its client id here holds or claims it:
//   - a connection taken over here can end after the one that took it
//     over was established (mochi wakes it, and it runs its hooks on its
//     own goroutine): the other nodes are told that one's will again,
//     rather than a clear keyed by the client id that would remove it;
//   - a connection that failed before it was established, its claim
//     having replaced the current connection's will on every node with
//     its own, has the current one told again;
//   - a connection taken over by one still being set up sends nothing:
//     that one's claim replaced the will wherever it reached, and its
//     own will frame, or clear, follows.
func (w *clusterWills) disconnected(cl *mochi.Client) {
	if cl.Net.Inline {
		return
	}
	w.connMu.Lock()
	defer w.connMu.Unlock()
	cur, ok := w.conns[cl.ID]
	switch {
	case ok && cur.cl != cl && !cur.ended:
		w.b.opts.Remote.Broadcast(cur.frame)
	case w.b.claims != nil && w.b.claims.claimedByOther(cl):
		// Until that one is established (its will frame, or a clear)
		// or ends (a clear).
		w.conns[cl.ID] = sentWill{cl: cl, ended: true}
	default:
		delete(w.conns, cl.ID)
		w.b.opts.Remote.Broadcast(encodeWillClear(w.node, w.incarnation, cl.ID))
	}
}

// hello is what a node that joins (or restarted) is sent: this process's
// incarnation.
func (w *clusterWills) hello() []byte { return encodeHello(w.node, w.incarnation) }

func encodeHello(node string, inc uint64) []byte {
	b := []byte{forwardHello}
	b = appendStr(b, node)
	return binary.AppendUvarint(b, inc)
}

// apply takes a will frame another node sent, in its queue to this node.
func (w *clusterWills) apply(msg []byte) error { return w.applyFrame(msg, false) }

// applyClaimed takes the will frame a claim of its client brought.
func (w *clusterWills) applyClaimed(msg []byte) error { return w.applyFrame(msg, true) }

func (w *clusterWills) applyFrame(msg []byte, claimed bool) error {
	d := &stateDecoder{b: msg[1:]}
	node, inc := d.str(), d.uvarint()
	var client string
	var m Message
	var delay time.Duration
	var run uint64
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
	case forwardWillMark:
		run = d.uvarint()
	case forwardWillSweep:
		run = d.uvarint()
		n := d.uvarint()
		if n > uint64(len(d.b)) { // each id takes a byte at least
			return fmt.Errorf("%w: will sweep of %d clients", errBadForward, n)
		}
		keep = make(map[string]bool, n)
		for ; n > 0 && d.err == nil; n-- {
			keep[d.str()] = true
		}
	}
	if d.err != nil || len(d.b) != 0 || node == "" || claimed && msg[0] != forwardWillSet {
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
		hw := heldWill{msg: m, delay: delay, at: w.received, claimed: claimed}
		if claimed {
			hw.came = time.Now()
		}
		p.wills[client] = hw
	case forwardWillClear:
		delete(p.wills, client)
	case forwardWillMark:
		if run > p.markRun { // else a late copy of an earlier run's
			p.markRun, p.markAt = run, w.received
		}
	case forwardWillSweep:
		if run != p.markRun {
			break // its mark was lost, or an earlier run's batch came late
		}
		for id, hw := range p.wills {
			if hw.at < p.markAt && !keep[id] && !(hw.claimed && time.Since(hw.came) < claimedSpared) {
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

// Wills are what a node that joined or restarted is sent after the hello,
// and again after its queue to this node overflowed: a run of the wills of
// the clients connected here, which makes it forget those it held whose
// clears it missed (cluster mode).
func (b *Broker) Wills(send func(msg []byte)) {
	w := b.peerWills
	if w == nil {
		return
	}
	run := w.runs.Add(1)
	// A connection established or ended during the run has its frame
	// queued wholly before the mark or wholly after the sweep.
	w.connMu.Lock()
	defer w.connMu.Unlock()
	send(encodeWillMark(w.node, w.incarnation, run))
	current := make([]string, 0, len(w.conns))
	for id, sw := range w.conns {
		if !sw.ended {
			send(sw.frame)
			current = append(current, id)
		}
	}
	if b.claims != nil {
		// Connections whose sessions are being set up: their claims may
		// have given the peer their wills, and their own will frames
		// follow.
		current = append(current, b.claims.connecting()...)
	}
	if sweep := encodeWillSweep(w.node, w.incarnation, run, current); len(sweep) <= maxSweepBytes {
		send(sweep)
	} else {
		b.log.Warn("wills held by a peer not swept: too many clients", "clients", len(current))
	}
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

func encodeWillMark(node string, inc, run uint64) []byte {
	b := []byte{forwardWillMark}
	b = appendStr(b, node)
	b = binary.AppendUvarint(b, inc)
	return binary.AppendUvarint(b, run)
}

func encodeWillSweep(node string, inc, run uint64, clients []string) []byte {
	b := []byte{forwardWillSweep}
	b = appendStr(b, node)
	b = binary.AppendUvarint(b, inc)
	b = binary.AppendUvarint(b, run)
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

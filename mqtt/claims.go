package mqtt

import (
	"encoding/binary"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// One session per client id in a cluster.
//
// A client that connects on one node claims its client id from the others
// (Remote.Claim) before its CONNACK: a node where the id is connected
// disconnects that connection as taken over (MQTT 5 reason 0x8E). A clean
// start ends the session held there; otherwise that node hands the
// session over in its answer (what it keeps on disk for the client: the
// session, its subscriptions, its queue and in-flight messages), ends it
// there, and the claiming node installs it before mochi takes it over, so
// the client gets session present and what was queued for it. With
// mqtt.persistence off there is nothing to hand over: the session ends.
// Claims carry a hybrid-logical-clock stamp: when two nodes claim
// one id at once, the newer claim wins on every node, the older
// connection is disconnected as taken over once established, and exactly
// one connection remains. A node that cannot be reached within the claim
// timeout is skipped (logged): during a partition a client id can be
// connected on both sides.

// claimTimeout bounds how long a CONNECT waits for the other nodes;
// goneTimeout how long a node waits for a connection it disconnected to
// close before it ends or hands over its session.
const (
	claimTimeout = 3 * time.Second
	goneTimeout  = time.Second
)

// claimHook claims client ids from the other nodes and answers their
// claims.
type claimHook struct {
	mochi.HookBase
	b      *Broker
	remote Remote
	node   string

	// mu guards claims, byConn, clock, recent, older, granted,
	// grantedOlder, rotated, moves and answering.
	mu sync.Mutex
	// claims holds, per client id, the claim of its connection here (from
	// OnSessionEstablish until it disconnects or a newer claim wins).
	claims map[string]*claim
	// byConn finds a connection's claim (also after a newer one won).
	byConn map[*mochi.Client]*claim
	clock  uint64
	// recent and older hold the newest claim stamp made here or granted
	// here per client id, over the last recentClaims at least (recent
	// since rotated, older the period before): a session handed over
	// that is older than one of them is refused (sessionhandover.go).
	recent, older map[string]rversion
	// granted and grantedOlder hold the same for claims of other nodes
	// only.
	granted, grantedOlder map[string]rversion
	rotated               time.Time
	// moves holds the client ids whose sessions are being handed over
	// from or to this node, each with a channel closed when that ends.
	moves map[string]chan struct{}
	// answering counts, per client id, the claims of other nodes being
	// answered here (lostclaim.go).
	answering map[string]*idAnswers
}

// recentClaims is how long claims are remembered at least, for sessions
// handed over meanwhile.
const recentClaims = time.Minute

type claim struct {
	stamp rversion
	conn  *mochi.Client
	// established: the connection got its CONNACK; lost: a newer claim
	// won, so it is to be disconnected (at once, or once established).
	established, lost bool
}

func newClaimHook(b *Broker, remote Remote, node string) *claimHook {
	return &claimHook{b: b, remote: remote, node: node, claims: map[string]*claim{}, byConn: map[*mochi.Client]*claim{},
		recent: map[string]rversion{}, older: map[string]rversion{}, granted: map[string]rversion{}, grantedOlder: map[string]rversion{},
		rotated: time.Now(), moves: map[string]chan struct{}{},
		answering: map[string]*idAnswers{}}
}

// connecting returns the client ids whose sessions are being set up here:
// claimed, not yet established.
func (h *claimHook) connecting() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	var ids []string
	for id, c := range h.claims {
		if !c.established {
			ids = append(ids, id)
		}
	}
	return ids
}

// claimedByOther reports whether another connection with cl's client id
// is being set up here, its claim not lost.
func (h *claimHook) claimedByOther(cl *mochi.Client) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	c := h.claims[cl.ID]
	return c != nil && c.conn != cl && !c.lost && !c.established
}

// newerSeen reports whether a claim of client id newer than stamp was
// made or granted here lately.
func (h *claimHook) newerSeen(id string, stamp rversion) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	c := h.claims[id]
	return h.recent[id].newer(stamp) || h.older[id].newer(stamp) || c != nil && c.stamp.newer(stamp)
}

// newerGranted reports whether a claim of client id newer than stamp was
// granted here lately to another node.
func (h *claimHook) newerGranted(id string, stamp rversion) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.granted[id].newer(stamp) || h.grantedOlder[id].newer(stamp)
}

// noteClaimLocked remembers a claim of client id made here or (other)
// granted here. h.mu is held.
func (h *claimHook) noteClaimLocked(id string, v rversion, other bool) {
	if now := time.Now(); now.Sub(h.rotated) > recentClaims {
		h.older, h.recent, h.rotated = h.recent, map[string]rversion{}, now
		h.grantedOlder, h.granted = h.granted, map[string]rversion{}
	}
	if v.newer(h.recent[id]) {
		h.recent[id] = v
	}
	if other && v.newer(h.granted[id]) {
		h.granted[id] = v
	}
}

// moving marks client id's session, of claim stamp v, as moving to or
// from this node: claims of the id wait (at most handOverCallTimeout)
// until done is called. It refuses (ok false) when a claim of the client
// newer than v was made or granted here lately: the session is that
// claim's. The check and the mark are one step, so a claim is either seen
// by it or waits for the move.
func (h *claimHook) moving(id string, v rversion) (done func(), ok bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.recent[id].newer(v) || h.older[id].newer(v) {
		return nil, false
	}
	return h.moveLocked(id), true
}

// moveLocked marks client id's session as moving. h.mu is held.
func (h *claimHook) moveLocked(id string) (done func()) {
	ch := make(chan struct{})
	h.moves[id] = ch
	return func() {
		h.mu.Lock()
		if h.moves[id] == ch {
			delete(h.moves, id)
		}
		h.mu.Unlock()
		close(ch)
	}
}

// noteClaim remembers another node's claim of client id at stamp v, then
// waits until a move of the id's session under way ends (or
// handOverCallTimeout passed).
func (h *claimHook) noteClaim(id string, v rversion) {
	h.mu.Lock()
	h.noteClaimLocked(id, v, true)
	ch := h.moves[id]
	h.mu.Unlock()
	if ch != nil {
		select {
		case <-ch:
		case <-time.After(handOverCallTimeout):
		}
	}
}

func (h *claimHook) ID() string { return "mqstream-claims" }

func (h *claimHook) Provides(b byte) bool {
	return b == mochi.OnSessionEstablish || b == mochi.OnSessionEstablished || b == mochi.OnDisconnect
}

// OnSessionEstablish claims cl's id from the other nodes (after the client
// authenticated, before its session is set up and its CONNACK sent) and
// installs the session one of them handed over.
func (h *claimHook) OnSessionEstablish(cl *mochi.Client, pk packets.Packet) {
	if cl.Net.Inline {
		return
	}
	h.b.peerWills.reconnected(cl.ID) // a failed node's will for it is void
	h.mu.Lock()
	h.clock = max(uint64(time.Now().UnixNano()), h.clock+1)
	c := &claim{stamp: rversion{ts: h.clock, node: h.node}, conn: cl}
	if old := h.claims[cl.ID]; old != nil {
		delete(h.byConn, old.conn) // taken over here, by mochi
	}
	h.claims[cl.ID], h.byConn[cl] = c, c
	h.noteClaimLocked(cl.ID, c.stamp, false)
	h.mu.Unlock()

	refused := false
	var session []byte
	var from string   // the node that handed session over
	var gave []string // every node that handed a copy over
	var will []byte
	if m, delay, ok := willOf(cl); ok {
		will = encodeWillSet(h.b.peerWills.node, h.b.peerWills.incarnation, cl.ID, m, delay)
	}
	nodes, answers := h.remote.Claim(encodeClaim(cl.ID, c.stamp, pk.Connect.Clean, will), claimTimeout)
	for i, answer := range answers {
		switch {
		case len(answer) == 1 && answer[0] == claimRefused:
			refused = true
		case len(answer) > 1 && answer[0] == claimGranted:
			gave = append(gave, nodes[i])
			if session != nil {
				// Two nodes kept a copy (one restored by a node that
				// was down while the client moved on): the newer.
				if movedStamp(cl.ID, answer[1:]).newer(movedStamp(cl.ID, session)) {
					session, from = answer[1:], nodes[i]
				}
				h.b.log.Info("two nodes handed over a session for one client; the newer is kept", "client", cl.ID)
				continue
			}
			session, from = answer[1:], nodes[i]
		}
	}
	h.mu.Lock()
	if refused {
		c.lost = true
		if h.claims[cl.ID] == c {
			delete(h.claims, cl.ID)
		}
	}
	lost := c.lost // refused, or a newer claim won meanwhile
	h.mu.Unlock()
	if refused {
		// mochi takes the session kept here, if any, over for it all the
		// same (lostclaim.go).
		cur, kept := h.b.server.Clients.Get(cl.ID)
		h.b.departing.markLost(cl.ID, cl, kept && cur != cl && !pk.Connect.Clean)
	}
	switch {
	case session != nil && lost:
		// Two connections with this id at once on two nodes, a third
		// node handed its session to the one that lost: it is dropped
		// (docs/operations.md).
		h.b.log.Warn("a session handed over by another node is dropped: a newer connection with this client id won", "client", cl.ID)
	case session != nil:
		if h.b.importSession(cl.ID, session) != nil { // logged
			from = ""
		}
	}
	// Every node that handed a copy over keeps it until the move is
	// settled: the copy installed here gets what was queued meanwhile,
	// the others are ended. A connection that lost settles nothing: the
	// newer one may be on a node that handed a copy over, and take the
	// session over there (a copy not taken ends after settleTimeout).
	if lost {
		gave = nil
	}
	for _, node := range gave {
		if node == from {
			h.b.settleMove(cl.ID, node, c.stamp, true)
		} else {
			go h.b.settleMove(cl.ID, node, c.stamp, false) // the CONNACK need not wait
		}
	}
	if !lost && h.b.state != nil {
		// The session this connection holds from now on is of its claim.
		h.b.state.setStamp(cl.ID, c.stamp)
	}
}

// OnSessionEstablished disconnects a connection whose claim lost while it
// was being established.
func (h *claimHook) OnSessionEstablished(cl *mochi.Client, _ packets.Packet) {
	h.mu.Lock()
	c := h.byConn[cl]
	lost := c != nil && c.lost
	var stamp rversion
	if c != nil {
		c.established = true
		stamp = c.stamp
	}
	h.mu.Unlock()
	if lost {
		h.b.log.Info("client connected on another node at the same time; this connection is taken over", "client", cl.ID)
		unblockWrites(cl)
		_ = h.b.server.DisconnectClient(cl, packets.ErrSessionTakenOver)
		go h.b.afterLostClaim(cl, stamp)
	}
}

func (h *claimHook) OnDisconnect(cl *mochi.Client, _ error, _ bool) { h.forget(cl) }

// forget drops the claim of connection cl, which ended; lost reports
// whether a newer claim had won over it (at stamp).
func (h *claimHook) forget(cl *mochi.Client) (lost bool, stamp rversion) {
	h.mu.Lock()
	defer h.mu.Unlock()
	c := h.byConn[cl]
	if c == nil {
		return false, rversion{}
	}
	delete(h.byConn, cl)
	if h.claims[cl.ID] == c {
		delete(h.claims, cl.ID)
	}
	return c.lost, c.stamp
}

// Answers to a claim.
const (
	claimGranted byte = 0
	claimRefused byte = 1 // the id connected here after the claim's stamp
)

// HandleClaim answers another node's claim of a client id (cluster mode):
// granted, after disconnecting the id's connection here as taken over and
// ending its session here; refused when the id connected here later than
// the claim.
func (b *Broker) HandleClaim(req []byte) ([]byte, error) {
	h := b.claims
	if h == nil {
		return nil, fmt.Errorf("mqtt: claims need cluster mode")
	}
	id, stamp, clean, will, err := decodeClaim(req)
	if err != nil {
		return nil, err
	}
	<-b.restored // the sessions kept on disk are back (or the broker closed)
	// A stopping node waits for this answer before it stops keeping the
	// sessions it hands out (departures.close); a connection here whose
	// claim lost waits for it before it settles what it leaves.
	defer b.departing.answer()()
	defer h.answer(id)()
	// A claim older than one seen here (two connections with the id at
	// once on two nodes; the older lost) must not replace the newer's
	// will, nor remove it.
	if !h.newerSeen(id, stamp) {
		b.peerWills.reconnected(id)
		if will != nil {
			// Known here before the client's CONNACK: if its node dies
			// the moment after, its will is still published.
			if err := b.peerWills.applyClaimed(will); err != nil {
				return nil, err
			}
		}
	}
	// A session of the id being handed over from this node (it is
	// stopping) is either taken by the other node, which then answers
	// this claim with it, or kept here for this answer; one being handed
	// over to this node is installed first, then handed on in this
	// answer. (Noted first: a hand-over to this node that starts after
	// this is refused.)
	h.noteClaim(id, stamp)
	h.mu.Lock()
	h.clock = max(h.clock, stamp.ts)
	c := h.claims[id]
	if c != nil && c.stamp.newer(stamp) {
		h.mu.Unlock()
		return []byte{claimRefused}, nil
	}
	var conn, losing *mochi.Client
	if c != nil {
		c.lost = true
		delete(h.claims, id)
		if c.established {
			conn = c.conn
		} else {
			losing = c.conn
		}
	}
	h.mu.Unlock()
	if losing != nil {
		// It is disconnected once established, and may take the session
		// kept here over before that (lostclaim.go).
		b.departing.markLost(id, losing, false)
	}
	if conn != nil {
		// A client that stopped reading must not hold the DISCONNECT up.
		unblockWrites(conn)
		_ = b.server.DisconnectClient(conn, packets.ErrSessionTakenOver)
	}
	if d := b.departing.get(id); clean && d != nil {
		if d.newerThan(stamp) {
			// It went to a newer claim a moment ago, unsettled: this
			// older clean start loses there, and ends nothing here.
			return []byte{claimGranted}, nil
		}
		// It went to another node a moment ago, unsettled: a clean start
		// ends every copy.
		_, _ = b.finishDeparture(id, d, false, 0)
	}
	// A session handed over to another node's claim, unsettled, is handed
	// over again (holdSession replaces the departure, and the newer of the
	// two claims may settle it): that node may not have installed its copy
	// yet (it waits for every node's answer before it does), and if it
	// has, its copy lacks what was queued here since.
	if clean {
		return append([]byte{claimGranted}, b.releaseSession(id, false)...), nil
	}
	return append([]byte{claimGranted}, b.holdSession(id, stamp)...), nil
}

// releaseSession ends the session client id holds on this node, if any,
// once its connection is gone: its subscriptions, queue and state, as if
// it had expired. With export, it returns what was kept on disk for it
// first (exportSession; nil: nothing).
func (b *Broker) releaseSession(id string, export bool) []byte {
	cl := b.goneClient(id)
	if cl == nil {
		return nil
	}
	b.detachRoutes(cl)
	var out []byte
	if export && b.state != nil && b.state.owner(id) == cl {
		b.state.wait() // its queue on disk
		out, _ = b.exportSession(id)
	}
	b.dropClient(cl)
	return out
}

// goneClient returns the client id holds here, once its connection is
// gone (nil: none, or a newer connection here took it over meanwhile).
func (b *Broker) goneClient(id string) *mochi.Client {
	cl, ok := b.server.Clients.Get(id)
	if !ok || cl.Net.Inline {
		return nil
	}
	if c := b.takeover.connection(cl); c != nil {
		select {
		case <-c.gone:
		case <-time.After(goneTimeout):
			b.log.Warn("a connection taken over by another node did not close in time; its session is ended anyway", "client", id)
		}
	}
	if cur, ok := b.server.Clients.Get(id); !ok || cur != cl {
		return nil
	}
	return cl
}

// detachRoutes takes cl out of the topic index, so nothing more is queued
// for it, and tells the other nodes; its subscriptions stay in the session
// (and on disk) to be handed over.
func (b *Broker) detachRoutes(cl *mochi.Client) {
	for filter := range cl.State.Subscriptions.GetAll() {
		if b.server.Topics.Unsubscribe(filter, cl.ID) {
			atomic.AddInt64(&b.server.Info.Subscriptions, -1)
		}
		b.sel.routes.remove(filter, cl.ID)
	}
	if b.opts.Remote != nil {
		b.opts.Remote.SetClient(cl.ID, nil)
	}
}

// dropClient ends cl's session here: the client, its queue and what is
// kept on disk for it.
func (b *Broker) dropClient(cl *mochi.Client) {
	b.server.Clients.Delete(cl.ID)
	b.delivery.OnClientExpired(cl) // unsubscribes it for good too
	b.ingest.OnClientExpired(cl)
	if b.state != nil {
		b.state.endSession(cl.ID, cl)
	}
}

const claimVersion1 = 1

// encodeClaim frames a claim of client id at stamp v; will, if not nil, is
// the client's will as a will frame (clusterwills.go), so that every node
// knows it before the client gets its CONNACK.
func encodeClaim(id string, v rversion, clean bool, will []byte) []byte {
	b := []byte{claimVersion1, 0}
	if clean {
		b[1] = 1
	}
	b = binary.AppendUvarint(b, v.ts)
	b = appendStr(b, v.node)
	b = appendStr(b, id)
	return append(b, will...)
}

func decodeClaim(b []byte) (id string, v rversion, clean bool, will []byte, err error) {
	if len(b) < 2 || b[0] != claimVersion1 || b[1] > 1 {
		return "", rversion{}, false, nil, fmt.Errorf("%w: claim header", errBadForward)
	}
	clean = b[1] == 1
	d := &stateDecoder{b: b[2:]}
	v.ts = d.uvarint()
	v.node = d.str()
	id = d.str()
	if d.err != nil || id == "" {
		return "", rversion{}, false, nil, fmt.Errorf("%w: claim body", errBadForward)
	}
	if len(d.b) > 0 {
		will = d.b
		if will[0] != forwardWillSet {
			return "", rversion{}, false, nil, fmt.Errorf("%w: claim will", errBadForward)
		}
	}
	return id, v, clean, will, nil
}

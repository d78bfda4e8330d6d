package mqtt

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"sync"
	"time"

	mochi "github.com/mochi-mqtt/server/v2"
)

// Moving a session without losing what is published meanwhile.
//
// A node that hands a persistent session over in its answer to a claim
// (claims.go) does not end it at once: it keeps it, subscribed, so that
// messages go on being queued for the client here, until the claiming
// node has installed its copy and the other nodes route the client's
// messages there (the copy's filters reach them before the claiming node
// goes on). The claiming node then settles the move (Remote.Settle): this
// node takes the client out of its topic index, ends the session and
// answers with what was queued for it since the copy (the delta), which
// the claiming node queues after the rest. Without a settle (the claiming
// node died, or is of an earlier version) the session ends here after
// settleTimeout, as it did before, and what was queued meanwhile is lost.
// A message published in the moment of the move can reach the client
// twice (queued on both nodes), or after one published later.

// EndMoves ends the wait for settles at once (a node that stops without
// handing its sessions over): sessions handed over and not settled stay
// on disk, and the newer copy elsewhere wins.
func (b *Broker) EndMoves() { b.departing.close(0) }

// settleTimeout bounds how long a node keeps a session it handed over
// while waiting for the claiming node to settle the move.
const settleTimeout = 10 * time.Second

// barrierTimeout bounds how long a settle waits for what other nodes
// queued here for the client to arrive.
const barrierTimeout = 2 * time.Second

// departure is a session handed over and kept here until its move is
// settled.
type departure struct {
	// cl is the client whose session ends with the move. Guarded by
	// departures.mu while the departure is in departures.m (follow).
	cl    *mochi.Client
	stamp rversion // the claim it went to
	last  uint64   // the key of the last queued delivery handed over
	timer *time.Timer
	// prev is the claim and last of the departure this one replaced
	// (handed over again to another claim before it was settled): that
	// claim may still settle if it is the newer (HandleSettle refuses a
	// settle of a claim older than one seen since).
	prev *departure
}

// newerThan reports whether d (or the one it replaced) went to a claim
// newer than stamp.
func (d *departure) newerThan(stamp rversion) bool {
	return d.stamp.newer(stamp) || d.prev != nil && d.prev.stamp.newer(stamp)
}

// settledBy returns the key of the last queued delivery handed over to
// the claim at stamp, and whether d (or the one it replaced) went to it.
func (d *departure) settledBy(stamp rversion) (last uint64, ok bool) {
	switch {
	case d.stamp == stamp:
		return d.last, true
	case d.prev != nil && d.prev.stamp == stamp:
		return d.prev.last, true
	}
	return 0, false
}

// departures are the sessions handed over and not settled yet.
type departures struct {
	mu     sync.Mutex // guards m, answering, handed and closed
	m      map[string]*departure
	closed bool
	// answering counts the claims and settles being answered here: a
	// claim may yet add a departure, and a settle has taken its departure
	// out before its barrier and delta, so close waits for them (a
	// stopping node that closed its departures first ended the session at
	// once, and what other nodes routed here until the claiming node's
	// filters were known was lost).
	answering int
	// handed holds the clients whose sessions a stopping node handed
	// over (taken by another node) and is still ending here: a claim
	// must not hand this copy out too.
	handed map[string]*mochi.Client
	// imported holds, per client id, the stamp of the session a stopping
	// node handed over to this one, until its rest arrives (or about a
	// minute passed): the rest goes into the client's session here even
	// when the client connected here and took the session over since.
	imported map[string]importedCopy
	pruned   time.Time
	// lost holds, per client id, a connection here whose claim lost while
	// it was being established, until what it leaves is settled
	// (lostclaim.go).
	lost map[string]lostConn
}

type importedCopy struct {
	stamp rversion
	at    time.Time
}

// noteImport remembers that a session of client id at stamp was handed
// over to this node.
func (ds *departures) noteImport(id string, stamp rversion) {
	ds.mu.Lock()
	defer ds.mu.Unlock()
	now := time.Now()
	if ds.imported == nil {
		ds.imported = map[string]importedCopy{}
	}
	if now.Sub(ds.pruned) > recentClaims {
		for k, c := range ds.imported {
			if now.Sub(c.at) > recentClaims {
				delete(ds.imported, k)
			}
		}
		ds.pruned = now
	}
	ds.imported[id] = importedCopy{stamp: stamp, at: now}
}

// takeImport reports (once) whether the session of client id handed over
// here was at stamp.
func (ds *departures) takeImport(id string, stamp rversion) bool {
	ds.mu.Lock()
	defer ds.mu.Unlock()
	c, ok := ds.imported[id]
	if !ok || c.stamp != stamp {
		return false
	}
	delete(ds.imported, id)
	return true
}

// hand records that cl's session was taken by another node (done: it
// ended here).
func (ds *departures) hand(id string, cl *mochi.Client) (done func()) {
	ds.mu.Lock()
	defer ds.mu.Unlock()
	if ds.handed == nil {
		ds.handed = map[string]*mochi.Client{}
	}
	ds.handed[id] = cl
	return func() {
		ds.mu.Lock()
		defer ds.mu.Unlock()
		if ds.handed[id] == cl {
			delete(ds.handed, id)
		}
	}
}

// isHanded reports whether cl's session was taken by another node.
func (ds *departures) isHanded(id string, cl *mochi.Client) bool {
	ds.mu.Lock()
	defer ds.mu.Unlock()
	return ds.handed[id] == cl
}

func (ds *departures) get(id string) *departure {
	ds.mu.Lock()
	defer ds.mu.Unlock()
	return ds.m[id]
}

// answer counts a claim being answered until end is called.
func (ds *departures) answer() (end func()) {
	ds.mu.Lock()
	defer ds.mu.Unlock()
	ds.answering++
	return func() {
		ds.mu.Lock()
		defer ds.mu.Unlock()
		ds.answering--
	}
}

// add records d unless the broker closed; it reports whether it did.
func (ds *departures) add(id string, d *departure) bool {
	ds.mu.Lock()
	defer ds.mu.Unlock()
	if ds.closed {
		return false
	}
	if ds.m == nil {
		ds.m = map[string]*departure{}
	}
	if old := ds.m[id]; old != nil {
		old.timer.Stop() // handed over again, to another claim
		// Of the claims it went to, only the newest may settle it.
		d.prev = &departure{stamp: old.stamp, last: old.last}
		if old.prev != nil && old.prev.stamp.newer(old.stamp) {
			d.prev = old.prev
		}
	}
	ds.m[id] = d
	return true
}

// take removes d, reporting whether it was there (a move ends once), and
// returns the client whose session ends with it (followLost may change
// that).
func (ds *departures) take(id string, d *departure) (cl *mochi.Client, ok bool) {
	ds.mu.Lock()
	defer ds.mu.Unlock()
	if ds.m[id] != d {
		return nil, false
	}
	delete(ds.m, id)
	d.timer.Stop()
	return d.cl, true
}

// close waits up to timeout for the claims being answered and the moves
// under way to be settled, then stops the timers of the others: those
// sessions stay on disk (a restarted node restores them; the newer copy
// elsewhere wins).
func (ds *departures) close(timeout time.Duration) {
	for deadline := time.Now().Add(timeout); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		ds.mu.Lock()
		n := len(ds.m) + ds.answering
		ds.mu.Unlock()
		if n == 0 {
			break
		}
	}
	ds.mu.Lock()
	defer ds.mu.Unlock()
	ds.closed = true
	for id, d := range ds.m {
		d.timer.Stop()
		delete(ds.m, id)
	}
}

// holdSession is releaseSession with export for a claim at stamp: it
// returns the session and keeps it here until the move is settled.
func (b *Broker) holdSession(id string, stamp rversion) []byte {
	cl := b.goneClient(id)
	if cl == nil || b.departing.isHanded(id, cl) {
		return nil // the node that took it answers the claim
	}
	var out []byte
	var last uint64
	if b.state != nil && b.state.owner(id) == cl {
		b.state.wait() // its queue on disk
		out, last = b.exportSession(id)
	}
	if out == nil {
		b.detachRoutes(cl)
		b.dropClient(cl)
		return nil
	}
	d := &departure{cl: cl, stamp: stamp, last: last}
	d.timer = time.AfterFunc(settleTimeout, func() {
		if ended, _ := b.finishDeparture(id, d, false, 0); ended {
			b.log.Warn("a session handed over to another node was not settled in time: ended here, without what was queued for it since", "client", id, "node", stamp.node)
		}
	})
	if !b.departing.add(id, d) {
		// The node is leaving (HandOverSessions ended): ended at once.
		d.timer.Stop()
		b.detachRoutes(cl)
		b.dropClient(cl)
	}
	return out
}

// finishDeparture ends a session handed over (once): with delta, it
// returns what was queued for it since (encoded as a handed-over
// session's pairs; nil: nothing); ended reports whether this call ended it.
func (b *Broker) finishDeparture(id string, d *departure, delta bool, last uint64) (ended bool, out []byte) {
	cl, ok := b.departing.take(id, d)
	if !ok {
		return false, nil
	}
	cl = b.followLost(id, cl)
	if cur, ok := b.server.Clients.Get(id); !ok || cur != cl {
		return true, nil // ended meanwhile
	}
	if delta {
		// The other nodes route the client's messages to its new node
		// now; those they routed here before are queued here first.
		b.opts.Remote.Barrier(barrierTimeout)
		cl = b.followLost(id, cl)
		if cur, ok := b.server.Clients.Get(id); !ok || cur != cl {
			return true, nil // taken over here meanwhile (a reconnect)
		}
	}
	b.detachRoutes(cl)
	if delta && b.state.owner(id) == cl {
		b.routing.wait() // messages routed to it before are queued
		b.state.wait()
		out = b.exportQueueAfter(id, last)
	}
	b.dropClient(cl)
	return true, out
}

// exportQueueAfter encodes client id's queued deliveries after key last,
// as exportSession does (nil: none).
func (b *Broker) exportQueueAfter(id string, last uint64) []byte {
	var pairs []byte
	n, size := 0, 0
	err := b.state.kv.Scan(clientKey(keyQueue, id, 0), func(k, v []byte) error {
		if _, seq, ok := splitSeqKey(k); !ok || seq <= last || size+len(k)+len(v) > maxSessionMove {
			return nil
		}
		pairs = appendPair(pairs, k, v)
		n++
		size += len(k) + len(v)
		return nil
	})
	if err != nil {
		b.log.Warn("reading what was queued for a session handed over failed", "client", id, "error", err)
		return nil
	}
	if n == 0 {
		return nil
	}
	return append(binary.AppendUvarint(nil, uint64(n)), pairs...)
}

// Settle frames: the end of a move the claiming node asks for
// (settleVersion1), and the rest of a session a stopping node handed over
// (restVersion1: what was queued for it between its export and the end
// of it there).
const (
	settleVersion1 = 1
	restVersion1   = 2
)

func encodeSettle(id string, stamp rversion) []byte {
	b := binary.AppendUvarint([]byte{settleVersion1}, stamp.ts)
	b = appendStr(b, stamp.node)
	return appendStr(b, id)
}

// encodeRest frames the rest of client id's session of claim stamp stamp
// (pairs as exportQueueAfter encodes them).
func encodeRest(id string, stamp rversion, pairs []byte) []byte {
	b := binary.AppendUvarint([]byte{restVersion1}, stamp.ts)
	b = appendStr(b, stamp.node)
	b = appendStr(b, id)
	return append(b, pairs...)
}

// decodeSettle reads a settle frame of either kind (rest: pairs follow).
func decodeSettle(b []byte) (id string, stamp rversion, rest []byte, err error) {
	if len(b) < 1 || (b[0] != settleVersion1 && b[0] != restVersion1) {
		return "", rversion{}, nil, fmt.Errorf("%w: settle header", errBadForward)
	}
	d := &stateDecoder{b: b[1:]}
	stamp.ts = d.uvarint()
	stamp.node = d.str()
	id = d.str()
	if d.err != nil || id == "" || (b[0] == settleVersion1) != (len(d.b) == 0) {
		return "", rversion{}, nil, fmt.Errorf("%w: settle body", errBadForward)
	}
	if b[0] == settleVersion1 {
		return id, stamp, nil, nil
	}
	if _, err := decodeSessionMove(id, d.b); err != nil {
		return "", rversion{}, nil, err
	}
	return id, stamp, d.b, nil
}

// HandleSettle ends the move of a session this node handed over in its
// answer to the claim at the request's stamp, and answers with what was
// queued for the client since (empty: nothing, or the move ended already);
// or it queues the rest of a session a stopping node handed over here.
func (b *Broker) HandleSettle(req []byte) ([]byte, error) {
	id, stamp, rest, err := decodeSettle(req)
	if err != nil {
		return nil, err
	}
	if rest != nil {
		if b.state != nil && b.departing.takeImport(id, stamp) {
			b.queueMoved(id, "", rest)
		}
		return nil, nil
	}
	// A stopping node waits for the answer (departures.close): the
	// departure is taken out below, long before the barrier is through
	// and the delta read. So does a connection here whose claim lost
	// before it settles what it leaves (lostclaim.go).
	defer b.departing.answer()()
	if b.claims != nil {
		defer b.claims.answer(id)()
	}
	d := b.departing.get(id)
	if d == nil {
		return nil, nil
	}
	last, ok := d.settledBy(stamp)
	if !ok {
		return nil, nil
	}
	if b.claims != nil && b.claims.newerSeen(id, stamp) {
		// A newer connection with the id claimed it here since: the
		// claiming node's connection lost, and dropped its copy (a node
		// of an earlier version settles all the same). The session is
		// kept for the newer connection, which takes it over here (else
		// it ends after settleTimeout).
		return nil, nil
	}
	_, out := b.finishDeparture(id, d, true, last)
	return out, nil
}

// settleMove settles the move of client id's session, handed over by
// node for the claim at stamp; with installed (the copy installed here),
// it queues what was queued for the client there meanwhile.
func (b *Broker) settleMove(id, node string, stamp rversion, installed bool) {
	answer, err := b.opts.Remote.Settle(node, encodeSettle(id, stamp), claimTimeout)
	if err != nil {
		b.log.Info("the node that handed a session over did not settle its move: what was queued for the client there meanwhile is not sent",
			"client", id, "node", node, "error", err)
		return
	}
	if len(answer) == 0 || !installed {
		return
	}
	b.queueMoved(id, node, answer)
}

// queueMoved queues for client id's session here the deliveries among
// pairs (as exportQueueAfter encodes them), what was queued for it on
// node, which handed it over, meanwhile.
func (b *Broker) queueMoved(id, node string, pairs []byte) {
	writes, err := decodeSessionMove(id, pairs)
	if err != nil {
		b.log.Warn("what was queued for a session on the node that handed it over does not decode; dropped", "client", id, "node", node, "error", err)
		return
	}
	v, ok := b.delivery.out.sessions.Load(id)
	if !ok {
		return
	}
	s := v.(*session)
	prefix := clientKey(keyQueue, id, 0)
	n := 0
	for _, w := range writes {
		if !bytes.HasPrefix(w.Key, prefix) {
			continue
		}
		d, err := decodeDelivery(w.Value)
		if err != nil {
			continue
		}
		s.enqueue(d)
		n++
	}
	b.state.wait()
	b.log.Debug("queued what was queued for a moved session on its old node meanwhile", "client", id, "node", node, "messages", n)
}

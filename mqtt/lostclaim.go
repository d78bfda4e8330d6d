package mqtt

import (
	"time"

	mochi "github.com/mochi-mqtt/server/v2"
)

// A connection here whose claim lost.
//
// Two connections with one client id at once, one of them here on the
// node that keeps the id's session, the other's claim newer: the
// connection here learns that it lost (the other node refused its claim,
// or the other claim reached this node first), yet mochi takes the session
// kept here over for it before its CONNACK, and it is disconnected as
// taken over once established. The session is the winner's, so what the
// connection here leaves is settled by the winning claim:
//   - answered here with the session (a departure): the move's settle ends
//     it here once the winner's node has it, with what was queued meanwhile,
//     also when the connection here took it over after the answer (the
//     departure follows it: a settle waits until that connection is gone,
//     and the connection waits for the settles under way);
//   - not here yet: a session this node kept is kept, and that claim
//     takes it;
//   - answered here without one (a clean start, or none was kept), or the
//     session is one the connection here started: it is ended, so it is
//     not kept (and routed to) beside the winner's.
//
// Ending it at once instead, as before, lost the session to the winner's
// claim arriving a moment later, or what was queued for it meanwhile.

// idAnswers counts the claims of one client id being answered here.
type idAnswers struct {
	n    int
	done chan struct{} // closed when n drops to 0
}

// answer counts a claim of client id being answered here until end is
// called.
func (h *claimHook) answer(id string) (end func()) {
	h.mu.Lock()
	defer h.mu.Unlock()
	a := h.answering[id]
	if a == nil {
		a = &idAnswers{done: make(chan struct{})}
		h.answering[id] = a
	}
	a.n++
	return func() {
		h.mu.Lock()
		defer h.mu.Unlock()
		if a.n--; a.n == 0 {
			delete(h.answering, id)
			close(a.done)
		}
	}
}

// answered returns a channel closed once no claim of client id is being
// answered here (nil: none is).
func (h *claimHook) answered(id string) <-chan struct{} {
	h.mu.Lock()
	defer h.mu.Unlock()
	if a := h.answering[id]; a != nil {
		return a.done
	}
	return nil
}

// lostConn is a connection here whose claim lost; kept: it resumes a
// session this node kept (not one it starts).
type lostConn struct {
	cl   *mochi.Client
	kept bool
}

// markLost records that connection cl, whose claim of client id lost, may
// take the session kept here over before it is disconnected.
func (ds *departures) markLost(id string, cl *mochi.Client, kept bool) {
	ds.mu.Lock()
	defer ds.mu.Unlock()
	if ds.lost == nil {
		ds.lost = map[string]lostConn{}
	}
	ds.lost[id] = lostConn{cl: cl, kept: kept}
}

// lostConnection returns the connection marked for client id (nil: none).
func (ds *departures) lostConnection(id string) *mochi.Client {
	ds.mu.Lock()
	defer ds.mu.Unlock()
	return ds.lost[id].cl
}

// takeLost takes the mark of connection cl (once), reporting whether it
// was there.
func (ds *departures) takeLost(id string, cl *mochi.Client) bool {
	ds.mu.Lock()
	defer ds.mu.Unlock()
	if l, ok := ds.lost[id]; !ok || l.cl != cl {
		return false
	}
	delete(ds.lost, id)
	return true
}

// settleLost takes the mark of connection cl (once; marked false: a
// settle took it, or a newer connection whose claim lost replaced it) and
// makes the departure of client id, if any, end cl's session; handed
// reports whether there was one.
func (ds *departures) settleLost(id string, cl *mochi.Client) (marked, kept, handed bool) {
	ds.mu.Lock()
	defer ds.mu.Unlock()
	l, ok := ds.lost[id]
	if !ok || l.cl != cl {
		return false, false, false
	}
	delete(ds.lost, id)
	if d := ds.m[id]; d != nil {
		d.cl = cl
		return true, l.kept, true
	}
	return true, l.kept, false
}

// followLost returns the client whose session a departure of client id
// taken out with client cl ends: cl, or the connection here whose claim
// lost, once it is gone, if it took the session over.
func (b *Broker) followLost(id string, cl *mochi.Client) *mochi.Client {
	lc := b.departing.lostConnection(id)
	if lc == nil || lc == cl {
		return cl
	}
	if c := b.takeover.connection(lc); c != nil {
		// Still claiming, or disconnected as taken over once
		// established; mochi takes the session over for it before that.
		select {
		case <-c.gone:
		case <-time.After(claimTimeout):
		}
	}
	if cur, ok := b.server.Clients.Get(id); ok && cur == lc && b.departing.takeLost(id, lc) {
		return lc
	}
	return cl
}

// afterLostClaim settles what connection cl, disconnected because its
// claim at stamp lost while it was being established, leaves here: once
// the claims and settles of its client id being answered here are
// answered (at most claimTimeout).
func (b *Broker) afterLostClaim(cl *mochi.Client, stamp rversion) {
	h := b.claims
	deadline := time.NewTimer(claimTimeout)
	defer deadline.Stop()
wait:
	for ch := h.answered(cl.ID); ch != nil; ch = h.answered(cl.ID) {
		select {
		case <-ch:
		case <-deadline.C:
			break wait
		}
	}
	marked, kept, handed := b.departing.settleLost(cl.ID, cl)
	if !marked || handed || kept && !h.newerGranted(cl.ID, stamp) {
		// A newer connection here, if any, takes a kept session over.
		return
	}
	if endsWithConnection(cl) {
		// mochi ends it after the connection's OnDisconnect (unless a
		// newer connection took it over), or establishAborted did.
		return
	}
	if c := b.takeover.connection(cl); c != nil {
		// Its goroutine's own end first (its hooks' OnDisconnect).
		select {
		case <-c.gone:
		case <-time.After(goneTimeout):
		}
	}
	// Ended with no establishment of the id here in between: a newer
	// connection here takes over only what is left.
	done := b.takeover.exclusive(cl.ID)
	defer done()
	if cur, ok := b.server.Clients.Get(cl.ID); !ok || cur != cl || !cl.Closed() {
		return // a newer connection here took it over
	}
	b.detachRoutes(cl)
	b.dropClient(cl)
}

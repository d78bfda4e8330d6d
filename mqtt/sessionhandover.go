package mqtt

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/mqstream/mqstream/streams"
)

// Handing persistent sessions over when a node stops (cluster mode).
//
// A node that stops gracefully disconnects its clients first (Close). The
// persistent sessions it keeps would then wait on its disk until it starts
// again, while their clients reconnect to other nodes, find no session
// there and miss what was queued for them (and what is published until
// they subscribe again). HandOverSessions sends each one to another node
// (Remote.HandOver picks it by client id), which installs it as if the
// client had connected there, so the client's messages are queued there
// and a client that reconnects anywhere claims it from that node
// (claims.go). A session is ended here only once the other node took it;
// one that could not be handed over stays here and comes back when the
// node starts again, as before.
//
// A client that reconnects while its session travels: the node it
// connects to claims the id from every node at once. The claim reaching
// this node waits until the hand-over is answered; the receiving node
// refuses a session older than a claim it granted or made for that client
// (claimHook.moving), and this node then keeps the session, so that
// the waiting claim (or a later one) is answered with it here. Either way
// the client's new node gets the session from exactly the node that holds
// it.

// handOverCallTimeout bounds the hand-over of one session to one node
// (under claimTimeout, so a claim waiting for it is answered in time);
// handOverParallel is how many sessions travel at once.
const (
	handOverCallTimeout = 2 * time.Second
	handOverParallel    = 8
)

// Answers to a hand-over.
const (
	handOverTaken   byte = 0 // installed there
	handOverRefused byte = 1 // the client connected since, or a newer session of it is kept there
)

// errNewerSession: a handed-over session is older than what the receiving
// node knows of its client.
var errNewerSession = errors.New("a newer session of the client is known here")

const handOverVersion1 = 1

// HandOverResult counts what HandOverSessions did.
type HandOverResult struct {
	Sessions int // persistent sessions kept here when it started
	Taken    int // installed on another node, and ended here
	Refused  int // another node knows a newer session of the client: kept here
	Failed   int // no node took them: kept here
}

// HandOverSessions hands every persistent session this broker keeps to
// another node and ends it here (cluster mode, after Close: its clients
// are disconnected). It returns once each was answered or timeout passed,
// and the moves of sessions claimed meanwhile were settled (at most
// departuresWait more); later claims end the session at once.
func (b *Broker) HandOverSessions(timeout time.Duration) HandOverResult {
	var res HandOverResult
	if b.claims == nil || b.state == nil {
		return res
	}
	<-b.restored
	b.state.wait() // what was queued for them is on disk
	var ids []string
	for id, cl := range b.server.Clients.GetAll() {
		if !cl.Net.Inline && b.state.owner(id) == cl && b.departing.get(id) == nil {
			ids = append(ids, id)
		}
	}
	res.Sessions = len(ids)
	if len(ids) == 0 {
		b.departing.close(departuresWait)
		return res
	}
	deadline := time.Now().Add(timeout)
	var mu sync.Mutex // guards res and firstErr
	var firstErr error
	work := make(chan string)
	var wg sync.WaitGroup
	for range min(handOverParallel, len(ids)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for id := range work {
				outcome, err := b.handOver(id)
				mu.Lock()
				switch outcome {
				case handOverTaken:
					res.Taken++
				case handOverRefused:
					res.Refused++
				default:
					res.Failed++
					if firstErr == nil {
						firstErr = err
					}
				}
				mu.Unlock()
			}
		}()
	}
	sent := 0
	for _, id := range ids {
		mu.Lock()
		// No node takes them (every other node is down, or of an
		// earlier version): the rest are not tried.
		hopeless := res.Failed >= handOverParallel && res.Taken == 0
		mu.Unlock()
		if hopeless || time.Now().After(deadline) {
			break
		}
		work <- id
		sent++
	}
	close(work)
	wg.Wait()
	res.Failed += len(ids) - sent
	b.departing.close(departuresWait)
	if res.Failed > 0 {
		b.log.Warn("persistent sessions not handed over: they stay on this node until it starts again", "sessions", res.Sessions,
			"taken", res.Taken, "kept_newer_elsewhere", res.Refused, "kept_here", res.Failed, "first_error", firstErr)
	} else {
		b.log.Info("persistent sessions handed over to other nodes", "sessions", res.Sessions, "taken", res.Taken,
			"kept_newer_elsewhere", res.Refused)
	}
	return res
}

// handOverFailed is handOver's outcome when no node took the session.
const handOverFailed byte = 255

// handOver sends client id's session to another node and ends it here once
// taken; it returns the outcome (and, when no node took it, why).
func (b *Broker) handOver(id string) (byte, error) {
	stamp := b.state.stamp(id)
	done, ok := b.claims.moving(id, stamp)
	if !ok {
		return handOverTaken, nil // a newer claim is taking it
	}
	defer done()
	cl, ok := b.server.Clients.Get(id)
	if !ok || b.state.owner(id) != cl {
		return handOverTaken, nil // claimed meanwhile: it moved with the claim
	}
	payload, last := b.exportSession(id)
	if payload == nil {
		return handOverFailed, fmt.Errorf("mqtt: session of %q: nothing to export", id)
	}
	node, answer, err := b.opts.Remote.HandOver(id, encodeHandOver(id, payload), handOverCallTimeout)
	switch {
	case err != nil:
		b.log.Debug("session not handed over: no node took it", "client", id, "error", err)
		return handOverFailed, err
	case len(answer) == 1 && answer[0] == handOverRefused:
		b.log.Info("session not handed over: the other node knows a newer one of the client", "client", id, "node", node)
		return handOverRefused, nil
	case len(answer) != 1 || answer[0] != handOverTaken:
		return handOverFailed, fmt.Errorf("mqtt: %s's answer to a hand-over does not decode", node)
	}
	b.log.Debug("session handed over", "client", id, "node", node)
	// node answers claims of the client from now on, with its copy.
	defer b.departing.hand(id, cl)()
	// What the other nodes routed here before they knew of the session's
	// new node is queued here first, then sent on with what was queued
	// since the export.
	b.opts.Remote.Barrier(barrierTimeout)
	if cur, ok := b.server.Clients.Get(id); ok && cur == cl {
		b.detachRoutes(cl)
		b.routing.wait() // messages routed to it before are queued
		b.state.wait()
		rest := b.exportQueueAfter(id, last)
		b.dropClient(cl)
		if rest != nil {
			if _, err := b.opts.Remote.Settle(node, encodeRest(id, stamp, rest), handOverCallTimeout); err != nil {
				b.log.Info("what was queued for a session handed over since it left did not reach its new node", "client", id, "node", node, "error", err)
			}
		}
	}
	return handOverTaken, nil
}

// HandleHandOver installs a session a stopping node hands over (cluster
// mode): taken, or refused when this node knows a newer session or claim
// of the client.
func (b *Broker) HandleHandOver(req []byte) ([]byte, error) {
	if b.claims == nil {
		return nil, fmt.Errorf("mqtt: handing sessions over needs cluster mode")
	}
	id, payload, err := decodeHandOver(req)
	if err != nil {
		return nil, err
	}
	<-b.restored
	if b.state == nil {
		return nil, fmt.Errorf("mqtt: mqtt.persistence is off on this node")
	}
	if b.closing.Load() {
		return nil, fmt.Errorf("mqtt: this node is stopping")
	}
	stamp := movedStamp(id, payload)
	done, ok := b.claims.moving(id, stamp)
	if !ok {
		return []byte{handOverRefused}, nil
	}
	defer done()
	switch err := b.importSession(id, payload); {
	case errors.Is(err, errNewerSession):
		return []byte{handOverRefused}, nil
	case err != nil:
		return nil, err
	}
	b.departing.noteImport(id, stamp) // its rest follows
	return []byte{handOverTaken}, nil
}

// encodeHandOver frames client id's exported session.
func encodeHandOver(id string, session []byte) []byte {
	b := appendStr([]byte{handOverVersion1}, id)
	return append(b, session...)
}

func decodeHandOver(b []byte) (id string, session []byte, err error) {
	if len(b) < 1 || b[0] != handOverVersion1 {
		return "", nil, fmt.Errorf("%w: hand-over header", errBadForward)
	}
	d := &stateDecoder{b: b[1:]}
	id = d.str()
	if d.err != nil || id == "" {
		return "", nil, fmt.Errorf("%w: hand-over client id", errBadForward)
	}
	writes, err := decodeSessionMove(id, d.b)
	if err != nil {
		return "", nil, err
	}
	record := clientKey(keySession, id, 0)
	if !slices.ContainsFunc(writes, func(w streams.KVWrite) bool { return bytes.Equal(w.Key, record) }) {
		return "", nil, fmt.Errorf("%w: a handed-over session without its record", errBadForward)
	}
	return id, d.b, nil
}

package routes

import (
	"context"
	"errors"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mqstream/mqstream/cluster/rpcmux"
)

// peer is the link to one other node: a sync loop that keeps the node's
// copy of the local filters current, and a send loop that carries the
// messages forwarded to it, in order.
type peer struct {
	r      *Router
	id     string
	addr   string
	ctx    context.Context
	cancel context.CancelFunc
	// acked is the version of the local filters the peer acknowledged (0:
	// none; it is sent them whole). Router.mu guards it.
	acked uint64
	// lagging: the peer missed a SetClient deadline; waiters skip it
	// until it acknowledges the current version. Router.mu guards it.
	lagging bool
	sync    chan struct{} // wakes the sync loop (capacity 1)
	out     outbox
	// overflowLogged is when a full queue was last logged (unix ns).
	overflowLogged atomic.Int64
	// repair: messages were dropped; once the queue drained, Joined runs
	// again for the peer.
	repair atomic.Bool
	// unreachable: the last call to the peer timed out (claims skip it
	// until one goes through; a call refused at once costs nothing, so it
	// does not count).
	unreachable atomic.Bool
	// link numbers this link among those the router made: sent with
	// each full set, so that a peer that kept this node while this node
	// dropped it and took it back sees a new link (HandleSync).
	link uint64
	// heard is the node's process and link whose sets the router held
	// when it last dropped the node (Router.heard; zero: none), sent with
	// each full set: a node that never heard of this router's earlier
	// link still learns that what it sent over its own link was dropped
	// (HandleSync).
	heard heardLink
}

// SetPeers replaces the set of other nodes (the alive members). A node
// that leaves the set has its filters dropped and its queued messages
// discarded; one that joins gets the local filters whole.
func (r *Router) SetPeers(peers []Peer) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.ctx.Err() != nil {
		return
	}
	want := map[string]Peer{}
	for _, p := range peers {
		if p.ID != r.opts.Self {
			want[p.ID] = p
		}
	}
	changed := false
	var joined []string
	for id, p := range r.peers {
		if w, ok := want[id]; !ok || w.Addr != p.addr {
			p.cancel()
			delete(r.peers, id)
			r.dropped.Add(int64(p.out.discard()))
			changed = true
			if !ok {
				if rem := r.remotes[id]; rem != nil {
					r.heard[id] = heardLink{incarnation: rem.incarnation, link: rem.link}
				}
				r.dropRemote(id)
				r.log.Info("node's routes dropped", "peer", id)
			}
		}
	}
	for id, w := range want {
		if _, ok := r.peers[id]; ok {
			continue
		}
		ctx, cancel := context.WithCancel(r.ctx)
		r.links++
		p := &peer{r: r, id: id, addr: w.Addr, ctx: ctx, cancel: cancel, sync: make(chan struct{}, 1), link: r.links, heard: r.heard[id]}
		p.out.init(r.opts.MaxQueuedBytes)
		r.peers[id] = p
		changed = true
		r.wg.Add(2)
		go p.syncLoop()
		go p.sendLoop()
		p.kickSync()
		joined = append(joined, id)
	}
	if changed {
		snap := make(map[string]*peer, len(r.peers))
		for id, p := range r.peers {
			snap[id] = p
		}
		r.peerSnap.Store(&snap)
		// A waiter may have been waiting for a peer that left.
		close(r.acked)
		r.acked = make(chan struct{})
	}
	for _, id := range joined {
		r.joinedLocked(id) // once the forwarding path knows it
	}
}

func (p *peer) kickSync() {
	select {
	case p.sync <- struct{}{}:
	default:
	}
}

// syncLoop sends the peer what it lacks of the local filters whenever they
// change, and every Resync interval checks it still holds them.
func (p *peer) syncLoop() {
	defer p.r.wg.Done()
	r := p.r
	tick := time.NewTicker(r.opts.Resync)
	defer tick.Stop()
	failures := 0
	warned := false // a failure was logged since the last success
	for {
		select {
		case <-p.ctx.Done():
			return
		case <-p.sync:
		case <-tick.C:
		}
		for p.ctx.Err() == nil {
			err := p.syncOnce()
			p.noteCall(err)
			if err == nil {
				if warned {
					r.log.Info("routes reach the peer again", "peer", p.id)
				}
				failures, warned = 0, false
				break
			}
			switch {
			case errors.Is(err, errNotPeerYet):
				// Usual for a moment after this node (re)joined:
				// gossip has not reached the peer yet.
				r.log.Debug("routes not taken by a peer yet; retrying", "peer", p.id)
			case !warned:
				warned = true
				r.log.Warn("cannot send routes to a peer; retrying", "peer", p.id, "error", err)
			}
			failures++
			if !sleep(p.ctx, backoff(failures)) {
				return
			}
		}
	}
}

// errStale: the peer asked for the filters whole twice in a row.
var errStale = errors.New("routes: peer refused the full set")

// errNotPeerYet: the peer does not count this node among its peers yet.
var errNotPeerYet = errors.New("routes: the peer does not count this node up yet")

// syncOnce brings the peer up to date (a delta, or everything if it
// lacks the delta's base).
func (p *peer) syncOnce() error {
	r := p.r
	for attempt := 0; attempt < 2; attempt++ {
		r.mu.Lock()
		u := r.updateFor(p)
		r.mu.Unlock()
		ctx, cancel := context.WithTimeout(p.ctx, r.opts.CallTimeout)
		resp, err := r.opts.Caller.Call(ctx, p.addr, SyncService, encodeUpdate(u))
		cancel()
		if err != nil {
			return err
		}
		if len(resp) == 1 && resp[0] == syncNotPeer {
			return errNotPeerYet
		}
		r.mu.Lock()
		if len(resp) == 1 && resp[0] == syncOK {
			if u.version >= r.local.version {
				p.lagging = false
			}
			if u.version > p.acked {
				p.acked = u.version
				close(r.acked)
				r.acked = make(chan struct{})
			}
			r.mu.Unlock()
			return nil
		}
		p.acked = 0 // it lost them (restarted, or dropped us): send them whole
		r.mu.Unlock()
	}
	return errStale
}

// sendLoop carries the forwarded messages to the peer in batches, one
// call at a time, so they arrive in the order they were queued. A batch
// that fails is sent again (the peer may then see it twice) until it
// goes through or the peer leaves the set.
func (p *peer) sendLoop() {
	defer p.r.wg.Done()
	r := p.r
	failures := 0
	for {
		batch := p.out.take(p.ctx)
		if batch == nil {
			return
		}
		req := encodeBatch(batch)
		for {
			ctx, cancel := context.WithTimeout(p.ctx, r.opts.CallTimeout)
			resp, err := r.opts.Caller.Call(ctx, p.addr, DeliverService, req)
			cancel()
			p.noteCall(err)
			if err == nil && len(resp) == 1 && resp[0] == deliverRefused {
				err = errRefused
			}
			if err == nil {
				if failures > 0 {
					r.log.Info("messages reach the peer again", "peer", p.id)
				}
				failures = 0
				break
			}
			if p.ctx.Err() != nil {
				r.dropped.Add(int64(len(batch)))
				p.out.done() // dropped: a flush must not wait for it
				return
			}
			if permanent(err) {
				// Sent again it fails again, and everything queued
				// behind it would wait for good.
				r.log.Error("messages the peer can never take dropped", "peer", p.id, "messages", len(batch), "bytes", len(req), "error", err)
				r.dropped.Add(int64(len(batch)))
				failures = 0
				break
			}
			if failures == 0 {
				r.log.Warn("cannot forward messages to a peer; retrying", "peer", p.id, "messages", len(batch), "error", err)
			}
			failures++
			if !sleep(p.ctx, backoff(failures)) {
				r.dropped.Add(int64(len(batch)))
				p.out.done() // dropped: a flush must not wait for it
				return
			}
		}
		p.out.done()
		if p.out.empty() && p.repair.CompareAndSwap(true, false) {
			// The queue overflowed and has drained: what Joined sends
			// (retained messages, wills) may have been among the dropped
			// messages, so it is sent again, unless this link has been
			// replaced or dropped meanwhile (a new link runs its own).
			r.mu.Lock()
			if r.peers[p.id] == p {
				r.joinedLocked(p.id)
			}
			r.mu.Unlock()
		}
	}
}

// permanent reports a deliver call that fails however often it is sent:
// a batch over the largest frame, or one the peer refused (it cannot
// decode it: answered deliverRefused, or, by an earlier version, failed
// by its handler). A call to a node that has no handler for the service
// yet is not: a node restarted on the same address registers its router
// a moment after it listens.
func permanent(err error) bool {
	return errors.Is(err, rpcmux.ErrTooLarge) || errors.Is(err, errRefused) ||
		errors.Is(err, rpcmux.ErrRemote) && !rpcmux.IsNoHandler(err)
}

// errRefused: the peer answered that the batch does not decode.
var errRefused = errors.New("routes: the peer refused the batch as malformed")

// noteCall records how the last call to the peer went.
func (p *peer) noteCall(err error) {
	switch {
	case err == nil:
		p.unreachable.Store(false)
	case timedOut(err):
		p.unreachable.Store(true)
	}
}

// timedOut reports a call that failed by waiting out a deadline (a peer
// cut off by a partition that drops packets), not one refused at once.
func timedOut(err error) bool {
	return errors.Is(err, context.DeadlineExceeded) || errors.Is(err, os.ErrDeadlineExceeded)
}

func backoff(failures int) time.Duration {
	d := 50 * time.Millisecond << min(failures-1, 5)
	return min(d, time.Second)
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// maxBatchBytes bounds one deliver call.
const maxBatchBytes = 1 << 20

// outbox holds the messages waiting for one peer, oldest first.
type outbox struct {
	mu sync.Mutex // guards every field below but limit and wake
	// msgs are the queued messages; bytes their size.
	msgs  [][]byte
	bytes int
	// inflight is the size of the batch being sent (counted against the
	// limit until it went through), inflightN its length.
	inflight, inflightN int
	limit               int
	wake                chan struct{} // capacity 1
	// Positions in queue order: pushed counts the messages ever queued,
	// removed those taken into a batch or dropped (always the oldest
	// queued), batchStart is the position of the first message of the
	// batch in flight. progress is closed (and replaced) whenever a batch
	// ends or messages are dropped.
	pushed, removed, batchStart uint64
	progress                    chan struct{}
}

func (o *outbox) init(limit int) {
	o.limit = limit
	o.wake = make(chan struct{}, 1)
	o.progress = make(chan struct{})
}

// progressLocked wakes waitQueued. o.mu is held.
func (o *outbox) progressLocked() {
	close(o.progress)
	o.progress = make(chan struct{})
}

// wakeWaiters wakes those waiting for the queue's progress, to look
// again (pushWait's stop).
func (o *outbox) wakeWaiters() {
	o.mu.Lock()
	o.progressLocked()
	o.mu.Unlock()
}

// waitQueued waits until every message queued so far has been delivered
// (or dropped), or ctx is done; it reports whether they were.
func (o *outbox) waitQueued(ctx context.Context) bool {
	return o.waitFor(ctx, o.mark())
}

// mark returns the position after the last message queued so far.
func (o *outbox) mark() uint64 {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.pushed
}

// waitFor waits until every message before position mark has been
// delivered (or dropped), or ctx is done; it reports whether they were.
func (o *outbox) waitFor(ctx context.Context, mark uint64) bool {
	o.mu.Lock()
	for o.removed < mark || (o.inflightN > 0 && o.batchStart < mark) {
		ch := o.progress
		o.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return false
		}
		o.mu.Lock()
	}
	o.mu.Unlock()
	return true
}

// push queues m; when the queue is over its limit the oldest messages are
// dropped, and push returns how many.
func (o *outbox) push(m []byte) (dropped int) {
	o.mu.Lock()
	o.msgs = append(o.msgs, m)
	o.bytes += len(m)
	o.pushed++
	for o.bytes+o.inflight > o.limit && len(o.msgs) > 1 {
		o.bytes -= len(o.msgs[0])
		o.msgs[0] = nil
		o.msgs = o.msgs[1:]
		dropped++
	}
	if dropped > 0 {
		o.removed += uint64(dropped)
		o.progressLocked()
	}
	o.mu.Unlock()
	select {
	case o.wake <- struct{}{}:
	default:
	}
	return dropped
}

// pushWait queues m once it fits under half the limit beside what is
// queued and in flight (at once when nothing is), waiting for batches to
// go through meanwhile, so that it drops nothing and leaves room for the
// messages pushed meanwhile; false if ctx ended first, or stop (if
// given) said so while it waited.
func (o *outbox) pushWait(ctx context.Context, m []byte, stop func() bool) bool {
	for {
		o.mu.Lock()
		if len(o.msgs) == 0 && o.inflight == 0 || o.bytes+o.inflight+len(m) <= o.limit/2 {
			o.msgs = append(o.msgs, m)
			o.bytes += len(m)
			o.pushed++
			o.mu.Unlock()
			select {
			case o.wake <- struct{}{}:
			default:
			}
			return true
		}
		progress := o.progress
		o.mu.Unlock()
		select {
		case <-progress:
		case <-ctx.Done():
			return false
		}
		if stop != nil && stop() {
			return false
		}
	}
}

// take waits for queued messages and returns up to maxBatchBytes of them
// (nil when ctx is done).
func (o *outbox) take(ctx context.Context) [][]byte {
	for {
		o.mu.Lock()
		if len(o.msgs) > 0 {
			n, size := 0, 0
			for n < len(o.msgs) && n < maxBatchMessages && (n == 0 || size+len(o.msgs[n]) <= maxBatchBytes) {
				size += len(o.msgs[n])
				n++
			}
			batch := o.msgs[:n:n]
			o.msgs = o.msgs[n:]
			if len(o.msgs) == 0 {
				o.msgs = nil
			}
			o.bytes -= size
			o.inflight, o.inflightN = size, n
			o.batchStart = o.removed
			o.removed += uint64(n)
			o.mu.Unlock()
			return batch
		}
		o.mu.Unlock()
		select {
		case <-o.wake:
		case <-ctx.Done():
			return nil
		}
	}
}

// done releases the batch that went through.
func (o *outbox) done() {
	o.mu.Lock()
	o.inflight, o.inflightN = 0, 0
	o.progressLocked()
	o.mu.Unlock()
}

// idle reports whether nothing is queued or being sent.
func (o *outbox) idle() bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	return len(o.msgs) == 0 && o.inflight == 0
}

// empty reports whether nothing is queued.
func (o *outbox) empty() bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	return len(o.msgs) == 0
}

// discard empties the queue and returns how many messages it held.
func (o *outbox) discard() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	n := len(o.msgs)
	o.msgs, o.bytes = nil, 0
	o.removed += uint64(n)
	o.progressLocked()
	return n
}

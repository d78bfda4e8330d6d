package shards

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/mqstream/mqstream/cluster/rpcmux"
	"github.com/mqstream/mqstream/streams"
)

// Forwarding.
//
// Appends for a shard this node does not lead wait in the shard's outbox.
// One sender per shard takes everything queued (up to maxForwardBytes) and
// sends it as one request to the shard's leader, then the next batch once
// that one is answered: a single sender keeps one publisher's appends in
// order, and the batches grow with the load, so one round trip carries
// many appends. A batch that does not get through (no leader yet, the
// leader died, the connection broke) is sent again, to whoever leads then,
// for up to the write timeout; appends carry ids, so a batch that was
// committed before its answer was lost is not stored twice (dedupe.go).
//
// The outbox is also where appends proposed on this node come back when
// the node loses the shard's leadership with them in flight, and it keeps
// a publisher's order across both changes of leadership:
//   - while this node leads, appends are proposed at once (route) only if
//     the outbox holds nothing; otherwise they queue behind what it holds,
//     and once the sender finds the node leading it proposes what it
//     holds, then what queued meanwhile, before new appends go directly
//     again (proposeHeld, handOver);
//   - appends proposed here and not yet answered are counted (direct);
//     while any is, the sender sends nothing. One that fails because the
//     leadership was lost is put back ahead of everything that queued
//     after it was proposed (answered), so a publisher's A1, in flight when
//     the leader stepped down, is sent before its A2, queued afterwards.
//
// When this node takes the shard's leadership while its sender waits for
// the old leader's answer, that wait is cut short (interrupt) and the
// sender proposes what it holds here (a batch whose appends all carry
// ids; see forwardBatch). Otherwise the two nodes would wait
// for each other: the old leader, no longer able to propose the batch,
// forwards it on to this node, where it queues behind the very batch the
// sender is waiting for, until the attempt's timeout
// (Timers.ForwardAttempt, 2 s) ends the wait. A leadership handed to a
// node whose publishers' appends are on their way to the old leader (the
// hand-back to a restarted node's preferred shards) stalled them 2 s.
// What the old leader proposed of the batch before it stepped down is
// answered from the state machine's window when proposed again here.

// maxForwardBytes bounds one forward request.
const maxForwardBytes = 4 << 20

// forwardItem is an append waiting in an outbox.
type forwardItem struct {
	cmd  appendCmd
	hops int
	done func(first uint64, err error)
	// reached: an attempt may have put the append in a leader's log (a
	// leader lost its leadership with it in flight, or a forward failed
	// after it was sent). If the append then fails for want of a leader,
	// its outcome is unknown: the entry may still be committed once the
	// shard has a majority again (errMayBeStored).
	reached bool
	// since is when the append came to this node (route): it waits for a
	// leader at most the write timeout from then, however long it queued
	// behind others.
	since time.Time
}

// errMayBeStored tells a writer whose append failed for want of a leader
// that an earlier attempt reached one: Raft may still commit it.
var errMayBeStored = errors.New("an earlier attempt reached the shard's leader, which may still store the records once the shard has a majority again (sent again, they may be stored twice)")

// outbox is one shard's queue of appends to forward.
type outbox struct {
	mu    sync.Mutex // guards every field below
	queue []forwardItem
	// queuedBytes is the size of queue's appends (cmdSize): a new one is
	// refused while it is over maxQueuedForward.
	queuedBytes int
	sending     bool // a sender goroutine runs
	// held: the sender holds appends not yet proposed on this node nor
	// answered (being forwarded, or waiting to be sent again). While it
	// does, or while anything is queued or retried, appends queue behind
	// them even when this node leads the shard (claimDirect).
	held bool
	// direct counts the appends proposed on this node and not answered
	// yet. While any is, the sender takes nothing (take): one of them may
	// still come back to be sent again, ahead of what queued after it.
	direct int
	// directTerm is the Raft term in which those were proposed. An append
	// of a later term (this node lost the leadership and leads again)
	// queues here until they are answered: proposed at once, it could be
	// stored before one of them that fails and is sent again (staleTerm).
	directTerm uint64
	// retried holds appends proposed here that failed with the leadership
	// lost, in the order they were proposed (their answers come in that
	// order), until the last direct one is answered: they then go to the
	// front of the queue.
	retried []forwardItem
	// attempt cancels the sender's forward call under way, if any
	// (interrupt).
	attempt context.CancelFunc
}

// interrupt cuts short the sender's forward call under way, if any: this
// node now leads the shard, and proposes the batch itself.
func (o *outbox) interrupt() {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.attempt != nil {
		o.attempt()
		o.attempt = nil
	}
}

// setAttempt records the cancel func of the sender's forward call under
// way (nil once it returned).
func (o *outbox) setAttempt(cancel context.CancelFunc) {
	o.mu.Lock()
	o.attempt = cancel
	o.mu.Unlock()
}

// leadershipChanged is shard's replica's callback at each change of its
// leadership: it wakes the callers of LeadershipChanged and, when this
// node now leads the shard, ends the wait of the shard's sender for the
// old leader.
func (s *Set) leadershipChanged(shard int) func(leading bool) {
	return func(leading bool) {
		s.changes.Notify()
		if leading {
			s.outboxes[shard].interrupt()
		}
	}
}

// add queues an append and starts the shard's sender if none runs and no
// append proposed here is unanswered.
func (o *outbox) add(s *Set, shard int, it forwardItem) {
	size := cmdSize(it.cmd)
	o.mu.Lock()
	if len(o.queue) > 0 && o.queuedBytes+size > maxQueuedForward {
		queued := o.queuedBytes
		o.mu.Unlock()
		it.done(0, fmt.Errorf("%w: shard %d has no leader taking its appends: %d bytes already wait to be forwarded", streams.ErrUnavailable, shard, queued))
		return
	}
	o.queue = append(o.queue, it)
	o.queuedBytes += size
	start := !o.sending && o.direct == 0
	o.sending = o.sending || start
	o.mu.Unlock()
	if start {
		s.startSender(shard, o)
	}
}

// startSender runs the shard's sender (its sending flag set by the
// caller).
func (s *Set) startSender(shard int, o *outbox) {
	if !s.spawn(func() { s.sendForwards(shard, o) }) {
		// The set is closing: nothing will send what waits here.
		for batch := o.take(); batch != nil; batch = o.take() {
			answerAll(batch, streams.ErrClosed)
		}
	}
}

// claimDirect reports whether a new append may be proposed on this node
// at once, in term, the outbox holding nothing it must not overtake, and
// counts it as direct if so.
func (o *outbox) claimDirect(term uint64) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	if len(o.queue) > 0 || o.held || len(o.retried) > 0 || o.direct > 0 && o.directTerm != term {
		return false
	}
	o.direct++
	o.directTerm = term
	return true
}

// answered is told the outcome of an append proposed on this node: sent
// again (retry) or answered. Once none is unanswered, what was retried
// goes to the front of the queue and the sender starts if anything waits.
func (o *outbox) answered(s *Set, shard int, it forwardItem, retry bool) {
	o.mu.Lock()
	if retry {
		o.retried = append(o.retried, it)
	}
	o.direct--
	start := false
	if o.direct == 0 {
		if len(o.retried) > 0 {
			o.queue = append(o.retried, o.queue...)
			for _, it := range o.retried {
				o.queuedBytes += cmdSize(it.cmd)
			}
			o.retried = nil
		}
		start = len(o.queue) > 0 && !o.sending
		o.sending = o.sending || start
	}
	o.mu.Unlock()
	if start {
		s.startSender(shard, o)
	}
}

// proposeDirect proposes items on r, this node's replica leading the
// shard, each already counted in direct: answered, or sent again through
// the outbox when the leadership was lost before it was proposed, or
// before its entry was known to be committed.
func (s *Set) proposeDirect(shard int, r *replica, items []forwardItem) {
	o := &s.outboxes[shard]
	for _, it := range items {
		r.propose(it.cmd, func(first uint64, err error) {
			if errors.Is(err, errNotProposed) || errors.Is(err, errOutcomeUnknown) && it.cmd.retriable() {
				it.reached = it.reached || errors.Is(err, errOutcomeUnknown)
				o.answered(s, shard, it, true)
				return
			}
			it.done(first, err)
			o.answered(s, shard, it, false)
		})
	}
}

// proposeHeld proposes what the sender holds on this node, the shard's
// leader, then what queued meanwhile, until nothing more has: only then
// may new appends be proposed directly again (the replica's queue keeps
// their order from then on).
func (s *Set) proposeHeld(shard int, r *replica, batch []forwardItem) {
	o := &s.outboxes[shard]
	o.mu.Lock()
	if o.direct == 0 {
		o.directTerm = r.raft.CurrentTerm()
	}
	o.direct += len(batch)
	o.mu.Unlock()
	for batch != nil {
		s.proposeDirect(shard, r, batch)
		batch = o.handOver()
	}
}

// handOver returns what queued while the sender proposed what it held,
// counted as direct, to be proposed too; or, when nothing did, lets new
// appends be proposed directly again.
func (o *outbox) handOver() []forwardItem {
	o.mu.Lock()
	defer o.mu.Unlock()
	if len(o.queue) == 0 {
		o.held = false
		return nil
	}
	more := o.queue
	o.queue, o.queuedBytes = nil, 0
	o.direct += len(more)
	return more
}

// take removes the next batch; none once the queue is empty, or while an
// append proposed here is unanswered (and then the sender stops; answered
// starts it again).
func (o *outbox) take() []forwardItem {
	o.mu.Lock()
	defer o.mu.Unlock()
	n, size := 0, 0
	for o.direct == 0 && n < len(o.queue) && (n == 0 || size+cmdSize(o.queue[n].cmd) <= maxForwardBytes) {
		size += cmdSize(o.queue[n].cmd)
		n++
	}
	if n == 0 {
		o.sending, o.held = false, false
		return nil
	}
	o.held = true
	o.queuedBytes -= size
	batch := make([]forwardItem, n)
	copy(batch, o.queue)
	clear(o.queue[:n])
	o.queue = o.queue[n:]
	if len(o.queue) == 0 {
		o.queue = nil // let the array go
	}
	return batch
}

// maxQueuedForward bounds what one shard's outbox holds: with no leader
// taking them, appends would otherwise queue without limit (QoS 0
// publishes have no in-flight bound). One append is always taken.
const maxQueuedForward = 64 << 20

func cmdSize(c appendCmd) int {
	n := len(c.stream) + 24
	for _, r := range c.records {
		n += len(r) + 4
	}
	return n
}

// sendForwards is a shard's sender: it forwards batches until the outbox
// is empty.
func (s *Set) sendForwards(shard int, o *outbox) {
	for {
		batch := o.take()
		if batch == nil {
			return
		}
		s.forwardBatch(shard, batch)
	}
}

// forwardBatch delivers a batch to the shard's leader (or proposes it, once
// this node leads the shard) and answers each append.
func (s *Set) forwardBatch(shard int, batch []forwardItem) {
	for len(batch) > 0 {
		batch = s.forwardUntil(shard, batch)
	}
}

// forwardUntil is forwardBatch until the first of the batch's appends has
// waited the write timeout: it fails those that have, and returns the
// others.
func (s *Set) forwardUntil(shard int, batch []forwardItem) []forwardItem {
	// Those that waited their time queued, or on this node's replica,
	// fail before an attempt (which would not be one: a passed
	// deadline sends nothing, and would count against the leader).
	if batch = s.expire(batch); len(batch) == 0 {
		return nil
	}
	first := batch[0].since
	for _, it := range batch[1:] {
		if it.since.Before(first) {
			first = it.since
		}
	}
	ctx, cancel := context.WithDeadline(context.Background(), first.Add(s.opts.WriteTimeout))
	defer cancel()
	o := &s.outboxes[shard]
	wait := 20 * time.Millisecond
	for len(batch) > 0 {
		hops := 0
		for _, it := range batch {
			hops = max(hops, it.hops)
		}
		if r := s.replica(shard); r != nil && r.isLeader() {
			s.proposeHeld(shard, r, batch)
			return nil
		} else if hops >= maxHops {
			// Forwarded here by a node that took this one for the leader:
			// this node's view is no better, so let the sender look again
			// rather than wait here. Only those: the others (this node's
			// own appends among them) go on to the leader.
			var rest []forwardItem
			for _, it := range batch {
				if it.hops >= maxHops {
					it.done(0, fmt.Errorf("%w: %w (forwarded %d times)", ErrNoLeader, errNotProposed, it.hops))
				} else {
					rest = append(rest, it)
				}
			}
			batch = rest
			continue
		} else if target, ok := s.target(shard); ok {
			cmds := make([]appendCmd, len(batch))
			for i, it := range batch {
				cmds[i] = it.cmd
			}
			// One attempt is bounded on its own: a leader cut off by a
			// partition that drops packets answers nothing, and the
			// batch must go to the new leader once there is one (a
			// retried append is deduplicated by its id).
			actx, acancel := context.WithTimeout(ctx, s.opts.Timers.ForwardAttempt)
			// Only a batch that may be sent again is interrupted: the
			// answer to a command without an id (from a cluster with
			// members of an earlier version) is waited for, as cutting
			// it short would leave its outcome unknown.
			interruptible := allRetriable(batch)
			if interruptible {
				o.setAttempt(acancel)
				if r := s.replica(shard); r != nil && r.isLeader() {
					// Took the leadership since the check above,
					// perhaps before the attempt could be interrupted:
					// Raft's state changes before its observers hear
					// of it.
					o.setAttempt(nil)
					acancel()
					continue
				}
			}
			s.forwards.sent.Add(1)
			resp, err := s.opts.Forward.Call(actx, target.RPC, ForwardService, encodeForward(shard, hops+1, cmds))
			if interruptible {
				o.setAttempt(nil)
			}
			interrupted := errors.Is(actx.Err(), context.Canceled) && ctx.Err() == nil
			acancel()
			if err != nil {
				if interrupted {
					s.log.Debug("forward cut short: this node leads the shard now", "shard", shard, "node", target.ID, "appends", len(batch))
				} else {
					s.forwards.failed.Add(1)
					s.passOver(shard, target.ID)
					s.log.Debug("forward failed", "shard", shard, "node", target.ID, "appends", len(batch), "error", err)
				}
				if !errors.Is(err, rpcmux.ErrNotSent) {
					batch = s.unsent(batch, target, err)
				}
			} else if results, err := decodeForwardResults(resp, len(batch)); err != nil {
				answerAll(batch, err)
				return nil
			} else {
				var again []forwardItem
				for i, it := range batch {
					if errors.Is(results[i].err, ErrNoLeader) && i == 0 {
						s.passOver(shard, target.ID) // no leader there: ask another replica next
					}
					if errors.Is(results[i].err, errNotProposed) || errors.Is(results[i].err, errOutcomeUnknown) && it.cmd.retriable() {
						// No leader took it, or the leader stopped or
						// lost its leadership with it in flight: send it
						// again (deduplicated by its id).
						it.reached = it.reached || errors.Is(results[i].err, errOutcomeUnknown)
						again = append(again, it)
						continue
					}
					it.done(results[i].first, results[i].err)
				}
				batch = again
			}
		}
		if len(batch) == 0 {
			return nil
		}
		if r := s.replica(shard); r != nil && r.isLeader() {
			continue // interrupted, or the leader now: propose the batch here
		}
		select {
		case <-s.done:
			answerAll(batch, streams.ErrClosed)
			return nil
		case <-ctx.Done():
			return s.expire(batch)
		case <-time.After(wait):
		}
		wait = min(2*wait, 500*time.Millisecond)
	}
	return nil
}

// expire fails the appends of batch that have waited the write timeout
// for a leader, and returns the others.
func (s *Set) expire(batch []forwardItem) []forwardItem {
	var rest []forwardItem
	now := time.Now()
	for _, it := range batch {
		switch {
		case now.Sub(it.since) < s.opts.WriteTimeout:
			rest = append(rest, it)
		case it.reached:
			it.done(0, fmt.Errorf("%w (waited %v): %w", ErrNoLeader, s.opts.WriteTimeout, errMayBeStored))
		default:
			it.done(0, fmt.Errorf("%w (waited %v)", ErrNoLeader, s.opts.WriteTimeout))
		}
	}
	return rest
}

// unsent handles a batch whose forward failed after it may have been
// served (the answer lost, the connection broken midway): commands with
// ids are returned to be sent again (a repeat is answered from the
// state machine's window); the others (a stream's creation or deletion
// without an id, from a cluster with members of an earlier version),
// which the state machine would apply again, are answered with the
// outcome unknown. Sent again, a deletion whose first copy was applied
// could delete the stream created anew since.
func (s *Set) unsent(batch []forwardItem, target Peer, err error) []forwardItem {
	var again []forwardItem
	for _, it := range batch {
		if it.cmd.retriable() {
			it.reached = true
			again = append(again, it)
			continue
		}
		it.done(0, fmt.Errorf("%w: %w: the forward to %s failed after it was sent (%v)", streams.ErrUnavailable, errOutcomeUnknown, target.ID, err))
	}
	return again
}

// allRetriable reports whether every append of batch may be sent again.
func allRetriable(batch []forwardItem) bool {
	for i := range batch {
		if !batch[i].cmd.retriable() {
			return false
		}
	}
	return true
}

func answerAll(batch []forwardItem, err error) {
	for _, it := range batch {
		it.done(0, err)
	}
}

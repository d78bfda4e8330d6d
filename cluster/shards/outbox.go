package shards

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

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
// When this node takes the leadership while appends wait here, new
// appends queue behind them until the sender has proposed them here
// (busy, handOver), so a publisher's appends keep their order.

// maxForwardBytes bounds one forward request.
const maxForwardBytes = 4 << 20

// forwardItem is an append waiting in an outbox.
type forwardItem struct {
	cmd  appendCmd
	hops int
	done func(first uint64, err error)
}

// outbox is one shard's queue of appends to forward.
type outbox struct {
	mu      sync.Mutex // guards queue, sending and held
	queue   []forwardItem
	sending bool // a sender goroutine runs
	// held: the sender holds appends not yet proposed on this node nor
	// answered (being forwarded, or waiting to be sent again). While it
	// does, or while the queue is not empty, appends queue behind them
	// even when this node leads the shard (busy, Set.route).
	held bool
}

// add queues an append and starts the shard's sender if none runs.
func (o *outbox) add(s *Set, shard int, it forwardItem) {
	o.mu.Lock()
	o.queue = append(o.queue, it)
	start := !o.sending
	o.sending = true
	o.mu.Unlock()
	if start && !s.spawn(func() { s.sendForwards(shard, o) }) {
		// The set is closing: nothing will send what waits here.
		for batch := o.take(); batch != nil; batch = o.take() {
			answerAll(batch, streams.ErrClosed)
		}
	}
}

// busy reports whether appends wait here that a new one must not
// overtake: queued, or held by the sender.
func (o *outbox) busy() bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	return len(o.queue) > 0 || o.held
}

// hold marks appends as held by the sender again (retried after they
// failed on this node).
func (o *outbox) hold() {
	o.mu.Lock()
	o.held = true
	o.mu.Unlock()
}

// handOver is called by the sender once it has proposed what it held on
// this node, the shard's leader (the replica's queue keeps their order
// from then on): it returns what queued meanwhile, to be proposed too,
// or, when nothing did, lets new appends be proposed directly again.
func (o *outbox) handOver() []forwardItem {
	o.mu.Lock()
	defer o.mu.Unlock()
	if len(o.queue) == 0 {
		o.held = false
		return nil
	}
	more := o.queue
	o.queue = nil
	return more
}

// take removes the next batch; none once the queue is empty (and then the
// sender stops).
func (o *outbox) take() []forwardItem {
	o.mu.Lock()
	defer o.mu.Unlock()
	n, size := 0, 0
	for n < len(o.queue) && (n == 0 || size+cmdSize(o.queue[n].cmd) <= maxForwardBytes) {
		size += cmdSize(o.queue[n].cmd)
		n++
	}
	if n == 0 {
		o.sending, o.held = false, false
		return nil
	}
	o.held = true
	batch := make([]forwardItem, n)
	copy(batch, o.queue)
	clear(o.queue[:n])
	o.queue = o.queue[n:]
	if len(o.queue) == 0 {
		o.queue = nil // let the array go
	}
	return batch
}

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
		s.forwardBatch(shard, o, batch)
	}
}

// forwardAttemptTimeout bounds one forward call to a shard's leader.
const forwardAttemptTimeout = 2 * time.Second

// forwardBatch delivers a batch to the shard's leader (or proposes it, once
// this node leads the shard) and answers each append.
func (s *Set) forwardBatch(shard int, o *outbox, batch []forwardItem) {
	ctx, cancel := context.WithTimeout(context.Background(), s.opts.WriteTimeout)
	defer cancel()
	wait := 20 * time.Millisecond
	hops := 0
	for _, it := range batch {
		hops = max(hops, it.hops)
	}
	for len(batch) > 0 {
		if r := s.replica(shard); r != nil && r.isLeader() {
			batch = s.proposeAll(ctx, r, o, batch)
		} else if hops >= maxHops {
			// Forwarded here by a node that took this one for the leader:
			// this node's view is no better, so let the sender look again
			// rather than wait here.
			answerAll(batch, fmt.Errorf("%w: %w (forwarded %d times)", ErrNoLeader, errNotProposed, hops))
			return
		} else if target, ok := s.target(shard); ok {
			cmds := make([]appendCmd, len(batch))
			for i, it := range batch {
				cmds[i] = it.cmd
			}
			s.forwards.sent.Add(1)
			// One attempt is bounded on its own: a leader cut off by a
			// partition that drops packets answers nothing, and the
			// batch must go to the new leader once there is one (a
			// retried append is deduplicated by its id).
			actx, acancel := context.WithTimeout(ctx, forwardAttemptTimeout)
			resp, err := s.opts.Forward.Call(actx, target.RPC, ForwardService, encodeForward(shard, hops+1, cmds))
			acancel()
			if err != nil {
				s.forwards.failed.Add(1)
				s.log.Debug("forward failed", "shard", shard, "node", target.ID, "appends", len(batch), "error", err)
			} else if results, err := decodeForwardResults(resp, len(batch)); err != nil {
				answerAll(batch, err)
				return
			} else {
				var again []forwardItem
				for i, it := range batch {
					if errors.Is(results[i].err, errNotProposed) || errors.Is(results[i].err, errOutcomeUnknown) && it.cmd.retriable() {
						// No leader took it, or the leader stopped or
						// lost its leadership with it in flight: send it
						// again (deduplicated by its id).
						again = append(again, it)
						continue
					}
					it.done(results[i].first, results[i].err)
				}
				batch = again
			}
		}
		if len(batch) == 0 {
			return
		}
		select {
		case <-s.done:
			answerAll(batch, streams.ErrClosed)
			return
		case <-ctx.Done():
			answerAll(batch, fmt.Errorf("%w (waited %v)", ErrNoLeader, s.opts.WriteTimeout))
			return
		case <-time.After(wait):
		}
		wait = min(2*wait, 500*time.Millisecond)
	}
}

// proposeAll proposes a batch on this node, the shard's leader, with
// what the outbox queued meanwhile (handOver), answers each append and
// returns those Raft refused before proposing (to try again).
func (s *Set) proposeAll(ctx context.Context, r *replica, o *outbox, batch []forwardItem) []forwardItem {
	type result struct {
		first uint64
		err   error
	}
	var results []*result
	var wg sync.WaitGroup
	for proposed := 0; ; {
		for _, it := range batch[proposed:] {
			res := &result{}
			results = append(results, res)
			wg.Add(1)
			r.propose(it.cmd, func(first uint64, err error) {
				*res = result{first, err}
				wg.Done()
			})
		}
		proposed = len(batch)
		more := o.handOver()
		if more == nil {
			break
		}
		batch = append(batch, more...)
	}
	waited := make(chan struct{})
	go func() { wg.Wait(); close(waited) }()
	select {
	case <-waited:
	case <-ctx.Done():
		// The proposals are answered when Raft settles them; these
		// appends are reported as failed now.
		answerAll(batch, fmt.Errorf("%w: %w", streams.ErrUnavailable, ctx.Err()))
		return nil
	}
	var again []forwardItem
	for i, it := range batch {
		if errors.Is(results[i].err, errNotProposed) || errors.Is(results[i].err, errOutcomeUnknown) && it.cmd.retriable() {
			again = append(again, it)
			continue
		}
		it.done(results[i].first, results[i].err)
	}
	if len(again) > 0 {
		o.hold()
	}
	return again
}

func answerAll(batch []forwardItem, err error) {
	for _, it := range batch {
		it.done(0, err)
	}
}

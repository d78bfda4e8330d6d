package shards

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"

	"github.com/mqstream/mqstream/streams"
)

// GroupDeps are what one Raft group needs from the node: where its log,
// its stable state and its snapshots live, and how it reaches its peers.
type GroupDeps struct {
	Logs      raft.LogStore
	Stable    raft.StableStore
	Snapshots raft.SnapshotStore
	Transport raft.Transport
	// Release, if set, is called before the group shuts down: raft waits
	// for its replication to return, so a transport that waits for
	// unreachable peers must stop waiting (appends.Release).
	Release func()
}

// ErrNoLeader: a shard has no leader this node can reach (a majority of
// its replicas is down or cut off, or an election is under way). Stored
// publishes are refused as when the store cannot write.
var ErrNoLeader = fmt.Errorf("%w: the shard has no leader", streams.ErrUnavailable)

// maxEntryBytes bounds the appends gathered into one Raft entry.
const maxEntryBytes = 1 << 20

// proposal is an append waiting to be proposed by the shard's leader.
type proposal struct {
	cmd  appendCmd
	size int
	// term is raft's current term when the append was queued: one still
	// queued once the term has moved on is not proposed (staleTerm).
	term uint64
	done func(first uint64, err error)
}

// replica is this node's member of one shard's Raft group.
type replica struct {
	shard   int
	name    string // the group's name and the store's applied-index key
	raft    *raft.Raft
	release func() // GroupDeps.Release; nil: none
	fsm     *fsm
	log     *slog.Logger
	timeout time.Duration // how long a proposal may wait to be enqueued
	floors  func() bool   // entries are written in version 5 (proposer.floors)
	// barrier, when a test sets it, stands for raft's Barrier in
	// awaitTransferEnd.
	barrier func(timeout time.Duration) error
	opened  time.Time // when the replica started (reconfigure.go)
	stop    chan struct{}
	// raftDown is closed once Raft has shut down (close): a future it
	// has not answered by then it never will.
	raftDown chan struct{}
	wg       sync.WaitGroup
	// serving latches once the replica serves reads, when it has caught
	// up with its group (awaitServing); a catch-up from peers unlatches
	// it (unserve).
	serving atomic.Bool
	// unserve (capacity 1) wakes awaitServing after serving was
	// unlatched, and catchUps counts the catch-ups that unlatched it.
	unserve  chan struct{}
	catchUps atomic.Uint64
	// led is the term in which this replica last became a leader that
	// has applied every entry of the terms before (kv.go): it leads now
	// if raft says it leads in that term.
	led atomic.Uint64

	mu struct {
		sync.Mutex // guards queue and closed
		queue      []proposal
		closed     bool
	}
	wake chan struct{} // capacity 1
	// settled (capacity 1) tells proposeLoop that an entry of this
	// replica was answered, or that it became a leader that has applied
	// its predecessors' entries: if nothing else is in flight or queued,
	// the followers are told the commit index (commit notices, below).
	settled chan struct{}
	notices *atomic.Uint64 // the Set's count of commit notices sent
	// transfers takes proposeLoop's hold for a leadership transfer
	// (transferLeadership).
	transfers chan transferHold
}

// transferHold is a leadership transfer's request to proposeLoop: have no
// entry in flight (within wait), then propose none until done is closed.
// ready is closed once it holds, refused if entries stayed in flight.
type transferHold struct {
	wait                 time.Duration
	ready, refused, done chan struct{}
}

// errEntriesInFlight: a leadership transfer was not tried because the
// shard's entries in flight were not answered in time.
var errEntriesInFlight = errors.New("entries in flight were not answered in time; transfer not tried")

// transferLeadership runs transfer, which hands this replica's leadership
// over, while no entry of the replica is in flight and none is proposed.
// Raft refuses the entries proposed while a transfer is under way
// (ErrLeadershipTransferInProgress), and they go back to the outbox to be
// sent again; should the transfer fail, this node still leads, and an
// entry proposed after it would be stored before them: one publisher's
// records out of order. Held, the appends wait in the replica's queue,
// and are proposed in order once the transfer failed, or fail together,
// in order, as proposed in an earlier term, once it succeeded. wait bounds
// how long the entries in flight may take to be answered.
func (r *replica) transferLeadership(wait time.Duration, transfer func() error) error {
	h := transferHold{wait: wait, ready: make(chan struct{}), refused: make(chan struct{}), done: make(chan struct{})}
	timer := time.NewTimer(wait)
	defer timer.Stop()
	select {
	case r.transfers <- h:
	case <-timer.C:
		return errEntriesInFlight // proposeLoop waits for a slot
	case <-r.stop:
		return streams.ErrClosed
	}
	defer close(h.done)
	select {
	case <-h.ready:
	case <-h.refused:
		return errEntriesInFlight
	case <-r.stop:
		return streams.ErrClosed
	}
	err := transfer()
	if err != nil && !errors.Is(err, streams.ErrClosed) {
		r.awaitTransferEnd(wait)
	}
	return err
}

// awaitTransferEnd waits until raft no longer refuses proposals for a
// transfer under way. Raft answers a failed transfer when its timeout
// (wait) passes but clears its flag only once the TimeoutNow call to the
// target returned, which a slow target or a connection being made can
// take the transport's timeout: released before, the hold would let the
// appends it kept be refused and sent again, while the next ones are
// taken once the flag is clear: one publisher's records out of order.
// maxTransferEnd bounds the wait all the same.
func (r *replica) awaitTransferEnd(wait time.Duration) {
	barrier := r.barrier
	if barrier == nil {
		// A configuration read: raft's leader loop refuses it under the
		// same flag as proposals, and otherwise answers at once (a
		// Barrier would also wait for the state machine, which a store
		// refusing writes can hold up to the limit).
		barrier = func(time.Duration) error { return r.raft.GetConfiguration().Error() }
	}
	r.awaitProposable(func() error { return barrier(wait) }, maxTransferEnd)
}

// maxTransferEnd bounds how long a failed transfer holds the proposals.
const maxTransferEnd = time.Minute

// awaitProposable calls barrier until it is not refused for a transfer
// in progress, at most limit (or until the replica stops).
func (r *replica) awaitProposable(barrier func() error, limit time.Duration) {
	deadline := time.NewTimer(limit)
	defer deadline.Stop()
	for {
		errc := make(chan error, 1)
		go func() { errc <- barrier() }()
		select {
		case err := <-errc:
			if !errors.Is(err, raft.ErrLeadershipTransferInProgress) {
				return
			}
		case <-deadline.C:
			r.log.Warn("a failed leadership transfer still holds the shard's proposals; releasing them", "shard", r.shard, "waited", limit)
			return
		case <-r.stop:
			return
		}
		select {
		case <-time.After(10 * time.Millisecond):
		case <-deadline.C:
			r.log.Warn("a failed leadership transfer still holds the shard's proposals; releasing them", "shard", r.shard, "waited", limit)
			return
		case <-r.stop:
			return
		}
	}
}

// holdForTransfer serves h in proposeLoop: it takes every slot (no entry
// in flight), tells the transfer, and keeps them until it is done. false:
// the replica stopped.
func (r *replica) holdForTransfer(h transferHold, slots chan struct{}) bool {
	taken := 0
	defer func() {
		for range taken {
			<-slots
		}
		r.settle() // a notice may be due, or appends queued meanwhile
	}()
	timer := time.NewTimer(h.wait)
	defer timer.Stop()
	for taken < cap(slots) {
		select {
		case slots <- struct{}{}:
			taken++
		case <-timer.C:
			close(h.refused)
			return true
		case <-r.stop:
			return false
		}
	}
	close(h.ready)
	select {
	case <-h.done:
		return true
	case <-r.stop:
		return false
	}
}

func groupName(shard int) string { return fmt.Sprintf("shard-%d", shard) }

// proposer holds how a replica proposes entries.
type proposer struct {
	timeout time.Duration // how long a proposal may wait to be enqueued
	// floors reports whether to write entries of version 5
	// (Options.DedupeFloors); nil: never.
	floors func() bool
}

// openReplica starts this node's replica of shard: its state machine over
// fc.store (catching up from the peers of fc.src when it is behind) and
// its Raft group. changed is called at each change of the shard's
// leadership as this replica sees it, with whether this replica now leads
// (kv.go); notices counts the commit notices it sends.
func openReplica(fc fsmConfig, cfg *raft.Config, deps GroupDeps, p proposer, changed func(leading bool), notices *atomic.Uint64) (*replica, error) {
	r := &replica{shard: fc.shard, name: groupName(fc.shard), log: fc.logger, timeout: p.timeout, floors: p.floors, opened: time.Now(), notices: notices,
		stop: make(chan struct{}), raftDown: make(chan struct{}), wake: make(chan struct{}, 1),
		settled: make(chan struct{}, 1), release: deps.Release, unserve: make(chan struct{}, 1), transfers: make(chan transferHold)}
	fc.stop = r.stop
	fc.onCatchUp = r.catchingUp
	var err error
	if r.fsm, err = newFSM(fc); err != nil {
		return nil, err
	}
	r.fsm.opening.Store(true)
	r.raft, err = raft.NewRaft(cfg, r.fsm, deps.Logs, deps.Stable, deps.Snapshots, deps.Transport)
	r.fsm.opening.Store(false)
	if err != nil {
		return nil, fmt.Errorf("shards: %s: %w", r.name, err)
	}
	if fc.src != nil {
		fc.src.raft.Store(r.raft)
	}
	r.wg.Add(2)
	go r.proposeLoop()
	go r.watchLeadership(changed)
	return r, nil
}

// bootstrap makes peers the group's first configuration; a group that has
// state already keeps it.
func (r *replica) bootstrap(peers []Peer) error {
	servers := make([]raft.Server, len(peers))
	for i, p := range peers {
		servers[i] = raft.Server{ID: raft.ServerID(p.ID), Address: raft.ServerAddress(p.RPC), Suffrage: raft.Voter}
	}
	err := r.raft.BootstrapCluster(raft.Configuration{Servers: servers}).Error()
	if err != nil && !errors.Is(err, raft.ErrCantBootstrap) {
		return fmt.Errorf("shards: bootstrap %s: %w", r.name, err)
	}
	return nil
}

// member reports whether node id is a server (voter or not) of the
// group's latest configuration as this replica knows it.
func (r *replica) member(id string) bool {
	cfg := r.raft.GetConfiguration()
	if cfg.Error() != nil {
		return false
	}
	return slices.ContainsFunc(cfg.Configuration().Servers, func(srv raft.Server) bool { return string(srv.ID) == id })
}

// serves reports whether the replica serves reads (serving), and is not
// in the middle of a catch-up from its peers (its store is then between
// two states of the log).
func (r *replica) serves() bool { return r.serving.Load() && !r.fsm.behind() }

// catchingUp is told by the state machine that it is about to catch up
// to a snapshot from its peers (the replica fell behind the others'
// logs while serving, cut off from them): it serves reads again only
// once it has caught up with its group anew (awaitServing). Raft's
// goroutine.
func (r *replica) catchingUp() {
	r.catchUps.Add(1)
	r.serving.Store(false)
	select {
	case r.unserve <- struct{}{}:
	default:
	}
}

// servingPoll is how often awaitServing looks again.
const servingPoll = 50 * time.Millisecond

// awaitServing latches r.serving once the replica has caught up with its
// group: as a follower, once it has applied what its shard's leader had
// applied when first asked (leaderApplied); as the leader, once a barrier
// has gone through its state machine (everything committed before it is
// applied). Until then the node reads the shard from another replica:
// one opened at the node's start lacks what was written while the node
// was down, one a layout change added lacks everything, and one catching
// up from its peers (fsm.behind) is between two states of the log. Its
// own commit index would not do: a follower's is the end of the last
// batch of entries it received, and raft counts entries as applied once
// they are handed to the state machine, before they are.
func (r *replica) awaitServing(leaderApplied func(ctx context.Context, leader Peer) (uint64, error)) {
	defer r.wg.Done()
	for {
		gen, ok := r.latchServing(leaderApplied)
		if !ok {
			return
		}
		select {
		case <-r.stop:
			return
		case <-r.unserve:
		}
		if r.catchUps.Load() != gen {
			// A catch-up that began as serving latched: unlatched
			// again (catchingUp's store may have come first).
			r.serving.Store(false)
		}
	}
}

// latchServing waits until the replica has caught up (awaitServing) and
// latches serving, and returns the count of catch-ups it saw; false if
// the replica stops first.
func (r *replica) latchServing(leaderApplied func(ctx context.Context, leader Peer) (uint64, error)) (uint64, bool) {
	tick := time.NewTicker(servingPoll)
	defer tick.Stop()
	var target uint64
	known := false
	gen := r.catchUps.Load()
	for {
		if g := r.catchUps.Load(); g != gen {
			// A catch-up began since the target was asked for.
			gen, known = g, false
		}
		switch {
		case r.fsm.behind():
		case r.isLeader():
			// A future raft does not answer when it shuts down with the
			// barrier still queued for the state machine: not waited on
			// past the replica's close.
			errc := make(chan error, 1)
			f := r.raft.Barrier(r.timeout)
			go func() { errc <- f.Error() }()
			select {
			case err := <-errc:
				if err == nil && r.isLeader() && r.catchUps.Load() == gen {
					r.serving.Store(true)
					return gen, true
				}
			case <-r.stop:
				return 0, false
			}
		case known:
			if r.fsm.applied.Load() >= target && r.catchUps.Load() == gen {
				r.serving.Store(true)
				return gen, true
			}
		default:
			if p, ok := r.leader(); ok {
				ctx, cancel := context.WithTimeout(context.Background(), peerCallTimeout)
				t, err := leaderApplied(ctx, p)
				cancel()
				if err == nil {
					target, known = t, true
					continue
				}
				r.log.Debug("cannot ask the shard's leader what it applied", "node", p.ID, "error", err)
			}
		}
		select {
		case <-r.stop:
			return 0, false
		case <-tick.C:
		}
	}
}

// isLeader reports whether this replica leads the shard now.
func (r *replica) isLeader() bool { return r.raft.State() == raft.Leader }

// leader returns the shard's leader as this replica knows it.
func (r *replica) leader() (Peer, bool) {
	addr, id := r.raft.LeaderWithID()
	return Peer{ID: string(id), RPC: string(addr)}, id != ""
}

// propose queues an append for the leader's next entry; done reports its
// outcome once committed and applied here, or its failure.
func (r *replica) propose(cmd appendCmd, done func(first uint64, err error)) {
	size := len(cmd.stream) + 8
	for _, rec := range cmd.records {
		size += len(rec) + 4
	}
	for _, w := range cmd.kv {
		size += len(w.Key) + len(w.Value) + 5
	}
	r.mu.Lock()
	if r.mu.closed {
		r.mu.Unlock()
		done(0, streams.ErrClosed)
		return
	}
	r.mu.queue = append(r.mu.queue, proposal{cmd: cmd, size: size, term: r.raft.CurrentTerm(), done: done})
	r.mu.Unlock()
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// maxEntriesInFlight bounds the entries of a shard proposed and not yet
// applied: while they are, appends gather into the next entry, so a busy
// shard makes few large entries rather than many small ones (each entry
// costs a log write, a replication round and an apply).
const maxEntriesInFlight = 2

// Commit notices. A follower learns that entries are committed from the
// leader's next AppendEntries: the next entry's, or raft's commit-timeout
// one (Timers.Commit, seconds long so that an idle cluster stays quiet).
// Without more, a follower would apply the last entries of a burst, and
// every record of a shard written now and then, that much later, and
// readers, groups and queries on the follower's node would see them as
// late. So once a leader's entries have all been applied and nothing is
// queued for noticeDelay, it proposes an empty barrier entry (raft's: it
// never reaches the state machine) whose replication carries the commit
// index; no more than one every noticeSpacing, so a shard written a few
// times a second costs a barrier per write at most, one busier none
// (its next entry tells the followers).
//
// A shard written every few tens of milliseconds would still send a
// notice after most entries, each a Raft round of its own (a log write
// and an fsync on every replica) for a commit index its next entry
// carries a moment later: at 500 msg/s over 12 shards, a fifth of the
// entries were notices. So the wait before a notice is twice the shard's
// recent gap between entries when that is between noticeDelay and
// noticeSpacing (noticeWait): a notice then goes out only when the shard
// falls quiet for longer than usual, and a follower sees a record at
// most about two gaps late. A shard written more rarely than that gets
// its notice noticeDelay after each write, as before.
const (
	noticeDelay   = 10 * time.Millisecond
	noticeSpacing = 100 * time.Millisecond
)

// noticeWait returns how long a leader waits, once its entries are
// applied and nothing is queued, before a commit notice, given the
// shard's recent gap between entries.
func noticeWait(gap time.Duration) time.Duration {
	if w := 2 * gap; w > noticeDelay && w <= noticeSpacing {
		return w
	}
	return noticeDelay
}

// gapWeight is the weight of the newest gap between entries in the
// running average noticeWait reads (1/gapWeight).
const gapWeight = 8

// proposeLoop turns queued appends into Raft entries: everything queued
// while the previous entries were in flight goes into the next. It also
// sends the commit notices.
// admin reports whether c creates or deletes a stream. Such a command
// only ever starts an entry: the state machine commits an entry's
// earlier appends and key/value writes, with the entry's applied index,
// before it creates or deletes (a write of its own), so a crash between
// the two would leave the entry marked applied without its creation or
// deletion, and the replay would skip it. Appends after it in the entry
// are safe: replayed, the creation or deletion is refused as done
// already, and the appends are applied.
func admin(c appendCmd) bool { return c.kind == kindCreate || c.kind == kindDelete }

// entryLength returns how many of queue's proposals (not empty) go in the
// next entry: at least one, no more than maxEntryBytes together, and
// none that creates or deletes a stream after the first (admin).
func entryLength(queue []proposal) int {
	n, size := 1, queue[0].size
	for n < len(queue) && size+queue[n].size <= maxEntryBytes && !admin(queue[n].cmd) {
		size += queue[n].size
		n++
	}
	return n
}

// staleTerm returns how many of queue's first proposals were queued in a
// term before term. Such an append was routed here while this replica led
// an earlier term: since then it lost the leadership, and an append of
// that term already in flight failed and is sent again through the
// outbox. Proposed now, in a term this replica leads again, it would be
// stored ahead of that one; it fails as not proposed instead, and is sent
// again after it (answers go in proposal order).
func staleTerm(queue []proposal, term uint64) int {
	n := 0
	for n < len(queue) && queue[n].term != term {
		n++
	}
	return n
}

// failedFuture is the outcome of an entry never proposed.
type failedFuture struct{ err error }

func (f failedFuture) Error() error  { return f.err }
func (f failedFuture) Index() uint64 { return 0 }
func (f failedFuture) Response() any { return nil }

func (r *replica) proposeLoop() {
	defer r.wg.Done()
	var waiters sync.WaitGroup
	defer waiters.Wait()
	slots := make(chan struct{}, maxEntriesInFlight)
	acquire := func() bool {
		select {
		case <-r.stop:
			return false
		case slots <- struct{}{}:
			return true
		}
	}
	notice := time.NewTimer(time.Hour)
	notice.Stop()
	defer notice.Stop()
	var lastNotice, lastWake time.Time
	gap := noticeSpacing // the running average gap between entries (noticeWait)
	// answered is closed once the appends of the last entry proposed
	// have been answered: each entry's answers wait for the previous
	// entry's (answer).
	var answered chan struct{}
	for {
		select {
		case <-r.stop:
			r.failQueued(errClosedUnproposed)
			return
		case <-r.settled:
			if len(slots) == 0 && r.queued() == 0 {
				notice.Reset(max(noticeWait(gap), time.Until(lastNotice.Add(noticeSpacing))))
			}
			continue
		case h := <-r.transfers:
			if !r.holdForTransfer(h, slots) {
				r.failQueued(errClosedUnproposed)
				return
			}
			continue
		case <-notice.C:
			if len(slots) == 0 && r.queued() == 0 && r.isLeader() {
				lastNotice = time.Now()
				// Not awaited: the barrier's outcome changes nothing.
				r.raft.Barrier(r.timeout)
				r.notices.Add(1)
			}
			continue
		case <-r.wake:
			notice.Stop() // the next entry tells the followers
			now := time.Now()
			if !lastWake.IsZero() {
				gap += (min(now.Sub(lastWake), time.Second) - gap) / gapWeight
			}
			lastWake = now
		}
		if !acquire() {
			r.failQueued(errClosedUnproposed)
			return
		}
		// Appends queued while waiting for the slot join this entry.
		r.mu.Lock()
		queue := r.mu.queue
		r.mu.queue = nil
		r.mu.Unlock()
		held := true
		for len(queue) > 0 {
			if !held && !acquire() {
				for _, p := range queue {
					p.done(0, errClosedUnproposed)
				}
				r.failQueued(errClosedUnproposed)
				return
			}
			held = false
			var f raft.ApplyFuture
			n := staleTerm(queue, r.raft.CurrentTerm())
			if n > 0 {
				// Queued in an earlier term: failed as not proposed,
				// answered in their turn.
				f = failedFuture{raft.ErrNotLeader}
			} else {
				n = entryLength(queue)
			}
			batch := queue[:n:n]
			queue = queue[n:]
			if f == nil {
				cmds := make([]appendCmd, len(batch))
				for i, p := range batch {
					cmds[i] = p.cmd
				}
				least := byte(entryVersion1)
				if r.floors != nil && r.floors() {
					least = entryVersion5
				}
				f = r.raft.Apply(encodeEntryAs(time.Now(), cmds, least), r.timeout)
			}
			before, done := answered, make(chan struct{})
			answered = done
			waiters.Add(1)
			go func() {
				defer waiters.Done()
				r.answer(f, batch, before)
				close(done)
				<-slots
				if len(slots) == 0 {
					// The last in flight: only then may a notice be
					// due (a busy shard's proposer is not woken for
					// every entry).
					r.settle()
				}
			}()
		}
		if held {
			<-slots // woken with nothing queued
			// An entry answered while this slot was held saw it
			// taken and left the notice to this loop.
			r.settle()
		}
	}
}

// settle wakes proposeLoop to consider a commit notice.
func (r *replica) settle() {
	select {
	case r.settled <- struct{}{}:
	default:
	}
}

// queued returns how many appends wait to be proposed.
func (r *replica) queued() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.mu.queue)
}

// answer waits for an entry to be committed and applied, and for the
// previous entry's appends to be answered (before is closed then; nil:
// none), then answers its appends. Answers in proposal order keep one
// publisher's appends in order when they are sent again: entries that
// fail together (the leadership lost with both in flight) put theirs
// back in the outbox in the order they were proposed.
func (r *replica) answer(f raft.ApplyFuture, batch []proposal, before <-chan struct{}) {
	err := r.wait(f)
	if before != nil {
		<-before
	}
	if err != nil {
		err = raftError(err)
		for _, p := range batch {
			p.done(0, err)
		}
		return
	}
	results, ok := f.Response().([]appendResult)
	for i, p := range batch {
		if !ok || i >= len(results) {
			// The state machine stopped before it applied the entry (it
			// returns no results then): committed, but not known to be
			// stored here. Sent again (with its id) rather than
			// reported failed, which a client's own resend would store
			// twice.
			p.done(0, fmt.Errorf("shards: %s: no result for an applied entry: %w", r.name, errStoppedApplying))
			continue
		}
		p.done(results[i].first, results[i].err)
	}
}

// wait returns f's outcome. Raft leaves some futures unanswered when it
// shuts down (one waiting in its apply queue, or for the state machine):
// once Raft is down, such an entry's outcome is unknown (ErrClosed), and
// waiting for it would hold the replica's close forever.
func (r *replica) wait(f raft.Future) error {
	errc := make(chan error, 1)
	go func() { errc <- f.Error() }()
	select {
	case err := <-errc:
		return err
	case <-r.raftDown:
		select {
		case err := <-errc:
			return err
		default:
			return fmt.Errorf("%w: %w: shard %d", streams.ErrClosed, errOutcomeUnknown, r.shard)
		}
	}
}

// errNotProposed marks a proposal Raft refused before appending it to
// its log (this node was not, or no longer, the leader, or a leadership
// transfer was under way): nothing of it can be committed, so it may be
// sent again.
var errNotProposed = errors.New("not proposed")

// errOutcomeUnknown marks an append whose leader stopped, or lost its
// leadership, with the append's entry in its log but not known to be
// committed: the next leader may commit it or drop it. Only a sender whose
// retries are deduplicated sends it again (route, forwardBatch): an
// append with an id, which the state machine answers from its window
// (dedupe.go) if the first entry was committed after all.
var errOutcomeUnknown = errors.New("the outcome is unknown: the leader stopped or lost its leadership with the append in flight")

// raftError maps a failed proposal to the error an appender sees. Only a
// proposal lost with the leadership may have been committed all the same.
func raftError(err error) error {
	switch {
	case errors.Is(err, raft.ErrNotLeader), errors.Is(err, raft.ErrLeadershipTransferInProgress), errors.Is(err, raft.ErrEnqueueTimeout):
		return fmt.Errorf("%w: %w (%v)", ErrNoLeader, errNotProposed, err)
	case errors.Is(err, raft.ErrLeadershipLost):
		return fmt.Errorf("%w: %w (%v)", ErrNoLeader, errOutcomeUnknown, err)
	case errors.Is(err, raft.ErrRaftShutdown):
		// Proposed, perhaps committed, before the group shut down.
		return fmt.Errorf("%w: %w", streams.ErrClosed, errOutcomeUnknown)
	}
	return fmt.Errorf("%w: %w", streams.ErrUnavailable, err)
}

// errClosedUnproposed answers the appends a closing replica had queued,
// never proposed: sent again elsewhere (through the outbox) when the
// node goes on while the replica closes (moved away, reopened); failed
// as closed when the node stops.
var errClosedUnproposed = fmt.Errorf("%w: %w", streams.ErrClosed, errNotProposed)

func (r *replica) failQueued(err error) {
	r.mu.Lock()
	queue := r.mu.queue
	r.mu.queue, r.mu.closed = nil, true
	r.mu.Unlock()
	for _, p := range queue {
		p.done(0, err)
	}
}

// close stops proposing, fails what is queued and shuts the group down.
// handOver, when this replica leads its shard and the node is stopping,
// hands the leadership to the most up-to-date other voter and waits for
// it (at most raft's election timeout): the shard keeps a leader while
// this node goes, instead of having none until its followers time out.
// Appends being proposed here fail as not proposed and their senders
// send them to the new leader.
func (r *replica) handOver(log *slog.Logger, shard int, wait time.Duration) {
	if !r.isLeader() {
		return
	}
	if err := r.transferLeadership(wait, func() error { return r.raft.LeadershipTransfer().Error() }); err != nil {
		log.Debug("no leadership handover before stopping", "shard", shard, "error", err)
		return
	}
	log.Info("handed shard leadership over before stopping", "shard", shard)
}

func (r *replica) close() error {
	select {
	case <-r.stop:
		return nil
	default:
	}
	close(r.stop)
	if r.release != nil {
		r.release()
	}
	err := r.raft.Shutdown().Error()
	close(r.raftDown)
	r.wg.Wait()
	r.failQueued(errClosedUnproposed)
	return err
}

package shards

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"

	"github.com/mqstream/mqstream/internal/broadcast"
	"github.com/mqstream/mqstream/streams"
)

// Forwarder carries a request to another node (the cluster's RPC mux).
type Forwarder interface {
	Call(ctx context.Context, addr, service string, req []byte) ([]byte, error)
}

// ForwardService is the RPC service name of forwarded appends.
const ForwardService = "shards.append"

// maxHops bounds how often one append is forwarded.
const maxHops = 2

// Timers are the Raft timings of every shard group.
type Timers struct {
	Heartbeat, Election, LeaderLease time.Duration
	// Commit is raft's commit timeout for the shard groups: how often an
	// idle leader tells each follower the commit index anyway. Busy
	// leaders tell them with every entry, and a leader whose entries
	// stop sends a commit notice (replica.go), so it can be long.
	// MetaCommit is the metadata group's, which sends no notices.
	Commit, MetaCommit time.Duration
	// Balance is how often leadership is handed back to preferred leaders.
	Balance time.Duration
	// SnapshotInterval and SnapshotThreshold: how often a group checks,
	// and how many new entries make it take a snapshot (so that the log
	// can be truncated to TrailingLogs entries).
	SnapshotInterval  time.Duration
	SnapshotThreshold uint64
	TrailingLogs      uint64
	// Orphaned is how long a replica the layout no longer places on
	// this node may go without hearing from its group's leader before
	// it is dropped all the same (reconfigure.go): its group removed it
	// while it was cut off, so it never learnt it.
	Orphaned time.Duration
	// ForwardAttempt bounds one call forwarding appends to a shard's
	// leader (outbox.go): a leader cut off by a partition that drops
	// packets answers nothing, and the appends must go to the next one.
	ForwardAttempt time.Duration
}

// peerCallTimeout bounds one call asking a peer how far its replica is
// (reconfigure.go) or whether its group still counts a node
// (leftover.go).
const peerCallTimeout = 2 * time.Second

// DefaultTimers are hashicorp/raft's heartbeat and election timeouts
// (sized for LAN round trips and busy machines; they decide how soon a
// dead leader is replaced), with a balancing pass every 5 s and a long
// trailing log, so a replica that was away for a while catches up from
// the log. Two timings are longer than raft's, for an idle cluster's sake
// (see "Transport and timings" in the package doc): the leader lease is
// as long as the heartbeat timeout (raft: half), so that heartbeats
// batched per peer node every 500 ms (cluster/heartbeat) keep it with
// room to spare; and the commit timeout, how often an idle leader tells
// each follower the commit index anyway, is 5 s for the shard groups
// (their leaders send commit notices after their last entries instead)
// and 1 s for the metadata group: raft's 50 ms made an idle three-node
// cluster of 12 shards spend a fifth of a core on it.
func DefaultTimers() Timers {
	return Timers{Heartbeat: time.Second, Election: time.Second, LeaderLease: time.Second,
		Commit: 5 * time.Second, MetaCommit: time.Second, Balance: 5 * time.Second,
		SnapshotInterval: 2 * time.Minute, SnapshotThreshold: 16384, TrailingLogs: 65536,
		Orphaned: time.Minute, ForwardAttempt: 2 * time.Second}
}

// LocalTimers are fast timings for nodes on one machine (tests), though
// not so fast that a loaded two-core machine running -race tests misses
// heartbeats (leadership lost while committing: 150 ms did now and then).
func LocalTimers() Timers {
	return Timers{Heartbeat: 400 * time.Millisecond, Election: 400 * time.Millisecond, LeaderLease: 200 * time.Millisecond,
		Commit: 10 * time.Millisecond, MetaCommit: 10 * time.Millisecond, Balance: 300 * time.Millisecond,
		SnapshotInterval: 5 * time.Second, SnapshotThreshold: 16384, TrailingLogs: 65536,
		Orphaned: 5 * time.Second, ForwardAttempt: 2 * time.Second}
}

// Options configure a node's shards.
type Options struct {
	// Self is this node.
	Self Peer
	// Shards is the cluster's shard count.
	Shards int
	// Store is the node's stream store, every local replica's state.
	Store Store
	// Open returns the Raft dependencies of the named group. A group
	// is opened again after Drop (a replica given back to this node).
	Open func(group string) (GroupDeps, error)
	// Drop deletes the named group's Raft state (its log, stable state
	// and snapshots) once its replica has closed because the layout
	// moved it away, so that the next Open returns empty ones and a
	// replica given back later starts clean. Nil: the Raft state is
	// kept (the store's part of the shard is dropped all the same), and
	// a replica given back restarts from it like one that was away.
	Drop func(group string) error
	// HasRaftState reports whether the named group has Raft state on
	// this node (a log, a term or a vote). With Drop, the Raft state of
	// a shard the layout moved away is dropped once the group's leader
	// says its committed configuration no longer lists this node
	// (leftover.go). Nil: such state is kept.
	HasRaftState func(group string) bool
	// Forward reaches other nodes.
	Forward Forwarder
	// Alive reports whether a member is up (membership); a leader is
	// handed back only to a preferred leader that is, and adds only
	// replicas that are. Nil: always.
	Alive func(id string) bool
	// Down reports whether a member is known to be down (failed or left,
	// not merely suspect): a replica the layout dropped that is down is
	// removed from its group at once, before the replicas replacing it
	// caught up; one that is not waits for them, since the group may need
	// it for a majority meanwhile. Nil: not Alive.
	Down func(id string) bool
	// AdminIDs reports whether every member can decode creations and
	// deletions of streams that carry an id (entry version 4): only
	// then are they given one, and sent again after an attempt whose
	// outcome is unknown (a forward whose answer was lost, a leader that
	// lost its leadership with one in flight) rather than answered with
	// the outcome unknown. Nil: never.
	AdminIDs func() bool
	// DedupeFloors reports whether every member knows entries of
	// version 5, whose retries older than a shard's window are refused
	// (dedupe.go): only then does a leader write them. Nil: never.
	DedupeFloors func() bool
	// WriteTimeout bounds how long an append waits for a shard leader
	// (elections take a few seconds) and for its commit.
	WriteTimeout time.Duration
	Timers       Timers
	Logger       *slog.Logger
	// LogLimit holds back repeated Raft log lines (nil: none held back).
	LogLimit *LogLimit
}

// Set is this node's part of the replicated shards: its replicas, and
// the routing of appends to each shard's leader.
type Set struct {
	opts Options
	log  *slog.Logger
	// layout is the target layout (Update); a stored Layout is never
	// modified, so a reader of one sees it whole.
	layout atomic.Pointer[Layout]
	// replicas holds this node's replica of each shard (nil where it
	// holds none). Start and the manager goroutine (reconfigure.go)
	// write them; anyone reads them (replica) and may find a replica
	// that has just closed: its calls then fail, as after Close.
	replicas []atomic.Pointer[replica]
	// reconf wakes the manager (capacity 1): a new layout.
	reconf chan struct{}
	// managed is done once the manager goroutine has returned.
	managed sync.WaitGroup
	// outboxes hold each shard's appends on their way to its leader.
	outboxes []outbox
	done     chan struct{}
	// wg counts the set's goroutines (balance, the outboxes' senders);
	// life guards starting one against Close waiting for them (spawn).
	wg   sync.WaitGroup
	life struct {
		sync.Mutex
		closed bool // Close has begun: no goroutine starts any more
	}
	once sync.Once
	// producer and seq name this node's appends (appendID): a random
	// number drawn at start (never 0), so that ids never repeat across
	// nodes and restarts, and a counter.
	producer uint64
	seq      atomic.Uint64
	// ready latches once every local shard has had a leader (Ready).
	ready atomic.Bool
	// forwards count forward calls: made, served, failed (Counters).
	forwards struct{ sent, received, failed atomic.Uint64 }
	// copies holds the forwarded appends with ids being handled here
	// (HandleForward), so that a copy sent again by a forwarder whose
	// attempt timed out waits for the first instead of being proposed a
	// second time.
	copies pendingCopies
	// handoffs counts the leadership transfers this node started to hand
	// a shard to its preferred leader (balance).
	handoffs atomic.Uint64
	// notices counts the commit notices this node's leaders sent
	// (replica.go).
	notices atomic.Uint64
	// changes wakes the callers of LeadershipChanged (kv.go).
	changes broadcast.Signal
	// reconciled counts the manager's passes over the shards (tests wait
	// for some to pass).
	reconciled atomic.Uint64
	// mu guards passed: for each shard held elsewhere, how many of its
	// replicas (in layout order, this node left out) forwards pass over,
	// from the preferred leader, because the ones before failed them.
	mu struct {
		sync.Mutex
		passed map[int]int
	}
}

// Start opens this node's replicas of layout's shards and starts
// following layout changes (Update) and balancing leadership. The
// founding layout (Version 0) bootstraps each new group with its
// replicas; a replica of a later layout waits for its group's leader to
// add it (reconfigure.go). A node that restarts passes the newest layout
// it knows: given the founding layout again after the cluster moved on,
// it would bootstrap the groups of shards it no longer holds.
func Start(opts Options, layout Layout) (*Set, error) {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.WriteTimeout <= 0 {
		opts.WriteTimeout = 10 * time.Second
	}
	if opts.Timers == (Timers{}) {
		opts.Timers = DefaultTimers()
	}
	if opts.Timers.Orphaned <= 0 {
		opts.Timers.Orphaned = DefaultTimers().Orphaned
	}
	if opts.Timers.ForwardAttempt <= 0 {
		opts.Timers.ForwardAttempt = DefaultTimers().ForwardAttempt
	}
	if err := layout.validate(opts.Shards); err != nil {
		return nil, err
	}
	s := &Set{opts: opts, log: opts.Logger, replicas: make([]atomic.Pointer[replica], opts.Shards),
		reconf: make(chan struct{}, 1), outboxes: make([]outbox, opts.Shards), done: make(chan struct{}),
		producer: randomProducer()}
	layout = layout.clone()
	s.layout.Store(&layout)
	for i := range layout.Shards {
		if !layout.Holds(i, opts.Self.ID) {
			continue
		}
		if err := s.open(i, layout.Version == 0); err != nil {
			_ = s.Close()
			return nil, err
		}
	}
	s.managed.Add(1)
	go func() {
		defer s.managed.Done()
		s.manage()
	}()
	return s, nil
}

// replica returns this node's replica of shard, nil if it holds none.
func (s *Set) replica(shard int) *replica { return s.replicas[shard].Load() }

func (s *Set) raftConfig(group string) *raft.Config {
	t := s.opts.Timers
	c := raft.DefaultConfig()
	c.LocalID = raft.ServerID(s.opts.Self.ID)
	c.HeartbeatTimeout, c.ElectionTimeout, c.LeaderLeaseTimeout, c.CommitTimeout = t.Heartbeat, t.Election, t.LeaderLease, t.Commit
	c.SnapshotInterval, c.SnapshotThreshold, c.TrailingLogs = t.SnapshotInterval, t.SnapshotThreshold, t.TrailingLogs
	c.BatchApplyCh = true
	c.Logger = RaftLogger(s.log, group, s.opts.LogLimit)
	return c
}

// Submit routes an append to its shard's leader; req.Done reports the
// outcome once the records are committed on a majority of the shard's
// replicas (and applied on the leader), or why not.
func (s *Set) Submit(req streams.AppendRequest) error {
	if req.Done == nil {
		return errors.New("shards: AppendRequest.Done is nil")
	}
	select {
	case <-s.done:
		return streams.ErrClosed
	default:
	}
	cmd := appendCmd{kind: kindAppend, stream: req.Stream, noSync: req.NoSync, records: encodeRecords(req.Records),
		id: appendID{producer: s.producer, seq: s.seq.Add(1)}}
	if err := checkAppendSize(cmd); err != nil {
		return err
	}
	recs, done := req.Records, req.Done
	s.route(ShardOf(req.Stream, s.opts.Shards), cmd, 0, func(first uint64, err error) {
		if err == nil {
			for i := range recs {
				recs[i].Offset = first + uint64(i)
			}
		}
		done(first, err)
	})
	return nil
}

// maxAppendBytes bounds one append: it travels between nodes whole, in
// one forward request (rpcmux frames of 64 MiB), in one Raft entry (sent
// in requests that cluster/appends splits at 32 MiB, but never within an
// entry) and in one fetch page when a replica catches up.
const maxAppendBytes = 32 << 20

// checkAppendSize refuses an append larger than maxAppendBytes.
func checkAppendSize(cmd appendCmd) error {
	if len(cmd.records) == 0 {
		// It would store nothing, and its result could not be derived
		// again when the log is replayed (replay.go).
		return fmt.Errorf("shards: an append of no records to stream %q", cmd.stream)
	}
	if n := cmdSize(cmd); n > maxAppendBytes {
		return fmt.Errorf("%w: an append of %d bytes to stream %q; a cluster node takes at most %d in one",
			streams.ErrRecordTooLarge, n, cmd.stream, maxAppendBytes)
	}
	return nil
}

// Append appends records and waits until they are committed.
func (s *Set) Append(ctx context.Context, stream string, records ...streams.Record) (uint64, error) {
	type result struct {
		first uint64
		err   error
	}
	resc := make(chan result, 1)
	if err := s.Submit(streams.AppendRequest{Stream: stream, Records: records, Done: func(first uint64, err error) {
		resc <- result{first, err}
	}}); err != nil {
		return 0, err
	}
	select {
	case r := <-resc:
		return r.first, r.err
	case <-ctx.Done():
		return 0, ctx.Err()
	}
}

// CreateStream creates a stream on every replica of its shard, through
// the shard's log, and returns it as this node's store has it (when this
// node holds a replica; otherwise as requested).
func (s *Set) CreateStream(ctx context.Context, name string, r streams.Retention) (streams.StreamInfo, error) {
	if err := streams.ValidateName(name); err != nil {
		return streams.StreamInfo{}, err
	}
	if err := r.Validate(); err != nil {
		return streams.StreamInfo{}, err
	}
	if err := s.admin(ctx, appendCmd{kind: kindCreate, stream: name, retention: r}); err != nil {
		return streams.StreamInfo{}, err
	}
	info := streams.StreamInfo{Name: name, Retention: r}
	if s.replica(ShardOf(name, s.opts.Shards)) == nil {
		return info, nil
	}
	// Committed; this replica applies it soon if it has not yet.
	for wait := time.Millisecond; ; wait = min(2*wait, 50*time.Millisecond) {
		if got, err := s.opts.Store.DescribeStream(name); err == nil {
			return got, nil
		}
		select {
		case <-ctx.Done():
			return info, nil
		case <-s.done:
			return info, nil
		case <-time.After(wait):
		}
	}
}

// DeleteStream deletes a stream and its records on every replica.
func (s *Set) DeleteStream(ctx context.Context, name string) error {
	return s.admin(ctx, appendCmd{kind: kindDelete, stream: name})
}

func (s *Set) admin(ctx context.Context, cmd appendCmd) error {
	select {
	case <-s.done:
		return streams.ErrClosed
	default:
	}
	if s.opts.AdminIDs != nil && s.opts.AdminIDs() {
		cmd.id = appendID{producer: s.producer, seq: s.seq.Add(1)}
	}
	errc := make(chan error, 1)
	s.route(ShardOf(cmd.stream, s.opts.Shards), cmd, 0, func(_ uint64, err error) { errc <- err })
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// route proposes cmd when this node leads the shard and its outbox holds
// nothing, or queues it in the outbox (outbox.go): behind appends still
// waiting to be forwarded from before this node took the leadership, or
// behind appends proposed here when it lost the leadership, which come
// back to be sent again; either way a publisher's appends keep their
// order.
func (s *Set) route(shard int, cmd appendCmd, hops int, done func(uint64, error)) {
	o := &s.outboxes[shard]
	it := forwardItem{cmd: cmd, hops: hops, done: done, since: time.Now()}
	if r := s.replica(shard); r != nil && r.isLeader() && o.claimDirect(r.raft.CurrentTerm()) {
		s.proposeDirect(shard, r, []forwardItem{it})
		return
	}
	o.add(s, shard, it)
}

// target is where to forward an append of shard: its leader if this node
// knows it, otherwise one of its replicas in the current layout (when
// this node holds none, or holds one its group has not added yet): the
// preferred leader, which leads once the shards are balanced, or the
// next ones while forwards to it fail (passOver).
func (s *Set) target(shard int) (Peer, bool) {
	if r := s.replica(shard); r != nil {
		p, ok := r.leader()
		if ok || r.member(s.opts.Self.ID) {
			return p, ok && p.ID != s.opts.Self.ID
		}
	}
	var peers []Peer
	for _, p := range s.layout.Load().Shards[shard] {
		if p.ID != s.opts.Self.ID {
			peers = append(peers, p)
		}
	}
	if len(peers) == 0 {
		return Peer{}, false
	}
	s.mu.Lock()
	p := peers[s.mu.passed[shard]%len(peers)]
	s.mu.Unlock()
	return p, true
}

// passOver notes that a forward of shard to node id failed, or found no
// leader there: the next forward of the shard from this node goes to the
// next replica, if id was the one target chose.
func (s *Set) passOver(shard int, id string) {
	var peers []string
	for _, p := range s.layout.Load().Shards[shard] {
		if p.ID != s.opts.Self.ID {
			peers = append(peers, p.ID)
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(peers) > 0 && peers[s.mu.passed[shard]%len(peers)] == id {
		if s.mu.passed == nil {
			s.mu.passed = map[int]int{}
		}
		s.mu.passed[shard]++
	}
}

// HandleForward serves a batch of appends forwarded by another node (the
// ForwardService handler); the answer carries each one's outcome.
func (s *Set) HandleForward(ctx context.Context, from string, req []byte) ([]byte, error) {
	s.forwards.received.Add(1)
	shard, hops, cmds, err := decodeForward(req)
	if err == nil && shard >= s.opts.Shards {
		err = fmt.Errorf("%w: shard %d of %d", ErrBadEntry, shard, s.opts.Shards)
	}
	if err != nil {
		return nil, err
	}
	results := make([]appendResult, len(cmds))
	var wg sync.WaitGroup
	wg.Add(len(cmds))
	for i, c := range cmds {
		done := func(first uint64, err error) {
			results[i] = appendResult{first, err}
			wg.Done()
		}
		if c.retriable() {
			key := copyKey{shard, c.id}
			if s.copies.join(key, done) {
				continue // a copy of it is being handled here
			}
			done = s.copies.finisher(key)
		}
		s.route(shard, c, hops, done)
	}
	waited := make(chan struct{})
	go func() { wg.Wait(); close(waited) }()
	select {
	case <-waited:
		return encodeForwardResults(results), nil
	case <-ctx.Done():
		return nil, fmt.Errorf("%w: %w", streams.ErrUnavailable, ctx.Err())
	}
}

// pendingCopies are the forwarded appends being handled on this node,
// each with the answers its copies wait for.
type pendingCopies struct {
	mu sync.Mutex // guards m
	m  map[copyKey][]func(uint64, error)
}

type copyKey struct {
	shard int
	id    appendID
}

// join adds done to the waiters of the copy of key being handled, and
// reports whether there was one; if not, it records key as being handled
// with done its first waiter.
func (p *pendingCopies) join(key copyKey, done func(uint64, error)) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if waiters, ok := p.m[key]; ok {
		p.m[key] = append(waiters, done)
		return true
	}
	if p.m == nil {
		p.m = map[copyKey][]func(uint64, error){}
	}
	p.m[key] = []func(uint64, error){done}
	return false
}

// finisher returns the answer of key's append: it ends its handling and
// answers every copy.
func (p *pendingCopies) finisher(key copyKey) func(uint64, error) {
	return func(first uint64, err error) {
		p.mu.Lock()
		waiters := p.m[key]
		delete(p.m, key)
		p.mu.Unlock()
		for _, w := range waiters {
			w(first, err)
		}
	}
}

// Serves reports whether this node's replica of shard i serves reads:
// it is open and, when a layout change placed it here, it has caught up
// with its group once (before, the node reads the shard from another
// replica, as one it does not hold).
func (s *Set) Serves(i int) bool {
	if i < 0 || i >= len(s.replicas) {
		return false // a remote read naming a shard there is not
	}
	r := s.replica(i)
	return r != nil && r.serves()
}

// ShardStatus is one shard as this node sees it.
type ShardStatus struct {
	ID       int      `json:"id"`
	Leader   string   `json:"leader"` // node id; "" while none is known
	Term     uint64   `json:"term"`
	Replicas []string `json:"replicas"`
	// Applied is the last entry this node's replica applied (0 when it
	// holds none).
	Applied uint64 `json:"applied"`
	Local   bool   `json:"local"` // this node holds a replica
}

// RaftStats returns hashicorp/raft's own figures (raft.Stats: state, term,
// last log index, commit and applied index, last contact, configuration)
// of each Raft group this node holds, by group name: what to look at when
// a replica falls behind.
func (s *Set) RaftStats() map[string]map[string]string {
	out := map[string]map[string]string{}
	for i := range s.replicas {
		if r := s.replica(i); r != nil {
			out[r.name] = r.raft.Stats()
		}
	}
	return out
}

// Status lists every shard as this node sees it.
func (s *Set) Status() []ShardStatus {
	l := s.layout.Load()
	out := make([]ShardStatus, len(l.Shards))
	for i, peers := range l.Shards {
		st := ShardStatus{ID: i}
		for _, p := range peers {
			st.Replicas = append(st.Replicas, p.ID)
		}
		if r := s.replica(i); r != nil {
			st.Local = true
			if p, ok := r.leader(); ok {
				st.Leader = p.ID
			}
			st.Term = r.raft.CurrentTerm()
			st.Applied = r.fsm.applied.Load()
		}
		out[i] = st
	}
	return out
}

// Ready reports whether every shard this node holds has had a leader
// since the shards started. It latches: an election later (a leader
// died) makes writes to that shard wait a moment, which is no reason to
// turn clients away from the node.
func (s *Set) Ready() (bool, string) {
	if s.ready.Load() {
		return true, ""
	}
	var missing []int
	for i := range s.replicas {
		r := s.replica(i)
		if r == nil {
			continue
		}
		if _, ok := r.leader(); !ok {
			missing = append(missing, i)
		}
	}
	if len(missing) > 0 {
		sort.Ints(missing)
		return false, fmt.Sprintf("shards without a leader: %v", missing)
	}
	s.ready.Store(true)
	return true, ""
}

// ForwardCounters count the forward requests (each a batch of writes:
// appends, stream creations and deletions) this node sent to another
// node, and those it served.
type ForwardCounters struct {
	Sent     uint64 // forward requests made, retries included
	Received uint64 // forward requests served for other nodes
	Failed   uint64 // requests that did not get through (then retried)
}

// Counters returns the forward counters since the shards started.
func (s *Set) Counters() ForwardCounters {
	return ForwardCounters{Sent: s.forwards.sent.Load(), Received: s.forwards.received.Load(), Failed: s.forwards.failed.Load()}
}

// Handoffs returns how many times this node handed a shard's leadership
// to its preferred leader (leaders placed by count or by measured load).
func (s *Set) Handoffs() uint64 { return s.handoffs.Load() }

// CommitNotices returns how many commit notices (empty barrier entries
// that tell followers the commit index after a leader's last entries)
// this node's shard leaders proposed.
func (s *Set) CommitNotices() uint64 { return s.notices.Load() }

// Layout returns the shard layout this node follows (the last given to
// Start or Update). It is shared, not copied (reads look it up often):
// callers must not modify it.
func (s *Set) Layout() Layout { return *s.layout.Load() }

// Close shuts every replica down; idempotent.
func (s *Set) Close() error {
	var errs []error
	s.once.Do(func() {
		s.life.Lock()
		s.life.closed = true
		s.life.Unlock()
		close(s.done)
		// The manager opens and closes replicas: once it is gone, the
		// replicas are these.
		s.managed.Wait()
		var mu sync.Mutex
		var wg sync.WaitGroup
		for i := range s.replicas {
			r := s.replica(i)
			if r == nil {
				continue
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				r.handOver(s.log, i, s.opts.Timers.Election)
				if err := r.close(); err != nil {
					mu.Lock()
					errs = append(errs, err)
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		s.wg.Wait()
		s.changes.Notify() // every local leadership is over
	})
	return errors.Join(errs...)
}

// spawn runs f on a goroutine of the set's, unless the set is closing
// (then it reports false): a goroutine started while Close waits for
// them all would race with that wait.
func (s *Set) spawn(f func()) bool {
	s.life.Lock()
	defer s.life.Unlock()
	if s.life.closed {
		return false
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		f()
	}()
	return true
}

// randomProducer draws a producer number (appendID); 0 means "no id".
func randomProducer() uint64 {
	for {
		var b [8]byte
		_, _ = rand.Read(b[:])
		if p := binary.BigEndian.Uint64(b[:]); p != 0 {
			return p
		}
	}
}

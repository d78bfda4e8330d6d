package shards

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/hashicorp/raft"

	"github.com/mqstream/mqstream/streams"
)

// Following layout changes.
//
// Update gives the Set the layout to reach; one goroutine, the manager
// (manage), owns the node's replicas and moves them toward it, once a
// balancing period and soon after a new layout or a change of
// leadership:
//
//   - a shard the layout places here and that has no local replica gets
//     one, started without bootstrapping its group (only the founding
//     layout bootstraps, in Start): it waits for the leader to add it and
//     send it the log, or a snapshot it then catches up to from its peers.
//   - the leader of each shard changes its group's configuration toward
//     the layout's replicas, one change at a time, each awaited: it
//     removes the servers the layout dropped that are down, adds the
//     layout's replicas that are up and not in the group as non-voters
//     and makes each a voter once it has caught up with the log
//     (promotable), then removes the other servers the layout dropped.
//     Removing dead servers first keeps a majority reachable: replacing a
//     dead node of three goes through two voters, never four of which two
//     would be needed and one is dead. Adding non-voters keeps a replica
//     that has no copy of the log yet out of the majority: a dead node
//     that comes back just as the planner replaces it is not removed
//     first, and with it catching up too, four voters would need one of
//     the two that cannot answer. A leader the layout dropped hands its
//     leadership to a replica of the layout first, and that one removes
//     it.
//   - a replica the layout no longer places here is closed once its
//     group's leader confirms that a committed configuration no longer
//     lists this node (confirmRemoved). It asks when its latest
//     configuration lacks this node, or once it has heard from no leader
//     for Timers.Orphaned (removed while it was away, it never learnt
//     it); until then it stays, its vote perhaps needed. Its part of the
//     store goes with it: the shard's streams, its key/value namespace,
//     its applied-index and restore markers, and its Raft state
//     (Options.Drop; a voter must never come back with an empty log: it
//     could elect a leader lacking committed entries). A replica given
//     back later starts clean and is caught up. The data of a shard moved
//     away while this node was down (no replica opens for it) is dropped
//     too, after Timers.Orphaned, its Raft state kept (leftover.go).
//
// A server the layout dropped that is up is removed, and a leader the
// layout dropped hands over, only once the layout's other replicas have
// applied the log up to the configuration that added them (their stores' applied index, asked over
// FetchService): a replica just added has no copy of the log yet, and
// removing a server that has one would leave the group's majority
// hanging on it.

// Update makes l the layout this node follows; the replicas follow it in
// the background. A layout with another shard count, or otherwise not
// valid, is refused (ErrBadLayout), as is one older than the current
// (ErrStaleLayout) or another of the same version; the current one again
// is ignored.
func (s *Set) Update(l Layout) error {
	if err := l.validate(s.opts.Shards); err != nil {
		return err
	}
	select {
	case <-s.done:
		return streams.ErrClosed
	default:
	}
	l = l.clone()
	for {
		cur := s.layout.Load()
		switch {
		case l.Version < cur.Version:
			return fmt.Errorf("%w: version %d, this node follows version %d", ErrStaleLayout, l.Version, cur.Version)
		case l.Version == cur.Version && sameShards(l, *cur):
			return nil
		case l.Version == cur.Version:
			return fmt.Errorf("%w: version %d again, with other replicas", ErrBadLayout, l.Version)
		}
		if s.layout.CompareAndSwap(cur, &l) {
			break
		}
	}
	s.log.Info("shard layout changed", "version", l.Version, "held", heldBy(l, s.opts.Self.ID))
	select {
	case s.reconf <- struct{}{}:
	default:
	}
	return nil
}

// heldBy lists the shards l places on node id.
func heldBy(l Layout, id string) []int {
	var out []int
	for i := range l.Shards {
		if l.Holds(i, id) {
			out = append(out, i)
		}
	}
	return out
}

// open starts this node's replica of shard; bootstrap: with the current
// layout's replicas as its group's first configuration (the founding
// layout). It serves reads once caught up with its group (awaitServing;
// at once without a Forwarder: no peers). Start and the manager call it.
func (s *Set) open(shard int, bootstrap bool) error {
	group := groupName(shard)
	deps, err := s.opts.Open(group)
	if err != nil {
		return err
	}
	opened := false
	defer func() {
		// A replica that did not start gives its transport back (the
		// node's is a channel of the RPC mux, which opens once).
		if c, ok := deps.Transport.(raft.WithClose); ok && !opened {
			_ = c.Close()
		}
	}()
	if err := s.clearLeftovers(shard, deps); err != nil {
		return err
	}
	src := &peerSource{self: s.opts.Self.ID, call: s.opts.Forward, snapshots: deps.Snapshots,
		layout: func() []Peer { return s.layout.Load().Shards[shard] }}
	if s.opts.Forward == nil {
		src = nil
	}
	fc := fsmConfig{shard: shard, shards: s.opts.Shards, store: s.opts.Store, logger: s.log.With("shard", shard), src: src,
		onLost: func() {
			select {
			case s.reconf <- struct{}{}: // the manager opens it again (reopen)
			default:
			}
		}}
	r, err := openReplica(fc, s.raftConfig(group), deps, proposer{timeout: s.opts.WriteTimeout, floors: s.opts.DedupeFloors}, s.leadershipChanged(shard), &s.notices)
	if err != nil {
		return err
	}
	opened = true
	if fwd := s.opts.Forward; fwd == nil {
		r.serving.Store(true)
	} else {
		r.wg.Add(1)
		go r.awaitServing(func(ctx context.Context, leader Peer) (uint64, error) { return appliedBy(ctx, fwd, shard, leader) })
	}
	s.replicas[shard].Store(r)
	if bootstrap {
		return r.bootstrap(s.layout.Load().Shards[shard])
	}
	return nil
}

// clearLeftovers drops what the store holds of shard when its group has
// no Raft state here: the store's part of a replica dropped before
// (Drop deletes the Raft state first, the markers last), which must not
// hide what the group's log holds from the replica opened now. A clear
// cut short (its clearing marker still set) is finished either way.
func (s *Set) clearLeftovers(shard int, deps GroupDeps) error {
	group := groupName(shard)
	has, err := raft.HasExistingState(deps.Logs, deps.Stable, deps.Snapshots)
	if err != nil {
		return fmt.Errorf("shards: %s: %w", group, err)
	}
	clearing, err := s.opts.Store.AppliedIndexOf(group + clearingSuffix)
	if err != nil {
		return fmt.Errorf("shards: clearing marker of %s: %w", group, err)
	}
	if clearing != 0 {
		// A clear that did not finish (the node stopped midway): the store
		// lacks streams its marker says it holds. Cleared, the replica
		// catches up from its Raft state and its peers.
		s.log.Warn("the store holds a shard cleared only partly; clearing it", "shard", shard)
		return s.clearStore(shard)
	}
	if has {
		return nil
	}
	applied, err := s.opts.Store.AppliedIndexOf(group)
	if err != nil {
		return fmt.Errorf("shards: applied index of %s: %w", group, err)
	}
	target, err := s.opts.Store.AppliedIndexOf(group + restoreSuffix)
	if err != nil {
		return fmt.Errorf("shards: restore target of %s: %w", group, err)
	}
	if applied == 0 && target == 0 {
		return nil
	}
	s.log.Warn("the store holds a shard its Raft group has no state of (a replica dropped midway); clearing it",
		"shard", shard, "applied", applied)
	return s.clearStore(shard)
}

// manage runs until Close: each balancing period, and soon after a new
// layout or a change of leadership, it moves the replicas toward the
// layout (reconcile). While a layout change waits on something that no
// signal announces (a replica catching up, a group removing this node's
// replica), it looks again every pendingRetry rather than only at the
// next balancing period, for up to pendingWindow after the last new
// layout or leadership change (one that waits longer is stuck on
// something the balancing period looks at often enough).
func (s *Set) manage() {
	t := time.NewTicker(s.opts.Timers.Balance)
	defer t.Stop()
	retry := time.NewTimer(time.Hour)
	retry.Stop()
	defer retry.Stop()
	m := &manager{led: make([]int, s.opts.Shards), dropped: map[int]bool{}, leftover: map[int]time.Time{}, raftLeft: map[int]time.Time{}, asked: map[int]time.Time{},
		caughtUp: map[int]mark{}, promote: map[int]mark{}}
	lastChange := time.Now()
	for {
		changed := s.changes.Wait()
		tick := false
		select {
		case <-s.done:
			return
		case <-t.C:
			tick = true
		case <-s.reconf:
			lastChange = time.Now()
		case <-changed:
			lastChange = time.Now()
		case <-retry.C:
		}
		m.pending = false
		s.reconcile(m, tick)
		retry.Stop()
		if m.pending && time.Since(lastChange) < pendingWindow {
			retry.Reset(min(pendingRetry, s.opts.Timers.Balance))
		}
	}
}

// pendingRetry is how soon the manager looks again at a layout change
// that waits, and pendingWindow for how long after the last change
// (manage).
const (
	pendingRetry  = 500 * time.Millisecond
	pendingWindow = 30 * time.Second
)

// manager is the manager goroutine's state.
type manager struct {
	// led counts the balancing periods each local replica has led for.
	led []int
	// dropped holds the shards whose replica closed but whose data is
	// not dropped yet (a failure: tried again each pass), and whether
	// their Raft state goes too (retire).
	dropped map[int]bool
	// leftover holds when the manager first found data of a shard the
	// layout does not place here and no replica holds (dropLeftover).
	leftover map[int]time.Time
	// raftLeft holds, for shards with Raft state here that the layout
	// does not place here and no replica holds, when to ask next whether
	// their group still lists this node (dropLeftoverRaft).
	raftLeft map[int]time.Time
	// asked holds, for local replicas the layout moved away that look
	// removed, when their group's leader was last asked to confirm it
	// (confirmRemoved).
	asked map[int]time.Time
	// caughtUp holds, by shard, the log index the layout's replicas must
	// have applied before a server the layout dropped is removed, or a
	// leader the layout dropped hands over: what the leader had applied
	// once the replicas were all added (gate).
	caughtUp map[int]mark
	// promote holds, by shard, the log index a non-voter the layout
	// places must have applied before it is made a voter (promotable).
	promote map[int]mark
	// pending says the pass left a layout change waiting: a replica of
	// the layout not caught up yet (gate), or a replica moved away that
	// its group has not removed yet.
	pending bool
}

// settle is how many balancing periods a leader leads before it hands
// over to the preferred leader: a leader elected because the preferred
// one died must not hand back to it before membership has noticed the
// death (a transfer to a dead node stalls the shard's writes for an
// election timeout).
const settle = 3

// reconcile is one pass of the manager over every shard.
func (s *Set) reconcile(m *manager, tick bool) {
	defer s.reconciled.Add(1)
	l := s.layout.Load()
	self := s.opts.Self.ID
	for i := range l.Shards {
		if s.stopping() {
			return
		}
		if raftToo, ok := m.dropped[i]; ok {
			if err := s.drop(i, raftToo); err != nil {
				s.log.Warn("cannot drop the data of a shard moved away; retrying", "shard", i, "error", err)
				continue
			}
			delete(m.dropped, i)
		}
		r := s.replica(i)
		if r != nil && r.fsm.lost.Load() {
			s.reopen(i, r)
			r = s.replica(i)
		}
		if r == nil {
			m.led[i] = 0
			if l.Holds(i, self) {
				delete(m.leftover, i)
				delete(m.raftLeft, i)
				s.log.Info("starting a replica the layout places here", "shard", i, "version", l.Version)
				if err := s.open(i, false); err != nil {
					s.log.Warn("cannot start a replica the layout places here; retrying", "shard", i, "error", err)
				}
				continue
			}
			s.dropLeftover(m, i)
			s.dropLeftoverRaft(m, i)
			continue
		}
		if !r.isLeader() {
			m.led[i] = 0
			if !l.Holds(i, self) {
				if s.removed(r) && s.confirmRemoved(m, i) {
					s.retire(m, i, r)
				} else {
					m.pending = true // removed by the leader's manager soon
				}
			}
			continue
		}
		// One change at a time, each awaited, while there are any.
		for k := 0; k < 2*len(l.Shards[i])+2 && s.reconfigure(m, i, r, l.Shards[i]); k++ {
		}
		if tick {
			m.led[i]++
		}
		if m.led[i] > settle && s.balance(i, r, l.Shards[i][0]) {
			m.led[i] = 0
		}
	}
}

func (s *Set) stopping() bool {
	select {
	case <-s.done:
		return true
	default:
		return false
	}
}

func (s *Set) alive(id string) bool { return s.opts.Alive == nil || s.opts.Alive(id) }

func (s *Set) down(id string) bool {
	if s.opts.Down == nil {
		return !s.alive(id)
	}
	return s.opts.Down(id)
}

// reconfigure makes one change of shard's group configuration toward
// want, the layout's replicas, if one is due, and reports whether it made
// one. r leads the shard.
func (s *Set) reconfigure(m *manager, shard int, r *replica, want []Peer) bool {
	cfg := r.raft.GetConfiguration()
	if cfg.Error() != nil {
		return false
	}
	servers := cfg.Configuration().Servers
	self := s.opts.Self.ID
	wanted := func(id raft.ServerID) bool {
		return slices.ContainsFunc(want, func(p Peer) bool { return p.ID == string(id) })
	}
	// The servers the layout dropped that are down, first (a suspect is
	// not: it may be back in a moment, and the group may need it).
	for _, srv := range servers {
		if string(srv.ID) != self && !wanted(srv.ID) && s.down(string(srv.ID)) {
			delete(m.caughtUp, shard)
			return s.change(shard, r, "removing a replica the layout dropped, which is down", string(srv.ID),
				r.raft.RemoveServer(srv.ID, 0, s.opts.WriteTimeout))
		}
	}
	// The layout's replicas that are up and not voters (or at another
	// address): added as non-voters, made voters once caught up.
	for _, p := range want {
		k := slices.IndexFunc(servers, func(srv raft.Server) bool { return string(srv.ID) == p.ID })
		if k >= 0 && servers[k].Suffrage == raft.Voter && string(servers[k].Address) == p.RPC {
			continue
		}
		if p.ID == self || !s.alive(p.ID) {
			continue
		}
		id, addr := raft.ServerID(p.ID), raft.ServerAddress(p.RPC)
		switch {
		case k >= 0 && servers[k].Suffrage == raft.Voter:
			delete(m.caughtUp, shard)
			return s.change(shard, r, "updating a replica's address", p.ID, r.raft.AddVoter(id, addr, 0, s.opts.WriteTimeout))
		case k < 0 || string(servers[k].Address) != p.RPC:
			delete(m.caughtUp, shard)
			delete(m.promote, shard)
			return s.change(shard, r, "adding a replica the layout places, as a non-voter until it catches up", p.ID,
				r.raft.AddNonvoter(id, addr, 0, s.opts.WriteTimeout))
		case !s.promotable(m, shard, r, p):
			continue
		}
		delete(m.caughtUp, shard)
		delete(m.promote, shard)
		return s.change(shard, r, "making a replica that caught up a voter", p.ID, r.raft.AddVoter(id, addr, 0, s.opts.WriteTimeout))
	}
	if !wanted(raft.ServerID(self)) {
		// Another replica of the layout leads, and removes this one,
		// once they have caught up.
		if !s.gate(m, shard, r, want) {
			return false
		}
		for _, p := range want {
			if isVoterIn(servers, p.ID) && s.alive(p.ID) {
				s.log.Info("handing the leadership of a shard the layout moved away to a replica of the layout", "shard", shard, "node", p.ID)
				if err := s.transfer(r, func() raft.Future {
					return r.raft.LeadershipTransferToServer(raft.ServerID(p.ID), raft.ServerAddress(p.RPC))
				}); err != nil {
					s.log.Warn("leadership transfer failed", "shard", shard, "node", p.ID, "error", err)
				}
				return false
			}
		}
		return false
	}
	// The other servers the layout dropped, once the layout's replicas
	// are voters and have caught up: until then the group may need them
	// for a majority (a replica of the layout is left a non-voter while
	// it is suspect, and may have caught up all the same).
	for _, srv := range servers {
		if string(srv.ID) != self && !wanted(srv.ID) {
			if slices.ContainsFunc(want, func(p Peer) bool { return p.ID != self && !isVoterIn(servers, p.ID) }) {
				return false
			}
			if !s.gate(m, shard, r, want) {
				return false
			}
			return s.change(shard, r, "removing a replica the layout dropped", string(srv.ID),
				r.raft.RemoveServer(srv.ID, 0, s.opts.WriteTimeout))
		}
	}
	return false
}

// mark is a log index replicas must reach, set by a leader in its term:
// what its store had applied when the manager first asked (not its
// Raft's last index: entries the state machine never sees, such as a new
// term's no-op, leave no trace in the stores). A mark of an earlier term
// (this node lost the leadership and won it back) is set again: the
// group's configuration may have changed meanwhile.
type mark struct {
	term, index uint64
}

// markOf returns marks[shard], set anew unless this term set it.
func markOf(marks map[int]mark, shard int, r *replica) uint64 {
	term := r.raft.CurrentTerm()
	if mk, ok := marks[shard]; ok && mk.term == term {
		return mk.index
	}
	mk := mark{term: term, index: max(r.fsm.applied.Load(), 1)}
	marks[shard] = mk
	return mk.index
}

// promotable reports whether p, a non-voter of shard's group, has caught
// up with the log to where it was when the manager first asked
// (m.promote), and may vote. A replica added as a voter before it had a
// copy of the log would count towards the group's majority without being
// able to answer: with one voter down (a dead node returning just as the
// planner replaces it), the group's writes would stall until it caught
// up, which takes as long as fetching the shard's records.
func (s *Set) promotable(m *manager, shard int, r *replica, p Peer) bool {
	if s.caughtUp(shard, []Peer{p}, markOf(m.promote, shard, r)) {
		return true
	}
	r.settle() // see gate
	m.pending = true
	return false
}

// gate reports whether the layout's replicas of shard, all voters of its
// group, have caught up with the log (caughtUp) to where it was when
// they were first found all added.
func (s *Set) gate(m *manager, shard int, r *replica, want []Peer) bool {
	if s.caughtUp(shard, want, markOf(m.caughtUp, shard, r)) {
		return true
	}
	// Not yet. A replica added before it had opened failed raft's
	// AppendEntries, and raft tries it again only with the next entry or
	// after the commit timeout (5 to 10 s with DefaultTimers): a commit
	// notice is that next entry, and the manager looks again soon. Not
	// while a replica of the layout is down: it catches up only once it
	// is back (the balancing period looks again), and until then a
	// notice every retry is a Raft write for nothing.
	if slices.ContainsFunc(want, func(p Peer) bool { return p.ID != s.opts.Self.ID && !s.alive(p.ID) }) {
		return false
	}
	r.settle()
	m.pending = true
	return false
}

// caughtUp reports whether every other replica of want has applied
// shard's log up to index, as its store says (a fetch of no stream answers the applied
// index alone). Without a Forwarder it cannot tell and says yes.
func (s *Set) caughtUp(shard int, want []Peer, index uint64) bool {
	if s.opts.Forward == nil {
		return true
	}
	for _, p := range want {
		if p.ID == s.opts.Self.ID {
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), peerCallTimeout)
		applied, err := appliedBy(ctx, s.opts.Forward, shard, p)
		cancel()
		if err != nil || applied < index {
			s.log.Debug("a replica of the layout has not caught up yet", "shard", shard, "node", p.ID,
				"applied", applied, "index", index, "error", err)
			return false
		}
	}
	return true
}

// appliedBy returns what node p's store has applied of shard's log, asked
// through call (a fetch of no stream answers the applied index alone).
func appliedBy(ctx context.Context, call Forwarder, shard int, p Peer) (uint64, error) {
	req := fetchRequest{shard: shard}
	resp, err := call.Call(ctx, p.RPC, FetchService, encodeFetchRequest(req))
	if err != nil {
		return 0, err
	}
	page, err := decodeFetchPage(resp, req)
	if err != nil {
		return 0, err
	}
	return page.applied, nil
}

// change awaits a configuration change and logs it; true if it was made.
func (s *Set) change(shard int, r *replica, what, node string, f raft.IndexFuture) bool {
	if err := s.await(r, f); err != nil {
		s.log.Warn("shard configuration change failed", "shard", shard, "node", node, "change", what, "error", err)
		return false
	}
	s.log.Info("shard configuration changed: "+what, "shard", shard, "node", node, "index", f.Index())
	r.settle() // the followers learn that it is committed
	return true
}

// await waits for f, or until the set or the replica closes.
func (s *Set) await(r *replica, f raft.Future) error {
	errc := make(chan error, 1)
	go func() { errc <- f.Error() }()
	select {
	case err := <-errc:
		return err
	case <-s.done:
		return streams.ErrClosed
	case <-r.raftDown:
		return streams.ErrClosed
	}
}

// transfer starts the leadership transfer f gives, with r's proposals
// held (replica.transferLeadership), and waits for it.
func (s *Set) transfer(r *replica, f func() raft.Future) error {
	return r.transferLeadership(s.opts.Timers.Election, func() error { return s.await(r, f()) })
}

// balance hands shard's leadership, which r holds, to its preferred
// leader pref when that one is another node, up and a voter; true if it
// tried.
func (s *Set) balance(shard int, r *replica, pref Peer) bool {
	if pref.ID == s.opts.Self.ID || !s.alive(pref.ID) {
		return false
	}
	cfg := r.raft.GetConfiguration()
	if cfg.Error() != nil || !isVoterIn(cfg.Configuration().Servers, pref.ID) {
		return false
	}
	s.log.Info("handing shard leadership to its preferred leader", "shard", shard, "node", pref.ID)
	s.handoffs.Add(1)
	if err := s.transfer(r, func() raft.Future {
		return r.raft.LeadershipTransferToServer(raft.ServerID(pref.ID), raft.ServerAddress(pref.RPC))
	}); err != nil {
		s.log.Warn("leadership transfer failed", "shard", shard, "node", pref.ID, "error", err)
	}
	return true
}

// isVoterIn reports whether node id votes among servers.
func isVoterIn(servers []raft.Server, id string) bool {
	return slices.ContainsFunc(servers, func(srv raft.Server) bool {
		return string(srv.ID) == id && srv.Suffrage == raft.Voter
	})
}

// removed reports whether r's group no longer counts this node: its
// latest configuration lacks it, or no leader has been heard of for
// Timers.Orphaned.
func (s *Set) removed(r *replica) bool {
	if !r.member(s.opts.Self.ID) {
		return true
	}
	last := r.raft.LastContact()
	if last.Before(r.opened) {
		last = r.opened
	}
	return time.Since(last) > s.opts.Timers.Orphaned
}

// confirmRemoved reports whether the leader of shard's group says that a
// committed configuration no longer lists this node (removedFrom), asking
// at most once a second per shard. A replica the layout moved away closes
// only then. Its own latest configuration may lack it before that
// configuration is committed (the leader sends the removal to the server
// it removes first, Raft's separate replication to it), and a leader may
// never be heard of again while the group still needs this replica's vote
// (its leader died while a replica the layout added was catching up:
// four voters, two of them unable to vote); closing then, and dropping
// the data, could leave the shard without a majority for good, or lose
// records only this replica and a dead one held.
func (s *Set) confirmRemoved(m *manager, shard int) bool {
	if s.opts.Forward == nil {
		return true // no peers to ask (a single node)
	}
	if last, ok := m.asked[shard]; ok && time.Since(last) < time.Second {
		return false
	}
	m.asked[shard] = time.Now()
	if !s.removedFrom(shard) {
		return false
	}
	delete(m.asked, shard)
	return true
}

// reopen closes shard's replica r, whose store lost entries it had
// applied (fsm.lostApplied), and opens it again: its Raft group replays
// them from the log, as at a node's start. A leader hands its leadership
// over first, so that the shard's writes wait for a transfer rather than
// an election. An open that fails is tried again at the next pass (the
// layout still places the shard here).
func (s *Set) reopen(shard int, r *replica) {
	s.log.Warn("reopening a replica whose store lost applied entries; it replays them from its Raft log", "shard", shard)
	if r.isLeader() {
		if err := s.transfer(r, r.raft.LeadershipTransfer); err != nil {
			s.log.Warn("leadership transfer failed", "shard", shard, "error", err)
		}
	}
	s.replicas[shard].Store(nil)
	if err := r.close(); err != nil {
		s.log.Warn("closing a replica to open it again", "shard", shard, "error", err)
	}
	s.changes.Notify()
	if !s.layout.Load().Holds(shard, s.opts.Self.ID) {
		return // moved away meanwhile: its data goes as a leftover's
	}
	if err := s.open(shard, false); err != nil {
		s.log.Warn("cannot open a replica again; retrying", "shard", shard, "error", err)
	}
}

// retire closes shard's replica r, which the layout moved away and whose
// group's leader confirmed that a committed configuration no longer
// lists this node (confirmRemoved), and drops its data and Raft state:
// the group needs nothing of this node any more, and a replica given back
// later is added anew and starts clean.
func (s *Set) retire(m *manager, shard int, r *replica) {
	raftToo := true
	s.log.Info("closing a replica the layout moved away; dropping its data", "shard", shard, "raft_state", raftToo)
	s.replicas[shard].Store(nil)
	if err := r.close(); err != nil {
		s.log.Warn("closing a replica moved away", "shard", shard, "error", err)
	}
	s.changes.Notify()
	if err := s.drop(shard, raftToo); err != nil {
		s.log.Warn("cannot drop the data of a shard moved away; retrying", "shard", shard, "error", err)
		m.dropped[shard] = raftToo
	}
}

// dropLeftover drops the data of shard, which the layout does not place
// here and no local replica holds, when the store still has some (its
// applied-index marker): a replica the layout moved away while this node
// was down. The data is given Timers.Orphaned to be claimed first, as
// the layout this node started with may be older than the cluster's.
func (s *Set) dropLeftover(m *manager, shard int) {
	applied, err := s.opts.Store.AppliedIndexOf(groupName(shard))
	if err != nil || applied == 0 {
		delete(m.leftover, shard)
		return
	}
	since, ok := m.leftover[shard]
	if !ok {
		m.leftover[shard] = time.Now()
		return
	}
	if time.Since(since) < s.opts.Timers.Orphaned {
		return
	}
	s.log.Info("dropping the data of a shard the layout moved away while this node was down", "shard", shard, "applied", applied)
	// The Raft state stays: whether the group still counts this node is
	// unknown here (dropLeftoverRaft asks).
	if err := s.drop(shard, false); err != nil {
		s.log.Warn("cannot drop the data of a shard moved away; retrying", "shard", shard, "error", err)
		return
	}
	delete(m.leftover, shard)
}

// drop deletes the Raft state of shard's group (Options.Drop) when
// raftToo, then the shard's part of the store. The markers go last: a
// store that still has them without the group's Raft state is cleared
// when the replica opens again (clearLeftovers).
func (s *Set) drop(shard int, raftToo bool) error {
	if raftToo && s.opts.Drop != nil {
		if err := s.opts.Drop(groupName(shard)); err != nil {
			return fmt.Errorf("shards: drop the Raft state of %s: %w", groupName(shard), err)
		}
	}
	return s.clearStore(shard)
}

// clearStore deletes the shard's streams, its key/value namespace and its
// applied-index and restore markers from this node's store, without
// going through the shard's log. The clearing marker goes first and last:
// meanwhile the node serves no fetch of the shard (ServeFetch).
func (s *Set) clearStore(shard int) error {
	group := groupName(shard)
	ctx, cancel := context.WithTimeout(context.Background(), s.opts.WriteTimeout)
	defer cancel()
	// Synced by the first deletion at the latest (deletions are synced).
	if err := submitWait(s.opts.Store, streams.AppendRequest{AppliedLog: group + clearingSuffix, AppliedIndex: 1}); err != nil {
		return fmt.Errorf("shards: %s: mark the shard as being cleared: %w", group, err)
	}
	for _, st := range shardStreams(s.opts.Store, shard, s.opts.Shards) {
		if err := s.opts.Store.DeleteStream(ctx, st.name); err != nil && !errors.Is(err, streams.ErrStreamNotFound) {
			return fmt.Errorf("shards: %s: delete %s: %w", group, st.name, err)
		}
	}
	if err := replaceNamespace(s.opts.Store.KV(kvNamespace(shard)), nil); err != nil {
		return fmt.Errorf("shards: %s: clear the key/value namespace: %w", group, err)
	}
	if err := s.opts.Store.ForgetApplied(ctx, group, group+restoreSuffix, group+adminSuffix, group+clearingSuffix); err != nil {
		return fmt.Errorf("shards: %s: forget the applied index: %w", group, err)
	}
	return nil
}

package meta

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/raft"

	"github.com/mqstream/mqstream/cluster/shards"
	"github.com/mqstream/mqstream/internal/broadcast"
)

// Service is the RPC service name of the group's operations (changes and
// joins forwarded to its leader).
const Service = "meta.ops"

// Group is the name of the metadata Raft group (its log and snapshots).
const Group = "meta"

// maxVoters is how many members vote in the group; the others follow as
// non-voters.
const maxVoters = 3

// Caller carries a request to another node (the cluster's RPC mux).
type Caller interface {
	Call(ctx context.Context, addr, service string, req []byte) ([]byte, error)
}

// Options configure this node's member of the metadata group.
type Options struct {
	Self   shards.Peer
	Deps   shards.GroupDeps
	Timers shards.Timers
	Call   Caller
	Logger *slog.Logger
	// LogLimit holds back repeated Raft log lines (nil: none).
	LogLimit *shards.LogLimit
	// Alive reports whether a node is up, as membership sees it (nil: all
	// are): a removed voter's vote goes to a live non-voter only.
	Alive func(id string) bool
	// HandOverTimeout bounds how long Close waits for another voter to
	// take the leadership over (0: twice Timers.Election, the most raft
	// itself gives a transfer: one election timeout for the target to
	// catch up and be told, one more for it to win).
	HandOverTimeout time.Duration
}

// Meta is this node's member of the metadata group.
type Meta struct {
	self    shards.Peer
	raft    *raft.Raft
	fsm     *fsm
	call    Caller
	log     *slog.Logger
	changes broadcast.Signal
	// handOver bounds the leadership transfer on Close.
	handOver time.Duration
	// alive is Options.Alive, never nil.
	alive func(id string) bool
	// closing is closed when Close starts: operations started here from
	// then on fail with ErrClosed.
	closing chan struct{}
	// release is the group transport's GroupDeps.Release (nil: none).
	release func()
	// raftDown is closed once Close has shut the group's Raft down.
	raftDown  chan struct{}
	closeOnce sync.Once
	closeErr  error // set once, by Close
}

// ErrClosed: this node's member of the group is stopping or stopped.
var ErrClosed = errors.New("meta: the metadata group member is closed")

// Open starts this node's member of the group. A new member neither
// votes nor knows the state until it has joined (Bootstrap or Join).
func Open(opts Options) (*Meta, error) {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Timers == (shards.Timers{}) {
		opts.Timers = shards.DefaultTimers()
	}
	t := opts.Timers
	if t.MetaCommit <= 0 {
		t.MetaCommit = t.Commit
	}
	if opts.HandOverTimeout <= 0 {
		opts.HandOverTimeout = 2 * t.Election
	}
	m := &Meta{self: opts.Self, call: opts.Call, log: opts.Logger.With("group", Group), release: opts.Deps.Release,
		handOver: opts.HandOverTimeout, closing: make(chan struct{}), raftDown: make(chan struct{}), alive: opts.Alive}
	if m.alive == nil {
		m.alive = func(string) bool { return true }
	}
	m.fsm = &fsm{changed: m.changes.Notify}
	c := raft.DefaultConfig()
	c.LocalID = raft.ServerID(opts.Self.ID)
	c.HeartbeatTimeout, c.ElectionTimeout, c.LeaderLeaseTimeout, c.CommitTimeout = t.Heartbeat, t.Election, t.LeaderLease, t.MetaCommit
	// The state is tiny: snapshot often so the log stays short.
	c.SnapshotInterval, c.SnapshotThreshold, c.TrailingLogs = t.SnapshotInterval, 64, 128
	c.Logger = shards.RaftLogger(opts.Logger, Group, opts.LogLimit)
	r, err := raft.NewRaft(c, m.fsm, opts.Deps.Logs, opts.Deps.Stable, opts.Deps.Snapshots, opts.Deps.Transport)
	if err != nil {
		return nil, fmt.Errorf("meta: %w", err)
	}
	m.raft = r
	return m, nil
}

// Bootstrap makes founders the group's voters (up to three of them, the
// others non-voters) when the group has no state yet; every founder
// bootstraps with the same list. A group with state keeps it.
func (m *Meta) Bootstrap(founders []shards.Peer) error {
	var servers []raft.Server
	for i, p := range founders {
		s := raft.Server{ID: raft.ServerID(p.ID), Address: raft.ServerAddress(p.RPC), Suffrage: raft.Voter}
		if i >= maxVoters {
			s.Suffrage = raft.Nonvoter
		}
		servers = append(servers, s)
	}
	err := m.raft.BootstrapCluster(raft.Configuration{Servers: servers}).Error()
	if err != nil && !errors.Is(err, raft.ErrCantBootstrap) {
		return fmt.Errorf("meta: bootstrap: %w", err)
	}
	return nil
}

// Bootstrapped reports whether this member has any Raft state (it was a
// founder or has joined before).
func (m *Meta) Bootstrapped() bool {
	return m.raft.LastIndex() > 0
}

// State returns the metadata as this member has applied it.
func (m *Meta) State() State { return m.fsm.state() }

// Changed returns a channel closed at the next applied change.
func (m *Meta) Changed() <-chan struct{} { return m.changes.Wait() }

// Servers lists the group's members by id (voters and non-voters) as
// this member knows them.
func (m *Meta) Servers() []string { return m.members(false) }

// Voters lists the group's voting members by id as this member knows
// them.
func (m *Meta) Voters() []string { return m.members(true) }

func (m *Meta) members(votersOnly bool) []string {
	cfg := m.raft.GetConfiguration()
	if cfg.Error() != nil {
		return nil
	}
	var ids []string
	for _, s := range cfg.Configuration().Servers {
		if !votersOnly || s.Suffrage == raft.Voter {
			ids = append(ids, string(s.ID))
		}
	}
	return ids
}

// RaftStats returns hashicorp/raft's own figures of the metadata group's
// member on this node (raft.Stats).
func (m *Meta) RaftStats() map[string]string { return m.raft.Stats() }

// IsLeader reports whether this member leads the group now.
func (m *Meta) IsLeader() bool { return m.raft.State() == raft.Leader }

// Leader returns the group's leader as this member knows it.
func (m *Meta) Leader() (shards.Peer, bool) {
	addr, id := m.raft.LeaderWithID()
	return shards.Peer{ID: string(id), RPC: string(addr)}, id != ""
}

// request is an operation sent to the leader.
type request struct {
	Cmd  *command     `json:"cmd,omitempty"`
	Join *shards.Peer `json:"join,omitempty"`
	// Voters (op set-voters) asks the leader to drop a member from the
	// group (Forget).
	Forget string `json:"forget,omitempty"`
	// Forwarded is set by the member that passed the request on to the
	// leader it knows: the receiver, if it does not lead, answers "no
	// leader" rather than passing it on again (members that each think
	// another leads, one of them out of date, would otherwise send it
	// round in a circle).
	Forwarded bool `json:"fwd,omitempty"`
}

type response struct {
	Err     string `json:"err,omitempty"`
	Removed bool   `json:"removed,omitempty"` // Err is ErrRemoved
	Stale   bool   `json:"stale,omitempty"`   // Err is ErrStale
	// LostData: Err is ErrLostData.
	LostData bool `json:"lost_data,omitempty"`
}

// SetLayout replaces the layout planned from version from (ErrStale if
// the layout has changed since).
func (m *Meta) SetLayout(ctx context.Context, from uint64, l shards.Layout) error {
	return m.do(ctx, request{Cmd: &command{Op: "layout", Layout: &l, From: from}})
}

// Remove removes node id for good: the layout must no longer place it
// (the caller plans that first); it is dropped from the group and can
// never join again. Asked again for a node already removed, it drops it
// from the group's configuration only (a removal cut short between the
// two steps leaves it there, voting, until then).
func (m *Meta) Remove(ctx context.Context, id string) error {
	if !m.State().IsRemoved(id) {
		if err := m.do(ctx, request{Cmd: &command{Op: "remove", Node: id}}); err != nil {
			return err
		}
	}
	return m.do(ctx, request{Forget: id})
}

// Register records that node id runs on the data directory incarnation
// (through the leader). It fails with ErrLostData when the group knows
// the node by another one, and with ErrRemoved for a removed node.
func (m *Meta) Register(ctx context.Context, id, incarnation string) error {
	return m.do(ctx, request{Cmd: &command{Op: "incarnation", Node: id, Incarnation: incarnation}})
}

// Vouch is Register for a node that is not yet a member of the group (its
// data directory is new): it asks the member at via, which passes the
// request on to the leader. Until the group has a leader it fails with an
// error that says so. The node must not open its member of the group
// before Vouch succeeds: a member with no state grants its vote to any
// candidate, and one that lost its data would help elect a leader that
// lacks acknowledged entries.
func Vouch(ctx context.Context, call Caller, via, id, incarnation string) error {
	b, err := json.Marshal(request{Cmd: &command{Op: "incarnation", Node: id, Incarnation: incarnation}})
	if err != nil {
		return err
	}
	resp, err := call.Call(ctx, via, Service, b)
	if err != nil {
		return err
	}
	return decodeResponse(resp)
}

// Join asks the group's leader to take this node in (as a non-voter; the
// leader makes it a voter when the group has fewer than three). It
// fails with ErrRemoved for a node removed for good. Any member can be
// asked (via): it forwards to the leader.
func (m *Meta) Join(ctx context.Context, via string) error {
	self := m.self
	b, err := json.Marshal(request{Join: &self})
	if err != nil {
		return err
	}
	resp, err := m.call.Call(ctx, via, Service, b)
	if err != nil {
		return err
	}
	return decodeResponse(resp)
}

// do runs an operation on the leader: here if this member leads, else
// forwarded to the leader (waiting for one for up to ctx). An operation
// the leader could not finish because it lost the leadership or stopped
// (errNoLeader) is tried again on the next leader, unless this member is
// the one stopping (ErrClosed).
func (m *Meta) do(ctx context.Context, req request) error {
	for wait := 20 * time.Millisecond; ; wait = min(2*wait, 500*time.Millisecond) {
		select {
		case <-m.closing:
			return ErrClosed
		default:
		}
		err := m.tryDo(ctx, req)
		if !errors.Is(err, errNoLeader) {
			return err
		}
		select {
		case <-m.closing:
			return ErrClosed
		case <-ctx.Done():
			return fmt.Errorf("meta: %w: %w", errNoLeader, ctx.Err())
		case <-time.After(wait):
		}
	}
}

var errNoLeader = errors.New("no leader of the metadata group")

func (m *Meta) tryDo(ctx context.Context, req request) error {
	if m.IsLeader() {
		return m.serve(ctx, req)
	}
	leader, ok := m.Leader()
	if !ok || leader.ID == m.self.ID {
		return errNoLeader
	}
	b, err := json.Marshal(req)
	if err != nil {
		return err
	}
	resp, err := m.call.Call(ctx, leader.RPC, Service, b)
	if err != nil {
		m.log.Debug("metadata operation not forwarded", "node", leader.ID, "error", err)
		return errNoLeader
	}
	return decodeResponse(resp)
}

// Handle serves an operation forwarded by another node (the Service
// handler).
func (m *Meta) Handle(ctx context.Context, _ string, b []byte) ([]byte, error) {
	var req request
	if err := json.Unmarshal(b, &req); err != nil {
		return nil, fmt.Errorf("meta: bad request: %w", err)
	}
	var err error
	if m.IsLeader() {
		err = m.serve(ctx, req)
	} else if leader, ok := m.Leader(); ok && leader.ID != m.self.ID && !req.Forwarded {
		// Forward once; the leader answers for itself.
		req.Forwarded = true
		if b, err = json.Marshal(req); err != nil {
			return nil, err
		}
		resp, cerr := m.call.Call(ctx, leader.RPC, Service, b)
		if cerr != nil {
			return nil, cerr
		}
		return resp, nil
	} else {
		err = errNoLeader
	}
	return encodeResponse(err), nil
}

// serve runs an operation on this member, the leader.
func (m *Meta) serve(ctx context.Context, req request) error {
	timeout := 10 * time.Second
	if d, ok := ctx.Deadline(); ok {
		timeout = time.Until(d)
	}
	if timeout <= 0 {
		return fmt.Errorf("meta: %w", context.DeadlineExceeded)
	}
	switch {
	case req.Cmd != nil:
		b, err := json.Marshal(req.Cmd)
		if err != nil {
			return err
		}
		f := m.raft.Apply(b, timeout)
		if err := m.wait(ctx, f); err != nil {
			return leaderErr(err)
		}
		if err, ok := f.Response().(error); ok {
			return err
		}
		return nil
	case req.Join != nil:
		return m.admit(ctx, *req.Join, timeout)
	case req.Forget != "":
		return m.forget(ctx, req.Forget, timeout)
	}
	return errors.New("meta: empty request")
}

// wait waits for f, at most until ctx is done: raft bounds an
// operation's wait to be taken (its timeout), not to be committed. An
// operation given up on may be committed all the same. Raft leaves some
// futures unanswered when it shuts down (one still in its apply queue):
// once it is down, such an operation fails as raft.ErrRaftShutdown ("no
// leader": its sender tries the new leader) instead of holding its
// caller, or a forwarding member, until ctx is done.
func (m *Meta) wait(ctx context.Context, f raft.Future) error {
	done := make(chan error, 1)
	go func() { done <- f.Error() }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return fmt.Errorf("meta: %w", ctx.Err())
	case <-m.raftDown:
		select {
		case err := <-done:
			return err
		default:
			return fmt.Errorf("meta: an operation left unanswered when the group shut down: %w", raft.ErrRaftShutdown)
		}
	}
}

// leaderErr turns Raft's "not the leader" errors into errNoLeader (the
// caller tries the new leader). A leader shut down while it served an
// operation (raft.ErrRaftShutdown: its node is stopping, and has handed
// the leadership over) is one of them: the operation may have been
// committed or not, and trying it again on the new leader is safe, since
// a layout is applied only over the version it was planned from (a
// retried one that was committed fails with ErrStale, which planners
// expect), and a removal, a join and a forget change nothing the second
// time.
func leaderErr(err error) error {
	if errors.Is(err, raft.ErrNotLeader) || errors.Is(err, raft.ErrLeadershipLost) ||
		errors.Is(err, raft.ErrLeadershipTransferInProgress) || errors.Is(err, raft.ErrRaftShutdown) {
		return errNoLeader
	}
	return err
}

// admit adds node p to the group: a voter while the group has fewer than
// maxVoters, otherwise a non-voter. A removed node is refused; a member
// already in the group with this address is left as it is.
//
// The removal is checked against everything committed (a barrier first:
// a leader elected a moment ago may not have applied a removal yet), and
// again once p is added: a removal committed in between finds p not in
// the group yet (its forget does nothing), so admit takes p out again.
func (m *Meta) admit(ctx context.Context, p shards.Peer, timeout time.Duration) error {
	if p.ID == "" || p.RPC == "" {
		return errors.New("meta: a join without a node id or address")
	}
	if err := m.wait(ctx, m.raft.Barrier(timeout)); err != nil {
		return leaderErr(err)
	}
	if m.State().IsRemoved(p.ID) {
		return fmt.Errorf("%w: %s", ErrRemoved, p.ID)
	}
	cfg := m.raft.GetConfiguration()
	if err := cfg.Error(); err != nil {
		return leaderErr(err)
	}
	voters := 0
	for _, s := range cfg.Configuration().Servers {
		if string(s.ID) == p.ID && string(s.Address) == p.RPC {
			return nil
		}
		if s.Suffrage == raft.Voter && string(s.ID) != p.ID {
			voters++
		}
	}
	var f raft.IndexFuture
	if voters < maxVoters {
		f = m.raft.AddVoter(raft.ServerID(p.ID), raft.ServerAddress(p.RPC), 0, timeout)
	} else {
		f = m.raft.AddNonvoter(raft.ServerID(p.ID), raft.ServerAddress(p.RPC), 0, timeout)
	}
	if err := m.wait(ctx, f); err != nil {
		return leaderErr(err)
	}
	if err := m.wait(ctx, m.raft.Barrier(timeout)); err != nil {
		return leaderErr(err)
	}
	if m.State().IsRemoved(p.ID) {
		// Removed while it was being added.
		if err := m.forget(ctx, p.ID, timeout); err != nil {
			return err
		}
		return fmt.Errorf("%w: %s", ErrRemoved, p.ID)
	}
	m.log.Info("node joined the metadata group", "node", p.ID, "voter", voters < maxVoters)
	return nil
}

// forget drops node id from the group and, if it voted, makes a
// non-voter a voter in its place.
func (m *Meta) forget(ctx context.Context, id string, timeout time.Duration) error {
	if id == m.self.ID {
		// The leader leaves last: hand over first.
		if err := m.wait(ctx, m.raft.LeadershipTransfer()); err != nil {
			return fmt.Errorf("meta: hand the metadata group over before removing this node: %w", err)
		}
		return errNoLeader
	}
	cfg := m.raft.GetConfiguration()
	if err := cfg.Error(); err != nil {
		return leaderErr(err)
	}
	found := false
	voters := 0
	var promote raft.Server
	for _, s := range cfg.Configuration().Servers {
		switch {
		case string(s.ID) == id:
			found = true
		case s.Suffrage == raft.Voter:
			voters++
		case promote.ID == "" && m.alive(string(s.ID)):
			// Not a dead one: the group would count a vote that
			// cannot be cast (KeepVoters tops the voters up later
			// when no non-voter is up now).
			promote = s
		}
	}
	if found {
		if err := m.wait(ctx, m.raft.RemoveServer(raft.ServerID(id), 0, timeout)); err != nil {
			return leaderErr(err)
		}
		m.log.Info("node left the metadata group", "node", id)
	}
	if voters < maxVoters && promote.ID != "" {
		if err := m.wait(ctx, m.raft.AddVoter(promote.ID, promote.Address, 0, timeout)); err != nil {
			return leaderErr(err)
		}
		m.log.Info("node votes in the metadata group now", "node", string(promote.ID))
	}
	return nil
}

// KeepVoters, on the leader, hands the vote of a member given up for
// dead to a member that is up: a dead voter is made a non-voter and a
// live non-voter a voter, one at a time, so the group keeps a majority
// of live voters when a node is lost for good without being removed.
// Elsewhere it does nothing.
func (m *Meta) KeepVoters(alive, dead func(id string) bool) error {
	if !m.IsLeader() {
		return nil
	}
	cfg := m.raft.GetConfiguration()
	if err := cfg.Error(); err != nil {
		return leaderErr(err)
	}
	var gone, spare *raft.Server
	voters := 0
	for _, s := range cfg.Configuration().Servers {
		if s.Suffrage == raft.Voter {
			voters++
		}
		switch {
		case s.Suffrage == raft.Voter && string(s.ID) != m.self.ID && dead(string(s.ID)) && gone == nil:
			gone = &s
		case s.Suffrage == raft.Nonvoter && alive(string(s.ID)) && spare == nil:
			spare = &s
		}
	}
	const timeout = 10 * time.Second
	if spare != nil && voters < maxVoters {
		// Fewer voters than the group should have (a hand-over or a
		// removal whose promotion failed, or found no live non-voter
		// then): a live non-voter makes up the number.
		if err := m.raft.AddVoter(spare.ID, spare.Address, 0, timeout).Error(); err != nil {
			return leaderErr(err)
		}
		m.log.Info("node votes in the metadata group now, making up its voters", "node", string(spare.ID), "voters", voters+1)
		return nil
	}
	if gone == nil || spare == nil {
		return nil
	}
	if err := m.raft.DemoteVoter(gone.ID, 0, timeout).Error(); err != nil {
		return leaderErr(err)
	}
	if err := m.raft.AddVoter(spare.ID, spare.Address, 0, timeout).Error(); err != nil {
		return leaderErr(err)
	}
	m.log.Info("metadata vote handed from a dead node to a live one", "dead", string(gone.ID), "node", string(spare.ID))
	return nil
}

func encodeResponse(err error) []byte {
	var r response
	if err != nil {
		r.Err = err.Error()
		r.Removed = errors.Is(err, ErrRemoved)
		r.Stale = errors.Is(err, ErrStale)
		r.LostData = errors.Is(err, ErrLostData)
		if errors.Is(err, errNoLeader) {
			r.Err = errNoLeader.Error()
		}
	}
	b, _ := json.Marshal(r)
	return b
}

func decodeResponse(b []byte) error {
	var r response
	if err := json.Unmarshal(b, &r); err != nil {
		return fmt.Errorf("meta: bad response: %w", err)
	}
	switch {
	case r.Err == "":
		return nil
	case r.Removed:
		return fmt.Errorf("%w (%s)", ErrRemoved, r.Err)
	case r.Stale:
		return fmt.Errorf("%w (%s)", ErrStale, r.Err)
	case r.LostData:
		return fmt.Errorf("%w%s", ErrLostData, strings.TrimPrefix(r.Err, ErrLostData.Error()))
	case r.Err == errNoLeader.Error():
		return errNoLeader
	}
	return errors.New(r.Err)
}

// Close shuts this member down; idempotent. A member that leads the
// group hands the leadership over to another voter first (handOverLeader),
// so that the group's operations go on at once on the new leader instead
// of waiting for the followers' election timeout.
func (m *Meta) Close() error {
	m.closeOnce.Do(func() {
		close(m.closing)
		m.handOverLeader()
		if m.release != nil {
			m.release() // raft waits for its replication (GroupDeps.Release)
		}
		m.closeErr = m.raft.Shutdown().Error()
		close(m.raftDown)
		m.changes.Notify()
	})
	return m.closeErr
}

// handOverLeader, when this member leads the group, transfers the
// leadership to the most up-to-date other voter (raft's choice) and
// waits for it, at most m.handOver. It only logs a failure: the node
// stops anyway, and the others elect a leader after their election
// timeout, as they do when a node dies. Operations this leader was
// serving fail as "no leader" and their senders try the new one.
func (m *Meta) handOverLeader() {
	if !m.IsLeader() {
		return
	}
	if !slices.ContainsFunc(m.Voters(), func(id string) bool { return id != m.self.ID }) {
		m.log.Debug("no other voter to hand the metadata group over to")
		return
	}
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), m.handOver)
	defer cancel()
	if err := m.wait(ctx, m.raft.LeadershipTransfer()); err != nil {
		m.log.Warn("stopping without handing the metadata group's leadership over", "error", err,
			"elapsed", time.Since(start))
		return
	}
	attrs := []any{"elapsed", time.Since(start)}
	if leader, ok := m.Leader(); ok && leader.ID != m.self.ID {
		// Known once the new leader's first heartbeat came.
		attrs = append(attrs, "node", leader.ID)
	}
	m.log.Info("handed the metadata group's leadership over before stopping", attrs...)
}

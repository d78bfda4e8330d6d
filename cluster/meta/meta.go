package meta

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
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
}

// Meta is this node's member of the metadata group.
type Meta struct {
	self    shards.Peer
	raft    *raft.Raft
	fsm     *fsm
	call    Caller
	log     *slog.Logger
	changes broadcast.Signal
}

// Open starts this node's member of the group. A new member neither
// votes nor knows the state until it has joined (Bootstrap or Join).
func Open(opts Options) (*Meta, error) {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Timers == (shards.Timers{}) {
		opts.Timers = shards.DefaultTimers()
	}
	m := &Meta{self: opts.Self, call: opts.Call, log: opts.Logger.With("group", Group)}
	m.fsm = &fsm{changed: m.changes.Notify}
	t := opts.Timers
	c := raft.DefaultConfig()
	c.LocalID = raft.ServerID(opts.Self.ID)
	c.HeartbeatTimeout, c.ElectionTimeout, c.LeaderLeaseTimeout, c.CommitTimeout = t.Heartbeat, t.Election, t.LeaderLease, t.Commit
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
}

type response struct {
	Err     string `json:"err,omitempty"`
	Removed bool   `json:"removed,omitempty"` // Err is ErrRemoved
	Stale   bool   `json:"stale,omitempty"`   // Err is ErrStale
}

// SetLayout replaces the layout planned from version from (ErrStale if
// the layout has changed since).
func (m *Meta) SetLayout(ctx context.Context, from uint64, l shards.Layout) error {
	return m.do(ctx, request{Cmd: &command{Op: "layout", Layout: &l, From: from}})
}

// Remove removes node id for good: the layout must no longer place it
// (the caller plans that first); it is dropped from the group and can
// never join again.
func (m *Meta) Remove(ctx context.Context, id string) error {
	if err := m.do(ctx, request{Cmd: &command{Op: "remove", Node: id}}); err != nil {
		return err
	}
	return m.do(ctx, request{Forget: id})
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
// forwarded to the leader (waiting for one for up to ctx).
func (m *Meta) do(ctx context.Context, req request) error {
	for wait := 20 * time.Millisecond; ; wait = min(2*wait, 500*time.Millisecond) {
		err := m.tryDo(ctx, req)
		if !errors.Is(err, errNoLeader) {
			return err
		}
		select {
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
	} else if leader, ok := m.Leader(); ok && leader.ID != m.self.ID {
		// Forward once; the leader answers for itself.
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
	switch {
	case req.Cmd != nil:
		b, err := json.Marshal(req.Cmd)
		if err != nil {
			return err
		}
		f := m.raft.Apply(b, timeout)
		if err := f.Error(); err != nil {
			return leaderErr(err)
		}
		if err, ok := f.Response().(error); ok {
			return err
		}
		return nil
	case req.Join != nil:
		return m.admit(*req.Join, timeout)
	case req.Forget != "":
		return m.forget(req.Forget, timeout)
	}
	return errors.New("meta: empty request")
}

// leaderErr turns Raft's "not the leader" errors into errNoLeader (the
// caller tries the new leader).
func leaderErr(err error) error {
	if errors.Is(err, raft.ErrNotLeader) || errors.Is(err, raft.ErrLeadershipLost) || errors.Is(err, raft.ErrLeadershipTransferInProgress) {
		return errNoLeader
	}
	return err
}

// admit adds node p to the group: a voter while the group has fewer than
// maxVoters, otherwise a non-voter. A removed node is refused; a member
// already in the group with this address is left as it is.
func (m *Meta) admit(p shards.Peer, timeout time.Duration) error {
	if p.ID == "" || p.RPC == "" {
		return errors.New("meta: a join without a node id or address")
	}
	st := m.State()
	if st.IsRemoved(p.ID) {
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
	if err := f.Error(); err != nil {
		return leaderErr(err)
	}
	m.log.Info("node joined the metadata group", "node", p.ID, "voter", voters < maxVoters)
	return nil
}

// forget drops node id from the group and, if it voted, makes a
// non-voter a voter in its place.
func (m *Meta) forget(id string, timeout time.Duration) error {
	if id == m.self.ID {
		// The leader leaves last: hand over first.
		if err := m.raft.LeadershipTransfer().Error(); err != nil {
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
		case promote.ID == "":
			promote = s
		}
	}
	if found {
		if err := m.raft.RemoveServer(raft.ServerID(id), 0, timeout).Error(); err != nil {
			return leaderErr(err)
		}
		m.log.Info("node left the metadata group", "node", id)
	}
	if voters < maxVoters && promote.ID != "" {
		if err := m.raft.AddVoter(promote.ID, promote.Address, 0, timeout).Error(); err != nil {
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
	for _, s := range cfg.Configuration().Servers {
		switch {
		case s.Suffrage == raft.Voter && string(s.ID) != m.self.ID && dead(string(s.ID)) && gone == nil:
			gone = &s
		case s.Suffrage == raft.Nonvoter && alive(string(s.ID)) && spare == nil:
			spare = &s
		}
	}
	if gone == nil || spare == nil {
		return nil
	}
	const timeout = 10 * time.Second
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
	case r.Err == errNoLeader.Error():
		return errNoLeader
	}
	return errors.New(r.Err)
}

// Close shuts this member down.
func (m *Meta) Close() error {
	err := m.raft.Shutdown().Error()
	m.changes.Notify()
	return err
}

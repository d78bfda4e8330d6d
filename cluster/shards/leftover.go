package shards

import (
	"context"
	"encoding/binary"
	"fmt"
	"slices"
	"time"
)

// Raft state left behind. A shard moved away while this node was down
// keeps its Raft state (dropLeftover), and a replica the layout moved
// away closes only once the check below confirms its removal
// (confirmRemoved): a voter must never come back with an empty log. The state is dropped once the
// group's leader says a committed configuration no longer lists this
// node: from then on the group needs nothing of this node's log, and a
// replica given back later is added anew and starts clean.

// MembersService is the RPC service name of membership checks: a node
// holding Raft state of a shard the layout moved away asks the shard's
// replicas whether their group still lists it.
const MembersService = "shards.members"

// Answers to a membership check.
const (
	memberUnknown byte = iota // no replica here, not its leader, or the check failed
	memberListed              // the group's latest configuration lists the node
	memberRemoved             // a committed configuration of the group does not list the node
)

// A membership check: version, shard (uvarint), node id (length-prefixed).
// Its answer: one byte (memberUnknown, memberListed, memberRemoved).
const membersVersion1 = 1

func encodeMembersRequest(shard int, node string) []byte {
	b := []byte{membersVersion1}
	b = binary.AppendUvarint(b, uint64(shard))
	return appendBytes(b, []byte(node))
}

func decodeMembersRequest(b []byte) (shard int, node string, err error) {
	d := decoder{b: b}
	if v := d.byte(); d.err == nil && v != membersVersion1 {
		return 0, "", fmt.Errorf("%w: membership check version %d", ErrBadEntry, v)
	}
	shard, node = d.shard(), string(d.bytes())
	if d.err == nil && len(d.b) != 0 {
		d.err = fmt.Errorf("%d trailing bytes", len(d.b))
	}
	if d.err != nil {
		return 0, "", fmt.Errorf("%w: membership check: %v", ErrBadEntry, d.err)
	}
	return shard, node, nil
}

// HandleMembers answers a membership check (the MembersService handler).
// Only the shard's leader answers memberRemoved: the configuration it read
// is the latest, and a barrier committed after reading it proves it
// committed.
func (s *Set) HandleMembers(ctx context.Context, _ string, req []byte) ([]byte, error) {
	shard, node, err := decodeMembersRequest(req)
	if err != nil {
		return nil, err
	}
	if shard < 0 || shard >= s.opts.Shards {
		return nil, fmt.Errorf("%w: membership check of shard %d of %d", ErrBadEntry, shard, s.opts.Shards)
	}
	r := s.replica(shard)
	if r == nil {
		return []byte{memberUnknown}, nil
	}
	if r.member(node) {
		return []byte{memberListed}, nil
	}
	if !r.isLeader() {
		return []byte{memberUnknown}, nil
	}
	timeout := peerCallTimeout
	if d, ok := ctx.Deadline(); ok {
		timeout = min(timeout, time.Until(d))
	}
	if err := s.await(r, r.raft.Barrier(timeout)); err != nil || !r.isLeader() {
		return []byte{memberUnknown}, nil
	}
	return []byte{memberRemoved}, nil
}

// dropLeftoverRaft drops the Raft state of shard, which the layout does
// not place here and no local replica holds, once the shard's leader says
// its group no longer lists this node. It asks at most once per
// Timers.Orphaned, the first time Timers.Orphaned after it found the
// state.
func (s *Set) dropLeftoverRaft(m *manager, shard int) {
	group := groupName(shard)
	if s.opts.Drop == nil || s.opts.HasRaftState == nil || !s.opts.HasRaftState(group) {
		delete(m.raftLeft, shard)
		return
	}
	next, ok := m.raftLeft[shard]
	if !ok {
		m.raftLeft[shard] = time.Now().Add(s.opts.Timers.Orphaned)
		return
	}
	if time.Now().Before(next) {
		return
	}
	m.raftLeft[shard] = time.Now().Add(s.opts.Timers.Orphaned)
	if !s.removedFrom(shard) {
		return
	}
	s.log.Info("dropping the Raft state of a shard whose group no longer lists this node", "shard", shard)
	if err := s.opts.Drop(group); err != nil {
		s.log.Warn("cannot drop the Raft state of a shard moved away; retrying", "shard", shard, "error", err)
		return
	}
	delete(m.raftLeft, shard)
}

// removedFrom asks whether shard's group still lists this node; true once
// one (its leader) says a committed configuration does not. It asks the
// leader the local replica knows of first, then the layout's replicas,
// then the other servers of the local replica's configuration (the
// leader may be a server the layout dropped and the group still has),
// each that is up once, and stops asking when the set closes.
func (s *Set) removedFrom(shard int) bool {
	if s.opts.Forward == nil {
		return false
	}
	var ask []Peer
	r := s.replica(shard)
	if r != nil {
		if p, ok := r.leader(); ok {
			ask = append(ask, p)
		}
	}
	ask = append(ask, s.layout.Load().Shards[shard]...)
	if r != nil {
		if cfg := r.raft.GetConfiguration(); cfg.Error() == nil {
			for _, srv := range cfg.Configuration().Servers {
				ask = append(ask, Peer{ID: string(srv.ID), RPC: string(srv.Address)})
			}
		}
	}
	req := encodeMembersRequest(shard, s.opts.Self.ID)
	asked := map[string]bool{s.opts.Self.ID: true}
	for _, p := range ask {
		if asked[p.ID] || !s.alive(p.ID) {
			continue
		}
		if s.stopping() {
			return false
		}
		asked[p.ID] = true
		ctx, cancel := context.WithTimeout(context.Background(), peerCallTimeout)
		resp, err := s.opts.Forward.Call(ctx, p.RPC, MembersService, req)
		cancel()
		if err != nil {
			s.log.Debug("membership check failed", "shard", shard, "node", p.ID, "error", err)
			continue
		}
		if slices.Equal(resp, []byte{memberRemoved}) {
			return true
		}
	}
	return false
}

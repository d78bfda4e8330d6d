package heartbeat

import (
	"sync"

	"github.com/hashicorp/raft"
)

// Transport is one Raft group's transport: its heartbeats go through the
// node's Coalescer, everything else (appends with entries, votes,
// snapshots, TimeoutNow) through the group's own transport, which it
// embeds.
type Transport struct {
	raft.Transport
	c      *Coalescer
	group  string
	closed chan struct{} // closed by Close
	once   sync.Once

	// mu guards handler: raft's heartbeat handler, which Serve hands the
	// group's heartbeats to.
	mu      sync.Mutex
	handler func(raft.RPC)
}

// preVoteTransport is a Transport over a transport with pre-vote: raft
// asks for pre-votes only when its transport has RequestPreVote.
type preVoteTransport struct {
	*Transport
	preVote raft.WithPreVote
}

func (t preVoteTransport) RequestPreVote(id raft.ServerID, target raft.ServerAddress, args *raft.RequestPreVoteRequest, resp *raft.RequestPreVoteResponse) error {
	return t.preVote.RequestPreVote(id, target, args, resp)
}

// Wrap returns the transport of the Raft group named group (the same name
// on every node) over inner, its own transport: its heartbeats go through
// c, in batches with the other groups' to the same peer node, and the
// batches peers send it reach it. A group wrapped again replaces the
// earlier transport as the receiver of the group's heartbeats. inner
// keeps the group's heartbeat handler too, for heartbeats that come
// through it.
func (c *Coalescer) Wrap(group string, inner raft.Transport) raft.Transport {
	t := &Transport{Transport: inner, c: c, group: group, closed: make(chan struct{})}
	c.mu.Lock()
	c.mu.groups[group] = t
	c.mu.Unlock()
	if pv, ok := inner.(raft.WithPreVote); ok {
		return preVoteTransport{Transport: t, preVote: pv}
	}
	return t
}

// AppendEntries sends a heartbeat through the Coalescer and waits for the
// follower's answer; other appends go through the group's transport.
func (t *Transport) AppendEntries(id raft.ServerID, target raft.ServerAddress, args *raft.AppendEntriesRequest, resp *raft.AppendEntriesResponse) error {
	if !isHeartbeat(args) {
		return t.Transport.AppendEntries(id, target, args, resp)
	}
	select {
	case <-t.closed:
		return ErrClosed
	default:
	}
	return t.c.send(t, string(target), args, resp)
}

// isHeartbeat tells a heartbeat from other appends, as raft's
// NetworkTransport does on the receiving side: a term and a leader, and
// nothing else.
func isHeartbeat(a *raft.AppendEntriesRequest) bool {
	return a.Term != 0 && (len(a.Addr) > 0 || len(a.Leader) > 0) &&
		a.PrevLogEntry == 0 && a.PrevLogTerm == 0 && len(a.Entries) == 0 && a.LeaderCommitIndex == 0
}

// SetHeartbeatHandler sets the handler that gets the group's heartbeats,
// from batches and from its own transport.
func (t *Transport) SetHeartbeatHandler(cb func(raft.RPC)) {
	t.mu.Lock()
	t.handler = cb
	t.mu.Unlock()
	t.Transport.SetHeartbeatHandler(cb)
}

func (t *Transport) heartbeatHandler() func(raft.RPC) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.handler
}

// Close stops sending and receiving the group's heartbeats through the
// Coalescer and closes the group's own transport if it can be closed.
func (t *Transport) Close() error {
	var err error
	t.once.Do(func() {
		close(t.closed)
		t.c.forget(t)
		if wc, ok := t.Transport.(raft.WithClose); ok {
			err = wc.Close()
		}
	})
	return err
}

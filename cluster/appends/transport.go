package appends

import (
	"errors"
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// Transport is one Raft group's transport: its AppendEntries go through
// the node's Batcher, everything else (votes, snapshots, TimeoutNow, and
// heartbeats when a heartbeat coalescer wraps it) through the group's own
// transport, which it embeds. Its Consumer carries both the RPCs of the
// group's own transport and the appends peers' Batchers send the group.
type Transport struct {
	raft.Transport
	b      *Batcher
	group  string
	rpcs   chan raft.RPC // Consumer: what raft handles
	closed chan struct{} // closed by Close
	once   sync.Once
	// released is closed by Release: appends to unreachable peers fail
	// at once.
	released    chan struct{}
	releaseOnce sync.Once
	wg          sync.WaitGroup // forward and serve

	// The receiving side: appends from peers, in the order they came,
	// handed to raft one at a time by serve.
	wake chan struct{} // capacity 1: something was queued
	in   struct {
		sync.Mutex // guards queue
		queue      []incoming
	}
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
// on every node) over inner, its own transport: its appends go through b,
// in frames with the other groups' to the same peer node, and the appends
// peers send it reach it. A group wrapped again replaces the earlier
// transport as the receiver of the group's appends.
func (b *Batcher) Wrap(group string, inner raft.Transport) raft.Transport {
	t := &Transport{Transport: inner, b: b, group: group, rpcs: make(chan raft.RPC),
		closed: make(chan struct{}), released: make(chan struct{}), wake: make(chan struct{}, 1)}
	b.mu.Lock()
	b.mu.groups[group] = t
	b.mu.Unlock()
	t.wg.Add(2)
	go t.forward()
	go t.serve()
	if pv, ok := inner.(raft.WithPreVote); ok {
		return preVoteTransport{Transport: t, preVote: pv}
	}
	return t
}

// Consumer returns the RPCs for the group's raft: its own transport's and
// the appends from peers' Batchers.
func (t *Transport) Consumer() <-chan raft.RPC { return t.rpcs }

// forward passes the RPCs of the group's own transport on to Consumer.
func (t *Transport) forward() {
	defer t.wg.Done()
	from := t.Transport.Consumer()
	for {
		select {
		case rpc := <-from:
			select {
			case t.rpcs <- rpc:
			case <-t.closed:
				return
			}
		case <-t.closed:
			return
		}
	}
}

// AppendEntries sends an append through the Batcher and waits for the
// follower's answer, or for the call to fail (see Options.Timeout).
func (t *Transport) AppendEntries(id raft.ServerID, target raft.ServerAddress, args *raft.AppendEntriesRequest, resp *raft.AppendEntriesResponse) error {
	if !t.b.supports(string(target)) {
		return t.Transport.AppendEntries(id, target, args, resp)
	}
	l := t.b.link(string(target))
	if l == nil {
		return ErrClosed
	}
	hold := time.Now().Add(t.b.opts.PeerHold)
	for {
		err := t.appendOnce(l, args, resp)
		if err == nil || !errors.Is(err, ErrUnreachable) || !time.Now().Before(hold) {
			return err
		}
		// Wait for the peer rather than fail: see Options.PeerHold. The
		// link held the request for DialHold already; this pause only
		// matters when DialHold is negative.
		pause := time.NewTimer(10 * time.Millisecond)
		select {
		case <-t.closed:
			pause.Stop()
			return ErrClosed
		case <-t.released:
			pause.Stop()
			return err
		case <-pause.C:
		}
	}
}

// appendOnce sends one append through link l and waits for its answer.
func (t *Transport) appendOnce(l *link, args *raft.AppendEntriesRequest, resp *raft.AppendEntriesResponse) error {
	type answer struct {
		resp raft.AppendEntriesResponse
		err  error
	}
	ch := make(chan answer, 1)
	m := newMultiCall(t.group, args, func(resp raft.AppendEntriesResponse, err error) { ch <- answer{resp, err} })
	if !m.send(l) {
		return ErrClosed
	}
	select {
	case a := <-ch:
		if a.err == nil {
			*resp = a.resp
		}
		return a.err
	case <-t.closed:
		return ErrClosed
	}
}

// Release makes the appends of tr, a transport Wrap returned, to peers
// that cannot be reached fail from now on rather than wait for the peer
// (Options.PeerHold): for a group about to shut down, whose raft waits
// for its replication goroutines to return. Other transports are left
// alone.
func Release(tr raft.Transport) {
	switch t := tr.(type) {
	case *Transport:
		t.release()
	case preVoteTransport:
		t.release()
	}
}

func (t *Transport) release() { t.releaseOnce.Do(func() { close(t.released) }) }

// AppendEntriesPipeline returns a pipeline of appends to target through
// the Batcher.
func (t *Transport) AppendEntriesPipeline(id raft.ServerID, target raft.ServerAddress) (raft.AppendPipeline, error) {
	if !t.b.supports(string(target)) {
		return t.Transport.AppendEntriesPipeline(id, target)
	}
	l := t.b.link(string(target))
	if l == nil {
		return nil, ErrClosed
	}
	return newPipeline(t, l), nil
}

// Close stops the group's appends through the Batcher (those waiting
// fail) and closes the group's own transport if it can be closed.
func (t *Transport) Close() error {
	var err error
	t.once.Do(func() {
		close(t.closed)
		t.b.forget(t)
		t.wg.Wait()
		if wc, ok := t.Transport.(raft.WithClose); ok {
			err = wc.Close()
		}
	})
	return err
}

// supports tells whether target takes batched appends (Options.Supports).
func (b *Batcher) supports(target string) bool {
	return b.opts.Supports == nil || b.opts.Supports(target)
}

// forget stops handing peers' appends to t.
func (b *Batcher) forget(t *Transport) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.mu.groups[t.group] == t {
		delete(b.mu.groups, t.group)
	}
}

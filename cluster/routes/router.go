package routes

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Caller makes a call to a service of another node (rpcmux.Mux.Call).
type Caller interface {
	Call(ctx context.Context, addr, service string, req []byte) ([]byte, error)
}

// Claimer answers another node's claim of an MQTT client id
// (mqtt.Broker.HandleClaim) and the end of the session's move
// (HandleSettle), and takes the sessions a stopping node hands over
// (HandleHandOver).
type Claimer interface {
	HandleClaim(req []byte) ([]byte, error)
	HandleSettle(req []byte) ([]byte, error)
	HandleHandOver(req []byte) ([]byte, error)
}

// Deliverer takes a message another node forwarded, for this node's
// subscribers. It must not block for long: it is called in order, one
// message after the other, for every message of a sender.
type Deliverer interface {
	DeliverForwarded(msg []byte)
}

// Peer is another node of the cluster, as membership sees it.
type Peer struct {
	ID   string
	Addr string // its RPC address
}

// Options configure a Router.
type Options struct {
	Self   string // this node's id
	Caller Caller
	// Deliver takes the messages other nodes forward here, and Claims
	// their claims of client ids; set them before peers can call (the
	// handlers use them).
	Deliver Deliverer
	Claims  Claimer
	// SyncWait bounds how long SetClient waits for the other nodes to
	// learn of a new filter (default 2 s).
	SyncWait time.Duration
	// Resync is how often a node checks that each other node still holds
	// its current filters, and sends them whole when not (default 15 s).
	Resync time.Duration
	// CallTimeout bounds one call to a peer (default 5 s).
	CallTimeout time.Duration
	// MaxQueuedBytes bounds the messages waiting for one peer; beyond it
	// the oldest are dropped and counted (default 64 MiB).
	MaxQueuedBytes int
	// Joined, if set, is called (on a goroutine of its own) when a node
	// joins the peer set or is found to have restarted, so that state
	// replicated by messages (retained messages) can be sent to it whole
	// with SendTo.
	Joined func(peer string)
	// Alive, if set, says whether a peer is alive (not merely suspect);
	// Designated counts only those.
	Alive  func(peer string) bool
	Logger *slog.Logger
}

func (o *Options) defaults() {
	if o.SyncWait <= 0 {
		o.SyncWait = 2 * time.Second
	}
	if o.Resync <= 0 {
		o.Resync = 15 * time.Second
	}
	if o.CallTimeout <= 0 {
		o.CallTimeout = 5 * time.Second
	}
	if o.MaxQueuedBytes <= 0 {
		o.MaxQueuedBytes = 64 << 20
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
}

// maxLog bounds the local changes kept to bring peers up to date with
// deltas; a peer further behind gets the filters whole.
const maxLog = 4096

// Router is a node's share of the cluster's route table: the filters its
// own clients subscribe to, sent to every other node, and the filters of
// the other nodes, used to forward messages published here.
type Router struct {
	opts        Options
	log         *slog.Logger
	incarnation uint64
	ctx         context.Context
	cancel      context.CancelFunc
	wg          sync.WaitGroup

	// mu guards local, remotes, index, peers, acked and every peer's
	// acked version.
	mu      sync.Mutex
	local   localRoutes
	remotes map[string]*remoteRoutes // by node id
	index   trie                     // the remotes' filters
	peers   map[string]*peer         // by node id
	// joins holds the peers whose Joined runs (joinRunning), or runs and
	// is to run again once it returned (joinAgain): one at a time per
	// peer, since a run may wait for room in the peer's queue.
	joins map[string]int8
	// links numbers the peer links this router made (peer.link).
	links uint64
	// heard holds, for each node this router dropped while it held the
	// node's filters, the process and link those came from (peer.heard).
	heard map[string]heardLink
	// acked is closed (and replaced) whenever a peer acknowledges a
	// version of the local filters, waking SetClient's waiters.
	acked chan struct{}

	// peerSnap is the peer set for the forwarding path, replaced (never
	// modified) under mu.
	peerSnap atomic.Pointer[map[string]*peer]
	cache    matchCache
	// forwarding is held for reading by Forward from the lookup of a
	// message's targets until it is queued for them; HandleFlush takes it
	// for writing, and lets go at once, so that a message routed by the
	// table as it was before the flush is queued before the flush looks
	// at the queue. It guards nothing else.
	forwarding sync.RWMutex
	// lookedUp, if set (tests), is called by Forward between the lookup
	// of the targets and queueing the message.
	lookedUp func()

	forwarded atomic.Int64 // messages queued for another node
	received  atomic.Int64 // messages delivered here from other nodes
	dropped   atomic.Int64 // messages dropped: a peer's queue was full or it left
}

// localRoutes are this node's filters. The Router's mu guards them.
type localRoutes struct {
	clients map[string][]string // client id -> its filters, sorted
	refs    map[string]int      // filter -> number of clients holding it
	// since is the version at which each filter was added.
	since   map[string]uint64
	version uint64
	// changes are the last changes, versions log[0].version on, one each.
	changes []change
}

type change struct {
	version uint64
	filter  string
	add     bool
}

// remoteRoutes are the filters of another node as it last sent them.
type remoteRoutes struct {
	incarnation uint64
	version     uint64
	// link is the sender's number for its link to this node, from its
	// last full set (0: an earlier version, which sends none).
	link    uint64
	filters map[string]struct{}
}

// New makes a router; it starts talking to peers once SetPeers names them.
func New(o Options) *Router {
	o.defaults()
	ctx, cancel := context.WithCancel(context.Background())
	r := &Router{opts: o, log: o.Logger.With("component", "routes"), incarnation: rand.Uint64() | 1,
		ctx: ctx, cancel: cancel, remotes: map[string]*remoteRoutes{}, peers: map[string]*peer{}, joins: map[string]int8{},
		heard: map[string]heardLink{},
		links: 1, // the first link is 2: 1 meant something else to a build of 2026-12-07
		acked: make(chan struct{})}
	r.local = localRoutes{clients: map[string][]string{}, refs: map[string]int{}, since: map[string]uint64{}}
	r.peerSnap.Store(&map[string]*peer{})
	r.cache.init()
	return r
}

// Drain waits until the messages queued for every peer have been sent,
// or for timeout; it reports whether they were. A stopping node drains
// before it leaves the cluster, so that what its last moments forwarded
// (its clients' wills among them) reaches the other nodes.
func (r *Router) Drain(timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	for {
		idle := true
		for _, p := range *r.peerSnap.Load() {
			idle = idle && p.out.idle()
		}
		if idle {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// Close stops every peer link; queued messages are dropped.
func (r *Router) Close() {
	r.cancel()
	r.wg.Wait()
}

// SetClient records the filters of client's ordinary (not shared)
// subscriptions; nil or empty forgets the client. It returns once every
// peer has learnt of the filters among them that are new to this node (or
// still on their way), or after Options.SyncWait (logged), so a message
// published anywhere after the client's SUBACK reaches it.
func (r *Router) SetClient(client string, filters []string) {
	filters = slices.Clone(filters)
	slices.Sort(filters)
	filters = slices.Compact(filters)
	r.mu.Lock()
	old := r.local.clients[client]
	if len(filters) == 0 {
		delete(r.local.clients, client)
	} else {
		r.local.clients[client] = filters
	}
	var need uint64
	changed := false
	for _, f := range filters {
		if !slices.Contains(old, f) {
			if r.local.refs[f] == 0 {
				r.record(f, true)
				changed = true
			}
			r.local.refs[f]++
		}
		need = max(need, r.local.since[f])
	}
	for _, f := range old {
		if !slices.Contains(filters, f) {
			if r.local.refs[f]--; r.local.refs[f] <= 0 {
				delete(r.local.refs, f)
				r.record(f, false)
				changed = true
			}
		}
	}
	if changed {
		r.kickLocked()
	}
	r.mu.Unlock()
	if need > 0 {
		r.waitAcked(need)
	}
}

// record appends a change to the local filters. r.mu is held.
func (r *Router) record(filter string, add bool) {
	r.local.version++
	if add {
		r.local.since[filter] = r.local.version
	} else {
		delete(r.local.since, filter)
	}
	if len(r.local.changes) >= maxLog {
		r.local.changes = slices.Delete(r.local.changes, 0, maxLog/2)
	}
	r.local.changes = append(r.local.changes, change{version: r.local.version, filter: filter, add: add})
}

// kickLocked wakes every peer's sync loop. r.mu is held.
func (r *Router) kickLocked() {
	for _, p := range r.peers {
		p.kickSync()
	}
}

// waitAcked waits until every peer has acknowledged version v of the local
// filters, or SyncWait passed.
func (r *Router) waitAcked(v uint64) {
	deadline := time.NewTimer(r.opts.SyncWait)
	defer deadline.Stop()
	for {
		r.mu.Lock()
		var behind []string
		for id, p := range r.peers {
			// A peer that already missed a deadline is not waited for
			// again until it caught up, so one unreachable peer does
			// not slow every SUBSCRIBE down.
			if p.acked < v && !p.lagging {
				behind = append(behind, id)
			}
		}
		ch := r.acked
		r.mu.Unlock()
		if len(behind) == 0 {
			return
		}
		select {
		case <-ch:
		case <-deadline.C:
			slices.Sort(behind)
			r.mu.Lock()
			for _, id := range behind {
				if p := r.peers[id]; p != nil && p.acked < v {
					p.lagging = true
				}
			}
			r.mu.Unlock()
			r.log.Warn("peers did not confirm a new subscription in time; messages published on them may miss it until they do",
				"peers", behind, "wait", r.opts.SyncWait)
			return
		case <-r.ctx.Done():
			return
		}
	}
}

// updateFor is what peer p needs to catch up with the local filters: the
// changes since its acknowledged version, or everything. r.mu is held.
func (r *Router) updateFor(p *peer) update {
	l := &r.local
	u := update{incarnation: r.incarnation, base: p.acked, version: l.version}
	if p.acked > 0 && p.acked <= l.version && (p.acked == l.version || (len(l.changes) > 0 && l.changes[0].version <= p.acked+1)) {
		// A filter may have changed more than once since: its last
		// change is what the peer needs.
		u.kind = syncDelta
		last := map[string]bool{}
		for _, c := range l.changes {
			if c.version > p.acked {
				last[c.filter] = c.add
			}
		}
		for f, add := range last {
			if add {
				u.adds = append(u.adds, f)
			} else {
				u.removes = append(u.removes, f)
			}
		}
		return u
	}
	u.kind, u.base = syncFull, p.link
	if p.heard != (heardLink{}) {
		u.removes = []string{p.heard.marker()}
	}
	u.adds = make([]string, 0, len(l.refs))
	for f := range l.refs {
		u.adds = append(u.adds, f)
	}
	slices.Sort(u.adds)
	return u
}

// HandleSync serves SyncService: another node's filters.
func (r *Router) HandleSync(_ context.Context, from string, req []byte) ([]byte, error) {
	u, err := decodeUpdate(req)
	if err != nil {
		return nil, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.peers[from] == nil {
		// A node this one cannot forward to yet (one that restarted,
		// before this node's membership saw it come up): taking its
		// filters would make messages for its subscribers go nowhere,
		// while its SetClient counted them as known here.
		return []byte{syncNotPeer}, nil
	}
	rem := r.remotes[from]
	if u.kind == syncDelta {
		if rem == nil || rem.incarnation != u.incarnation || rem.version != u.base {
			return []byte{syncNeedFull}, nil
		}
		for _, f := range u.adds {
			r.addRemote(rem, from, f)
		}
		for _, f := range u.removes {
			r.removeRemote(rem, from, f)
		}
		rem.version = u.version
		return []byte{syncOK}, nil
	}
	if rem == nil || rem.incarnation != u.incarnation {
		// A node new to this one, restarted, or that this one dropped:
		// it may have lost this node's filters too, so send them whole
		// now rather than at the next check.
		if p := r.peers[from]; p != nil && p.acked > 0 {
			p.acked = 0
			p.kickSync()
		}
	} else {
		if u.version < rem.version || (u.base != 0 && u.base < rem.link) {
			// An older full set that arrived after a newer one (a
			// call timed out, and its retry overtook it), or one of a
			// link the sender has since replaced (its link numbers
			// only grow): it would undo the newer one, and make its
			// link look new again.
			return []byte{syncOK}, nil
		}
		if p := r.peers[from]; p != nil && u.base != 0 && rem.link != 0 && u.base != rem.link {
			// The sender's link to this node is a new one: it dropped
			// this node (took it for failed) and took it back, while
			// this node kept it. It lost this node's filters and what
			// Joined sent it (wills), whatever this node's
			// acknowledged version says (an acknowledgement may even
			// be on its way back).
			p.acked = 0
			p.kickSync()
			r.joinedLocked(from)
		}
	}
	if rem == nil {
		rem = &remoteRoutes{filters: map[string]struct{}{}}
		r.remotes[from] = rem
		if h := heardIn(u.removes); h.incarnation == r.incarnation && h.link == r.peers[from].link {
			// The sender dropped the filters this process sent over its
			// current link to it, with an earlier link of the sender's
			// none of whose sets reached this node: it dropped too what
			// Joined sent over this link. (After a drop of its own, this
			// node ran Joined on its new link; a restarted one, on its
			// first.)
			r.joinedLocked(from)
		}
	} else if rem.incarnation != u.incarnation {
		r.joinedLocked(from) // it restarted since it last sent its filters
	}
	want := make(map[string]struct{}, len(u.adds))
	for _, f := range u.adds {
		want[f] = struct{}{}
	}
	for f := range rem.filters {
		if _, ok := want[f]; !ok {
			r.removeRemote(rem, from, f)
		}
	}
	for f := range want {
		r.addRemote(rem, from, f)
	}
	rem.incarnation, rem.version = u.incarnation, u.version
	if u.base != 0 {
		rem.link = u.base
	}
	return []byte{syncOK}, nil
}

// addRemote and removeRemote change node's filters. r.mu is held.
func (r *Router) addRemote(rem *remoteRoutes, node, filter string) {
	if _, ok := rem.filters[filter]; ok {
		return
	}
	rem.filters[filter] = struct{}{}
	r.index.add(filter, node)
	r.cache.invalidate()
}

func (r *Router) removeRemote(rem *remoteRoutes, node, filter string) {
	if _, ok := rem.filters[filter]; !ok {
		return
	}
	delete(rem.filters, filter)
	r.index.remove(filter, node)
	r.cache.invalidate()
}

// dropRemote forgets every filter of node. r.mu is held.
func (r *Router) dropRemote(node string) {
	rem := r.remotes[node]
	if rem == nil {
		return
	}
	for f := range rem.filters {
		r.index.remove(f, node)
	}
	delete(r.remotes, node)
	r.cache.invalidate()
}

// HandleDeliver serves DeliverService: messages for this node's
// subscribers, delivered in the order of the batch.
func (r *Router) HandleDeliver(_ context.Context, from string, req []byte) ([]byte, error) {
	msgs, err := decodeBatch(req)
	if err != nil {
		// Answered, not failed: the sender drops the batch rather than
		// send it again for ever (a failed call may be a handler not
		// registered yet, which it retries).
		r.log.Error("forwarded messages refused: malformed batch", "peer", from, "error", err)
		return []byte{deliverRefused}, nil
	}
	for _, m := range msgs {
		r.opts.Deliver.DeliverForwarded(m)
	}
	r.received.Add(int64(len(msgs)))
	return nil, nil
}

// Claim sends a claim of a client id to every other node at once and
// returns the answers that came back within timeout, each with the node
// that gave it; a node that did not answer is logged and left out.
func (r *Router) Claim(req []byte, timeout time.Duration) (nodes []string, answers [][]byte) {
	peers := *r.peerSnap.Load()
	if len(peers) == 0 {
		return nil, nil
	}
	ctx, cancel := context.WithTimeout(r.ctx, timeout)
	defer cancel()
	type answer struct {
		peer string
		resp []byte
		err  error
	}
	ch := make(chan answer, len(peers))
	asked := 0
	for id, p := range peers {
		if p.unreachable.Load() {
			// Its last call timed out: a partition must not make every
			// CONNECT wait out the timeout. It is asked again once a
			// call to it went through (the route check every Resync).
			continue
		}
		asked++
		go func() {
			resp, err := r.opts.Caller.Call(ctx, p.addr, ClaimService, req)
			p.noteCall(err)
			ch <- answer{id, resp, err}
		}()
	}
	for range asked {
		a := <-ch
		if a.err != nil {
			r.log.Warn("a node did not answer a client id claim; the id may stay connected there", "peer", a.peer, "error", a.err)
			continue
		}
		nodes = append(nodes, a.peer)
		answers = append(answers, a.resp)
	}
	return nodes, answers
}

// Settle sends req, the end of a session's move, to node (the node that
// handed the session over in its answer to a claim) and returns its
// answer.
func (r *Router) Settle(node string, req []byte, timeout time.Duration) ([]byte, error) {
	p := (*r.peerSnap.Load())[node]
	if p == nil {
		return nil, fmt.Errorf("routes: %s is not a peer", node)
	}
	ctx, cancel := context.WithTimeout(r.ctx, timeout)
	defer cancel()
	resp, err := r.opts.Caller.Call(ctx, p.addr, SettleService, req)
	if !timedOut(err) {
		// A slow settle (its barrier waits for backlogs) does not make
		// the peer unreachable for claims.
		p.noteCall(err)
	}
	return resp, err
}

// Barrier waits until the messages every other node queued for this one
// before the call have been delivered here (or timeout passed). A node
// that hands a client's session over calls it once the other nodes route
// the client's messages to the session's new node: what they routed here
// before that has then been queued here.
func (r *Router) Barrier(timeout time.Duration) {
	peers := *r.peerSnap.Load()
	ctx, cancel := context.WithTimeout(r.ctx, timeout)
	defer cancel()
	var wg sync.WaitGroup
	for id, p := range peers {
		if p.unreachable.Load() {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := r.opts.Caller.Call(ctx, p.addr, FlushService, nil); err != nil {
				r.log.Debug("a peer did not confirm it delivered what it queued here", "peer", id, "error", err)
			}
		}()
	}
	wg.Wait()
}

// HandleFlush serves FlushService: it returns once the messages queued
// for the calling node so far, and those of the forwards under way, have
// been delivered there.
func (r *Router) HandleFlush(ctx context.Context, from string, _ []byte) ([]byte, error) {
	p := (*r.peerSnap.Load())[from]
	if p == nil {
		return nil, nil // nothing is queued for a node that is not a peer
	}
	// ctx is the mux's (not the caller's): bound the wait, and end it
	// when the peer leaves the set.
	ctx, cancel := context.WithTimeout(ctx, r.opts.CallTimeout)
	defer cancel()
	stop := context.AfterFunc(p.ctx, cancel)
	defer stop()
	// A forward that looked its targets up before the flush came (the
	// calling node among them: a session moving away from it, whose new
	// node's filters arrived here since) queues its message first.
	r.forwarding.Lock()
	r.forwarding.Unlock()
	if !p.out.waitQueued(ctx) {
		return nil, ctx.Err()
	}
	return nil, nil
}

// HandleSettle serves SettleService.
func (r *Router) HandleSettle(_ context.Context, _ string, req []byte) ([]byte, error) {
	if r.opts.Claims == nil {
		return nil, errors.New("routes: this node does not take claims")
	}
	return r.opts.Claims.HandleSettle(req)
}

// Designated reports whether this node has the lowest id among the nodes
// up (itself and its peers; with Options.Alive, only the peers it calls
// alive: a suspect that is in fact dead must not be waited for), not
// counting except.
func (r *Router) Designated(except string) bool {
	for id := range *r.peerSnap.Load() {
		if id != except && id < r.opts.Self && (r.opts.Alive == nil || r.opts.Alive(id)) {
			return false
		}
	}
	return r.opts.Self != except
}

// HandleClaim serves ClaimService.
func (r *Router) HandleClaim(_ context.Context, _ string, req []byte) ([]byte, error) {
	if r.opts.Claims == nil {
		return nil, errors.New("routes: this node does not take claims")
	}
	return r.opts.Claims.HandleClaim(req)
}

// HandOver sends req, a session of client id a stopping node hands over,
// to one other node: the alive peers are tried one after the other, in an
// order that depends on the client id (so the sessions of a node spread
// over the others), until one answers within timeout. It returns that
// peer and its answer; an error when none did (ErrNoPeer: none is alive).
// A call that timed out ends the tries: that node may have taken the
// session all the same.
func (r *Router) HandOver(client string, req []byte, timeout time.Duration) (string, []byte, error) {
	var ids []string
	for id, p := range *r.peerSnap.Load() {
		if !p.unreachable.Load() && (r.opts.Alive == nil || r.opts.Alive(id)) {
			ids = append(ids, id)
		}
	}
	if len(ids) == 0 {
		return "", nil, ErrNoPeer
	}
	slices.SortFunc(ids, func(a, b string) int {
		return cmp.Compare(rendezvous(client, a), rendezvous(client, b))
	})
	var errs []error
	for _, id := range ids {
		p := (*r.peerSnap.Load())[id]
		if p == nil {
			continue
		}
		ctx, cancel := context.WithTimeout(r.ctx, timeout)
		resp, err := r.opts.Caller.Call(ctx, p.addr, HandOverService, req)
		cancel()
		p.noteCall(err)
		if err == nil {
			return id, resp, nil
		}
		errs = append(errs, fmt.Errorf("%s: %w", id, err))
		if timedOut(err) {
			// It may have taken the session all the same: another
			// node must not take it too.
			break
		}
	}
	return "", nil, errors.Join(errs...)
}

// ErrNoPeer: no other node is alive to take a session.
var ErrNoPeer = errors.New("routes: no other node is alive")

// rendezvous ranks node for client (lowest first).
func rendezvous(client, node string) uint64 {
	h := fnv.New64a()
	_, _ = h.Write([]byte(client))
	_, _ = h.Write([]byte{0})
	_, _ = h.Write([]byte(node))
	return h.Sum64()
}

// HandleHandOver serves HandOverService.
func (r *Router) HandleHandOver(_ context.Context, _ string, req []byte) ([]byte, error) {
	if r.opts.Claims == nil {
		return nil, errors.New("routes: this node does not take sessions")
	}
	return r.opts.Claims.HandleHandOver(req)
}

// Broadcast queues msg for every other node.
func (r *Router) Broadcast(msg []byte) {
	for _, p := range *r.peerSnap.Load() {
		r.forwarded.Add(1)
		if n := p.out.push(msg); n > 0 {
			r.overflow(p, n)
		}
	}
}

// SendTo queues msg for node peer (dropped if it is not a peer).
func (r *Router) SendTo(peer string, msg []byte) {
	if p := (*r.peerSnap.Load())[peer]; p != nil {
		r.forwarded.Add(1)
		if n := p.out.push(msg); n > 0 {
			r.overflow(p, n)
		}
	}
}

// SendPaced queues msg for peer like SendTo, but waits for room in the
// peer's queue rather than drop older messages: for what Joined sends
// (every retained message, the wills), which may be more than the queue
// holds. Dropping it would start the repair that sends it all again, and
// overflow again, for as long as the peer stays. It returns once msg is
// queued, or the peer left.
func (r *Router) SendPaced(peer string, msg []byte) {
	if p := (*r.peerSnap.Load())[peer]; p != nil {
		if r.superseded(peer) {
			// Joined is to run again (the peer restarted, or lost
			// what it was sent): that run sends everything anew, and
			// its hello and wills must not wait behind the rest of
			// this one.
			return
		}
		r.forwarded.Add(1)
		if !p.out.pushWait(p.ctx, msg, func() bool { return r.superseded(peer) }) && !r.superseded(peer) {
			r.dropped.Add(1) // the peer left
		}
	}
}

// superseded reports whether a run of Joined for peer is to be followed
// by another.
func (r *Router) superseded(peer string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.joins[peer] == joinAgain
}

// joinedLocked calls Options.Joined for peer on a goroutine, or, while
// one runs for peer, once more after it. r.mu is held.
func (r *Router) joinedLocked(peer string) {
	if r.opts.Joined == nil || r.ctx.Err() != nil {
		return
	}
	if r.joins[peer] != 0 {
		r.joins[peer] = joinAgain
		if p := r.peers[peer]; p != nil {
			p.out.wakeWaiters() // a paced send waiting for room gives way
		}
		return
	}
	r.joins[peer] = joinRunning
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		for {
			r.opts.Joined(peer)
			r.mu.Lock()
			again := r.joins[peer] == joinAgain && r.ctx.Err() == nil
			if again {
				r.joins[peer] = joinRunning
			} else {
				delete(r.joins, peer)
			}
			r.mu.Unlock()
			if !again {
				return
			}
		}
	}()
}

// States of a peer's Joined (Router.joins).
const (
	joinRunning int8 = 1
	joinAgain   int8 = 2
)

// Wanted reports whether a node other than this one has a subscription
// matching topic.
func (r *Router) Wanted(topic string) bool { return len(r.targets(topic)) > 0 }

// Forward queues msg for every other node with a subscription matching
// topic. Messages for one node leave in the order Forward was called.
func (r *Router) Forward(topic string, msg []byte) {
	r.forwarding.RLock()
	defer r.forwarding.RUnlock()
	targets := r.targets(topic)
	if len(targets) == 0 {
		return
	}
	if r.lookedUp != nil {
		r.lookedUp()
	}
	peers := *r.peerSnap.Load()
	for _, id := range targets {
		if p := peers[id]; p != nil {
			r.forwarded.Add(1)
			if n := p.out.push(msg); n > 0 {
				r.overflow(p, n)
			}
		}
	}
}

// overflow counts messages dropped because p's queue was full, and logs
// it at most once per Resync interval per peer.
func (r *Router) overflow(p *peer, n int) {
	r.dropped.Add(int64(n))
	p.repair.Store(true) // state sent as messages may have been dropped
	now := time.Now().UnixNano()
	if last := p.overflowLogged.Load(); now-last > int64(r.opts.Resync) && p.overflowLogged.CompareAndSwap(last, now) {
		r.log.Warn("messages for a peer dropped: its queue is full (the peer is slow or unreachable)",
			"peer", p.id, "limit_bytes", r.opts.MaxQueuedBytes, "dropped_total", r.dropped.Load())
	}
}

// targets returns the nodes with a filter matching topic (shared; do not
// modify).
func (r *Router) targets(topic string) []string {
	if t, ok := r.cache.get(topic); ok {
		return t
	}
	gen := r.cache.generation()
	set := map[string]struct{}{}
	r.mu.Lock()
	r.index.match(topic, set)
	r.mu.Unlock()
	var t []string
	for id := range set {
		t = append(t, id)
	}
	slices.Sort(t)
	r.cache.put(topic, gen, t)
	return t
}

// Stats are the router's counters and sizes.
type Stats struct {
	// Peers are the other nodes this node routes to and claims client
	// ids from now.
	Peers         []string       `json:"peers"`
	LocalFilters  int            `json:"local_filters"`
	RemoteFilters map[string]int `json:"remote_filters"` // by node
	Forwarded     int64          `json:"forwarded"`
	Received      int64          `json:"received"`
	Dropped       int64          `json:"dropped"`
}

func (r *Router) Stats() Stats {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := Stats{LocalFilters: len(r.local.refs), RemoteFilters: map[string]int{},
		Forwarded: r.forwarded.Load(), Received: r.received.Load(), Dropped: r.dropped.Load()}
	for id, rem := range r.remotes {
		s.RemoteFilters[id] = len(rem.filters)
	}
	for id := range r.peers {
		s.Peers = append(s.Peers, id)
	}
	slices.Sort(s.Peers)
	return s
}

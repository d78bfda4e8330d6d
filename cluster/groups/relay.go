package groups

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/mqstream/mqstream/streams"
)

// Member is one shared subscription of a client, as a group sees it: the
// same interface as shared.Member and mqtt.GroupMember (an alias of the
// same interface literal, so none of the three packages imports another).
type Member = interface {
	ClientID() string
	QoS() byte
	ReceiveMaximum() int
	Room() int
	Deliver(rec *streams.Record, qos byte, dup bool, acked func(reason byte)) (cancel func(), err error)
	OnRoom(wake func())
}

// Local runs the groups this node dispatches (*shared.Manager).
type Local interface {
	Check(name, filter string) error
	Join(name, filter string, m Member) (leave func(), err error)
}

// Placement says which node dispatches a group now, and in which epoch
// (the Raft term of its shard's leadership); ok is false while no node
// does (an election).
type Placement interface {
	Dispatcher(name, filter string) (node string, epoch uint64, ok bool)
}

// Transport reaches the other nodes.
type Transport interface {
	// Call sends a request to a node's service and returns its answer.
	Call(ctx context.Context, node, service string, req []byte) ([]byte, error)
	// Send queues msg for node, after what was sent to it before; a
	// message may be lost (overflow, restart), never reordered.
	Send(node string, msg []byte)
}

// Services a node registers for its peers (HandleJoin, HandleLeave).
const (
	JoinService  = "groups.join"
	LeaveService = "groups.leave"
)

// Options configure a Relay.
type Options struct {
	Self      string // this node's id
	Local     Local
	Placement Placement
	Transport Transport
	// RetryInterval is how often memberships that could not attach try
	// again (default 250 ms).
	RetryInterval time.Duration
	// CallTimeout bounds a join or leave call (default 3 s).
	CallTimeout time.Duration
	Logger      *slog.Logger
}

// Relay attaches this node's shared subscriptions to the node that
// dispatches each group, and serves the members other nodes attach to
// the groups dispatched here.
type Relay struct {
	opts Options
	log  *slog.Logger

	// mu guards the member side: memberships and their attachments.
	mu      sync.Mutex
	members map[*membership]struct{}
	byRef   map[uint64]*membership // remote attachments by ref
	nextRef uint64
	closed  bool
	// roomq lists the memberships whose room the room loop sends.
	roomq    []*membership
	roomKick chan struct{} // capacity 1

	// pmu guards the dispatch side: proxies of members on other nodes,
	// and the refs of those dropped when their node was given up for gone
	// (its detach frames could not reach it; sent if it comes back).
	pmu      sync.Mutex
	proxies  map[proxyKey]*proxy
	goneRefs map[string][]uint64

	kick chan struct{} // capacity 1: reconcile now
	done chan struct{}
	wg   sync.WaitGroup
}

// New starts a relay.
func New(o Options) *Relay {
	if o.RetryInterval <= 0 {
		o.RetryInterval = 250 * time.Millisecond
	}
	if o.CallTimeout <= 0 {
		o.CallTimeout = 3 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	r := &Relay{opts: o, log: o.Logger, members: map[*membership]struct{}{}, byRef: map[uint64]*membership{},
		// Refs start at a random point: a restarted node's new
		// attachments never reuse one its old process had, which a
		// dispatcher may still hold (its frames would reach the wrong
		// membership).
		nextRef: rand.Uint64() >> 1,
		proxies: map[proxyKey]*proxy{}, goneRefs: map[string][]uint64{}, kick: make(chan struct{}, 1), roomKick: make(chan struct{}, 1), done: make(chan struct{})}
	r.wg.Add(2)
	go r.loop()
	go r.roomLoop()
	return r
}

// Close stops reconciling; memberships stay as they are.
func (r *Relay) Close() {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return
	}
	r.closed = true
	r.mu.Unlock()
	close(r.done)
	r.wg.Wait()
}

// Check tells whether $share/<name>/<filter> can be served (the mapping
// rules are the same on every node).
func (r *Relay) Check(name, filter string) error { return r.opts.Local.Check(name, filter) }

// Reconcile tells the relay that placement may have changed.
func (r *Relay) Reconcile() {
	select {
	case r.kick <- struct{}{}:
	default:
	}
}

// membership is one shared subscription of a client connected here.
type membership struct {
	name, filter string
	m            Member
	since        time.Time // when the client subscribed
	// attached: the membership was attached once; later attachments
	// (hand-overs) create no group: a group deleted meanwhile stays
	// deleted until a SUBSCRIBE creates it.
	attached bool

	// Guarded by Relay.mu.
	left bool
	at   string // the dispatching node attached to; "" if none
	// epoch of the attachment (Placement's, when it was made).
	epoch uint64
	// ref numbers a remote attachment (0: local or none); frames carry it.
	ref uint64
	// leave ends a local attachment.
	leave func()
	// pending holds the cancels of a remote attachment's deliveries the
	// client has not acknowledged, by delivery id.
	pending map[uint64]func()
	// localWake is the local group's wake-up while attached locally.
	localWake func()
	// roomQueued: ms is in Relay.roomq.
	roomQueued bool
}

// Join attaches a shared subscription to its group's dispatcher. It
// fails only for what the local groups refuse on any node (invalid or
// unstored filter); while the dispatcher cannot be reached the
// membership waits and is retried.
func (r *Relay) Join(name, filter string, m Member) (leave func(), err error) {
	if err := r.opts.Local.Check(name, filter); err != nil {
		return nil, err
	}
	ms := &membership{name: name, filter: filter, m: m, since: time.Now()}
	m.OnRoom(func() { r.roomed(ms) })
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return nil, errors.New("groups: relay closed")
	}
	r.members[ms] = struct{}{}
	r.mu.Unlock()
	if err := r.attach(ms, nil); err != nil {
		r.log.Info("shared subscription waits for its group's dispatcher", "client", m.ClientID(), "group", name, "filter", filter, "error", err)
		r.Reconcile()
	}
	return func() { r.leave(ms) }, nil
}

// leave ends a membership.
func (r *Relay) leave(ms *membership) {
	r.mu.Lock()
	if ms.left {
		r.mu.Unlock()
		return
	}
	ms.left = true
	delete(r.members, ms)
	r.mu.Unlock()
	r.detach(ms)
}

// attach joins ms to the group's dispatcher, unless already attached to
// the current one. The answer of a remote join is awaited without holding
// r.mu. A node listed in unreachable is not called (a join to it failed
// moments ago); one whose join fails is added to it.
func (r *Relay) attach(ms *membership, unreachable map[string]bool) error {
	node, epoch, ok := r.opts.Placement.Dispatcher(ms.name, ms.filter)
	if !ok {
		return errors.New("no node dispatches the group now")
	}
	if unreachable[node] {
		return fmt.Errorf("node %s did not answer a join moments ago", node)
	}
	r.mu.Lock()
	if ms.left || (ms.at == node && ms.epoch == epoch) {
		r.mu.Unlock()
		return nil
	}
	r.mu.Unlock()
	r.detach(ms)
	if node == r.opts.Self {
		return r.attachLocal(ms, epoch)
	}
	err := r.attachRemote(ms, node, epoch)
	if err != nil && unreachable != nil {
		unreachable[node] = true
	}
	return err
}

// attachLocal joins ms to a group dispatched here.
func (r *Relay) attachLocal(ms *membership, epoch uint64) error {
	leave, err := r.opts.Local.Join(ms.name, ms.filter, localMember{r: r, ms: ms})
	if err != nil {
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if ms.left || ms.at != "" {
		// Left, or attached by a concurrent attach, meanwhile.
		go leave()
		return nil
	}
	ms.at, ms.epoch, ms.leave, ms.attached = r.opts.Self, epoch, leave, true
	return nil
}

// attachRemote asks node to join ms to its group.
func (r *Relay) attachRemote(ms *membership, node string, epoch uint64) error {
	r.mu.Lock()
	r.nextRef++
	ref := r.nextRef
	r.mu.Unlock()
	var since int64
	r.mu.Lock()
	if !ms.attached {
		since = ms.since.UnixNano()
	}
	r.mu.Unlock()
	req := encodeJoin(joinRequest{ref: ref, name: ms.name, filter: ms.filter, clientID: ms.m.ClientID(),
		qos: ms.m.QoS(), receiveMax: uint64(max(ms.m.ReceiveMaximum(), 0)), room: int64(ms.m.Room()), since: since})
	// Registered before the call: the dispatcher may deliver before it
	// answers.
	r.mu.Lock()
	if ms.left || ms.at != "" {
		r.mu.Unlock()
		return nil
	}
	ms.at, ms.epoch, ms.ref, ms.pending = node, epoch, ref, map[uint64]func(){}
	r.byRef[ref] = ms
	r.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), r.opts.CallTimeout)
	defer cancel()
	if _, err := r.opts.Transport.Call(ctx, node, JoinService, req); err != nil {
		r.mu.Lock()
		mine := ms.ref == ref
		r.mu.Unlock()
		if mine {
			// The dispatcher may have joined all the same (the answer
			// was lost or late): leave there too.
			r.detach(ms)
		}
		return fmt.Errorf("join at %s: %w", node, err)
	}
	r.mu.Lock()
	ms.attached = true
	r.mu.Unlock()
	// A room report sent while the call was under way may have reached
	// the dispatcher before the proxy existed: report again.
	r.roomed(ms)
	return nil
}

// detach ends ms's current attachment (a leave call to a remote
// dispatcher, in the background), withdrawing the deliveries of a remote
// attachment not yet sent to the client.
func (r *Relay) detach(ms *membership) {
	r.mu.Lock()
	node, ref, leave, pending := ms.at, ms.ref, ms.leave, ms.pending
	r.unattachLocked(ms)
	r.mu.Unlock()
	for _, cancel := range pending {
		if cancel != nil {
			cancel()
		}
	}
	if leave != nil {
		leave()
	}
	r.mu.Lock()
	call := ref != 0 && !r.closed
	if call {
		r.wg.Add(1) // under mu: Close sets closed under it before it waits
	}
	r.mu.Unlock()
	if call {
		go func() {
			defer r.wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), r.opts.CallTimeout)
			defer cancel()
			if _, err := r.opts.Transport.Call(ctx, node, LeaveService, encodeRef(ref)); err != nil {
				r.log.Debug("leave call failed (the dispatcher drops the member when it goes)", "node", node, "error", err)
			}
		}()
	}
}

// unattachLocked forgets ms's attachment. r.mu is held.
func (r *Relay) unattachLocked(ms *membership) {
	if ms.ref != 0 {
		delete(r.byRef, ms.ref)
	}
	ms.at, ms.epoch, ms.ref, ms.leave, ms.pending, ms.localWake = "", 0, 0, nil, nil, nil
}

// loop attaches memberships whose dispatcher changed, on Reconcile and
// every RetryInterval while some are not attached.
//
// It wakes only when told (Reconcile) or, while some membership could not
// attach, every RetryInterval: an idle node with every membership in
// place does not wake at all.
func (r *Relay) loop() {
	defer r.wg.Done()
	var retry <-chan time.Time
	for {
		select {
		case <-r.done:
			return
		case <-r.kick:
		case <-retry:
		}
		r.reconcileProxies()
		r.mu.Lock()
		var check []*membership
		for ms := range r.members {
			check = append(check, ms)
		}
		r.mu.Unlock()
		unreachable := map[string]bool{}
		waiting := false
		for _, ms := range check {
			if err := r.attach(ms, unreachable); err != nil {
				waiting = true
				r.log.Debug("shared subscription not attached yet", "client", ms.m.ClientID(), "group", ms.name, "error", err)
			}
		}
		retry = nil
		if waiting {
			retry = time.After(r.opts.RetryInterval)
		}
	}
}

// NodeGone releases at once the members a failed or departed node had
// attached here, and moves this node's memberships off it (no leave call:
// the node is gone).
func (r *Relay) NodeGone(node string) {
	r.dropProxies(node, true)
	for _, ms := range r.attachedTo(node) {
		r.mu.Lock()
		var pending map[uint64]func()
		if ms.at == node {
			pending = ms.pending
			r.unattachLocked(ms)
		}
		r.mu.Unlock()
		for _, cancel := range pending {
			if cancel != nil {
				cancel()
			}
		}
	}
	r.Reconcile()
}

// NodeReset handles a node found restarted, or whose frames may have been
// lost (its queue overflowed): its proxies here are dropped and it is
// told (detach frames), and this node's memberships attached to it leave
// there (a call) and attach again; state kept on either side that the
// other may have lost is started afresh.
func (r *Relay) NodeReset(node string) {
	r.dropProxies(node, false)
	for _, ms := range r.attachedTo(node) {
		r.detach(ms)
	}
	r.Reconcile()
}

// attachedTo lists the memberships attached to node.
func (r *Relay) attachedTo(node string) []*membership {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []*membership
	for ms := range r.members {
		if ms.at == node {
			out = append(out, ms)
		}
	}
	return out
}

// dropProxies releases the members node attached here and tells it
// (detach frames). gone: the node is given up for gone, so the frames may
// not reach it; their refs are kept and sent again if it comes back
// (NodeReset): a node wrongly declared failed still believes its members
// attached here, and one that is idle would never learn otherwise.
func (r *Relay) dropProxies(node string, gone bool) {
	r.pmu.Lock()
	var dropped []*proxy
	for k, p := range r.proxies {
		if k.node == node {
			dropped = append(dropped, p)
			delete(r.proxies, k)
		}
	}
	earlier := r.goneRefs[node]
	delete(r.goneRefs, node)
	if gone {
		for _, p := range dropped {
			r.goneRefs[node] = append(r.goneRefs[node], p.key.ref)
		}
		r.goneRefs[node] = append(r.goneRefs[node], earlier...)
		earlier = nil
	}
	r.pmu.Unlock()
	for _, p := range dropped {
		p.leave()
		r.opts.Transport.Send(node, encodeFrame(frame{kind: frameDetach, from: r.opts.Self, ref: p.key.ref}))
	}
	for _, ref := range earlier {
		r.opts.Transport.Send(node, encodeFrame(frame{kind: frameDetach, from: r.opts.Self, ref: ref}))
	}
}

// HandleFrame takes a frame another node sent over the per-peer channel.
func (r *Relay) HandleFrame(msg []byte) {
	f, err := decodeFrame(msg)
	if err != nil {
		r.log.Warn("a consumer-group frame from another node does not decode; dropped", "error", err)
		return
	}
	switch f.kind {
	case frameDeliver, frameCancel, frameDetach:
		r.memberFrame(f)
	case frameAck, frameRoom, frameGone:
		r.proxyFrame(f)
	}
}

// memberFrame handles what a dispatcher sends to a member's node.
func (r *Relay) memberFrame(f frame) {
	r.mu.Lock()
	ms := r.byRef[f.ref]
	if ms == nil || ms.at != f.from {
		r.mu.Unlock()
		if f.kind == frameDeliver {
			// An attachment that ended (a leave lost, a restart): the
			// dispatcher drops its proxy, whose records go elsewhere.
			r.opts.Transport.Send(f.from, encodeFrame(frame{kind: frameGone, from: r.opts.Self, ref: f.ref}))
		}
		return
	}
	switch f.kind {
	case frameCancel:
		cancel := ms.pending[f.id]
		delete(ms.pending, f.id)
		r.mu.Unlock()
		if cancel != nil {
			cancel()
		}
		return
	case frameDetach:
		pending := ms.pending
		r.unattachLocked(ms)
		r.mu.Unlock()
		for _, cancel := range pending {
			if cancel != nil {
				cancel()
			}
		}
		r.Reconcile()
		return
	}
	ref, id, node := f.ref, f.id, f.from
	if f.qos > 0 {
		// A place held before Deliver: the client may ack before Deliver
		// returns, and the ack must find (and remove) it.
		ms.pending[id] = nil
	}
	r.mu.Unlock()
	var acked func(byte)
	if f.qos > 0 {
		acked = func(reason byte) {
			r.mu.Lock()
			if ms.ref == ref {
				delete(ms.pending, id)
			}
			r.mu.Unlock()
			r.opts.Transport.Send(node, encodeFrame(frame{kind: frameAck, from: r.opts.Self, ref: ref, id: id, reason: reason, room: int64(ms.m.Room())}))
		}
	}
	cancel, err := ms.m.Deliver(f.rec, f.qos, f.dup, acked)
	if f.qos == 0 {
		return
	}
	r.mu.Lock()
	_, open := ms.pending[id]
	if ms.ref == ref && open && err == nil {
		ms.pending[id] = cancel
		r.mu.Unlock()
		return
	}
	if ms.ref == ref {
		delete(ms.pending, id) // not delivered: the client is gone, its leave follows
	}
	detached := ms.ref != ref
	r.mu.Unlock()
	if detached && err == nil {
		// Detached meanwhile (a hand-over): the detach found no cancel
		// to call yet (the place held a nil), and reset the places, so
		// open says nothing here. The old dispatcher's delivery is
		// withdrawn; the new one sends the record again.
		cancel()
	}
}

// roomed runs when a member's client may have room again: a local group
// is woken; a remote dispatcher is told the room by the room loop (one
// frame per membership however many wake-ups came meanwhile).
func (r *Relay) roomed(ms *membership) {
	r.mu.Lock()
	wake := ms.localWake
	queue := ms.ref != 0 && !ms.roomQueued
	if queue {
		ms.roomQueued = true
		r.roomq = append(r.roomq, ms)
	}
	r.mu.Unlock()
	if wake != nil {
		wake()
	}
	if queue {
		select {
		case r.roomKick <- struct{}{}:
		default:
		}
	}
}

// roomLoop sends the queued room frames.
func (r *Relay) roomLoop() {
	defer r.wg.Done()
	var batch []*membership
	for {
		select {
		case <-r.done:
			return
		case <-r.roomKick:
		}
		r.mu.Lock()
		batch, r.roomq = r.roomq, batch[:0]
		type send struct {
			node string
			ref  uint64
			ms   *membership
		}
		sends := make([]send, 0, len(batch))
		for _, ms := range batch {
			ms.roomQueued = false
			if ms.ref != 0 {
				sends = append(sends, send{ms.at, ms.ref, ms})
			}
		}
		r.mu.Unlock()
		for _, s := range sends {
			r.opts.Transport.Send(s.node, encodeFrame(frame{kind: frameRoom, from: r.opts.Self, ref: s.ref, room: int64(s.ms.m.Room())}))
		}
		clear(batch)
	}
}

// localMember is a membership as the local groups see it: the client's
// member, with the group's wake-up kept by the relay (the client's
// member has one wake-up, the relay's).
type localMember struct {
	r  *Relay
	ms *membership
}

func (l localMember) ClientID() string    { return l.ms.m.ClientID() }
func (l localMember) JoinedAt() time.Time { return l.ms.since }
func (l localMember) QoS() byte           { return l.ms.m.QoS() }
func (l localMember) ReceiveMaximum() int { return l.ms.m.ReceiveMaximum() }
func (l localMember) Room() int           { return l.ms.m.Room() }
func (l localMember) Deliver(rec *streams.Record, qos byte, dup bool, acked func(reason byte)) (func(), error) {
	return l.ms.m.Deliver(rec, qos, dup, acked)
}
func (l localMember) OnRoom(wake func()) {
	l.r.mu.Lock()
	l.ms.localWake = wake
	l.r.mu.Unlock()
}

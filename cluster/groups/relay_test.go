package groups

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mqstream/mqstream/internal/testutil"
	"github.com/mqstream/mqstream/shared"
	"github.com/mqstream/mqstream/streams"
	"github.com/mqstream/mqstream/topic"
)

// placement is a test's Placement: one dispatcher for every group.
type placement struct {
	mu    sync.Mutex
	node  string
	epoch uint64
}

func (p *placement) Dispatcher(string, string) (string, uint64, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.node, p.epoch, p.node != ""
}

func (p *placement) move(node string, epoch uint64) {
	p.mu.Lock()
	p.node, p.epoch = node, epoch
	p.mu.Unlock()
}

// network carries calls and frames between relays in one process: frames
// to a node are handed over in order by one goroutine per node; a cut
// node gets nothing and answers no call.
type network struct {
	stop   chan struct{} // closed when the test ends
	once   sync.Once
	mu     sync.Mutex
	relays map[string]*Relay
	queues map[string]chan []byte
	cut    map[string]bool
}

func newNetwork() *network {
	return &network{stop: make(chan struct{}), relays: map[string]*Relay{}, queues: map[string]chan []byte{}, cut: map[string]bool{}}
}

func (n *network) add(t *testing.T, r *Relay) {
	q := make(chan []byte, 1<<16)
	n.mu.Lock()
	n.relays[r.opts.Self], n.queues[r.opts.Self] = r, q
	n.mu.Unlock()
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case msg := <-q:
				r.HandleFrame(msg)
			case <-n.stop:
				return
			}
		}
	}()
	t.Cleanup(func() { n.once.Do(func() { close(n.stop) }); <-done })
}

func (n *network) isCut(node string) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.cut[node]
}

// transport is one node's end of the network.
type transport struct {
	n    *network
	self string
}

func (t transport) Call(ctx context.Context, node, service string, req []byte) ([]byte, error) {
	t.n.mu.Lock()
	r := t.n.relays[node]
	cut := t.n.cut[node] || t.n.cut[t.self]
	t.n.mu.Unlock()
	if r == nil || cut {
		return nil, fmt.Errorf("node %s unreachable", node)
	}
	switch service {
	case JoinService:
		return r.HandleJoin(ctx, t.self, req)
	case LeaveService:
		return r.HandleLeave(ctx, t.self, req)
	}
	return nil, fmt.Errorf("no service %s", service)
}

func (t transport) Send(node string, msg []byte) {
	if t.n.isCut(node) || t.n.isCut(t.self) {
		return
	}
	t.n.mu.Lock()
	q := t.n.queues[node]
	t.n.mu.Unlock()
	if q != nil {
		select {
		case q <- msg:
		case <-t.n.stop:
		}
	}
}

// client is a client's shared subscription as its node's transport would
// present it: a window of unacknowledged deliveries (a cancelled one frees
// its place); it acks what it gets unless told to hold.
type client struct {
	id     string
	window int

	mu          sync.Mutex
	hold        bool
	inflight    int
	maxInflight int
	got         []string
	dups        int
	wake        func()
}

func (c *client) ClientID() string    { return c.id }
func (c *client) QoS() byte           { return 1 }
func (c *client) ReceiveMaximum() int { return c.window }
func (c *client) Room() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.window - c.inflight
}
func (c *client) OnRoom(wake func()) { c.mu.Lock(); c.wake = wake; c.mu.Unlock() }

func (c *client) Deliver(rec *streams.Record, qos byte, dup bool, acked func(byte)) (func(), error) {
	c.mu.Lock()
	c.got = append(c.got, string(rec.Payload))
	if dup {
		c.dups++
	}
	if c.hold {
		c.inflight++
		c.maxInflight = max(c.maxInflight, c.inflight)
		c.mu.Unlock()
		var once sync.Once
		return func() {
			once.Do(func() {
				c.mu.Lock()
				c.inflight--
				c.mu.Unlock()
			})
		}, nil
	}
	wake := c.wake
	c.mu.Unlock()
	go func() {
		acked(0)
		if wake != nil {
			wake()
		}
	}()
	return func() {}, nil
}

func (c *client) payloads() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.got...)
}

// cluster is two or three nodes' relays over one stream store and one
// progress namespace (standing in for the replicated ones), each with
// its own group manager, which runs a group only where placement says.
type cluster struct {
	t      *testing.T
	store  *streams.Store
	place  *placement
	net    *network
	relays map[string]*Relay
	groups map[string]*shared.Manager
}

func startCluster(t *testing.T, ackTimeout time.Duration, nodes ...string) *cluster {
	return startClusterWith(t, ackTimeout, nil, nodes...)
}

// startClusterWith is startCluster with each node's transport wrapped by
// wrap (nil: none).
func startClusterWith(t *testing.T, ackTimeout time.Duration, wrap func(node string, tr Transport) Transport, nodes ...string) *cluster {
	store, err := streams.Open(streams.Options{Dir: t.TempDir(), AutoCreate: true, Logger: testutil.Logger()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	mapper, err := topic.NewMapper([]topic.Rule{{Filter: "jobs/#", Stream: "jobs"}}, topic.DefaultRule{Kind: topic.DefaultNone})
	if err != nil {
		t.Fatal(err)
	}
	c := &cluster{t: t, store: store, place: &placement{node: nodes[0], epoch: 1}, net: newNetwork(),
		relays: map[string]*Relay{}, groups: map[string]*shared.Manager{}}
	for _, node := range nodes {
		opts := shared.DefaultGroupOptions()
		opts.AckTimeout = ackTimeout
		m, err := shared.New(shared.Options{Store: store, Progress: store.KV("groups"), Mapper: mapper, Defaults: opts,
			FlushInterval: 20 * time.Millisecond, Logger: testutil.Logger().With("node", node),
			Owner: func(name, filter string) (uint64, bool) {
				n, e, ok := c.place.Dispatcher(name, filter)
				return e, ok && n == node
			}})
		if err != nil {
			t.Fatal(err)
		}
		if err := m.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { m.Close() })
		var tr Transport = transport{c.net, node}
		if wrap != nil {
			tr = wrap(node, tr)
		}
		r := New(Options{Self: node, Local: m, Placement: c.place, Transport: tr,
			RetryInterval: 20 * time.Millisecond, CallTimeout: time.Second, Logger: testutil.Logger().With("node", node)})
		t.Cleanup(r.Close)
		c.net.add(t, r)
		c.relays[node], c.groups[node] = r, m
	}
	return c
}

func (c *cluster) publish(prefix string, n int) {
	c.t.Helper()
	for i := range n {
		rec := streams.Record{Topic: "jobs/a", Payload: []byte(fmt.Sprintf("%s-%d", prefix, i)), QoS: 1}
		if _, err := c.store.Append(context.Background(), "jobs", rec); err != nil {
			c.t.Fatal(err)
		}
	}
}

// moveTo hands the groups to node in a new epoch, as a change of shard
// leader does: managers refresh (the old owner first: in a cluster the
// old owner's later progress writes are fenced off), relays reconcile.
func (c *cluster) moveTo(node string, epoch uint64) {
	c.t.Helper()
	old, _, _ := c.place.Dispatcher("", "")
	c.place.move(node, epoch)
	if m := c.groups[old]; m != nil {
		if err := m.Refresh(); err != nil {
			c.t.Fatal(err)
		}
	}
	for id, m := range c.groups {
		if id == old {
			continue
		}
		if err := m.Refresh(); err != nil {
			c.t.Fatal(err)
		}
	}
	for _, r := range c.relays {
		r.Reconcile()
	}
}

func (c *cluster) acked(node string) int64 {
	st, err := c.groups[node].Group(context.Background(), "g", "jobs/#")
	if err != nil {
		return -1
	}
	return st.Acked
}

func distinct(got []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, s := range got {
		if !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	sort.Strings(out)
	return out
}

// TestRemoteMemberGetsAndAcks: a member on another node than the
// dispatcher gets every record once and its acks reach the group.
func TestRemoteMemberGetsAndAcks(t *testing.T) {
	c := startCluster(t, 300*time.Millisecond, "a", "b")
	cl := &client{id: "w1", window: 8}
	if _, err := c.relays["b"].Join("g", "jobs/#", cl); err != nil {
		t.Fatal(err)
	}
	c.publish("x", 100)
	testutil.Eventually(t, 10*time.Second, "100 acked at the dispatcher", func() bool { return c.acked("a") == 100 })
	if got := cl.payloads(); len(got) != 100 || len(distinct(got)) != 100 {
		t.Fatalf("member got %d deliveries (%d distinct), want 100 once each", len(got), len(distinct(got)))
	}
	if _, err := c.relays["b"].Join("g", "bad/#/filter", cl); err == nil {
		t.Fatal("join with an invalid filter succeeded")
	}
}

// TestRemoteWindowAndRedelivery: a remote member holding its window gets
// no more than its window; what it never acks is redelivered, with DUP,
// to a member elsewhere after the ack timeout.
func TestRemoteWindowAndRedelivery(t *testing.T) {
	c := startCluster(t, 300*time.Millisecond, "a", "b")
	slow := &client{id: "slow", window: 4, hold: true}
	if _, err := c.relays["b"].Join("g", "jobs/#", slow); err != nil {
		t.Fatal(err)
	}
	c.publish("x", 20)
	testutil.Eventually(t, 5*time.Second, "window filled", func() bool { return len(slow.payloads()) >= 4 })
	fast := &client{id: "fast", window: 8}
	if _, err := c.relays["a"].Join("g", "jobs/#", fast); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 10*time.Second, "all 20 acked", func() bool { return c.acked("a") == 20 })
	if got := distinct(fast.payloads()); len(got) != 20 {
		t.Fatalf("fast member got %d distinct records, want all 20 (the slow one's redelivered)", len(got))
	}
	slow.mu.Lock()
	defer slow.mu.Unlock()
	if slow.maxInflight > 4 {
		t.Fatalf("slow member held %d at once, window 4", slow.maxInflight)
	}
	fast.mu.Lock()
	defer fast.mu.Unlock()
	if fast.dups == 0 {
		t.Fatal("redeliveries came without DUP")
	}
}

// TestMemberNodeGoneReleasesAtOnce: when a member's node fails, what it
// held goes to members elsewhere without waiting for the ack timeout.
func TestMemberNodeGoneReleasesAtOnce(t *testing.T) {
	c := startCluster(t, time.Hour, "a", "b") // released by NodeGone, not by a timeout
	holder := &client{id: "holder", window: 10, hold: true}
	if _, err := c.relays["b"].Join("g", "jobs/#", holder); err != nil {
		t.Fatal(err)
	}
	c.publish("x", 10)
	testutil.Eventually(t, 5*time.Second, "held", func() bool { return len(holder.payloads()) == 10 })
	other := &client{id: "other", window: 10}
	if _, err := c.relays["a"].Join("g", "jobs/#", other); err != nil {
		t.Fatal(err)
	}
	c.net.mu.Lock()
	c.net.cut["b"] = true
	c.net.mu.Unlock()
	c.relays["a"].NodeGone("b")
	testutil.Eventually(t, 10*time.Second, "released records acked elsewhere", func() bool { return c.acked("a") == 10 })
	if got := distinct(other.payloads()); len(got) != 10 {
		t.Fatalf("the other member got %d distinct records, want 10", len(got))
	}
}

// persisted waits until the group's persisted progress in stream jobs
// reaches floor.
func (c *cluster) persisted(floor uint64) {
	c.t.Helper()
	testutil.Eventually(c.t, 10*time.Second, fmt.Sprintf("progress %d persisted", floor), func() bool {
		p, err := shared.StoredProgress(c.store.KV("groups"), "g", "jobs/#")
		return err == nil && p["jobs"].AckFloor == floor
	})
}

// TestDispatcherMoves: when the group moves to another node (a new shard
// leader), members on every node follow it, and delivery goes on from
// the persisted progress: nothing acked and persisted is delivered again,
// nothing is lost or left unacked.
func TestDispatcherMoves(t *testing.T) {
	c := startCluster(t, 300*time.Millisecond, "a", "b", "c")
	ca := &client{id: "on-a", window: 8}
	cb := &client{id: "on-b", window: 8}
	for node, cl := range map[string]*client{"a": ca, "b": cb} {
		if _, err := c.relays[node].Join("g", "jobs/#", cl); err != nil {
			t.Fatal(err)
		}
	}
	c.publish("x", 50)
	testutil.Eventually(t, 10*time.Second, "50 acked on a", func() bool { return c.acked("a") == 50 })
	c.persisted(50)
	c.moveTo("b", 2)
	c.publish("y", 50)
	testutil.Eventually(t, 10*time.Second, "50 more acked on b", func() bool { return c.acked("b") == 50 })
	c.persisted(100)
	c.moveTo("c", 3)
	c.publish("z", 50)
	testutil.Eventually(t, 10*time.Second, "50 more acked on c", func() bool { return c.acked("c") == 50 })
	all := distinct(append(ca.payloads(), cb.payloads()...))
	if len(all) != 150 {
		t.Fatalf("members got %d distinct records over three dispatchers, want 150", len(all))
	}
	st, err := c.groups["c"].Group(context.Background(), "g", "jobs/#")
	if err != nil {
		t.Fatal(err)
	}
	if st.Lag != 0 {
		t.Fatalf("lag %d after every record was acked", st.Lag)
	}
	// No member is left with the old dispatchers.
	if n := len(c.relays["a"].proxies) + len(c.relays["b"].proxies); n != 0 {
		t.Fatalf("%d proxies left on former dispatchers", n)
	}
}

// TestBadFramesAreDropped: frames that do not decode are refused with
// ErrBadFrame, and a frame for an unknown attachment is ignored.
func TestBadFramesAreDropped(t *testing.T) {
	for _, b := range [][]byte{nil, {frameDeliver}, {0x99}, {frameAck, 1, 'a'}, append(encodeFrame(frame{kind: frameRoom, from: "b", ref: 1, room: 3}), 0)} {
		if _, err := decodeFrame(b); err == nil {
			t.Errorf("frame %x decoded", b)
		}
	}
	rec := &streams.Record{Offset: 7, Timestamp: time.Unix(0, 42), Topic: "t/x", Payload: []byte("p"), QoS: 2, ClientID: "pub"}
	f, err := decodeFrame(encodeFrame(frame{kind: frameDeliver, from: "a", ref: 3, id: 9, qos: 1, dup: true, rec: rec}))
	if err != nil || f.from != "a" || f.ref != 3 || f.id != 9 || f.qos != 1 || !f.dup || f.rec.Offset != 7 || f.rec.Topic != "t/x" || string(f.rec.Payload) != "p" || f.rec.ClientID != "pub" || !f.rec.Timestamp.Equal(rec.Timestamp) {
		t.Fatalf("round trip: %+v %v", f, err)
	}
	if _, err := decodeJoin([]byte{1, 1}); err == nil {
		t.Error("truncated join decoded")
	}
	c := startCluster(t, 300*time.Millisecond, "a", "b")
	c.relays["b"].HandleFrame(encodeFrame(frame{kind: frameDeliver, from: "a", ref: 12345, id: 1, qos: 1, rec: rec}))
	c.relays["b"].HandleFrame([]byte{frameDeliver, 0xff})
	if _, err := c.relays["a"].HandleJoin(context.Background(), "b", []byte{9}); err == nil {
		t.Error("a join with a bad version was accepted")
	}
}

// TestCutOffMemberRecordsGoElsewhere: a member whose node cannot reach
// the dispatcher (frames both ways lost, no failure declared) holds its
// records only until the ack timeout: they go to reachable members.
func TestCutOffMemberRecordsGoElsewhere(t *testing.T) {
	c := startCluster(t, 300*time.Millisecond, "a", "b")
	cut := &client{id: "cut", window: 10}
	if _, err := c.relays["b"].Join("g", "jobs/#", cut); err != nil {
		t.Fatal(err)
	}
	reachable := &client{id: "reachable", window: 10}
	if _, err := c.relays["a"].Join("g", "jobs/#", reachable); err != nil {
		t.Fatal(err)
	}
	c.net.mu.Lock()
	c.net.cut["b"] = true
	c.net.mu.Unlock()
	c.publish("x", 30)
	testutil.Eventually(t, 10*time.Second, "every record acked through the reachable member", func() bool { return c.acked("a") == 30 })
	if got := distinct(reachable.payloads()); len(got) != 30 {
		t.Fatalf("the reachable member got %d distinct records, want 30", len(got))
	}
}

// TestMemberRecoversAfterLostFrames: frames lost both ways while a member
// held a full window do not starve it afterwards: the timed-out
// deliveries free their places.
func TestMemberRecoversAfterLostFrames(t *testing.T) {
	c := startCluster(t, 300*time.Millisecond, "a", "b")
	cl := &client{id: "w", window: 4}
	if _, err := c.relays["b"].Join("g", "jobs/#", cl); err != nil {
		t.Fatal(err)
	}
	c.net.mu.Lock()
	c.net.cut["b"] = true
	c.net.mu.Unlock()
	c.publish("x", 10)
	testutil.Eventually(t, 5*time.Second, "the proxy's window used up by lost deliveries", func() bool {
		st, err := c.groups["a"].Group(context.Background(), "g", "jobs/#")
		return err == nil && st.Delivered >= 4
	})
	c.net.mu.Lock()
	c.net.cut["b"] = false
	c.net.mu.Unlock()
	testutil.Eventually(t, 10*time.Second, "every record acked once the frames get through", func() bool { return c.acked("a") == 10 })
}

// TestMemberNodeFoundRestartedAttachesAgain: when the dispatcher finds a
// member's node restarted (NodeReset), it drops that node's
// proxies and tells it; the member's node attaches its memberships again
// and delivery goes on.
func TestMemberNodeFoundRestartedAttachesAgain(t *testing.T) {
	c := startCluster(t, time.Hour, "a", "b")
	cl := &client{id: "w", window: 8}
	if _, err := c.relays["b"].Join("g", "jobs/#", cl); err != nil {
		t.Fatal(err)
	}
	c.publish("x", 10)
	testutil.Eventually(t, 10*time.Second, "10 acked", func() bool { return c.acked("a") == 10 })
	c.relays["a"].NodeReset("b")
	testutil.Eventually(t, 10*time.Second, "the member attached again", func() bool {
		c.relays["a"].pmu.Lock()
		defer c.relays["a"].pmu.Unlock()
		return len(c.relays["a"].proxies) == 1
	})
	c.publish("y", 10)
	testutil.Eventually(t, 10*time.Second, "10 more acked", func() bool { return c.acked("a") == 20 })
}

// TestSubscribedWhileNoDispatcherGetsWhatFollowed: a member that
// subscribed while no node ran its group (an election) gets, once one
// does, every record published since it subscribed, and none from
// before.
func TestSubscribedWhileNoDispatcherGetsWhatFollowed(t *testing.T) {
	c := startCluster(t, time.Hour, "a", "b")
	c.publish("before", 5)
	c.place.move("", 0)
	cl := &client{id: "w", window: 8}
	if _, err := c.relays["b"].Join("g", "jobs/#", cl); err != nil {
		t.Fatal(err)
	}
	c.publish("after", 5)
	c.moveTo("a", 2)
	testutil.Eventually(t, 10*time.Second, "the 5 records published after the subscription", func() bool { return c.acked("a") == 5 })
	for _, p := range cl.payloads() {
		if !strings.HasPrefix(p, "after-") {
			t.Fatalf("got %q, published before the member subscribed", p)
		}
	}
}

// TestRemoteMemberLeavingMidStreamDoesNotStallItsGroup: the only member
// of a group, on another node, leaves while the group has a backlog for
// it. Its proxy must report no room from then on: reporting room while
// refusing deliveries made the group's pump offer it the same record
// forever, never getting to the leave in its inbox (the group answered
// nothing and spun a core).
func TestRemoteMemberLeavingMidStreamDoesNotStallItsGroup(t *testing.T) {
	for trial := 0; trial < 10; trial++ {
		c := startCluster(t, time.Hour, "a", "b")
		cl := &client{id: "w", window: 50}
		leave, err := c.relays["b"].Join("g", "jobs/#", cl)
		if err != nil {
			t.Fatal(err)
		}
		done := make(chan struct{})
		go func() { defer close(done); c.publish("x", 400) }()
		testutil.Eventually(t, 10*time.Second, "a first window delivered", func() bool { return len(cl.payloads()) >= 50 })
		leave()
		<-done
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, err = c.groups["a"].Group(ctx, "g", "jobs/#")
		cancel()
		if err != nil {
			t.Fatalf("trial %d: the group does not answer after its remote member left: %v", trial, err)
		}
	}
}

// TestMemberOfANodeWronglyGivenUpIsDetached: the dispatcher's node gives
// the member's node up for failed (its routes drop it first, so the
// detach frames NodeGone sends go nowhere), then sees it back (NodeReset).
// The member's node never saw the dispatcher fail and keeps its
// attachment: it must be told, or an idle worker gets nothing again.
func TestMemberOfANodeWronglyGivenUpIsDetached(t *testing.T) {
	c := startCluster(t, time.Hour, "a", "b")
	cl := &client{id: "w", window: 8}
	if _, err := c.relays["b"].Join("g", "jobs/#", cl); err != nil {
		t.Fatal(err)
	}
	c.publish("x", 5)
	testutil.Eventually(t, 10*time.Second, "5 acknowledged", func() bool { return c.acked("a") == 5 })

	c.net.mu.Lock()
	c.net.cut["b"] = true
	c.net.mu.Unlock()
	c.relays["a"].NodeGone("b")
	c.net.mu.Lock()
	c.net.cut["b"] = false
	c.net.mu.Unlock()
	c.relays["a"].NodeReset("b")

	c.publish("y", 5)
	testutil.Eventually(t, 10*time.Second, "10 acknowledged", func() bool { return c.acked("a") == 10 })
}

package mqtt

import (
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	paho3 "github.com/eclipse/paho.mqtt.golang"
	mochi "github.com/mochi-mqtt/server/v2"

	"github.com/mqstream/mqstream/internal/testutil"
)

// aloneRemote is the Remote of a node that is alone in its cluster: no
// other node subscribes, answers claims or gets broadcasts, so it acts for
// every failed node.
type aloneRemote struct{}

func (aloneRemote) SetClient(string, []string)                       {}
func (aloneRemote) Wanted(string) bool                               { return false }
func (aloneRemote) Forward(string, []byte)                           {}
func (aloneRemote) Broadcast([]byte)                                 {}
func (aloneRemote) Claim([]byte, time.Duration) ([]string, [][]byte) { return nil, nil }
func (aloneRemote) Barrier(time.Duration)                            {}
func (aloneRemote) Settle(string, []byte, time.Duration) ([]byte, error) {
	return nil, errors.New("no other node")
}
func (aloneRemote) Designated(except string) bool { return except != "n1" }
func (aloneRemote) HandOver(string, []byte, time.Duration) (string, []byte, error) {
	return "", nil, errors.New("no other node")
}

// TestWillsOfAFailedNodeArePublished: the wills another node told of are
// published when that node restarts (a new incarnation) or fails, once
// their delay passed, unless their client connected again; cleared wills
// are not.
func TestWillsOfAFailedNodeArePublished(t *testing.T) {
	n := startBroker(t, nil, func(o *Options) { o.Remote, o.NodeID = aloneRemote{}, "n1" }, nil)
	var mu sync.Mutex
	var got []string
	sub := connectV3(t, "tcp://"+n.addr, "watcher", nil)
	waitToken(t, sub.Subscribe("wills/#", 1, func(_ paho3.Client, m paho3.Message) {
		mu.Lock()
		got = append(got, m.Topic()+"="+string(m.Payload()))
		mu.Unlock()
	}), "subscribe")
	received := func() []string {
		mu.Lock()
		defer mu.Unlock()
		return slices.Clone(got)
	}
	b := n.broker
	will := func(topic string) Message { return Message{Topic: topic, Payload: []byte("gone"), QoS: 1} }
	b.DeliverForwarded(encodeWillSet("n2", 1, "c1", will("wills/c1"), 0))
	b.DeliverForwarded(encodeWillSet("n2", 1, "c2", will("wills/c2"), 0))
	b.DeliverForwarded(encodeWillClear("n2", 1, "c2")) // c2 disconnected normally
	b.DeliverForwarded(append([]byte{forwardHello}, appendUvarintString("n2", 2)...))
	testutil.Eventually(t, 5*time.Second, "c1's will, its node restarted", func() bool { return len(received()) == 1 })
	if r := received(); r[0] != "wills/c1=gone" {
		t.Fatalf("got %v", r)
	}

	b.DeliverForwarded(encodeWillSet("n2", 2, "c3", will("wills/c3"), time.Second))
	b.DeliverForwarded(encodeWillSet("n2", 2, "c4", will("wills/c4"), 2*time.Second))
	b.NodeGone("n2", true)
	if _, err := b.HandleClaim(encodeClaim("c3", rversion{ts: 1, node: "n3"}, true, nil)); err != nil { // c3 came back elsewhere
		t.Fatal(err)
	}
	testutil.Eventually(t, 10*time.Second, "c4's will after its delay", func() bool { return len(received()) == 2 })
	if r := received(); r[1] != "wills/c4=gone" {
		t.Fatalf("got %v: c3 connected again, its will must not be published", r)
	}
	// A node that left gracefully published its clients' wills itself.
	b.DeliverForwarded(encodeWillSet("n3", 1, "c5", will("wills/c5"), 0))
	b.NodeGone("n3", false)
	b.DeliverForwarded(encodeWillSet("n4", 1, "c6", will("wills/c6"), 0))
	b.NodeGone("n4", true)
	testutil.Eventually(t, 5*time.Second, "c6's will", func() bool { return len(received()) == 3 })
	if r := received(); r[2] != "wills/c6=gone" {
		t.Fatalf("got %v", r)
	}
	// Each is stored as its client's, as on the client's own node.
	var publishers []string
	for _, r := range streamRecords(t, n.store, "wills") {
		publishers = append(publishers, r.ClientID)
	}
	if !slices.Equal(publishers, []string{"c1", "c4", "c6"}) {
		t.Fatalf("stored as published by %v", publishers)
	}
	// Malformed frames are refused.
	for _, bad := range [][]byte{{forwardWillSet}, {forwardWillClear, 1, 'n'}, append(encodeWillClear("n", 1, "c"), 0)} {
		if err := b.peerWills.apply(bad); err == nil {
			t.Errorf("%x applied", bad)
		}
	}
}

func appendUvarintString(s string, v uint64) []byte {
	b := appendStr(nil, s)
	for v >= 0x80 {
		b = append(b, byte(v)|0x80)
		v >>= 7
	}
	return append(b, byte(v))
}

// applyAll applies frames to w as they came in n2's queue; a frame
// starting with 0 is a claim's will (its first byte then forwardWillSet).
func applyAll(t *testing.T, w *clusterWills, frames ...[]byte) {
	t.Helper()
	for _, f := range frames {
		var err error
		if f[0] == 0 {
			err = w.applyClaimed(f[1:])
		} else {
			err = w.apply(f)
		}
		if err != nil {
			t.Fatalf("%x: %v", f, err)
		}
	}
}

// heldOf returns the clients whose wills w holds for node, sorted.
func heldOf(w *clusterWills, node string) []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	var held []string
	if p := w.peers[node]; p != nil {
		for id := range p.wills {
			held = append(held, id)
		}
	}
	slices.Sort(held)
	return held
}

// TestRepairForgetsWillsWhoseClearWasLost: after a peer's queue
// overflowed, the repair sends a run: a mark, the current wills, and a
// sweep naming their clients. A will whose clear was among the dropped
// messages is forgotten; one still current is kept even when its copy
// sent again was dropped too, and one that arrived after the mark (a
// client that connected after the list was taken) is kept whatever the
// sweep names.
func TestRepairForgetsWillsWhoseClearWasLost(t *testing.T) {
	w := newClusterWills(nil, "self")
	m := Message{Topic: "will", Payload: []byte("gone")}
	applyAll(t, w,
		encodeWillSet("n2", 7, "left", m, 0),   // its clear is dropped
		encodeWillSet("n2", 7, "stays", m, 0),  // sent again below
		encodeWillSet("n2", 7, "resent", m, 0), // sent again, dropped again
		encodeWillSweep("n2", 7, 1, nil),       // its mark was dropped: forgets nothing
	)
	if held := heldOf(w, "n2"); len(held) != 3 {
		t.Fatalf("a sweep without its mark forgot wills: %v", held)
	}
	applyAll(t, w,
		encodeWillMark("n2", 7, 2), // the repair
		encodeWillSet("n2", 7, "stays", m, 0),
		encodeWillSet("n2", 7, "newcomer", m, 0), // connected after the list was taken
		encodeWillSweep("n2", 7, 2, []string{"stays", "resent"}),
	)
	if held := heldOf(w, "n2"); !slices.Equal(held, []string{"newcomer", "resent", "stays"}) {
		t.Fatalf("wills held for n2 after its repair: %v", held)
	}
}

// TestSweepSparesAClaimsWillThatCameBeforeTheMark: a claim goes straight
// to each node, so the will of a client that connected after the run's
// list was taken can arrive before the run's mark. The sweep keeps it;
// once the client's own will frame came, a later sweep can forget it.
func TestSweepSparesAClaimsWillThatCameBeforeTheMark(t *testing.T) {
	w := newClusterWills(nil, "self")
	m := Message{Topic: "will", Payload: []byte("gone")}
	claimed := append([]byte{0}, encodeWillSet("n2", 7, "c", m, 0)...)
	applyAll(t, w, claimed, encodeWillMark("n2", 7, 1), encodeWillSweep("n2", 7, 1, nil))
	if held := heldOf(w, "n2"); !slices.Equal(held, []string{"c"}) {
		t.Fatalf("the claim's will was swept: %v", held)
	}
	// c's own will frame, then it leaves cleanly and its clear is dropped.
	applyAll(t, w, encodeWillSet("n2", 7, "c", m, 0), encodeWillMark("n2", 7, 2), encodeWillSweep("n2", 7, 2, nil))
	if held := heldOf(w, "n2"); len(held) != 0 {
		t.Fatalf("a will whose clear was dropped survived the repair: %v", held)
	}
	// Only a will frame can come with a claim.
	if err := w.applyClaimed(encodeWillClear("n2", 7, "c")); err == nil {
		t.Fatal("a claim's clear was applied")
	}
}

// TestLateCopyOfARunForgetsNothingCurrent: a batch sent again after its
// call timed out can be applied late, after newer batches. Its mark and
// sweep must not forget a will that arrived in between, and a run older
// than the latest whose mark arrived sweeps nothing.
func TestLateCopyOfARunForgetsNothingCurrent(t *testing.T) {
	w := newClusterWills(nil, "self")
	m := Message{Topic: "will", Payload: []byte("gone")}
	run1 := [][]byte{encodeWillMark("n2", 7, 1), encodeWillSet("n2", 7, "a", m, 0), encodeWillSweep("n2", 7, 1, []string{"a"})}
	applyAll(t, w, run1...)                           // the copy sent again
	applyAll(t, w, encodeWillSet("n2", 7, "c", m, 0)) // c connected after run 1's list
	applyAll(t, w, run1...)                           // the first copy, late
	if held := heldOf(w, "n2"); !slices.Equal(held, []string{"a", "c"}) {
		t.Fatalf("held after a late copy of run 1: %v", held)
	}
	run2 := [][]byte{encodeWillMark("n2", 7, 2), encodeWillSet("n2", 7, "a", m, 0), encodeWillSet("n2", 7, "c", m, 0), encodeWillSweep("n2", 7, 2, []string{"a", "c"})}
	applyAll(t, w, run2[0])
	applyAll(t, w, run1[2]) // run 1's sweep, late, between run 2's mark and its wills
	if held := heldOf(w, "n2"); !slices.Equal(held, []string{"a", "c"}) {
		t.Fatalf("held after run 1's sweep came within run 2: %v", held)
	}
	applyAll(t, w, run2[1:]...)
	applyAll(t, w, encodeWillSet("n2", 7, "d", m, 0))
	applyAll(t, w, run1...) // older than the latest run: sweeps nothing
	if held := heldOf(w, "n2"); !slices.Equal(held, []string{"a", "c", "d"}) {
		t.Fatalf("held after a late copy of run 1 behind run 2: %v", held)
	}
}

// TestWillsRunEndsWithTheSweep: what a joining peer is sent is a mark,
// the will of every connected client that has one, and a sweep naming
// those; a connected client without a will is not named, so a will held
// for it from an earlier connection whose clear was lost is forgotten.
func TestWillsRunEndsWithTheSweep(t *testing.T) {
	n := startBroker(t, nil, func(o *Options) { o.Remote, o.NodeID = aloneRemote{}, "n1" }, nil)
	connectV3(t, "tcp://"+n.addr, "with-will", func(o *paho3.ClientOptions) { o.SetWill("wills/w", "gone", 1, false) })
	connectV3(t, "tcp://"+n.addr, "no-will", nil)
	// Established once the hooks after the CONNACK ran.
	testutil.Eventually(t, 5*time.Second, "sessions established", func() bool { return len(n.broker.claims.connecting()) == 0 })
	var frames [][]byte
	n.broker.Wills(func(msg []byte) { frames = append(frames, msg) })
	if len(frames) != 3 || frames[0][0] != forwardWillMark || frames[1][0] != forwardWillSet || frames[2][0] != forwardWillSweep {
		t.Fatalf("sent %d frames: %x", len(frames), frames)
	}
	w := newClusterWills(nil, "other")
	inc := n.broker.peerWills.incarnation
	applyAll(t, w, encodeWillSet("n1", inc, "no-will", Message{Topic: "x"}, 0), n.broker.Hello())
	applyAll(t, w, frames...)
	if held := heldOf(w, "n1"); !slices.Equal(held, []string{"with-will"}) || w.peers["n1"].wills["with-will"].msg.Topic != "wills/w" {
		t.Fatalf("held after the run: %v", held)
	}
	if err := w.apply(append([]byte{forwardWillSweep}, append(appendUvarintString("n1", 1), 1, 0x7f)...)); err == nil {
		t.Fatal("a sweep announcing more clients than it has bytes was applied")
	}
}

// broadcastRecorder is a Remote that records what is broadcast.
type broadcastRecorder struct {
	aloneRemote
	mu   sync.Mutex
	sent [][]byte
}

func (r *broadcastRecorder) Broadcast(msg []byte) {
	r.mu.Lock()
	r.sent = append(r.sent, msg)
	r.mu.Unlock()
}

// TestTakenOverConnectionDoesNotClearTheNewWill: a connection taken over
// on its own node can end after the new connection with its client id
// was established; its clear, keyed by client id, must not follow the new
// connection's will to the other nodes, which are told that will again.
// So are they when a connection fails before it is established (its
// claim replaced the current will). A connection that ends before the
// next one is established clears its will.
func TestTakenOverConnectionDoesNotClearTheNewWill(t *testing.T) {
	rec := &broadcastRecorder{}
	w := newClusterWills(&Broker{opts: Options{Remote: rec}}, "n1")
	conn := func(topic string) *mochi.Client {
		cl := &mochi.Client{ID: "x"}
		cl.Properties.Will = mochi.Will{Flag: 1, TopicName: topic, Payload: []byte("gone")}
		return cl
	}
	// sent returns what was broadcast since the last call: a will's
	// topic, or "clear".
	sent := func() (out []string) {
		rec.mu.Lock()
		defer rec.mu.Unlock()
		for _, m := range rec.sent {
			if m[0] == forwardWillClear {
				out = append(out, "clear")
				continue
			}
			d := &stateDecoder{b: m[1:]}
			d.str()
			d.uvarint()
			d.str()
			d.uvarint()
			out = append(out, d.str())
		}
		rec.sent = nil
		return out
	}
	first, second := conn("w/1"), conn("w/2")
	w.established(first)
	w.established(second) // took first over
	w.disconnected(first) // ends late
	if got := sent(); !slices.Equal(got, []string{"w/1", "w/2", "w/2"}) {
		t.Fatalf("broadcast %v: the taken-over connection's clear followed the new will", got)
	}
	w.disconnected(second)
	third, fourth := conn("w/3"), conn("w/4")
	w.established(third)
	w.disconnected(third) // ends before the next is established
	w.established(fourth)
	w.disconnected(conn("w/5")) // failed before it was established
	w.disconnected(fourth)
	if got := sent(); !slices.Equal(got, []string{"clear", "w/3", "clear", "w/4", "w/4", "clear"}) {
		t.Fatalf("broadcast %v", got)
	}
}

// TestClaimedWillIsSweptOnceItsSpareEnded: a will a claim brought is
// spared by sweeps for a while (its connection's own frame follows), but
// one whose frame and clear were both dropped is swept after that.
func TestClaimedWillIsSweptOnceItsSpareEnded(t *testing.T) {
	w := newClusterWills(nil, "self")
	m := Message{Topic: "will", Payload: []byte("gone")}
	applyAll(t, w, append([]byte{0}, encodeWillSet("n2", 7, "c", m, 0)...))
	w.mu.Lock()
	hw := w.peers["n2"].wills["c"]
	hw.came = hw.came.Add(-claimedSpared)
	w.peers["n2"].wills["c"] = hw
	w.mu.Unlock()
	applyAll(t, w, encodeWillMark("n2", 7, 1), encodeWillSweep("n2", 7, 1, nil))
	if held := heldOf(w, "n2"); len(held) != 0 {
		t.Fatalf("a claimed will long past its spare survived the sweep: %v", held)
	}
}

// TestOlderClaimLeavesTheNewerWill: two connections with one id at once
// on two nodes; the older claim, arriving after the newer one, neither
// removes the newer connection's will nor replaces it.
func TestOlderClaimLeavesTheNewerWill(t *testing.T) {
	n := startBroker(t, nil, func(o *Options) { o.Remote, o.NodeID = aloneRemote{}, "n3" }, nil)
	b := n.broker
	newer := encodeWillSet("n2", 1, "c", Message{Topic: "wills/newer"}, 0)
	older := encodeWillSet("n1", 1, "c", Message{Topic: "wills/older"}, 0)
	if _, err := b.HandleClaim(encodeClaim("c", rversion{ts: 20, node: "n2"}, true, newer)); err != nil {
		t.Fatal(err)
	}
	if _, err := b.HandleClaim(encodeClaim("c", rversion{ts: 10, node: "n1"}, true, older)); err != nil {
		t.Fatal(err)
	}
	if held := heldOf(b.peerWills, "n2"); !slices.Equal(held, []string{"c"}) {
		t.Fatalf("n2's will for c after an older claim: %v", held)
	}
	if held := heldOf(b.peerWills, "n1"); len(held) != 0 {
		t.Fatalf("the older claim's will was taken: %v", held)
	}
}

// TestWillFramesFollowTheConnectionsOfAnID: what a node tells the others
// about one client id across connections here: a connection taken over
// by one still being set up sends nothing (that one's claim replaced the
// will); the new one, established without a will, clears; a run lists
// only established connections' wills, as their frames said.
func TestWillFramesFollowTheConnectionsOfAnID(t *testing.T) {
	rec := &broadcastRecorder{}
	b := &Broker{opts: Options{Remote: rec}}
	b.claims = newClaimHook(b, rec, "n1")
	w := newClusterWills(b, "n1")
	b.peerWills = w
	kinds := func() (k []byte) {
		rec.mu.Lock()
		defer rec.mu.Unlock()
		for _, m := range rec.sent {
			k = append(k, m[0])
		}
		rec.sent = nil
		return k
	}
	first := &mochi.Client{ID: "x"}
	first.Properties.Will = mochi.Will{Flag: 1, TopicName: "w/1", Payload: []byte("gone")}
	w.established(first)
	first.Properties.Will = mochi.Will{} // mochi clears it as the connection ends
	second := &mochi.Client{ID: "x"}
	b.claims.mu.Lock()
	b.claims.claims["x"] = &claim{conn: second, stamp: rversion{ts: 2, node: "n1"}}
	b.claims.mu.Unlock()
	w.disconnected(first) // taken over by second, still being set up
	if k := kinds(); !slices.Equal(k, []byte{forwardWillSet}) {
		t.Fatalf("broadcast %v: the taken-over connection's end told the others", k)
	}
	var run [][]byte
	b.Wills(func(msg []byte) { run = append(run, msg) })
	if len(run) != 2 || run[0][0] != forwardWillMark || run[1][0] != forwardWillSweep {
		t.Fatalf("a run sent %x", run)
	}
	w.established(second) // without a will
	if k := kinds(); !slices.Equal(k, []byte{forwardWillClear}) {
		t.Fatalf("broadcast %v when the new connection without a will was established", k)
	}
}

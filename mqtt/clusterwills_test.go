package mqtt

import (
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	paho3 "github.com/eclipse/paho.mqtt.golang"

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

// TestRepairForgetsWillsWhoseClearWasLost: after a peer's queue
// overflowed, the repair sends the hello, the current wills and a sweep
// naming their clients. A will whose clear was among the dropped messages
// is forgotten; one still current is kept even when its copy sent again
// was dropped too, and one that arrived after the hello (a client that
// connected meanwhile, a claim's) is kept whatever the sweep names.
func TestRepairForgetsWillsWhoseClearWasLost(t *testing.T) {
	w := newClusterWills(nil, "self")
	m := Message{Topic: "will", Payload: []byte("gone")}
	for _, frame := range [][]byte{
		encodeWillSet("n2", 7, "left", m, 0),     // its clear is dropped
		encodeWillSet("n2", 7, "stays", m, 0),    // sent again below
		encodeWillSet("n2", 7, "resent", m, 0),   // sent again, dropped again
		encodeWillSweep("n2", 7, nil),            // a sweep without a hello before it: forgets nothing
		encodeHello("n2", 7),                     // the repair
		encodeWillSet("n2", 7, "stays", m, 0),    // the current wills
		encodeWillSet("n2", 7, "newcomer", m, 0), // connected after the sweep's list was made
		encodeWillSweep("n2", 7, []string{"stays", "resent"}),
	} {
		if err := w.apply(frame); err != nil {
			t.Fatal(err)
		}
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	var held []string
	for id := range w.peers["n2"].wills {
		held = append(held, id)
	}
	slices.Sort(held)
	if !slices.Equal(held, []string{"newcomer", "resent", "stays"}) {
		t.Fatalf("wills held for n2 after its repair: %v", held)
	}
}

// TestSweepOfAnEarlierHelloForgetsOnlyOlderWills: when a repair's hello is
// itself dropped, its sweep measures against the hello before it, so a
// will set between the two hellos is kept.
func TestSweepOfAnEarlierHelloForgetsOnlyOlderWills(t *testing.T) {
	w := newClusterWills(nil, "self")
	m := Message{Topic: "will", Payload: []byte("gone")}
	for _, frame := range [][]byte{
		encodeWillSet("n2", 7, "stale", m, 0),
		encodeHello("n2", 7),
		encodeWillSet("n2", 7, "between", m, 0), // its clear is dropped
		encodeWillSweep("n2", 7, nil),           // the second hello was dropped
	} {
		if err := w.apply(frame); err != nil {
			t.Fatal(err)
		}
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if _, ok := w.peers["n2"].wills["between"]; !ok || len(w.peers["n2"].wills) != 1 {
		t.Fatalf("wills held for n2: %v", w.peers["n2"].wills)
	}
}

// TestWillsEndWithTheSweep: what a joining peer is sent ends with a sweep
// naming every connected client with a will, after their will frames.
func TestWillsEndWithTheSweep(t *testing.T) {
	n := startBroker(t, nil, func(o *Options) { o.Remote, o.NodeID = aloneRemote{}, "n1" }, nil)
	connectV3(t, "tcp://"+n.addr, "with-will", func(o *paho3.ClientOptions) { o.SetWill("wills/w", "gone", 1, false) })
	connectV3(t, "tcp://"+n.addr, "no-will", nil)
	var frames [][]byte
	n.broker.Wills(func(msg []byte) { frames = append(frames, msg) })
	if len(frames) != 2 || frames[0][0] != forwardWillSet || frames[1][0] != forwardWillSweep {
		t.Fatalf("sent %d frames: %x", len(frames), frames)
	}
	w := newClusterWills(nil, "other")
	for _, frame := range [][]byte{encodeWillSet("n1", n.broker.peerWills.incarnation, "gone-client", Message{Topic: "x"}, 0), n.broker.Hello(), frames[0], frames[1]} {
		if err := w.apply(frame); err != nil {
			t.Fatal(err)
		}
	}
	if held := w.peers["n1"].wills; len(held) != 1 || held["with-will"].msg.Topic != "wills/w" {
		t.Fatalf("held after the repair: %v", held)
	}
	if err := w.apply(append([]byte{forwardWillSweep}, append(appendUvarintString("n1", 1), 0x7f)...)); err == nil {
		t.Fatal("a sweep announcing more clients than it has bytes was applied")
	}
}

package mqtt

import (
	"fmt"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/mqstream/mqstream/internal/testutil"
)

// slowBarrierRemote: another node ("n2") takes every hand-over; the flush
// barrier takes barrier (a peer with a backlog for this node).
type slowBarrierRemote struct {
	aloneRemote
	barrier  time.Duration
	barriers atomic.Int32
}

func (r *slowBarrierRemote) Barrier(time.Duration) {
	r.barriers.Add(1)
	time.Sleep(r.barrier) // the peer's backlog
}

func (r *slowBarrierRemote) HandOver(string, []byte, time.Duration) (string, []byte, error) {
	return "n2", []byte{handOverTaken}, nil
}

// awaySession leaves client id's session on n, subscribed to filter.
func awaySession(t *testing.T, n *stateBroker, id, filter string) {
	t.Helper()
	c := dialRaw(t, n.addr, 4)
	c.connect(id, false, packets.Properties{})
	c.subscribe(1, packets.Subscription{Filter: filter, Qos: 1})
	c.drop()
	waitGone(t, n.b, id)
	n.b.state.wait()
}

// TestClaimDuringASlowHandOverGetsNoSecondCopy: a stopping node handed a
// session to n2 and runs its flush barrier for longer than a claim waits
// for a move; a claim from n3 meanwhile is answered without the session
// (n2, which took it, answers with it), not with a second copy.
func TestClaimDuringASlowHandOverGetsNoSecondCopy(t *testing.T) {
	rem := &slowBarrierRemote{barrier: 3 * time.Second}
	n := startStateBroker(t, func(o *Options) { o.Remote, o.NodeID = rem, "n1" })
	awaySession(t, n, "mover", "live/h")
	handed := make(chan byte, 1)
	go func() {
		outcome, _ := n.b.handOver("mover")
		handed <- outcome
	}()
	testutil.Eventually(t, 5*time.Second, "the barrier runs", func() bool { return rem.barriers.Load() > 0 })
	claim := rversion{ts: uint64(time.Now().UnixNano()), node: "n3"}
	answer, err := n.b.HandleClaim(encodeClaim("mover", claim, false, nil))
	if err != nil {
		t.Fatal(err)
	}
	if o := <-handed; o != handOverTaken {
		t.Fatalf("hand-over outcome %d", o)
	}
	if len(answer) > 1 {
		t.Fatalf("the claim was answered with a copy of the session (%d bytes) although n2 had taken it", len(answer)-1)
	}
}

// TestReconnectDuringASettleKeepsTheClient: a client whose session went to
// n2 in a claim's answer reconnects here while the settle runs its
// barrier: the settle leaves the new connection alone.
func TestReconnectDuringASettleKeepsTheClient(t *testing.T) {
	rem := &slowBarrierRemote{barrier: time.Second}
	n := startStateBroker(t, func(o *Options) { o.Remote, o.NodeID = rem, "n1" })
	awaySession(t, n, "mover", "live/s")
	claim := rversion{ts: uint64(time.Now().UnixNano()), node: "n2"}
	if answer, err := n.b.HandleClaim(encodeClaim("mover", claim, false, nil)); err != nil || len(answer) < 2 {
		t.Fatalf("claim: %v %v", answer, err)
	}
	settled := make(chan struct{})
	go func() {
		defer close(settled)
		_, _ = n.b.HandleSettle(encodeSettle("mover", claim))
	}()
	testutil.Eventually(t, 5*time.Second, "the barrier runs", func() bool { return rem.barriers.Load() > 0 })
	c2 := dialRaw(t, n.addr, 4)
	c2.connect("mover", false, packets.Properties{})
	<-settled
	if _, ok := n.b.server.Clients.Get("mover"); !ok {
		t.Fatal("the connected client is gone from the broker's clients after the settle")
	}
	publishAcked(t, n.addr, "live/s", "after", 1)
	if _, err := c2.read(2 * time.Second); err != nil {
		t.Fatalf("the reconnected client, subscribed to live/s, got nothing: %v", err)
	}
}

// heldClaimRemote holds the claims of client id hold (once set) until
// release is closed (signalling entered), then grants them (refuses them
// with refuse: a newer claim of the id was made on "n2"); it answers every
// other claim as a node alone would.
type heldClaimRemote struct {
	aloneRemote
	hold             atomic.Pointer[string]
	entered, release chan struct{}
	refuse           bool
}

func (r *heldClaimRemote) Claim(req []byte, _ time.Duration) ([]string, [][]byte) {
	if id, _, _, _, _ := decodeClaim(req); r.hold.Load() == nil || id != *r.hold.Load() {
		return nil, nil
	}
	close(r.entered)
	<-r.release
	if r.refuse {
		return []string{"n2"}, [][]byte{{claimRefused}}
	}
	return []string{"n2"}, [][]byte{{claimGranted}}
}

// TestSettleOfALosingClaimKeepsTheSession: n1 holds a client's offline
// session and hands it over in its answer to n2's claim; the client then
// connects on n1 too, with a newer claim, and wins. n2's connection lost
// and dropped its copy; its settle (which a node of an earlier version
// still sends) must not end the session the winning connection here
// takes over.
func TestSettleOfALosingClaimKeepsTheSession(t *testing.T) {
	rem := &heldClaimRemote{entered: make(chan struct{}), release: make(chan struct{})}
	n := startStateBroker(t, func(o *Options) { o.Remote, o.NodeID = rem, "n1" })
	awaySession(t, n, "racer", "live/r")
	id := "racer"
	rem.hold.Store(&id)
	released := false
	defer func() {
		if !released {
			close(rem.release)
		}
	}()
	publishAcked(t, n.addr, "live/r", "q", 2)
	n.b.state.wait()
	older := rversion{ts: uint64(time.Now().UnixNano()), node: "n2"}
	if answer, err := n.b.HandleClaim(encodeClaim("racer", older, false, nil)); err != nil || len(answer) < 2 {
		t.Fatalf("n2's claim: %x %v", answer, err)
	}
	c := dialRaw(t, n.addr, 4)
	c.send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Connect},
		Connect: packets.ConnectParams{ProtocolName: []byte("MQTT"), ClientIdentifier: "racer", Keepalive: 30}})
	<-rem.entered // the connection here claims, newer than n2's claim
	if _, err := n.b.HandleSettle(encodeSettle("racer", older)); err != nil {
		t.Fatal(err)
	}
	close(rem.release)
	released = true
	ack := c.expect(packets.Connack)
	if s, ok := sessionInfo(n.b, "racer"); !ack.SessionPresent || !ok || s.Subscriptions != 1 {
		t.Fatalf("the winning connection here: session present %v, session %+v %v", ack.SessionPresent, s, ok)
	}
	for i := range 2 {
		if pk := c.expect(packets.Publish); string(pk.Payload) != fmt.Sprintf("q-%d", i) {
			t.Fatalf("queued message %d: %q", i, pk.Payload)
		}
	}
}

// TestClaimWhileAMoveIsUnsettledGetsTheSession: n1 handed a client's
// session to n2's claim, and the client connects on n3 before n2 settled
// the move (n2 may not even have installed its copy: it waits for the
// other nodes' answers). n3's claim gets the session as n1 keeps it, with
// what was queued since n2's copy; n2's settle then ends nothing.
func TestClaimWhileAMoveIsUnsettledGetsTheSession(t *testing.T) {
	n := startClusterStateBroker(t, "n1")
	exportedSession(t, n, "mover", "live/u", 2)
	toN2 := rversion{ts: uint64(time.Now().UnixNano()), node: "n2"}
	if answer, err := n.b.HandleClaim(encodeClaim("mover", toN2, false, nil)); err != nil || len(answer) < 2 {
		t.Fatalf("n2's claim: %v %v", answer, err)
	}
	publishAcked(t, n.addr, "live/u", "meanwhile", 1)
	n.b.state.wait()
	toN3 := rversion{ts: toN2.ts + 1, node: "n3"}
	answer, err := n.b.HandleClaim(encodeClaim("mover", toN3, false, nil))
	if err != nil || len(answer) < 2 || answer[0] != claimGranted {
		t.Fatalf("n3's claim: %v %v", answer, err)
	}
	if got := queuedPayloads(t, "mover", answer[1:]); !slices.Equal(got, []string{"q-0", "q-1", "meanwhile-0"}) {
		t.Fatalf("n3's claim got queued %v", got)
	}
	if delta, err := n.b.HandleSettle(encodeSettle("mover", toN2)); err != nil || delta != nil {
		t.Fatalf("n2's settle: %v %v", delta, err)
	}
	if _, ok := sessionInfo(n.b, "mover"); !ok {
		t.Fatal("n2's settle ended the session n3's claim holds")
	}
	publishAcked(t, n.addr, "live/u", "later", 1)
	n.b.state.wait()
	if got := settledPayloads(t, n, "mover", toN3); !slices.Equal(got, []string{"later-0"}) {
		t.Fatalf("n3's settle answered %v", got)
	}
	if _, ok := sessionInfo(n.b, "mover"); ok {
		t.Fatal("the session is still here after n3's settle")
	}
}

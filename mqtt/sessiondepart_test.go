package mqtt

import (
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

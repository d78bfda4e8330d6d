package mqtt

import (
	"slices"
	"testing"
	"time"

	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// TestSettleWaitsForAMessageRoutedBeforeTheClientLeft: a message
// published on the node a session moves away from, whose subscribers were
// looked up while the client was still in the index (the other node's
// filters not known here yet, so it was not forwarded there), is in the
// delta the settle answers with, even when it is queued only after the
// settle took the client out of the index.
func TestSettleWaitsForAMessageRoutedBeforeTheClientLeft(t *testing.T) {
	n, claim := claimedAway(t, "live/f")
	looked, resume := make(chan struct{}), make(chan struct{})
	publish := n.b.ingest.publish
	n.b.ingest.publish = func(pk *packets.Packet, origin string, subs *mochi.Subscribers, seq uint64) uint64 {
		if string(pk.Payload) == "late" {
			close(looked) // its subscribers (mover among them) looked up
			<-resume
		}
		return publish(pk, origin, subs, seq)
	}
	p := dialRaw(t, n.addr, 4)
	p.connect("pub", true, packets.Properties{})
	p.publish(1, 1, "live/f", "late", false)
	<-looked
	settleWaits(t, n, claim, "late", resume)
	p.expect(packets.Puback)
}

// TestSettleWaitsForAWillRoutedBeforeTheClientLeft: the same for a will
// mochi sends as its client's connection drops, whose subscribers mochi
// looked up while the moving client was still in the index.
func TestSettleWaitsForAWillRoutedBeforeTheClientLeft(t *testing.T) {
	n, claim := claimedAway(t, "live/w")
	looked, resume := make(chan struct{}), make(chan struct{})
	selected := func(pk *packets.Packet) {
		if string(pk.Payload) == "gone" {
			close(looked) // its subscribers (mover among them) looked up
			<-resume
		}
	}
	n.b.delivery.selected.Store(&selected)
	dier := dialRaw(t, n.addr, 5)
	connectWithWill(t, dier, "dier", "live/w", 0)
	dier.drop() // no DISCONNECT: mochi sends the will
	<-looked
	settleWaits(t, n, claim, "gone", resume)
}

// claimedAway is a cluster-mode broker (alone) where client "mover",
// subscribed to filter and away, has been claimed by node n2 and not
// settled yet.
func claimedAway(t *testing.T, filter string) (*stateBroker, rversion) {
	t.Helper()
	n := startStateBroker(t, func(o *Options) { o.Remote, o.NodeID = aloneRemote{}, "n1" })
	awaySession(t, n, "mover", filter)
	claim := rversion{ts: uint64(time.Now().UnixNano()), node: "n2"}
	if answer, err := n.b.HandleClaim(encodeClaim("mover", claim, false, nil)); err != nil || len(answer) < 2 {
		t.Fatalf("claim: %v %v", answer, err)
	}
	return n, claim
}

// settleWaits settles mover's move while a message (payload) routed to it
// waits to be queued until resume is closed: the settle must wait for it
// and answer it in its delta.
func settleWaits(t *testing.T, n *stateBroker, claim rversion, payload string, resume chan struct{}) {
	t.Helper()
	settled := make(chan []byte, 1)
	go func() {
		out, _ := n.b.HandleSettle(encodeSettle("mover", claim))
		settled <- out
	}()
	select {
	case out := <-settled:
		close(resume)
		t.Fatalf("the settle answered (delta %q) before %q, routed to the session, had been queued", queuedPayloads(t, "mover", out), payload)
	case <-time.After(100 * time.Millisecond):
	}
	close(resume)
	if got := queuedPayloads(t, "mover", <-settled); !slices.Contains(got, payload) {
		t.Fatalf("the delta holds %q, not %q, routed to the session before it left", got, payload)
	}
}

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
	n := startStateBroker(t, func(o *Options) { o.Remote, o.NodeID = aloneRemote{}, "n1" })
	awaySession(t, n, "mover", "live/f")
	claim := rversion{ts: uint64(time.Now().UnixNano()), node: "n2"}
	if answer, err := n.b.HandleClaim(encodeClaim("mover", claim, false, nil)); err != nil || len(answer) < 2 {
		t.Fatalf("claim: %v %v", answer, err)
	}

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

	settled := make(chan []byte, 1)
	go func() {
		out, _ := n.b.HandleSettle(encodeSettle("mover", claim))
		settled <- out
	}()
	select {
	case out := <-settled:
		close(resume)
		t.Fatalf("the settle answered (delta %q) before a message routed to the session had been queued", queuedPayloads(t, "mover", out))
	case <-time.After(100 * time.Millisecond):
	}
	close(resume)
	p.expect(packets.Puback)
	if got := queuedPayloads(t, "mover", <-settled); !slices.Contains(got, "late") {
		t.Fatalf("the delta holds %q, not the message routed to the session before it left", got)
	}
}

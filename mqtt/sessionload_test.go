package mqtt

import (
	"slices"
	"testing"
	"time"

	"github.com/mochi-mqtt/server/v2/packets"
)

// TestDeliveryQueuedWhileAttachReadsTheQueueIsSent: a message queued for
// a persistent session right after attach read its queue back from disk,
// and before the connection is attached, is sent on that connection, not
// left on disk until the client's next connection.
func TestDeliveryQueuedWhileAttachReadsTheQueueIsSent(t *testing.T) {
	n := startStateBroker(t, nil)
	awaySession(t, n, "reader", "live/a")
	publishAcked(t, n.addr, "live/a", "before", 1)
	n.b.delivery.out.loaded = func() {
		n.b.delivery.out.loaded = nil
		v, _ := n.b.delivery.out.sessions.Load("reader")
		pk := &packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: 1}, TopicName: "live/a", Payload: []byte("meanwhile")}
		v.(*session).enqueue(&delivery{pk: pk, qos: 1})
	}
	c := dialRaw(t, n.addr, 4)
	c.connect("reader", false, packets.Properties{})
	var got []string
	for len(got) < 2 {
		pk, err := c.read(3 * time.Second)
		if err != nil {
			t.Fatalf("the client got %q, then nothing: %v", got, err)
		}
		if pk.FixedHeader.Type == packets.Publish {
			got = append(got, string(pk.Payload))
			c.ack(packets.Puback, pk.PacketID)
		}
	}
	if !slices.Equal(got, []string{"before-0", "meanwhile"}) {
		t.Fatalf("the client got %q", got)
	}
}

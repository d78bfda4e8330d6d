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

// TestPacketIDStillTrackedIsSkipped: mochi releases a packet id as its
// PUBACK arrives, a moment before the session hears of the ack, and can
// offer it for a new delivery meanwhile. The writer skips such an id and
// sends the delivery under the next free one, rather than dropping it (a
// session moved from another node resumes its in-flight ids while the
// new connection's counter starts low, so this was frequent there).
func TestPacketIDStillTrackedIsSkipped(t *testing.T) {
	n := startStateBroker(t, nil)
	c := dialRaw(t, n.addr, 4)
	c.connect("ids", false, packets.Properties{})
	c.subscribe(1, packets.Subscription{Filter: "live/i", Qos: 1})
	publishAcked(t, n.addr, "live/i", "first", 1) // makes the session
	first := c.expect(packets.Publish)
	c.ack(packets.Puback, first.PacketID)
	v, _ := n.b.delivery.out.sessions.Load("ids")
	s := v.(*session)
	const tracked = 100 // ids acknowledged to mochi, not yet to the session
	s.mu.Lock()
	for id := uint16(1); id <= tracked; id++ {
		s.mu.byID[id] = &delivery{pk: &packets.Packet{}, qos: 1, id: id, sent: true}
	}
	s.mu.Unlock()
	publishAcked(t, n.addr, "live/i", "m", 1)
	pk, err := c.read(3 * time.Second)
	if err != nil {
		t.Fatalf("the delivery did not go out: %v (dropped %d)", err, n.b.delivery.out.dropped.Load())
	}
	if pk.FixedHeader.Type != packets.Publish || string(pk.Payload) != "m-0" || pk.PacketID <= tracked {
		t.Fatalf("got packet type %d, %q, id %d; want the publish under an id above %d", pk.FixedHeader.Type, pk.Payload, pk.PacketID, tracked)
	}
	s.mu.Lock()
	for id := uint16(1); id <= tracked; id++ {
		delete(s.mu.byID, id)
	}
	s.mu.Unlock()
}

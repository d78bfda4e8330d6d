package mqtt

import (
	"testing"
	"time"

	"github.com/mochi-mqtt/server/v2/packets"
)

// TestNoLocalStillGetsOwnRetainedMessage (issue 13 item 2): a client that
// retained a message and later subscribes to its topic with No Local gets
// that retained message on SUBSCRIBE (No Local stops forwarding its own
// publishes, and a retained message sent on SUBSCRIBE is not forwarded);
// its later live publishes are still not sent back to it.
func TestNoLocalStillGetsOwnRetainedMessage(t *testing.T) {
	n := startBroker(t, nil, nil, nil)
	c := dialRaw(t, n.addr, 5)
	c.connect("nl-retain", true, packets.Properties{})
	c.publish(1, 1, "nlr/t", "kept", true)
	c.expect(packets.Puback)
	c.subscribe(2, packets.Subscription{Filter: "nlr/t", Qos: 1, NoLocal: true})
	pk := c.expect(packets.Publish)
	if string(pk.Payload) != "kept" || !pk.FixedHeader.Retain {
		t.Fatalf("got %q retain %v, want the retained message", pk.Payload, pk.FixedHeader.Retain)
	}
	c.ack(packets.Puback, pk.PacketID)
	c.publish(3, 1, "nlr/t", "live", false)
	c.expect(packets.Puback)
	if pk, err := c.read(300 * time.Millisecond); err == nil {
		t.Fatalf("No Local subscription got its own live publish: %q", pk.Payload)
	}
}

package mqtt

import (
	"testing"

	"github.com/mochi-mqtt/server/v2/packets"
)

// TestReceiveMaximumExceededDisconnects (issue 13, the Paho suite's
// test_flow_control2): an MQTT 5 client that holds Receive Maximum QoS 2
// flows open (no PUBREL) and sends one more QoS 2 publish is disconnected
// with 0x93 [MQTT-3.3.4-9]; before, its connection was no longer read and
// the client waited forever. Others are still served.
func TestReceiveMaximumExceededDisconnects(t *testing.T) {
	n := startBroker(t, nil, func(o *Options) { o.ReceiveMaximum = 3 }, nil)
	c := dialRaw(t, n.addr, 5)
	if ack := c.connect("rm-x", true, packets.Properties{}); ack.Properties.ReceiveMaximum != 3 {
		t.Fatalf("server Receive Maximum %d, want 3", ack.Properties.ReceiveMaximum)
	}
	for id := uint16(1); id <= 3; id++ {
		c.publish(id, 2, "rm/t", "m", false)
		c.expect(packets.Pubrec) // the flow stays open: no PUBREL
	}
	c.publish(4, 2, "rm/t", "one too many", false)
	pk := c.expect(packets.Disconnect)
	if pk.ReasonCode != packets.ErrReceiveMaximum.Code {
		t.Fatalf("DISCONNECT reason 0x%02x, want 0x93", pk.ReasonCode)
	}
	other := dialRaw(t, n.addr, 5)
	other.connect("rm-other", true, packets.Properties{})
	other.publish(1, 1, "rm/t", "fine", false)
	other.expect(packets.Puback)
}

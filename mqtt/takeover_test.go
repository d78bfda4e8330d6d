package mqtt

import (
	"net"
	"strings"
	"testing"

	"github.com/mochi-mqtt/server/v2/packets"
)

// TestStalledSubscriberDoesNotBlockTakeover: a subscriber that stops
// reading fills its socket, so the server's write to it blocks. Another
// connection with the same client id must still take the session over
// (CONNACK, the old connection closed), and other clients must be served
// meanwhile.
func TestStalledSubscriberDoesNotBlockTakeover(t *testing.T) {
	n := startBroker(t, nil, nil, nil)
	stalled := dialRaw(t, n.addr, 4)
	if tc, ok := stalled.conn.(*net.TCPConn); ok {
		_ = tc.SetReadBuffer(4096)
	}
	stalled.connect("stalled", true, packets.Properties{})
	stalled.subscribe(1, packets.Subscription{Filter: "stall/t", Qos: 0})

	// Far more than the socket buffers hold; the client reads none of it.
	pub := dialRaw(t, n.addr, 4)
	pub.connect("stall-pub", true, packets.Properties{})
	payload := strings.Repeat("x", 64<<10)
	for i := 0; i < 300; i++ {
		pub.publish(uint16(i+1), 1, "stall/t", payload, false)
		pub.expect(packets.Puback)
	}
	// The server's writer is now stuck in a write to "stalled".
	other := dialRaw(t, n.addr, 4)
	other.connect("bystander", true, packets.Properties{}) // fails the test unless CONNACK comes within the read timeout

	again := dialRaw(t, n.addr, 4)
	again.connect("stalled", true, packets.Properties{}) // the takeover: CONNACK within the read timeout
	again.subscribe(2, packets.Subscription{Filter: "stall/after", Qos: 1})
	pub.publish(1000, 1, "stall/after", "hello", false)
	pub.expect(packets.Puback)
	if pk := again.expect(packets.Publish); string(pk.Payload) != "hello" {
		t.Fatalf("new connection got %q", pk.Payload)
	}
}

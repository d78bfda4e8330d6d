package mqtt

import (
	"errors"
	"io"
	"testing"
	"time"

	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/mqstream/mqstream/internal/testutil"
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

// TestServerDisconnectReadableWhileClientWrites (issue 13, the Paho suite's
// test_flow_control2): a client disconnected with 0x93 that goes on writing
// (answering the PUBRECs it received with PUBRELs) before it reads must
// still read the DISCONNECT. Before, the server closed the socket at once:
// the client's writes met a reset (broken pipe) and the DISCONNECT was lost.
// Now the connection lingers (linger.go).
func TestServerDisconnectReadableWhileClientWrites(t *testing.T) {
	n := startBroker(t, nil, func(o *Options) { o.ReceiveMaximum = 3 }, nil)
	c := dialRaw(t, n.addr, 5)
	c.connect("rm-linger", true, packets.Properties{})
	for id := uint16(1); id <= 3; id++ {
		c.publish(id, 2, "rm/t", "m", false)
	}
	c.publish(4, 2, "rm/t", "one too many", false)
	testutil.Eventually(t, 5*time.Second, "the server to disconnect the client", func() bool {
		cl, ok := n.broker.server.Clients.Get("rm-linger")
		return !ok || cl.Closed()
	})
	// Unread by the client: PUBREC 1-3, DISCONNECT. It answers PUBRECs it
	// has not read yet, as a client that writes and reads on its own does.
	for i := 0; i < 20; i++ {
		for id := uint16(1); id <= 3; id++ {
			c.ack(packets.Pubrel, id)
		}
	}
	// Others are served meanwhile.
	other := dialRaw(t, n.addr, 5)
	other.connect("rm-linger-other", true, packets.Properties{})
	other.publish(1, 1, "rm/t", "fine", false)
	other.expect(packets.Puback)
	for {
		pk, err := c.read(5 * time.Second)
		if err != nil {
			t.Fatalf("reading until the DISCONNECT: %v", err)
		}
		if pk.FixedHeader.Type == packets.Disconnect {
			if pk.ReasonCode != packets.ErrReceiveMaximum.Code {
				t.Fatalf("DISCONNECT reason 0x%02x, want 0x93", pk.ReasonCode)
			}
			break
		}
		if pk.FixedHeader.Type != packets.Pubrec {
			t.Fatalf("got packet type %d before the DISCONNECT", pk.FixedHeader.Type)
		}
	}
	if _, err := c.read(5 * time.Second); !errors.Is(err, io.EOF) {
		t.Fatalf("after the DISCONNECT: %v, want the server to close (EOF)", err)
	}
}

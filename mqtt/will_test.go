package mqtt

import (
	"testing"
	"time"

	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/mqstream/mqstream/internal/testutil"
)

// TestDelayedWillIsDelivered (issue 13, the Paho suite's test_will_delay):
// a will with a Will Delay Interval shorter than the session expiry is
// published once the delay has passed, to live subscribers and as the
// retained message. mochi marks the delayed will with its due time in the
// message's expiry field, so before the fix every delivery dropped it as
// expired and its retained copy expired at once.
func TestDelayedWillIsDelivered(t *testing.T) {
	n := startBroker(t, nil, nil, nil)
	b := dialRaw(t, n.addr, 5)
	b.connect("will-b", true, packets.Properties{})
	b.subscribe(1, packets.Subscription{Filter: "will/t", Qos: 1})

	a := dialRaw(t, n.addr, 5)
	a.send(packets.Packet{
		FixedHeader: packets.FixedHeader{Type: packets.Connect},
		Connect: packets.ConnectParams{
			ProtocolName: []byte("MQTT"), ClientIdentifier: "will-a", Keepalive: 30, Clean: true,
			WillFlag: true, WillTopic: "will/t", WillPayload: []byte("gone"), WillQos: 1, WillRetain: true,
			WillProperties: packets.Properties{WillDelayInterval: 1},
		},
		Properties: packets.Properties{SessionExpiryInterval: 30, SessionExpiryIntervalFlag: true},
	})
	if ack := a.expect(packets.Connack); ack.ReasonCode != 0 {
		t.Fatalf("connect: 0x%02x", ack.ReasonCode)
	}
	a.drop() // no DISCONNECT: the will is due after its delay

	if pk := nextPublish(t, b, "B"); string(pk.Payload) != "gone" {
		t.Fatalf("B got %q, want the will", pk.Payload)
	}
	// mochi stores the will with its due time as expiry (already past)
	// for a moment before the retain hook replaces it (will.go): a
	// subscription in that moment misses it. Wait until the retained
	// copy is the corrected one.
	testutil.Eventually(t, 5*time.Second, "the retained will stored without expiry", func() bool {
		pk, ok := n.broker.server.Topics.Retained.Get("will/t")
		return ok && string(pk.Payload) == "gone" && pk.Expiry == 0
	})
	c := dialRaw(t, n.addr, 5)
	c.connect("will-c", true, packets.Properties{})
	c.subscribe(1, packets.Subscription{Filter: "will/t", Qos: 1})
	if pk := nextPublish(t, c, "C"); string(pk.Payload) != "gone" || !pk.FixedHeader.Retain {
		t.Fatalf("C got %q retain %v, want the retained will", pk.Payload, pk.FixedHeader.Retain)
	}
}

package mqtt

import (
	"fmt"
	"testing"
	"time"

	"github.com/mochi-mqtt/server/v2/packets"
)

// TestReceiveMaximumSharedAcrossGroupsAndSubscriptions: an MQTT 5 client
// with Receive Maximum 3 holds an ordinary subscription and two $share
// subscriptions (two consumer groups) on the same topics, and acknowledges
// nothing until the server goes quiet. The server must never have more
// than 3 QoS 1 publishes unacknowledged to it, whichever path they come
// from [MQTT-3.3.4-9]; as it acknowledges one at a time, all 30 deliveries
// (10 messages, three subscriptions) arrive.
func TestReceiveMaximumSharedAcrossGroupsAndSubscriptions(t *testing.T) {
	n := startBrokerWithGroups(t, nil)
	const window, messages = 3, 10
	sub := dialRaw(t, n.addr, 5)
	sub.connect("rm-client", true, packets.Properties{ReceiveMaximum: window})
	sub.subscribe(1,
		packets.Subscription{Filter: "win/t", Qos: 1},
		packets.Subscription{Filter: "$share/g1/win/#", Qos: 1},
		packets.Subscription{Filter: "$share/g2/win/#", Qos: 1},
	)
	pub := dialRaw(t, n.addr, 4)
	pub.connect("rm-pub", true, packets.Properties{})
	for i := 0; i < messages; i++ {
		pub.publish(uint16(i+1), 1, "win/t", fmt.Sprint(i), false)
		pub.expect(packets.Puback)
	}

	unacked := map[uint16]bool{}
	var order []uint16
	received := 0
	deadline := time.Now().Add(30 * time.Second)
	for received < 3*messages {
		if time.Now().After(deadline) {
			t.Fatalf("received %d of %d deliveries", received, 3*messages)
		}
		wait := quiet
		if len(unacked) == window {
			wait = 50 * time.Millisecond // long enough for an excess publish to show
		}
		pk, err := sub.read(wait)
		if err != nil {
			// Quiet: the window is full. Ack the oldest.
			if len(order) == 0 {
				t.Fatalf("nothing in flight and nothing sent after %d of %d deliveries", received, 3*messages)
			}
			sub.ack(packets.Puback, order[0])
			delete(unacked, order[0])
			order = order[1:]
			continue
		}
		if pk.FixedHeader.Type != packets.Publish || pk.FixedHeader.Qos != 1 {
			t.Fatalf("unexpected packet type %d qos %d", pk.FixedHeader.Type, pk.FixedHeader.Qos)
		}
		if unacked[pk.PacketID] {
			t.Fatalf("packet id %d sent again while unacknowledged", pk.PacketID)
		}
		unacked[pk.PacketID] = true
		order = append(order, pk.PacketID)
		received++
		if len(unacked) > window {
			t.Fatalf("%d publishes unacknowledged, Receive Maximum is %d [MQTT-3.3.4-9]", len(unacked), window)
		}
	}
}

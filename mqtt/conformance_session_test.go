package mqtt

import (
	"fmt"
	"testing"
	"time"

	"github.com/mochi-mqtt/server/v2/packets"
)

// TestConformanceExpiredSessionLeavesNoSubscriptions: when a session
// expires, its subscriptions go with it [MQTT-3.1.2-23 (session state is
// discarded)]. mochi forgets the client but leaves its subscriptions in the
// topic index, so the next client with that id, which subscribed to
// nothing, receives their messages.
func TestConformanceExpiredSessionLeavesNoSubscriptions(t *testing.T) {
	checkConformance(t, func(t *testing.T, tgt target) error {
		c := dialRaw(t, tgt.addr, 5)
		c.connect("exp", true, packets.Properties{SessionExpiryInterval: 1, SessionExpiryIntervalFlag: true})
		c.subscribe(1, packets.Subscription{Filter: "exp/t", Qos: 1})
		c.send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Disconnect}})
		deadline := time.Now().Add(within)
		for {
			if _, ok := tgt.server.Clients.Get("exp"); !ok {
				break // expired
			}
			if time.Now().After(deadline) {
				t.Fatal("session did not expire")
			}
			waitHousekeeping(t, tgt.addr)
		}
		again := dialRaw(t, tgt.addr, 5)
		again.connect("exp", true, packets.Properties{})
		pub := dialRaw(t, tgt.addr, 4)
		pub.connect("exp-pub", true, packets.Properties{})
		pub.publish(1, 1, "exp/t", "stale", false)
		pub.expect(packets.Puback)
		if pk, err := again.read(quiet); err == nil {
			return fmt.Errorf("a new session got %q on %s through the expired session's subscription", pk.Payload, pk.TopicName)
		}
		return nil
	}, nil)
}

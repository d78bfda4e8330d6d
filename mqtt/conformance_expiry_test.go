package mqtt

import (
	"fmt"
	"testing"
	"time"

	paho3 "github.com/eclipse/paho.mqtt.golang"
	"github.com/mochi-mqtt/server/v2/packets"
)

// TestConformanceInflightNeverExpiresByAge (issue item 8): a QoS 1 message
// sent to a persistent session and not acknowledged is resent when the
// client comes back, however long that takes [MQTT-4.4.0-1]; only the
// message's own expiry interval may drop it [MQTT-3.3.2-5]. mochi drops
// in-flight messages older than MaximumMessageExpiryInterval (24 h by
// default), even for sessions that never expire.
//
// Waiting 24 h is impractical, so the test ages the unacknowledged message
// by 25 h in the broker's session state and waits for two of the broker's
// one-second housekeeping passes before the client reconnects.
func TestConformanceInflightNeverExpiresByAge(t *testing.T) {
	checkConformance(t, func(t *testing.T, tgt target) error {
		sub := dialRaw(t, tgt.addr, 4)
		sub.connect("age-sub", false, packets.Properties{})
		sub.subscribe(1, packets.Subscription{Filter: "age/t", Qos: 1})
		pub := dialRaw(t, tgt.addr, 4)
		pub.connect("age-pub", true, packets.Properties{})
		pub.publish(1, 1, "age/t", "old", false)
		pub.expect(packets.Puback)
		if got := sub.expect(packets.Publish); string(got.Payload) != "old" {
			return fmt.Errorf("first delivery %q", got.Payload)
		}
		// Not acknowledged. Age it by 25 h.
		cl, ok := tgt.server.Clients.Get("age-sub")
		if !ok {
			t.Fatal("no session for age-sub")
		}
		for _, pk := range cl.State.Inflight.GetAll(false) {
			pk.Created -= 25 * 3600
			cl.State.Inflight.Set(pk)
		}
		waitHousekeeping(t, tgt.addr)

		sub.drop()
		back := dialRaw(t, tgt.addr, 4)
		if ack := back.connect("age-sub", false, packets.Properties{}); !ack.SessionPresent {
			t.Fatal("session not present")
		}
		pk, err := back.read(2 * time.Second)
		if err != nil {
			return fmt.Errorf("unacknowledged QoS 1 message not resent after 25 h: %v", err)
		}
		if pk.FixedHeader.Type != packets.Publish || string(pk.Payload) != "old" || !pk.FixedHeader.Dup {
			return fmt.Errorf("resent packet type %d payload %q dup %v", pk.FixedHeader.Type, pk.Payload, pk.FixedHeader.Dup)
		}
		return nil
	}, nil)
}

// waitHousekeeping waits until the broker has published its $SYS topics
// twice more: its once-a-second housekeeping (expiry passes) has then run
// at least once.
func waitHousekeeping(t *testing.T, addr string) {
	t.Helper()
	ticks := make(chan struct{}, 16)
	c := connectV3(t, "tcp://"+addr, fmt.Sprintf("ticks-%d", time.Now().UnixNano()), nil)
	waitToken(t, c.Subscribe("$SYS/broker/uptime", 0, func(paho3.Client, paho3.Message) {
		select {
		case ticks <- struct{}{}:
		default:
		}
	}), "subscribe $SYS")
	for i := 0; i < 3; i++ { // the first may be the retained value
		select {
		case <-ticks:
		case <-time.After(5 * time.Second):
			t.Fatal("no $SYS tick")
		}
	}
	c.Disconnect(0)
}

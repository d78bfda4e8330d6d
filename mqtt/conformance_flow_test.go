package mqtt

import (
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mochi-mqtt/server/v2/packets"
)

// quiet is how long a test listens to be sure the broker sends nothing more
// (for flow control, where no marker message can get through either).
const quiet = 300 * time.Millisecond

// TestConformanceResendOrderAndReceiveMaximum (issue item 7): an MQTT 5
// client with Receive Maximum 3 has 10 QoS 1 messages waiting; it
// acknowledges none, loses the connection and resumes its session. The
// server must resend the unacknowledged messages in their original order
// [MQTT-4.6.0-1] and never have more than 3 unacknowledged PUBLISH packets
// out [MQTT-3.3.4-9]; as the client acknowledges, the rest follow in order.
// mochi resends everything it holds at once, in an order it takes from
// one-second timestamps.
func TestConformanceResendOrderAndReceiveMaximum(t *testing.T) {
	checkConformance(t, func(t *testing.T, tgt target) error {
		props := packets.Properties{ReceiveMaximum: 3, SessionExpiryInterval: 300, SessionExpiryIntervalFlag: true}
		sub := dialRaw(t, tgt.addr, 5)
		sub.connect("flow", true, props)
		sub.subscribe(1, packets.Subscription{Filter: "flow/t", Qos: 1})
		pub := dialRaw(t, tgt.addr, 4)
		pub.connect("flow-pub", true, packets.Properties{})
		for i := 0; i < 10; i++ {
			pub.publish(uint16(i+1), 1, "flow/t", strconv.Itoa(i), false)
			pub.expect(packets.Puback)
		}
		var first []string
		for {
			pk, err := sub.read(quiet)
			if err != nil {
				break
			}
			first = append(first, string(pk.Payload))
		}
		if strings.Join(first, ",") != "0,1,2" {
			return fmt.Errorf("before resume the client got %v, want [0 1 2] (Receive Maximum 3)", first)
		}
		sub.drop()

		back := dialRaw(t, tgt.addr, 5)
		back.connect("flow", false, props)
		var got []string
		for len(got) < 10 {
			// Everything the server sends before the client acknowledges.
			var burst []packets.Packet
			for {
				pk, err := back.read(quiet)
				if err != nil {
					break
				}
				burst = append(burst, pk)
			}
			if len(burst) == 0 {
				return fmt.Errorf("after %v nothing more arrives", got)
			}
			if len(burst) > 3 {
				return fmt.Errorf("%d PUBLISH packets sent at once, Receive Maximum is 3 (got %v so far)", len(burst), got)
			}
			for _, pk := range burst {
				got = append(got, string(pk.Payload))
				back.ack(packets.Puback, pk.PacketID)
			}
		}
		if want := "0,1,2,3,4,5,6,7,8,9"; strings.Join(got, ",") != want {
			return fmt.Errorf("after resume the messages came as %v, want %s", got, want)
		}
		return nil
	}, nil)
}

// TestConformanceSlowSubscriberKeepsMessages (issue item 9): a QoS 1
// subscriber that acknowledges nothing while 8192+50 messages are published
// must still get every one once it acknowledges [MQTT-4.3.2-1: the message
// is delivered at least once]. mochi drops what exceeds its 8192 in-flight
// slots ("client store quota reached"); mqstream holds them (up to
// Options.MaxQueued per session) and sends them as the window frees.
func TestConformanceSlowSubscriberKeepsMessages(t *testing.T) {
	checkConformance(t, func(t *testing.T, tgt target) error {
		const total = 8192 + 50
		sub := dialRaw(t, tgt.addr, 4)
		sub.connect("slow", true, packets.Properties{})
		sub.subscribe(1, packets.Subscription{Filter: "slow/t", Qos: 1})
		received := make(chan packets.Packet, total)
		readErr := make(chan error, 1)
		go func() {
			for {
				pk, err := sub.read(3 * time.Second)
				if err != nil {
					readErr <- err
					return
				}
				received <- pk
			}
		}()
		pub := dialRaw(t, tgt.addr, 4)
		pub.connect("slow-pub", true, packets.Properties{})
		go func() {
			for i := 0; i < total; i++ {
				pub.publish(uint16(i%65535+1), 1, "slow/t", strconv.Itoa(i), false)
			}
		}()
		for i := 0; i < total; i++ {
			if _, err := pub.read(5 * time.Second); err != nil {
				t.Fatalf("puback %d: %v", i, err)
			}
		}
		// Only now does the subscriber start acknowledging.
		seen := map[string]bool{}
		for len(seen) < total {
			select {
			case pk := <-received:
				seen[string(pk.Payload)] = true
				sub.ack(packets.Puback, pk.PacketID)
			case err := <-readErr:
				return fmt.Errorf("got %d of %d messages (%v)", len(seen), total, err)
			}
		}
		return nil
	}, nil)
}

// TestConformanceServerFlowsLeaveClientQuotaAlone: the Receive Maximum the
// server announces limits the client's own unacknowledged publishes
// [MQTT-3.3.4-7]. mochi also counts the server's QoS 2 deliveries waiting
// for PUBCOMP against it, so a subscriber that is slow to send PUBCOMP is
// disconnected (0x93) on its next publish, with nothing of its own
// outstanding.
func TestConformanceServerFlowsLeaveClientQuotaAlone(t *testing.T) {
	checkConformance(t, func(t *testing.T, tgt target) error {
		const n = 1100 // more than the broker's Receive Maximum, 1024
		sub := dialRaw(t, tgt.addr, 5)
		sub.connect("rq", true, packets.Properties{})
		sub.subscribe(1, packets.Subscription{Filter: "rq/t", Qos: 2})
		pub := connectV3(t, "tcp://"+tgt.addr, "rq-pub", nil)
		go func() {
			for i := 0; i < n; i++ {
				pub.Publish("rq/t", 2, false, strconv.Itoa(i))
			}
		}()
		// PUBREC every delivery; hold back every PUBCOMP.
		for got := 0; got < n; {
			pk, err := sub.read(5 * time.Second)
			if err != nil {
				return fmt.Errorf("after %d deliveries: %v", got, err)
			}
			if pk.FixedHeader.Type == packets.Publish {
				sub.ack(packets.Pubrec, pk.PacketID)
				got++
			}
		}
		sub.publish(1, 1, "rq/own", "x", false)
		for {
			pk, err := sub.read(2 * time.Second)
			if err != nil {
				return fmt.Errorf("own publish not acknowledged: %v", err)
			}
			switch pk.FixedHeader.Type {
			case packets.Puback:
				return nil
			case packets.Disconnect:
				return fmt.Errorf("disconnected with reason 0x%02x for its own first publish", pk.ReasonCode)
			}
		}
	}, nil)
}

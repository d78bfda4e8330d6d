package mqtt

import (
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/mochi-mqtt/server/v2/packets"
)

// Packet identifiers are per direction: the ids a client uses for its
// PUBLISH, SUBSCRIBE and UNSUBSCRIBE packets are independent of the ids the
// server uses for its PUBLISH packets to that client [MQTT-2.2.1-3]
// [MQTT-2.2.1-4]. mochi v2.7.9 keeps both in one in-flight map.

// TestConformanceInboundIDsDoNotEraseDeliveries (issue item 6): a client
// publishing QoS 1 with the id of a delivery it has not acknowledged yet
// must not erase that delivery: it is resent when the persistent session
// resumes [MQTT-4.4.0-1], and with MQTT 5 the client's later PUBACK frees
// its Receive Maximum window (mochi ignores it, and nothing is delivered
// any more).
func TestConformanceInboundIDsDoNotEraseDeliveries(t *testing.T) {
	checkConformance(t, func(t *testing.T, tgt target) error {
		var errs []string
		// MQTT 3.1.1: the delivery must survive until acknowledged.
		sub := dialRaw(t, tgt.addr, 4)
		sub.connect("ids-v3", false, packets.Properties{})
		sub.subscribe(1, packets.Subscription{Filter: "ids/v3", Qos: 1})
		pub := dialRaw(t, tgt.addr, 4)
		pub.connect("ids-pub", true, packets.Properties{})
		pub.publish(1, 1, "ids/v3", "m1", false)
		d := sub.expect(packets.Publish)
		sub.publish(d.PacketID, 1, "ids/other", "x", false) // same id, other direction
		if ack := sub.expect(packets.Puback); ack.PacketID != d.PacketID {
			t.Fatalf("puback for %d, want %d", ack.PacketID, d.PacketID)
		}
		sub.drop()
		back := dialRaw(t, tgt.addr, 4)
		back.connect("ids-v3", false, packets.Properties{})
		if pk, err := back.read(2 * time.Second); err != nil || pk.FixedHeader.Type != packets.Publish || string(pk.Payload) != "m1" {
			errs = append(errs, fmt.Sprintf("unacknowledged delivery not resent on resume (got type %d %q, %v)",
				pk.FixedHeader.Type, pk.Payload, err))
		}

		// MQTT 5, Receive Maximum 1: the PUBACK must free the window.
		v5 := dialRaw(t, tgt.addr, 5)
		v5.connect("ids-v5", true, packets.Properties{ReceiveMaximum: 1})
		v5.subscribe(1, packets.Subscription{Filter: "ids/v5", Qos: 1})
		pub.publish(2, 1, "ids/v5", "m1", false)
		pub.expect(packets.Puback)
		d = v5.expect(packets.Publish)
		v5.publish(d.PacketID, 1, "ids/other", "x", false)
		v5.expect(packets.Puback)
		v5.ack(packets.Puback, d.PacketID)
		pub.publish(3, 1, "ids/v5", "m2", false)
		pub.expect(packets.Puback)
		if pk, err := v5.read(2 * time.Second); err != nil || string(pk.Payload) != "m2" {
			errs = append(errs, fmt.Sprintf("after the PUBACK, the next message is not delivered (%v)", err))
		}

		// SUBSCRIBE with the id of an unacknowledged delivery is granted.
		v5 = dialRaw(t, tgt.addr, 5)
		v5.connect("ids-v5-sub", true, packets.Properties{})
		v5.subscribe(1, packets.Subscription{Filter: "ids/sub", Qos: 1})
		pub.publish(4, 1, "ids/sub", "m3", false)
		pub.expect(packets.Puback)
		d = v5.expect(packets.Publish)
		if ack := v5.subscribe(d.PacketID, packets.Subscription{Filter: "ids/more", Qos: 1}); len(ack.ReasonCodes) != 1 || ack.ReasonCodes[0] != 1 {
			errs = append(errs, fmt.Sprintf("SUBSCRIBE reusing the id of a pending delivery refused: reason codes % x", ack.ReasonCodes))
		}
		if len(errs) > 0 {
			return fmt.Errorf("%s", strings.Join(errs, "; "))
		}
		return nil
	}, nil)
}

// TestConformanceQoS2ResumeResendsEverything (issue item 5): a client
// publishes QoS 2 messages to its own subscription and loses the
// connection in the middle of both handshakes. On resume the server must
// resend every PUBLISH the client has not acknowledged with PUBREC, with
// DUP set [MQTT-4.4.0-1], and complete the client's own flows (PUBREL ->
// PUBCOMP) [MQTT-4.3.3-11]. (The order of the resent messages is checked by
// TestConformanceResendOrderAndReceiveMaximum.)
func TestConformanceQoS2ResumeResendsEverything(t *testing.T) {
	checkConformance(t, func(t *testing.T, tgt target) error {
		c := dialRaw(t, tgt.addr, 4)
		c.connect("q2", false, packets.Properties{})
		c.subscribe(1, packets.Subscription{Filter: "q2/t", Qos: 2})
		var firstRound []string
		for i, payload := range []string{"a", "b", "c"} {
			id := uint16(i + 1) // the ids a client would pick: 1, 2, 3
			c.publish(id, 2, "q2/t", payload, false)
			// Read this publish's PUBREC and its delivery; acknowledge neither.
			var gotRec, gotPub bool
			for !gotRec || !gotPub {
				pk := c.expectOneOf(packets.Pubrec, packets.Publish)
				if pk.FixedHeader.Type == packets.Pubrec {
					gotRec = pk.PacketID == id
				} else {
					gotPub = true
					firstRound = append(firstRound, string(pk.Payload))
				}
			}
		}
		c.drop()

		back := dialRaw(t, tgt.addr, 4)
		back.connect("q2", false, packets.Properties{})
		for id := uint16(1); id <= 3; id++ {
			back.ack(packets.Pubrel, id) // the client's flows resume at PUBREL
		}
		var resent []string
		comps := 0
		for comps < 3 || len(resent) < 3 {
			pk, err := back.read(2 * time.Second)
			if err != nil {
				break
			}
			switch pk.FixedHeader.Type {
			case packets.Publish:
				if !pk.FixedHeader.Dup {
					return fmt.Errorf("resent PUBLISH %q without DUP", pk.Payload)
				}
				resent = append(resent, string(pk.Payload))
				back.ack(packets.Pubrec, pk.PacketID)
			case packets.Pubrel:
				back.ack(packets.Pubcomp, pk.PacketID)
			case packets.Pubcomp:
				comps++
			}
		}
		sort.Strings(firstRound)
		sort.Strings(resent)
		if strings.Join(firstRound, "") != "abc" {
			return fmt.Errorf("first connection delivered %v", firstRound)
		}
		if strings.Join(resent, "") != "abc" {
			return fmt.Errorf("on resume the server resent %v, want [a b c] (every unacknowledged delivery)", resent)
		}
		if comps != 3 {
			return fmt.Errorf("got %d PUBCOMP for the client's 3 PUBREL", comps)
		}
		return nil
	}, nil)
}

// TestConformancePublishToSysIsAnswered: a QoS 1 publish is answered
// [MQTT-4.3.2-4], also when the broker does not accept its topic: mochi
// drops a client's publish to a $SYS topic without a PUBACK, so the client
// waits forever. mqstream answers like mosquitto: MQTT 5 gets reason 0x87,
// MQTT 3.1.1 an ordinary PUBACK; the message goes nowhere.
func TestConformancePublishToSysIsAnswered(t *testing.T) {
	checkConformance(t, func(t *testing.T, tgt target) error {
		obs := dialRaw(t, tgt.addr, 4)
		obs.connect("sys-obs", true, packets.Properties{})
		obs.subscribe(1, packets.Subscription{Filter: "$SYS/fake/#", Qos: 0})
		for _, v := range []byte{4, 5} {
			c := dialRaw(t, tgt.addr, v)
			c.connect(fmt.Sprintf("sys-pub-%d", v), true, packets.Properties{})
			c.publish(7, 1, "$SYS/fake/x", "x", false)
			pk, err := c.read(2 * time.Second)
			if err != nil {
				return fmt.Errorf("MQTT version %d: no answer to a QoS 1 publish on $SYS/fake/x (%v)", v, err)
			}
			if pk.FixedHeader.Type != packets.Puback || pk.PacketID != 7 || (v == 5 && pk.ReasonCode < 0x80) {
				return fmt.Errorf("MQTT version %d: answer type %d id %d reason 0x%02x", v, pk.FixedHeader.Type, pk.PacketID, pk.ReasonCode)
			}
		}
		if pk, err := obs.read(quiet); err == nil {
			return fmt.Errorf("a client's $SYS publish was delivered: %s", pk.TopicName)
		}
		return nil
	}, nil)
}

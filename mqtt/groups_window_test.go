package mqtt

import (
	"fmt"
	"testing"
	"time"

	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/mqstream/mqstream/shared"
)

// withAckTimeout sets the consumer groups' ack timeout of a test broker.
func withAckTimeout(d time.Duration) func(*shared.GroupOptions) {
	return func(o *shared.GroupOptions) { o.AckTimeout = d }
}

// TestAckTimeoutRedeliveryRespectsReceiveMaximum: a member with Receive
// Maximum 1 that never acknowledges. When the ack timeout withdraws the
// delivery and the group sends the record again, the first publish is
// still unacknowledged from the client's side: the redelivery must wait
// for it [MQTT-3.3.4-9], and its packet id must not be reused meanwhile.
func TestAckTimeoutRedeliveryRespectsReceiveMaximum(t *testing.T) {
	n := startBrokerWithGroupOptions(t, withAckTimeout(200*time.Millisecond))
	sub := dialRaw(t, n.addr, 5)
	sub.connect("rm1", true, packets.Properties{ReceiveMaximum: 1})
	sub.subscribe(1, packets.Subscription{Filter: "$share/g/rv/#", Qos: 1})
	pub := dialRaw(t, n.addr, 4)
	pub.connect("rv-pub", true, packets.Properties{})
	for i := 0; i < 2; i++ {
		pub.publish(uint16(i+1), 1, "rv/t", fmt.Sprint(i), false)
		pub.expect(packets.Puback)
	}
	first, err := sub.read(5 * time.Second)
	if err != nil || first.FixedHeader.Type != packets.Publish {
		t.Fatalf("first delivery: %v", err)
	}
	// Several ack timeouts pass; nothing more may arrive while the first
	// publish is unacknowledged.
	if pk, err := sub.read(time.Second); err == nil {
		t.Fatalf("publish id %d (dup %v) sent while id %d is unacknowledged, Receive Maximum 1",
			pk.PacketID, pk.FixedHeader.Dup, first.PacketID)
	}
	sub.ack(packets.Puback, first.PacketID)
	if pk := sub.expect(packets.Publish); pk.PacketID == 0 {
		t.Fatal("no packet id")
	}
}

// TestTwoGroupsOnOneClientShareTheWindow: one client with Receive Maximum
// 1 is a member of two groups with backlogs; acknowledging at once, it
// must get records of both groups interleaved, not all of one group first
// (an ack of one group's record wakes the other group).
func TestTwoGroupsOnOneClientShareTheWindow(t *testing.T) {
	n := startBrokerWithGroupOptions(t, nil)
	sub := dialRaw(t, n.addr, 5)
	sub.connect("fair", true, packets.Properties{ReceiveMaximum: 1})
	sub.subscribe(1, packets.Subscription{Filter: "$share/a/fa/#", Qos: 1}, packets.Subscription{Filter: "$share/b/fb/#", Qos: 1})
	pub := dialRaw(t, n.addr, 4)
	pub.connect("fair-pub", true, packets.Properties{})
	const each = 200
	for i := 0; i < each; i++ {
		pub.publish(uint16(2*i+1), 1, "fa/t", fmt.Sprint(i), false)
		pub.expect(packets.Puback)
		pub.publish(uint16(2*i+2), 1, "fb/t", fmt.Sprint(i), false)
		pub.expect(packets.Puback)
	}
	got := map[string]int{}
	for got["fa/t"]+got["fb/t"] < 2*each {
		pk, err := sub.read(5 * time.Second)
		if err != nil {
			t.Fatalf("%v (got %v)", err, got)
		}
		if pk.FixedHeader.Type != packets.Publish {
			continue
		}
		got[pk.TopicName]++
		if (got["fa/t"] == each && got["fb/t"] == 0) || (got["fb/t"] == each && got["fa/t"] == 0) {
			t.Fatalf("one group got all %d records before the other got any: %v", each, got)
		}
		sub.ack(packets.Puback, pk.PacketID)
	}
}

// TestClientLockDoesNotBlockTheSession: while mochi holds a client's lock
// (a socket write blocked on a client that stopped reading), the session
// writer waits for it to pick a packet id; the session itself must stay
// usable (Room for its consumer groups, enqueue for publishers, acks).
func TestClientLockDoesNotBlockTheSession(t *testing.T) {
	n := startBrokerWithGroupOptions(t, nil)
	x := dialRaw(t, n.addr, 5)
	x.connect("lk", true, packets.Properties{})
	x.subscribe(1, packets.Subscription{Filter: "lk/#", Qos: 1})
	cl, _ := n.broker.server.Clients.Get("lk")
	s := n.broker.delivery.out.session(cl)
	cl.Lock() // as mochi's WritePacket does while its write blocks
	defer cl.Unlock()
	pub := dialRaw(t, n.addr, 4)
	pub.connect("lk-pub", true, packets.Properties{})
	pub.publish(1, 1, "lk/t", "A", false)
	pub.expect(packets.Puback) // the delivery is queued; the writer wants the client's lock
	done := make(chan int, 1)
	go func() { done <- s.room(cl) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("session.room blocked while the client's lock is held elsewhere")
	}
}

// TestGroupQoS2PubrelResentOnResume: a persistent QoS 2 member acknowledges
// a group delivery with PUBREC and loses its connection before PUBCOMP.
// On resume the server resends PUBREL under the same id first
// [MQTT-4.4.0-1] (the client still holds that id), and the id is not given
// to another message before the PUBCOMP.
func TestGroupQoS2PubrelResentOnResume(t *testing.T) {
	n := startBrokerWithGroupOptions(t, nil)
	props := packets.Properties{SessionExpiryInterval: 300, SessionExpiryIntervalFlag: true}
	x := dialRaw(t, n.addr, 5)
	x.connect("q2-member", true, props)
	x.subscribe(1, packets.Subscription{Filter: "$share/g/q2/#", Qos: 2})
	pub := dialRaw(t, n.addr, 4)
	pub.connect("q2-pub", true, packets.Properties{})
	pub.publish(1, 2, "q2/t", "A", false)
	pub.expect(packets.Pubrec)
	pub.ack(packets.Pubrel, 1)
	pub.expect(packets.Pubcomp)
	a := x.expect(packets.Publish)
	x.ack(packets.Pubrec, a.PacketID)
	if rel := x.expect(packets.Pubrel); rel.PacketID != a.PacketID {
		t.Fatalf("PUBREL id %d, want %d", rel.PacketID, a.PacketID)
	}
	x.drop() // before PUBCOMP

	x2 := dialRaw(t, n.addr, 5)
	if ack := x2.connect("q2-member", false, props); !ack.SessionPresent {
		t.Fatal("session not present")
	}
	first := x2.expectOneOf(packets.Pubrel, packets.Publish)
	if first.FixedHeader.Type != packets.Pubrel || first.PacketID != a.PacketID {
		t.Fatalf("first packet on resume: type %d id %d, want PUBREL %d", first.FixedHeader.Type, first.PacketID, a.PacketID)
	}
	for {
		pk, err := x2.read(300 * time.Millisecond)
		if err != nil {
			break
		}
		if pk.FixedHeader.Type == packets.Publish && pk.PacketID == a.PacketID {
			t.Fatalf("id %d reused for %q before the PUBCOMP", pk.PacketID, pk.Payload)
		}
	}
	x2.ack(packets.Pubcomp, a.PacketID)
}

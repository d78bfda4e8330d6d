package mqtt

import (
	"testing"
	"time"

	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// nextPublish reads c's next packet, which must be a PUBLISH, and
// acknowledges it if it has QoS 1.
func nextPublish(t *testing.T, c *rawClient, who string) packets.Packet {
	t.Helper()
	pk, err := c.read(5 * time.Second)
	if err != nil || pk.FixedHeader.Type != packets.Publish {
		t.Fatalf("%s: waiting for a PUBLISH: type %d, %v", who, pk.FixedHeader.Type, err)
	}
	if pk.FixedHeader.Qos == 1 {
		c.ack(packets.Puback, pk.PacketID)
	}
	return pk
}

// TestSubscribeCatchesUpConcurrentPublish (issue 13 item 1): client B
// sends SUBSCRIBE and client A publishes a moment later, but the server
// reads A's PUBLISH first (two connections, two goroutines: the Paho
// suite's test_request_response lost its request this way about one run
// in two). Here A's message is routed for certain before B's SUBSCRIBE is
// read (C, subscribed already, has it), within the catch-up window: B must
// get it, with its properties, before any later message, exactly once;
// its own earlier publish and messages it already got are not caught up.
// Before the fix B got nothing.
func TestSubscribeCatchesUpConcurrentPublish(t *testing.T) {
	// A window far larger than the test's latencies, even under -race.
	n := startBroker(t, nil, func(o *Options) { o.CatchUpWindow = 5 * time.Second }, nil)
	a := dialRaw(t, n.addr, 5)
	a.connect("cu-a", true, packets.Properties{})
	b := dialRaw(t, n.addr, 5)
	b.connect("cu-b", true, packets.Properties{})
	c := dialRaw(t, n.addr, 5)
	c.connect("cu-c", true, packets.Properties{})
	c.subscribe(1, packets.Subscription{Filter: "cu/t", Qos: 0})

	a.send(packets.Packet{
		FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: 1},
		PacketID:    1, TopicName: "cu/t", Payload: []byte("request"),
		Properties: packets.Properties{ResponseTopic: "cu/t", CorrelationData: []byte("334")},
	})
	a.expect(packets.Puback)
	if pk := nextPublish(t, c, "C"); string(pk.Payload) != "request" {
		t.Fatalf("C got %q", pk.Payload)
	}
	// The request has been routed; B's SUBSCRIBE is read only now.
	b.subscribe(1, packets.Subscription{Filter: "cu/t", Qos: 1, NoLocal: true})
	pk := nextPublish(t, b, "B")
	if string(pk.Payload) != "request" || string(pk.Properties.CorrelationData) != "334" || pk.Properties.ResponseTopic != "cu/t" {
		t.Fatalf("B got %q %+v, want the request with its properties", pk.Payload, pk.Properties)
	}

	// Live messages follow, once.
	a.publish(2, 1, "cu/t", "second", false)
	a.expect(packets.Puback)
	if pk := nextPublish(t, b, "B"); string(pk.Payload) != "second" {
		t.Fatalf("B got %q, want second", pk.Payload)
	}
	// A new overlapping subscription does not repeat what B got already.
	b.subscribe(2, packets.Subscription{Filter: "cu/#", Qos: 1})
	a.publish(3, 1, "cu/t", "third", false)
	a.expect(packets.Puback)
	if pk := nextPublish(t, b, "B"); string(pk.Payload) != "third" {
		t.Fatalf("B got %q, want third (second was delivered already)", pk.Payload)
	}

	// A client's own publish before its SUBSCRIBE is not caught up.
	b.publish(4, 1, "own/x", "own", false)
	b.expect(packets.Puback)
	b.subscribe(5, packets.Subscription{Filter: "own/x", Qos: 1})
	a.publish(6, 1, "own/x", "marker", false)
	a.expect(packets.Puback)
	if pk := nextPublish(t, b, "B"); string(pk.Payload) != "marker" {
		t.Fatalf("B got %q, want marker (its own publish came before its SUBSCRIBE)", pk.Payload)
	}
}

// TestSubscribeCatchUpOff: with the window off, a message routed before
// the SUBSCRIBE was read is not delivered (the behaviour before issue 13).
func TestSubscribeCatchUpOff(t *testing.T) {
	n := startBroker(t, nil, func(o *Options) { o.CatchUpWindow = -1 }, nil)
	a := dialRaw(t, n.addr, 5)
	a.connect("cuo-a", true, packets.Properties{})
	b := dialRaw(t, n.addr, 5)
	b.connect("cuo-b", true, packets.Properties{})
	a.publish(1, 1, "cuo/t", "before", false)
	a.expect(packets.Puback)
	b.subscribe(1, packets.Subscription{Filter: "cuo/t", Qos: 1})
	a.publish(2, 1, "cuo/t", "after", false)
	a.expect(packets.Puback)
	if pk := nextPublish(t, b, "B"); string(pk.Payload) != "after" {
		t.Fatalf("B got %q, want after", pk.Payload)
	}
}

// TestCatchUpStartsAtConnack: messages routed before a client's CONNACK
// are never caught up, however recent: it could not have subscribed
// before them. (The bench's end-to-end runs, one right after another with
// the same topics, got the previous run's last messages before this.)
func TestCatchUpStartsAtConnack(t *testing.T) {
	n := startBroker(t, nil, func(o *Options) { o.CatchUpWindow = 5 * time.Second }, nil)
	a := dialRaw(t, n.addr, 5)
	a.connect("cuc-a", true, packets.Properties{})
	a.publish(1, 1, "cuc/t", "before connect", false)
	a.expect(packets.Puback)
	b := dialRaw(t, n.addr, 5)
	b.connect("cuc-b", true, packets.Properties{})
	b.subscribe(1, packets.Subscription{Filter: "cuc/t", Qos: 1})
	a.publish(2, 1, "cuc/t", "after", false)
	a.expect(packets.Puback)
	if pk := nextPublish(t, b, "B"); string(pk.Payload) != "after" {
		t.Fatalf("B got %q, want after", pk.Payload)
	}
}

// slowAfterConnack holds up the connection of client id just after its
// CONNACK was sent, as a busy machine may.
type slowAfterConnack struct {
	mochi.HookBase
	id string
}

func (h *slowAfterConnack) ID() string { return "test-slow-after-connack" }

func (h *slowAfterConnack) Provides(b byte) bool { return b == mochi.OnSessionEstablished }

func (h *slowAfterConnack) OnSessionEstablished(cl *mochi.Client, _ packets.Packet) {
	if cl.ID == h.id {
		time.Sleep(300 * time.Millisecond)
	}
}

// TestCatchUpAfterASlowStart: a message published after B's CONNACK is
// caught up even when B's connection goroutine got no CPU between sending
// the CONNACK and reading the SUBSCRIBE until the message was routed. The
// catch-up's starting point used to be read there (OnSessionEstablished),
// after the message, and TestSubscribeCatchesUpConcurrentPublish failed
// in CI under load; the same 300 ms sleep put at the start of that old
// OnSessionEstablished made it fail every time. (The sleep here runs
// after the catch-up hook's own hooks, which mochi calls in the order
// they were added, so this test shows that nothing after the CONNACK
// matters any more; it did not fail on the old code.)
func TestCatchUpAfterASlowStart(t *testing.T) {
	n := startBroker(t, nil, func(o *Options) { o.CatchUpWindow = 5 * time.Second }, nil)
	if err := n.broker.server.AddHook(&slowAfterConnack{id: "cus-b"}, nil); err != nil {
		t.Fatal(err)
	}
	a := dialRaw(t, n.addr, 5)
	a.connect("cus-a", true, packets.Properties{})
	b := dialRaw(t, n.addr, 5)
	b.connect("cus-b", true, packets.Properties{})
	b.send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Subscribe, Qos: 1}, PacketID: 1,
		Filters: packets.Subscriptions{{Filter: "cus/t", Qos: 1}}})
	a.publish(1, 1, "cus/t", "request", false)
	a.expect(packets.Puback)
	b.suback()
	if pk := nextPublish(t, b, "B"); string(pk.Payload) != "request" {
		t.Fatalf("B got %q, want request", pk.Payload)
	}
}

package mqtt

import (
	"sync/atomic"
	"testing"
	"time"

	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// slowSubscribeAccess allows everything but holds the first subscription
// check of one filter until released, telling the test when it started.
type slowSubscribeAccess struct {
	mochi.HookBase
	filter  string
	once    atomic.Bool
	started chan struct{}
	release chan struct{}
}

func (h *slowSubscribeAccess) ID() string { return "slow-subscribe" }
func (h *slowSubscribeAccess) Provides(b byte) bool {
	return b == mochi.OnConnectAuthenticate || b == mochi.OnACLCheck
}
func (h *slowSubscribeAccess) OnConnectAuthenticate(*mochi.Client, packets.Packet) bool { return true }
func (h *slowSubscribeAccess) OnACLCheck(_ *mochi.Client, topic string, write bool) bool {
	if !write && topic == h.filter && h.once.CompareAndSwap(false, true) {
		close(h.started)
		<-h.release
	}
	return true
}

// TestPublishAfterSubscribeReadIsDelivered (issue 13 item 1): client B's
// SUBSCRIBE is read before client A's PUBLISH, but B's subscription takes
// a while to be processed (here an access check holds it). A publishes
// without waiting for B's SUBACK, as the Paho suite's
// test_request_response does. B must get the message: subscriptions take
// effect in the order the server read them. Before the fix the publish
// was routed while B's SUBSCRIBE was still being processed, and B got
// nothing.
func TestPublishAfterSubscribeReadIsDelivered(t *testing.T) {
	access := &slowSubscribeAccess{filter: "order/t", started: make(chan struct{}), release: make(chan struct{})}
	n := startBroker(t, nil, func(o *Options) { o.Access = access }, nil)
	a := dialRaw(t, n.addr, 5)
	a.connect("order-a", true, packets.Properties{})
	b := dialRaw(t, n.addr, 5)
	b.connect("order-b", true, packets.Properties{})
	b.send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Subscribe, Qos: 1}, PacketID: 7,
		Filters: packets.Subscriptions{{Filter: "order/t", Qos: 1, NoLocal: true}}})
	<-access.started // B's SUBSCRIBE was read and is being processed
	a.publish(1, 1, "order/t", "request", false)
	// Give the publish time to be routed while B's subscription is held
	// (without the fix its PUBACK comes now; with it, the publish waits
	// for B's subscription and its PUBACK comes after the release).
	ack, early := a.read(300 * time.Millisecond)
	close(access.release)
	if early != nil {
		ack = a.expect(packets.Puback)
	}
	if ack.FixedHeader.Type != packets.Puback {
		t.Fatalf("A got packet type %d, want PUBACK", ack.FixedHeader.Type)
	}
	b.suback()
	pk, err := b.read(5 * time.Second)
	if err != nil || pk.FixedHeader.Type != packets.Publish || string(pk.Payload) != "request" {
		t.Fatalf("B: %v %v %q (the publish read after B's SUBSCRIBE must reach B)", err, pk.FixedHeader.Type, pk.Payload)
	}
}

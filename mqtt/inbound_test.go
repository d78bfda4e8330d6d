package mqtt

import (
	"strings"
	"testing"
	"time"

	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// denyHook lets everyone connect and denies publishing under "deny/".
type denyHook struct{ mochi.HookBase }

func (h *denyHook) ID() string { return "test-deny" }
func (h *denyHook) Provides(b byte) bool {
	return b == mochi.OnConnectAuthenticate || b == mochi.OnACLCheck
}
func (h *denyHook) OnConnectAuthenticate(*mochi.Client, packets.Packet) bool { return true }
func (h *denyHook) OnACLCheck(_ *mochi.Client, topic string, write bool) bool {
	return !write || !strings.HasPrefix(topic, "deny/")
}

// TestInboundPublishDeniedByACL: a QoS 1/2 publish the access hook refuses
// (mochi refuses it before OnPublish) is still answered: MQTT 5 with reason
// 0x87 in order with the other acks, MQTT 3.1.1 by disconnecting.
func TestInboundPublishDeniedByACL(t *testing.T) {
	n := startBroker(t, nil, func(o *Options) { o.Access = &denyHook{} }, nil)
	c := dialRaw(t, n.addr, 5)
	c.connect("acl5", true, packets.Properties{})
	c.publish(1, 1, "ok/x", "a", false)
	c.publish(2, 1, "deny/x", "b", false)
	c.publish(3, 2, "deny/y", "c", false)
	c.publish(4, 1, "ok/y", "d", false)
	want := []struct {
		typ  byte
		id   uint16
		code byte
	}{{packets.Puback, 1, 0}, {packets.Puback, 2, 0x87}, {packets.Pubrec, 3, 0x87}, {packets.Puback, 4, 0}}
	for _, w := range want {
		pk := c.expect(w.typ)
		if pk.PacketID != w.id || pk.ReasonCode != w.code {
			t.Fatalf("got ack id %d reason 0x%02x, want id %d reason 0x%02x", pk.PacketID, pk.ReasonCode, w.id, w.code)
		}
	}
	v3 := dialRaw(t, n.addr, 4)
	v3.connect("acl3", true, packets.Properties{})
	v3.publish(1, 1, "deny/x", "b", false)
	if pk, err := v3.read(2 * time.Second); err == nil && pk.FixedHeader.Type == packets.Puback {
		t.Fatalf("MQTT 3.1.1 publish refused by ACL was acknowledged")
	}
}

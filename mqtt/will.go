package mqtt

import (
	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// Delayed wills.
//
// mochi v2.7.9 keeps a will with a Will Delay Interval until it is due and
// records the due time in the packet's Expiry field, which it then
// publishes as it is: every delivery saw an expired message and dropped
// it [MQTT-3.3.2-5], and a retained will expired at once (the Paho suite's
// test_will_delay waited for it forever). mochi carries no Message Expiry
// Interval into a will, so such a will has no expiry: the field is cleared
// before the will is delivered (deliveryHook.OnSelectSubscribers) or
// retained (OnRetainMessage below). mochi retains a delayed will only
// after delivering it, and only while its client is still known: a
// subscriber that saw the will and subscribed again at once could miss
// the retained copy. So the delivery hook retains it first, and mochi's
// retaining it again afterwards changes nothing but for a moment: mochi
// stores its copy (with the past due time as expiry) before its
// OnRetainMessage hook lets us replace it, and a subscription made in
// that moment (microseconds) misses the retained will; the live
// subscribers got it.

// delayedWill reports a will mochi published after its delay (only those
// carry a Will Delay Interval).
func delayedWill(pk *packets.Packet) bool {
	return pk.Connect.WillProperties.WillDelayInterval > 0
}

// OnRetainMessage records a message mochi retained itself (retainer.changed);
// a delayed will is retained again without its due time as expiry.
func (h *deliveryHook) OnRetainMessage(_ *mochi.Client, pk packets.Packet, _ int64) {
	if delayedWill(&pk) {
		pk.Expiry = 0
		h.retained.retain(&pk)
		return
	}
	h.retained.changed(pk.TopicName)
}

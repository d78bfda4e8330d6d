package mqtt

import (
	"strings"

	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/mqstream/mqstream/topic"
)

// Retained messages on SUBSCRIBE.
//
// mochi v2.7.9 looks retained messages up with a scan of its topic index
// that misses the parent level of '#' ("foo/#" never gets the retained
// message on "foo", "foo/+/baz/#" never gets "foo/bar/baz", "+/#" never
// gets "foo") [MQTT-4.7.1-2], and lets filters starting with a wildcard
// match topics starting with '$' other than $SYS ("#" gets "$foo/x")
// [MQTT-4.7.2-1]. It also leaves out the subscription identifier
// [MQTT-3.3.4-3].
//
// mqstream sends them itself, through the session's delivery queue, so
// they take their place in the session's order and flow control: in
// OnSubscribe it remembers each new subscription and tells mochi "Retain
// Handling 2" (send none); OnSubscribed restores the option in the session
// and queues the retained messages that truly match, honouring the
// subscription's Retain Handling [MQTT-3.3.1-10] [MQTT-3.3.1-11]. Shared
// subscriptions get none.

// retainedRequest is one subscription of a SUBSCRIBE being processed.
type retainedRequest struct {
	index   int                  // position in the SUBSCRIBE
	sub     packets.Subscription // as the client asked
	existed bool                 // the session had the subscription already
}

// OnSubscribe keeps mochi from sending retained messages itself.
func (h *deliveryHook) OnSubscribe(cl *mochi.Client, pk packets.Packet) packets.Packet {
	if cl.Net.Inline {
		return pk
	}
	var reqs []retainedRequest
	for i, sub := range pk.Filters {
		if mochi.IsSharedFilter(sub.Filter) {
			continue // no retained messages for shared subscriptions [MQTT-4.8.2]
		}
		_, existed := cl.State.Subscriptions.Get(sub.Filter)
		reqs = append(reqs, retainedRequest{index: i, sub: sub, existed: existed})
		pk.Filters[i].RetainHandling = 2
	}
	if len(reqs) > 0 {
		h.subscribing.Store(cl, reqs)
	}
	return pk
}

// OnSubscribed puts the client's Retain Handling back into its session and
// queues the retained messages of the subscriptions just made. It runs once
// the subscriptions are in mochi's index and before the SUBACK is written
// (the server may send matching messages before the SUBACK [MQTT-3.8.4]),
// so a message published after the client got its SUBACK comes live, after
// the retained ones.
func (h *deliveryHook) OnSubscribed(cl *mochi.Client, pk packets.Packet, codes []byte) {
	v, ok := h.subscribing.LoadAndDelete(cl)
	if !ok {
		return
	}
	for _, r := range v.([]retainedRequest) {
		if r.index >= len(codes) || codes[r.index] > 2 {
			continue // refused
		}
		if stored, ok := cl.State.Subscriptions.Get(r.sub.Filter); ok && stored.RetainHandling != r.sub.RetainHandling {
			stored.RetainHandling = r.sub.RetainHandling
			cl.State.Subscriptions.Add(r.sub.Filter, stored)
			h.server.Topics.Subscribe(cl.ID, stored)
			h.sel.routes.add(cl.ID, stored)
		}
		if r.sub.RetainHandling == 2 || (r.sub.RetainHandling == 1 && r.existed) {
			continue // [MQTT-3.3.1-10] [MQTT-3.3.1-11]
		}
		for _, m := range retainedMatching(h.server.Topics, r.sub.Filter) {
			var msg *packets.Packet
			h.deliver(cl.ID, r.sub, &m, &msg, true)
		}
	}
}

// retainedMatching returns the retained messages whose topics match
// filter: mochi's scan, plus the parent level of a trailing '#', less what
// does not match (topics starting with '$' for wildcard filters).
//
// A filter without wildcards matches its own topic only, which is looked
// up without the scan, as when no message is retained at all: the scan's
// first frame alone takes 4 KiB of stack, which on top of mochi's
// SUBSCRIBE processing grew every subscribing connection's stack to
// 32 KiB (docs/performance.md, connect storm).
func retainedMatching(topics *mochi.TopicsIndex, filter string) []packets.Packet {
	if topics.Retained.Len() == 0 {
		return nil
	}
	if !strings.ContainsAny(filter, "+#") {
		if pk, ok := topics.Retained.Get(filter); ok {
			return []packets.Packet{pk}
		}
		return nil
	}
	msgs := topics.Messages(filter)
	if parent, ok := strings.CutSuffix(filter, "/#"); ok && parent != "" {
		msgs = append(msgs, topics.Messages(parent)...) // [MQTT-4.7.1-2]
	}
	seen := make(map[string]bool, len(msgs))
	out := msgs[:0]
	for _, m := range msgs {
		if !seen[m.TopicName] && topic.Match(filter, m.TopicName) {
			seen[m.TopicName] = true
			out = append(out, m)
		}
	}
	return out
}

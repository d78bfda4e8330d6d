package mqtt

import (
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	paho3 "github.com/eclipse/paho.mqtt.golang"
	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/mqstream/mqstream/internal/testutil"
)

// Regression tests for mqstream's own delivery to ordinary subscribers
// (outbound.go, delivery.go, retained.go).

// readPublishes reads PUBLISH packets until none arrives for quiet,
// acknowledging QoS 1 ones if ack is set.
func readPublishes(c *rawClient, ack bool) []packets.Packet {
	var out []packets.Packet
	for {
		pk, err := c.read(quiet)
		if err != nil {
			return out
		}
		if pk.FixedHeader.Type != packets.Publish {
			continue
		}
		out = append(out, pk)
		if ack && pk.FixedHeader.Qos == 1 {
			c.ack(packets.Puback, pk.PacketID)
		}
	}
}

func payloads(pks []packets.Packet) []string {
	var out []string
	for _, pk := range pks {
		out = append(out, string(pk.Payload))
	}
	return out
}

func TestOutboundQoS2Subscriber(t *testing.T) {
	n := startBroker(t, nil, nil, nil)
	var got atomic.Int64
	sub := connectV3(t, "tcp://"+n.addr, "q2sub", func(o *paho3.ClientOptions) { o.SetCleanSession(false) })
	waitToken(t, sub.Subscribe("q2/#", 2, func(paho3.Client, paho3.Message) { got.Add(1) }), "subscribe")
	pub := connectV3(t, "tcp://"+n.addr, "q2pub", nil)
	for i := 0; i < 50; i++ {
		waitToken(t, pub.Publish("q2/x", 2, false, strconv.Itoa(i)), "publish")
	}
	testutil.Eventually(t, 5*time.Second, "50 deliveries", func() bool { return got.Load() == 50 })
	testutil.Eventually(t, 5*time.Second, "flows complete", func() bool { return atomic.LoadInt64(&n.broker.server.Info.Inflight) == 0 })
	if got.Load() != 50 {
		t.Fatalf("got %d deliveries", got.Load())
	}
}

func TestOutboundOfflineSessionQueueInOrder(t *testing.T) {
	n := startBroker(t, nil, nil, nil)
	sub := dialRaw(t, n.addr, 4)
	sub.connect("away", false, packets.Properties{})
	sub.subscribe(1, packets.Subscription{Filter: "away/t", Qos: 1})
	sub.send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Disconnect}})
	pub := dialRaw(t, n.addr, 4)
	pub.connect("away-pub", true, packets.Properties{})
	testutil.Eventually(t, 5*time.Second, "session away", func() bool {
		cl, ok := n.broker.server.Clients.Get("away")
		return ok && cl.Closed()
	})
	for i := 0; i < 20; i++ {
		pub.publish(uint16(i+1), 1, "away/t", strconv.Itoa(i), false)
		pub.publish(0, 0, "away/t", "qos0-not-kept", false)
		pub.expect(packets.Puback)
	}
	// The broker takes a client's packets in order: once this one is
	// acknowledged, the last QoS 0 publish has been handled too (and not
	// kept), before "away" comes back.
	pub.publish(21, 1, "fence/t", "fence", false)
	pub.expect(packets.Puback)
	back := dialRaw(t, n.addr, 4)
	back.connect("away", false, packets.Properties{})
	got := readPublishes(back, true)
	var want []string
	for i := 0; i < 20; i++ {
		want = append(want, strconv.Itoa(i))
	}
	if !slices.Equal(payloads(got), want) {
		t.Fatalf("got %v, want %v", payloads(got), want)
	}
	for _, pk := range got {
		if pk.FixedHeader.Dup {
			t.Fatalf("%q never sent before, but DUP is set", pk.Payload)
		}
	}
}

func TestOutboundQueueBoundDropsAndCounts(t *testing.T) {
	n := startBroker(t, nil, func(o *Options) { o.MaxInflight, o.MaxQueued = 2, 5 }, nil)
	sub := dialRaw(t, n.addr, 4)
	sub.connect("full", true, packets.Properties{})
	sub.subscribe(1, packets.Subscription{Filter: "full/t", Qos: 1})
	pub := dialRaw(t, n.addr, 4)
	pub.connect("full-pub", true, packets.Properties{})
	for i := 0; i < 10; i++ {
		pub.publish(uint16(i+1), 1, "full/t", strconv.Itoa(i), false)
		pub.expect(packets.Puback)
	}
	// 2 in flight, 5 queued, 3 dropped.
	if got := payloads(readPublishes(sub, false)); !slices.Equal(got, []string{"0", "1"}) {
		t.Fatalf("in flight: %v", got)
	}
	if got := atomic.LoadInt64(&n.broker.server.Info.InflightDropped); got != 3 {
		t.Fatalf("InflightDropped = %d, want 3", got)
	}
	sys := make(chan string, 16)
	obs := connectV3(t, "tcp://"+n.addr, "obs", nil)
	waitToken(t, obs.Subscribe("$SYS/broker/publish/messages/dropped", 0, func(_ paho3.Client, m paho3.Message) {
		sys <- string(m.Payload())
	}), "subscribe $SYS")
	deadline := time.After(5 * time.Second)
	for v := ""; v != "3"; {
		select {
		case v = <-sys:
		case <-deadline:
			t.Fatalf("$SYS/broker/publish/messages/dropped is %q, want 3", v)
		}
	}
	sub.ack(packets.Puback, 1)
	sub.ack(packets.Puback, 2)
	if got := payloads(readPublishes(sub, true)); !slices.Equal(got, []string{"2", "3", "4", "5", "6"}) {
		t.Fatalf("after acks: %v", got)
	}
}

func TestOutboundTopicAliasAndPacketSize(t *testing.T) {
	n := startBroker(t, nil, nil, nil)
	sub := dialRaw(t, n.addr, 5)
	sub.connect("alias", true, packets.Properties{TopicAliasMaximum: 5, MaximumPacketSize: 200})
	sub.subscribe(1, packets.Subscription{Filter: "alias/t", Qos: 1})
	pub := dialRaw(t, n.addr, 4)
	pub.connect("alias-pub", true, packets.Properties{})
	for i, payload := range []string{"one", string(make([]byte, 500)), "two"} {
		pub.publish(uint16(i+1), 1, "alias/t", payload, false)
		pub.expect(packets.Puback)
	}
	got := readPublishes(sub, true)
	if len(got) != 2 || string(got[0].Payload) != "one" || string(got[1].Payload) != "two" {
		t.Fatalf("got %v (the 500-byte message must be skipped [MQTT-3.1.2-25])", payloads(got))
	}
	if got[0].TopicName != "alias/t" || got[0].Properties.TopicAlias == 0 {
		t.Fatalf("first: topic %q alias %d", got[0].TopicName, got[0].Properties.TopicAlias)
	}
	if got[1].TopicName != "" || got[1].Properties.TopicAlias != got[0].Properties.TopicAlias {
		t.Fatalf("second: topic %q alias %d", got[1].TopicName, got[1].Properties.TopicAlias)
	}
}

func TestOutboundSubscriptionIdentifiersAndExpiry(t *testing.T) {
	n := startBroker(t, nil, nil, nil)
	sub := dialRaw(t, n.addr, 5)
	sub.connect("ids", true, packets.Properties{})
	sub.send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Subscribe, Qos: 1}, PacketID: 1,
		Filters:    packets.Subscriptions{{Filter: "sid/#", Qos: 1}},
		Properties: packets.Properties{SubscriptionIdentifier: []int{5}}})
	sub.suback()
	sub.send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Subscribe, Qos: 1}, PacketID: 2,
		Filters:    packets.Subscriptions{{Filter: "sid/t", Qos: 1}},
		Properties: packets.Properties{SubscriptionIdentifier: []int{3}}})
	sub.suback()
	pub := dialRaw(t, n.addr, 5)
	pub.connect("ids-pub", true, packets.Properties{})
	pub.send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: 1}, PacketID: 1,
		TopicName: "sid/t", Payload: []byte("x"), Properties: packets.Properties{MessageExpiryInterval: 100}})
	pub.expect(packets.Puback)
	got := readPublishes(sub, true)
	if len(got) != 1 {
		t.Fatalf("got %d copies, want 1", len(got))
	}
	if ids := got[0].Properties.SubscriptionIdentifier; !slices.Equal(ids, []int{3, 5}) {
		t.Fatalf("subscription identifiers %v, want [3 5]", ids)
	}
	if e := got[0].Properties.MessageExpiryInterval; e == 0 || e > 100 {
		t.Fatalf("message expiry interval %d", e)
	}
}

func TestOutboundCleanStartDiscardsQueue(t *testing.T) {
	n := startBroker(t, nil, nil, nil)
	sub := dialRaw(t, n.addr, 4)
	sub.connect("clean", false, packets.Properties{})
	sub.subscribe(1, packets.Subscription{Filter: "clean/t", Qos: 1})
	pub := dialRaw(t, n.addr, 4)
	pub.connect("clean-pub", true, packets.Properties{})
	pub.publish(1, 1, "clean/t", "old", false)
	pub.expect(packets.Puback)
	sub.expect(packets.Publish)
	sub.drop()
	back := dialRaw(t, n.addr, 4)
	if ack := back.connect("clean", true, packets.Properties{}); ack.SessionPresent {
		t.Fatal("session present after clean start")
	}
	back.subscribe(1, packets.Subscription{Filter: "clean/t", Qos: 1})
	pub.publish(2, 1, "clean/t", "new", false)
	pub.expect(packets.Puback)
	if got := payloads(readPublishes(back, true)); !slices.Equal(got, []string{"new"}) {
		t.Fatalf("got %v, want [new]", got)
	}
}

// TestRetainedOptions: Retain Handling 0/1/2 [MQTT-3.3.1-9] [MQTT-3.3.1-10]
// [MQTT-3.3.1-11], Retain As Published [MQTT-3.3.1-12], No Local and the
// subscription identifier on retained messages.
func TestRetainedOptions(t *testing.T) {
	n := startBroker(t, nil, nil, nil)
	pub := dialRaw(t, n.addr, 5)
	pub.connect("ret-pub", true, packets.Properties{})
	pub.publish(1, 1, "ret/t", "kept", true)
	pub.expect(packets.Puback)

	c := dialRaw(t, n.addr, 5)
	c.connect("ret", true, packets.Properties{})
	check := func(what string, sub packets.Subscription, subID int, want []string, retainFlag bool) {
		t.Helper()
		pk := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Subscribe, Qos: 1}, PacketID: 9, Filters: packets.Subscriptions{sub}}
		if subID > 0 {
			pk.Properties.SubscriptionIdentifier = []int{subID}
		}
		c.send(pk)
		c.suback()
		got := readPublishes(c, true)
		if !slices.Equal(payloads(got), want) {
			t.Fatalf("%s: got %v, want %v", what, payloads(got), want)
		}
		for _, p := range got {
			if p.FixedHeader.Retain != retainFlag {
				t.Fatalf("%s: RETAIN flag %v", what, p.FixedHeader.Retain)
			}
			if subID > 0 && !slices.Equal(p.Properties.SubscriptionIdentifier, []int{subID}) {
				t.Fatalf("%s: subscription identifiers %v", what, p.Properties.SubscriptionIdentifier)
			}
		}
	}
	check("handling 0", packets.Subscription{Filter: "ret/t", Qos: 1}, 7, []string{"kept"}, true)
	check("handling 0 again", packets.Subscription{Filter: "ret/t", Qos: 1}, 0, []string{"kept"}, true)
	check("handling 1, existing", packets.Subscription{Filter: "ret/t", Qos: 1, RetainHandling: 1}, 0, nil, true)
	check("handling 1, new", packets.Subscription{Filter: "ret/+", Qos: 1, RetainHandling: 1}, 0, []string{"kept"}, true)
	check("handling 2", packets.Subscription{Filter: "ret/#", Qos: 1, RetainHandling: 2}, 0, nil, true)
	if sub, _ := mustClient(t, n, "ret").State.Subscriptions.Get("ret/#"); sub.RetainHandling != 2 {
		t.Fatalf("session keeps retain handling %d, want 2", sub.RetainHandling)
	}

	// Live: the RETAIN flag is cleared unless Retain As Published.
	c2 := dialRaw(t, n.addr, 5)
	c2.connect("rap", true, packets.Properties{})
	c2.subscribe(1, packets.Subscription{Filter: "rap/a", Qos: 1, RetainAsPublished: true}, packets.Subscription{Filter: "rap/b", Qos: 1})
	pub.publish(2, 1, "rap/a", "a", true)
	pub.expect(packets.Puback)
	pub.publish(3, 1, "rap/b", "b", true)
	pub.expect(packets.Puback)
	got := readPublishes(c2, true)
	if len(got) != 2 || !got[0].FixedHeader.Retain || got[1].FixedHeader.Retain {
		t.Fatalf("live retain flags: %+v", got)
	}

	// No Local does not hold back the client's own retained message: it is
	// sent because of the SUBSCRIBE, not forwarded (issue 13, as mosquitto;
	// compatibility.md).
	pub.subscribe(4, packets.Subscription{Filter: "ret/t", Qos: 1, NoLocal: true})
	if got := readPublishes(pub, true); len(got) != 1 || string(got[0].Payload) != "kept" || !got[0].FixedHeader.Retain {
		t.Fatalf("own retained message on a No Local subscription: %v", payloads(got))
	}
}

func mustClient(t *testing.T, n *testNode, id string) *mochi.Client {
	t.Helper()
	cl, ok := n.broker.server.Clients.Get(id)
	if !ok {
		t.Fatalf("no client %s", id)
	}
	return cl
}

// TestNoSessionForAClientThatLeftForGood: a message selected for a client
// that has just left with a clean session creates no session (which nobody
// would ever end); for a persistent one it queues in an offline session.
func TestNoSessionForAClientThatLeftForGood(t *testing.T) {
	n := startBroker(t, nil, nil, nil)
	out := newOutbound(n.broker.server, 10, 10, slog.Default())
	for _, clean := range []bool{true, false} {
		cl := n.broker.server.NewClient(nil, "tcp", fmt.Sprintf("gone-%v", clean), false)
		cl.Properties.ProtocolVersion, cl.Properties.Clean = 4, clean
		cl.Stop(nil)
		s := out.session(cl)
		if clean != (s == nil) {
			t.Fatalf("clean=%v: session %v", clean, s)
		}
		if s != nil {
			s.enqueue(&delivery{pk: &packets.Packet{TopicName: "t"}, qos: 1})
			if s.mu.cl != nil || len(s.mu.queue) != 1 {
				t.Fatalf("offline session: attached %v, %d queued", s.mu.cl != nil, len(s.mu.queue))
			}
		}
	}
}

package mqtt

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/mqstream/mqstream/internal/testutil"
	"github.com/mqstream/mqstream/streams"
	"github.com/mqstream/mqstream/topic"
)

// stateBroker runs a broker that keeps its state in a store in dir, and
// restarts both (a clean shutdown; node/ tests SIGKILL a child process).
type stateBroker struct {
	t     *testing.T
	dir   string
	mod   func(*Options)
	store *streams.Store
	b     *Broker
	addr  string
}

func startStateBroker(t *testing.T, mod func(*Options)) *stateBroker {
	t.Helper()
	n := &stateBroker{t: t, dir: t.TempDir(), mod: mod}
	n.open()
	t.Cleanup(n.close)
	return n
}

func (n *stateBroker) open() {
	n.t.Helper()
	store, err := streams.Open(streams.Options{Dir: n.dir, AutoCreate: true, Logger: testLogger()})
	if err != nil {
		n.t.Fatal(err)
	}
	mapper, err := topic.NewMapper(nil, topic.DefaultRule{Kind: topic.DefaultFirstLevel})
	if err != nil {
		n.t.Fatal(err)
	}
	opts := Options{TCPAddr: "127.0.0.1:0", Mapper: mapper, Store: store, Logger: testLogger(), State: store.KV("mqtt")}
	if n.mod != nil {
		n.mod(&opts)
	}
	b, err := New(opts)
	if err != nil {
		n.t.Fatal(err)
	}
	if err := b.Start(); err != nil {
		n.t.Fatal(err)
	}
	n.store, n.b, n.addr = store, b, b.TCPAddr()
}

func (n *stateBroker) close() {
	if n.b != nil {
		n.b.Close()
		n.store.Close()
		n.b = nil
	}
}

func (n *stateBroker) restart() {
	n.t.Helper()
	n.close()
	n.open()
}

// publishAcked publishes QoS 1 messages payload-0..payload-(count-1) on
// topic from a fresh MQTT 3.1.1 client and waits for every PUBACK.
func publishAcked(t *testing.T, addr, topic, payload string, count int) {
	t.Helper()
	p := dialRaw(t, addr, 4)
	p.connect(fmt.Sprintf("pub-%s-%d", topic, time.Now().UnixNano()), true, packets.Properties{})
	for i := 0; i < count; i++ {
		p.publish(uint16(i%60000+1), 1, topic, fmt.Sprintf("%s-%d", payload, i), false)
	}
	for i := 0; i < count; i++ {
		p.expect(packets.Puback)
	}
	p.drop()
}

// expectPublishes reads count PUBLISH packets and checks their payloads
// are payload-0.. in order; with ack it acknowledges each.
func expectPublishes(t *testing.T, c *rawClient, payload string, count int, ack bool) []packets.Packet {
	t.Helper()
	out := make([]packets.Packet, 0, count)
	for i := 0; i < count; i++ {
		pk := c.expect(packets.Publish)
		if want := fmt.Sprintf("%s-%d", payload, i); string(pk.Payload) != want {
			t.Fatalf("message %d: got %q, want %q", i, pk.Payload, want)
		}
		if ack && pk.FixedHeader.Qos == 1 {
			c.ack(packets.Puback, pk.PacketID)
		}
		out = append(out, pk)
	}
	return out
}

// waitGone waits until the server has seen client id leave (so it read
// everything the client sent before it closed the connection).
func waitGone(t *testing.T, b *Broker, id string) {
	t.Helper()
	testutil.Eventually(t, 5*time.Second, id+" to leave", func() bool {
		cl, ok := b.server.Clients.Get(id)
		return !ok || cl.Closed()
	})
}

// expectSilence fails if a packet arrives within d.
func expectSilence(t *testing.T, c *rawClient, d time.Duration) {
	t.Helper()
	if pk, err := c.read(d); err == nil {
		t.Fatalf("unexpected packet type %d (%q)", pk.FixedHeader.Type, pk.Payload)
	}
}

func TestRetainedMessagesSurviveRestart(t *testing.T) {
	n := startStateBroker(t, nil)
	p := dialRaw(t, n.addr, 5)
	p.connect("retainer", true, packets.Properties{})
	p.send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: 1, Retain: true}, PacketID: 1,
		TopicName: "r/a", Payload: []byte("A"),
		Properties: packets.Properties{ContentType: "text/plain", User: []packets.UserProperty{{Key: "k", Val: "v"}}}})
	p.publish(2, 1, "r/b", "B", true)
	p.publish(3, 1, "r/b", "", true) // clears r/b
	p.send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: 0, Retain: true},
		TopicName: "r/q0", Payload: []byte("Q0")}) // through mochi's own path
	p.send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: 1, Retain: true}, PacketID: 4,
		TopicName: "r/short", Payload: []byte("S"), Properties: packets.Properties{MessageExpiryInterval: 1}})
	for i := 0; i < 4; i++ {
		p.expect(packets.Puback)
	}
	published := time.Now().Unix()
	p.drop()
	// r/short's one-second expiry must pass.
	testutil.Eventually(t, 3*time.Second, "r/short to expire", func() bool { return time.Now().Unix() > published+1 })
	n.restart()

	s := dialRaw(t, n.addr, 5)
	s.connect("reader", true, packets.Properties{})
	s.subscribe(1, packets.Subscription{Filter: "r/#", Qos: 1})
	got := map[string]packets.Packet{}
	for i := 0; i < 2; i++ {
		pk := s.expect(packets.Publish)
		got[pk.TopicName] = pk
		if pk.FixedHeader.Qos == 1 {
			s.ack(packets.Puback, pk.PacketID)
		}
	}
	expectSilence(t, s, 200*time.Millisecond)
	a, ok := got["r/a"]
	if !ok || string(a.Payload) != "A" || !a.FixedHeader.Retain || a.Properties.ContentType != "text/plain" ||
		len(a.Properties.User) != 1 || a.Properties.User[0].Val != "v" {
		t.Fatalf("r/a after restart: %+v", a)
	}
	if q0, ok := got["r/q0"]; !ok || string(q0.Payload) != "Q0" {
		t.Fatalf("r/q0 after restart: %+v", q0)
	}
}

func TestPersistentSessionKeepsQueueAcrossRestart(t *testing.T) {
	n := startStateBroker(t, nil)
	s := dialRaw(t, n.addr, 4)
	if ack := s.connect("keeper", false, packets.Properties{}); ack.SessionPresent {
		t.Fatal("a new session is not present")
	}
	s.subscribe(1, packets.Subscription{Filter: "q/#", Qos: 1})
	s.drop()
	waitGone(t, n.b, "keeper")
	publishAcked(t, n.addr, "q/x", "m", 200)

	// While the client is away its queue is on disk, not in memory.
	v, ok := n.b.delivery.out.sessions.Load("keeper")
	if !ok {
		t.Fatal("no session for the absent client")
	}
	sess := v.(*session)
	sess.mu.Lock()
	inMemory, onDisk := len(sess.mu.queue), sess.mu.offline.count
	sess.mu.Unlock()
	if inMemory != 0 || onDisk != 200 {
		t.Fatalf("absent session holds %d deliveries in memory and %d on disk, want 0 and 200", inMemory, onDisk)
	}

	n.restart()
	s = dialRaw(t, n.addr, 4)
	if ack := s.connect("keeper", false, packets.Properties{}); !ack.SessionPresent {
		t.Fatal("session not present after restart")
	}
	expectPublishes(t, s, "m", 200, true)
	// The subscription is still there.
	publishAcked(t, n.addr, "q/y", "live", 1)
	expectPublishes(t, s, "live", 1, true)
	s.drop()
	waitGone(t, n.b, "keeper")

	// Everything was acknowledged: nothing comes back after another restart.
	n.restart()
	s = dialRaw(t, n.addr, 4)
	if ack := s.connect("keeper", false, packets.Properties{}); !ack.SessionPresent {
		t.Fatal("session not present after the second restart")
	}
	expectSilence(t, s, 300*time.Millisecond)
}

func TestInflightDeliveriesResentAfterRestart(t *testing.T) {
	n := startStateBroker(t, nil)
	s := dialRaw(t, n.addr, 4)
	s.connect("slow", false, packets.Properties{})
	s.subscribe(1, packets.Subscription{Filter: "f/#", Qos: 2})
	publishAcked(t, n.addr, "f/1", "one", 3)
	first := expectPublishes(t, s, "one", 3, false) // never acknowledged

	// A QoS 2 delivery past PUBREC: only the PUBREL is resent.
	p := dialRaw(t, n.addr, 4)
	p.connect("pub2", true, packets.Properties{})
	p.publish(9, 2, "f/2", "two", false)
	p.expect(packets.Pubrec)
	p.ack(packets.Pubrel, 9)
	p.expect(packets.Pubcomp)
	two := s.expect(packets.Publish)
	if two.FixedHeader.Qos != 2 {
		t.Fatalf("QoS %d delivery, want 2", two.FixedHeader.Qos)
	}
	s.ack(packets.Pubrec, two.PacketID)
	if rel := s.expect(packets.Pubrel); rel.PacketID != two.PacketID {
		t.Fatalf("PUBREL for %d, want %d", rel.PacketID, two.PacketID)
	}
	s.drop()
	waitGone(t, n.b, "slow")
	n.restart()

	s = dialRaw(t, n.addr, 4)
	if ack := s.connect("slow", false, packets.Properties{}); !ack.SessionPresent {
		t.Fatal("session not present after restart")
	}
	// In their original order: the three publishes again, then the PUBREL.
	for i, want := range first {
		pk := s.expect(packets.Publish)
		if pk.PacketID != want.PacketID || !pk.FixedHeader.Dup || string(pk.Payload) != string(want.Payload) {
			t.Fatalf("resend %d: id %d dup %v %q, want id %d dup %q", i, pk.PacketID, pk.FixedHeader.Dup, pk.Payload, want.PacketID, want.Payload)
		}
		s.ack(packets.Puback, pk.PacketID)
	}
	if rel := s.expect(packets.Pubrel); rel.PacketID != two.PacketID {
		t.Fatalf("after restart PUBREL for %d, want %d", rel.PacketID, two.PacketID)
	}
	s.ack(packets.Pubcomp, two.PacketID)
	expectSilence(t, s, 200*time.Millisecond)
}

func TestSessionExpiryAcrossRestart(t *testing.T) {
	n := startStateBroker(t, nil)
	for id, expiry := range map[string]uint32{"brief": 1, "lasting": 3600} {
		c := dialRaw(t, n.addr, 5)
		c.connect(id, true, packets.Properties{SessionExpiryInterval: expiry, SessionExpiryIntervalFlag: true})
		c.subscribe(1, packets.Subscription{Filter: "e/" + id, Qos: 1})
		c.drop()
	}
	left := time.Now().Unix()
	n.restart()
	// mochi checks expiry once a second, with whole seconds: allow for it.
	testutil.Eventually(t, 5*time.Second, "brief's expiry to pass", func() bool { return time.Now().Unix() > left+3 })
	for id, present := range map[string]bool{"brief": false, "lasting": true} {
		c := dialRaw(t, n.addr, 5)
		ack := c.connect(id, false, packets.Properties{SessionExpiryInterval: 3600, SessionExpiryIntervalFlag: true})
		if ack.SessionPresent != present {
			t.Fatalf("%s: session present %v, want %v", id, ack.SessionPresent, present)
		}
	}
}

func TestCleanStartDiscardsKeptSession(t *testing.T) {
	n := startStateBroker(t, nil)
	c := dialRaw(t, n.addr, 4)
	c.connect("fickle", false, packets.Properties{})
	c.subscribe(1, packets.Subscription{Filter: "c/#", Qos: 1})
	c.drop()
	c = dialRaw(t, n.addr, 4)
	if ack := c.connect("fickle", true, packets.Properties{}); ack.SessionPresent {
		t.Fatal("a clean session is never present")
	}
	c.drop()
	n.restart()
	c = dialRaw(t, n.addr, 4)
	if ack := c.connect("fickle", false, packets.Properties{}); ack.SessionPresent {
		t.Fatal("the discarded session came back after restart")
	}
	publishAcked(t, n.addr, "c/x", "gone", 1)
	expectSilence(t, c, 200*time.Millisecond)
}

func TestUnsubscribeSurvivesRestart(t *testing.T) {
	n := startStateBroker(t, nil)
	c := dialRaw(t, n.addr, 4)
	c.connect("picky", false, packets.Properties{})
	c.subscribe(1, packets.Subscription{Filter: "a/#", Qos: 1}, packets.Subscription{Filter: "b/#", Qos: 1})
	c.send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Unsubscribe, Qos: 1}, PacketID: 2,
		Filters: packets.Subscriptions{{Filter: "b/#"}}})
	c.expect(packets.Unsuback)
	c.drop()
	waitGone(t, n.b, "picky")
	n.restart()
	c = dialRaw(t, n.addr, 4)
	c.connect("picky", false, packets.Properties{})
	publishAcked(t, n.addr, "b/1", "b", 1)
	publishAcked(t, n.addr, "a/1", "a", 1)
	expectPublishes(t, c, "a", 1, true)
	expectSilence(t, c, 200*time.Millisecond)
}

func TestOfflineQueueBounds(t *testing.T) {
	for _, tc := range []struct {
		name  string
		mod   func(*Options)
		kept  int
		topic string
	}{
		{"count", func(o *Options) { o.MaxQueued = 5 }, 5, "l/x"},
		// Each message is 3 (topic) + 3 or 4 (payload) bytes.
		{"bytes", func(o *Options) { o.MaxQueuedBytes = 20 }, 3, "l/x"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := startStateBroker(t, tc.mod)
			c := dialRaw(t, n.addr, 4)
			c.connect("bounded", false, packets.Properties{})
			c.subscribe(1, packets.Subscription{Filter: "l/#", Qos: 1})
			c.drop()
			waitGone(t, n.b, "bounded")
			publishAcked(t, n.addr, tc.topic, "m", 4)
			n.restart() // the bound holds for a queue restored from disk too
			publishAcked(t, n.addr, tc.topic, "n", 4)
			c = dialRaw(t, n.addr, 4)
			c.connect("bounded", false, packets.Properties{})
			var got []string
			for {
				pk, err := c.read(300 * time.Millisecond)
				if err != nil {
					break
				}
				got = append(got, string(pk.Payload))
				c.ack(packets.Puback, pk.PacketID)
			}
			if len(got) != tc.kept || got[0] != "m-0" {
				t.Fatalf("got %v, want the oldest %d (the newest are dropped)", got, tc.kept)
			}
			if d := n.b.delivery.out.dropped.Load(); d == 0 {
				t.Fatal("drops not counted")
			}
		})
	}
}

func TestDelayedWillSurvivesRestart(t *testing.T) {
	n := startStateBroker(t, nil)
	w := dialRaw(t, n.addr, 5)
	w.send(packets.Packet{
		FixedHeader: packets.FixedHeader{Type: packets.Connect},
		Connect: packets.ConnectParams{ProtocolName: []byte("MQTT"), ClientIdentifier: "mortal", Keepalive: 30, Clean: true,
			WillFlag: true, WillTopic: "will/mortal", WillPayload: []byte("gone"), WillQos: 1,
			WillProperties: packets.Properties{WillDelayInterval: 1}},
		Properties: packets.Properties{SessionExpiryInterval: 60, SessionExpiryIntervalFlag: true},
	})
	if ack := w.expect(packets.Connack); ack.ReasonCode != 0 {
		t.Fatalf("connect: 0x%02x", ack.ReasonCode)
	}
	w.drop() // no DISCONNECT: the will is due after its delay
	waitGone(t, n.b, "mortal")
	n.restart() // before the delay has passed

	s := dialRaw(t, n.addr, 5)
	s.connect("watcher", true, packets.Properties{})
	s.subscribe(1, packets.Subscription{Filter: "will/#", Qos: 1})
	pk, err := s.read(4 * time.Second)
	if err != nil || pk.FixedHeader.Type != packets.Publish || string(pk.Payload) != "gone" {
		t.Fatalf("no will after restart: %v %+v", err, pk)
	}
}

// TestWillOfSessionExpiredWhileDownIsPublished: a will held back by its
// delay is due no later than its session's expiry; when both passed while
// the node was down, the will is published at start (to a persistent
// subscriber's queue here) and the session is gone.
func TestWillOfSessionExpiredWhileDownIsPublished(t *testing.T) {
	n := startStateBroker(t, nil)
	s := dialRaw(t, n.addr, 4)
	s.connect("watcher", false, packets.Properties{})
	s.subscribe(1, packets.Subscription{Filter: "will/#", Qos: 1})
	s.drop()
	w := dialRaw(t, n.addr, 5)
	w.send(packets.Packet{
		FixedHeader: packets.FixedHeader{Type: packets.Connect},
		Connect: packets.ConnectParams{ProtocolName: []byte("MQTT"), ClientIdentifier: "brief", Keepalive: 30, Clean: true,
			WillFlag: true, WillTopic: "will/brief", WillPayload: []byte("gone"), WillQos: 1,
			WillProperties: packets.Properties{WillDelayInterval: 30}},
		Properties: packets.Properties{SessionExpiryInterval: 1, SessionExpiryIntervalFlag: true},
	})
	w.expect(packets.Connack)
	w.drop()
	waitGone(t, n.b, "brief")
	waitGone(t, n.b, "watcher")
	left := time.Now().Unix()
	n.close()
	testutil.Eventually(t, 5*time.Second, "brief's session to expire", func() bool { return time.Now().Unix() > left+1 })
	n.open()
	s = dialRaw(t, n.addr, 4)
	if ack := s.connect("watcher", false, packets.Properties{}); !ack.SessionPresent {
		t.Fatal("watcher's session not present")
	}
	pk := s.expect(packets.Publish)
	if pk.TopicName != "will/brief" || string(pk.Payload) != "gone" {
		t.Fatalf("got %s %q, want the will", pk.TopicName, pk.Payload)
	}
	if owner := n.b.state.owner("brief"); owner != nil {
		t.Fatal("the expired session is still kept")
	}
}

// flakyKV completes writes at once, failing them while fail is set.
type flakyKV struct{ fail bool }

func (f *flakyKV) Scan([]byte, func(k, v []byte) error) error { return nil }

func (f *flakyKV) Submit(_ []streams.KVWrite, _ bool, done func(error)) error {
	if f.fail {
		return errors.New("disk says no")
	}
	done(nil)
	return nil
}

// TestDurableReportsFailedStateWrites: a publisher is acknowledged only if
// the state writes it waits for succeeded.
func TestDurableReportsFailedStateWrites(t *testing.T) {
	kv := &flakyKV{}
	st := newStateStore(kv, testLogger())
	if err := st.durable(0); err != nil {
		t.Fatalf("nothing submitted: %v", err)
	}
	ok := st.submit([]streams.KVWrite{{Key: []byte("a"), Value: []byte("1")}}, false, nil)
	if err := st.durable(ok); err != nil {
		t.Fatalf("a write that succeeded: %v", err)
	}
	kv.fail = true
	bad := st.submit([]streams.KVWrite{{Key: []byte("b"), Value: []byte("2")}}, false, nil)
	if err := st.durable(bad); !errors.Is(err, errStateWrite) {
		t.Fatalf("a write that failed: %v", err)
	}
	kv.fail = false
	if err := st.durable(st.submit(nil, false, nil)); err != nil {
		t.Fatalf("a write after the store recovered: %v", err)
	}
	st.wait()
}

// TestTakeoversUnderLoadLoseNothing: a persistent subscriber whose
// connection is taken over again and again while messages flow (each new
// connection resumes the session before the old one is closed) receives
// every message.
func TestTakeoversUnderLoadLoseNothing(t *testing.T) {
	n := startStateBroker(t, nil)
	s := dialRaw(t, n.addr, 4)
	s.connect("mover", false, packets.Properties{})
	s.subscribe(1, packets.Subscription{Filter: "load/#", Qos: 1})
	const total = 600
	pub := connectV3(t, "tcp://"+n.addr, "loader", nil)
	done := make(chan error, 1)
	go func() {
		for i := 0; i < total; i++ {
			if tok := pub.Publish("load/x", 1, false, fmt.Sprintf("m-%d", i)); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
				done <- fmt.Errorf("publish %d: %v", i, tok.Error())
				return
			}
		}
		done <- nil
	}()
	seen := map[string]bool{}
	read := func(c *rawClient, max int) {
		for i := 0; i < max; i++ {
			pk, err := c.read(300 * time.Millisecond)
			if err != nil {
				return
			}
			if pk.FixedHeader.Type == packets.Publish {
				seen[string(pk.Payload)] = true
				c.ack(packets.Puback, pk.PacketID)
			}
		}
	}
	for round := 0; round < 8; round++ {
		read(s, 40)
		next := dialRaw(t, n.addr, 4)
		if ack := next.connect("mover", false, packets.Properties{}); !ack.SessionPresent {
			t.Fatalf("round %d: session not present", round)
		}
		s = next // the old connection is closed by the server (taken over)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for len(seen) < total && time.Now().Before(deadline) {
		read(s, total)
	}
	if len(seen) != total {
		t.Fatalf("received %d distinct messages of %d", len(seen), total)
	}
}

// TestRestoredSessionKeepsWhenItsClientLeft: a session restored after a
// restart says its client left when it did, not at the restart.
func TestRestoredSessionKeepsWhenItsClientLeft(t *testing.T) {
	n := startStateBroker(t, nil)
	c := dialRaw(t, n.addr, 4)
	c.connect("away", false, packets.Properties{})
	c.subscribe(1, packets.Subscription{Filter: "a/b", Qos: 1})
	c.drop()
	waitGone(t, n.b, "away")
	var left time.Time
	for _, s := range n.b.Sessions() {
		if s.ClientID == "away" {
			left = s.DisconnectedAt
		}
	}
	if left.IsZero() {
		t.Fatal("no disconnection time before the restart")
	}
	testutil.Eventually(t, 5*time.Second, "the clock past the next second", func() bool { return time.Now().Unix() > left.Unix()+1 })
	n.restart()
	for _, s := range n.b.Sessions() {
		if s.ClientID == "away" {
			if !s.DisconnectedAt.Equal(left) {
				t.Fatalf("restored: disconnected at %v, want %v (before the restart)", s.DisconnectedAt, left)
			}
			return
		}
	}
	t.Fatal("the session was not restored")
}

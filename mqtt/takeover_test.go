package mqtt

import (
	"bytes"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/mqstream/mqstream/internal/testutil"
	"github.com/mqstream/mqstream/streams"
)

// TestStalledSubscriberDoesNotBlockTakeover: a subscriber that stops
// reading fills its socket, so the server's write to it blocks. Another
// connection with the same client id must still take the session over
// (CONNACK, the old connection closed), and other clients must be served
// meanwhile.
func TestStalledSubscriberDoesNotBlockTakeover(t *testing.T) {
	n := startBroker(t, nil, nil, nil)
	stalled := dialRaw(t, n.addr, 4)
	if tc, ok := stalled.conn.(*net.TCPConn); ok {
		_ = tc.SetReadBuffer(4096)
	}
	stalled.connect("stalled", true, packets.Properties{})
	stalled.subscribe(1, packets.Subscription{Filter: "stall/t", Qos: 0})

	// Far more than the socket buffers hold; the client reads none of it.
	pub := dialRaw(t, n.addr, 4)
	pub.connect("stall-pub", true, packets.Properties{})
	payload := strings.Repeat("x", 64<<10)
	for i := 0; i < 300; i++ {
		pub.publish(uint16(i+1), 1, "stall/t", payload, false)
		pub.expect(packets.Puback)
	}
	// The server's writer is now stuck in a write to "stalled".
	other := dialRaw(t, n.addr, 4)
	other.connect("bystander", true, packets.Properties{}) // fails the test unless CONNACK comes within the read timeout

	again := dialRaw(t, n.addr, 4)
	again.connect("stalled", true, packets.Properties{}) // the takeover: CONNACK within the read timeout
	again.subscribe(2, packets.Subscription{Filter: "stall/after", Qos: 1})
	pub.publish(1000, 1, "stall/after", "hello", false)
	pub.expect(packets.Puback)
	if pk := again.expect(packets.Publish); string(pk.Payload) != "hello" {
		t.Fatalf("new connection got %q", pk.Payload)
	}
}

// TestTakeoverOrdersDepartureAndEstablishment: a connection whose session
// ends with it leaves only once a connection taking over its client id is
// in mochi's client list (or gone), and a connection established while
// another with its id leaves waits until that one is gone; otherwise the
// leaving connection's cleanup deletes the new connection from the list.
func TestTakeoverOrdersDepartureAndEstablishment(t *testing.T) {
	server := mochi.New(nil)
	h := newTakeoverHook()
	client := func(id string) (*mochi.Client, func()) {
		conn, peer := net.Pipe()
		t.Cleanup(func() { conn.Close(); peer.Close() })
		closed := h.open(conn)
		return server.NewClient(conn, "tcp", id, false), closed
	}
	returned := func(f func()) chan struct{} {
		done := make(chan struct{})
		go func() { f(); close(done) }()
		return done
	}
	waitFor := func(done chan struct{}, what string) {
		t.Helper()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Fatalf("%s did not return", what)
		}
	}
	notYet := func(done chan struct{}, what string) {
		t.Helper()
		select {
		case <-done:
			t.Fatalf("%s returned too early", what)
		default:
		}
	}

	// Taken over: the old connection's departure waits for the new one.
	old, oldClosed := client("c")
	cl, _ := client("c")
	h.OnSessionEstablish(cl, packets.Packet{})
	left := returned(func() { h.OnDisconnect(old, nil, true) })
	notYet(left, "OnDisconnect of the connection taken over")
	h.settled(cl)
	waitFor(left, "OnDisconnect after the new connection was established")
	oldClosed()

	// Leaving on its own: a new connection waits until it is gone.
	old, oldClosed = client("d")
	h.OnDisconnect(old, nil, true)
	cl, _ = client("d")
	est := returned(func() { h.OnSessionEstablish(cl, packets.Packet{}) })
	notYet(est, "OnSessionEstablish while a connection with its id leaves")
	oldClosed()
	waitFor(est, "OnSessionEstablish after the leaving connection was gone")

	// A new connection that never got established (its CONNACK failed)
	// holds up no departure once it is gone.
	old, _ = client("e")
	cl, clClosed := client("e")
	h.OnSessionEstablish(cl, packets.Packet{})
	left = returned(func() { h.OnDisconnect(old, nil, true) })
	notYet(left, "OnDisconnect while a connection with its id is being established")
	clClosed()
	waitFor(left, "OnDisconnect after the new connection was gone")

	// Two establishments of one id: the second waits until the first
	// is settled (every hook's OnSessionEstablished ran) or gone.
	first, _ := client("g")
	h.OnSessionEstablish(first, packets.Packet{})
	second, secondClosed := client("g")
	est = returned(func() { h.OnSessionEstablish(second, packets.Packet{}) })
	notYet(est, "OnSessionEstablish while another connection with its id is being established")
	h.settled(first)
	waitFor(est, "OnSessionEstablish after the other connection was established")
	third, _ := client("g")
	est = returned(func() { h.OnSessionEstablish(third, packets.Packet{}) })
	notYet(est, "OnSessionEstablish while another connection with its id is being established")
	secondClosed() // its CONNACK failed
	waitFor(est, "OnSessionEstablish after the other connection was gone")
	if w := h.waiting("g"); w != 0 {
		t.Fatalf("%d connections still waiting", w)
	}

	// Persistent sessions: mochi deletes nothing, nothing waits.
	old, _ = client("f")
	cl, _ = client("f")
	h.OnSessionEstablish(cl, packets.Packet{})
	h.OnDisconnect(old, nil, false)
}

// gate holds something up, once, until opened.
type gate struct {
	held     chan struct{} // closed when something is held
	release  chan struct{}
	heldOnce sync.Once
	relOnce  sync.Once
}

func newGate() *gate { return &gate{held: make(chan struct{}), release: make(chan struct{})} }

// hold reports that something is held and returns the channel that is
// closed when it may go on.
func (g *gate) hold() <-chan struct{} {
	g.heldOnce.Do(func() { close(g.held) })
	return g.release
}

func (g *gate) isHeld() bool {
	select {
	case <-g.held:
		return true
	default:
		return false
	}
}

func (g *gate) open() { g.relOnce.Do(func() { close(g.release) }) }

// gatedRemote is the Remote of a node alone in its cluster whose Broadcast
// of a message containing hold (a connection's will, sent from the
// cluster will hook's OnSessionEstablished, before the delivery hook's)
// waits for its gate.
type gatedRemote struct {
	aloneRemote
	hold []byte
	g    *gate
}

func (r *gatedRemote) Broadcast(msg []byte) {
	if bytes.Contains(msg, r.hold) {
		<-r.g.hold()
	}
}

// gatedKV holds up the completion of the first write of key made once
// armed until its gate opens.
type gatedKV struct {
	StateKV
	key   []byte
	armed atomic.Bool
	g     *gate
}

func (kv *gatedKV) Submit(writes []streams.KVWrite, noSync bool, done func(error)) error {
	for _, w := range writes {
		if bytes.Equal(w.Key, kv.key) && kv.armed.CompareAndSwap(true, false) {
			release := kv.g.hold()
			return kv.StateKV.Submit(writes, noSync, func(err error) {
				go func() { <-release; done(err) }()
			})
		}
	}
	return kv.StateKV.Submit(writes, noSync, done)
}

// TestTakeoverWaitsForTheConnectionItTakesOver: mochi sends a CONNACK
// before the OnSessionEstablished hooks run, so a client can connect
// again while its previous connection is still being established. The new
// connection must take the session over only once the previous one is
// established. It used to go ahead: the previous connection's
// OnSessionEstablished, running late, attached the session to itself, and
// when the new connection took over, mochi cleared the old connection's
// in-flight map, which counted as acknowledging the messages in flight
// there: they were lost.
func TestTakeoverWaitsForTheConnectionItTakesOver(t *testing.T) {
	established, saved := newGate(), newGate()
	kv := &gatedKV{key: clientKey(keySession, "mover", 0), g: saved}
	n := startStateBroker(t, func(o *Options) {
		o.Remote, o.NodeID = &gatedRemote{hold: []byte("gone/mover-1"), g: established}, "n1"
		kv.StateKV = o.State
		o.State = kv
	})
	t.Cleanup(established.open)
	t.Cleanup(saved.open)
	s := dialRaw(t, n.addr, 4)
	s.connect("mover", false, packets.Properties{})
	s.subscribe(1, packets.Subscription{Filter: "load/#", Qos: 1})
	pub := dialRaw(t, n.addr, 4)
	pub.connect("loader", true, packets.Properties{})
	want := map[string]bool{}
	publish := func(from, to int) {
		for i := from; i < to; i++ {
			p := fmt.Sprintf("m-%d", i)
			want[p] = true
			pub.publish(uint16(i+1), 1, "load/x", p, false)
			pub.expect(packets.Puback)
		}
	}
	publish(0, 3)
	for range 3 {
		s.expect(packets.Publish) // in flight, never acknowledged
	}

	// The first takeover's establishment stops after its CONNACK, in the
	// cluster will hook (before the delivery hook attaches the session).
	first := dialRaw(t, n.addr, 4)
	first.send(packets.Packet{
		FixedHeader: packets.FixedHeader{Type: packets.Connect},
		Connect: packets.ConnectParams{ProtocolName: []byte("MQTT"), ClientIdentifier: "mover", Keepalive: 30,
			WillFlag: true, WillTopic: "gone/mover-1", WillPayload: []byte("x")},
	})
	if ack := first.expect(packets.Connack); !ack.SessionPresent {
		t.Fatal("first takeover: session not present")
	}
	testutil.Eventually(t, 5*time.Second, "the first takeover's will broadcast", established.isHeld)

	// The second takeover, meanwhile, waits for the first. (It used to go
	// on at once, up to saving the session, which is held here: the first
	// then attached the session to itself before being taken over.)
	kv.armed.Store(true)
	second := dialRaw(t, n.addr, 4)
	second.send(packets.Packet{
		FixedHeader: packets.FixedHeader{Type: packets.Connect},
		Connect:     packets.ConnectParams{ProtocolName: []byte("MQTT"), ClientIdentifier: "mover", Keepalive: 30},
	})
	waited := false
	testutil.Eventually(t, 5*time.Second, "the second takeover to wait", func() bool {
		waited = n.b.takeover.waiting("mover") > 0
		return waited || saved.isHeld()
	})
	established.open()
	if !waited {
		// Without the wait, the first takeover attaches the session to
		// itself now and resends what was in flight to it.
		for range 3 {
			first.expect(packets.Publish)
		}
	}
	saved.open()
	if ack := second.expect(packets.Connack); !ack.SessionPresent {
		t.Fatal("second takeover: session not present")
	}
	publish(3, 6)
	got := map[string]bool{}
	var odd []string
	for len(got) < len(want) {
		pk, err := second.read(5 * time.Second)
		if err != nil {
			break
		}
		if pk.FixedHeader.Type != packets.Publish {
			continue
		}
		second.ack(packets.Puback, pk.PacketID)
		if want[string(pk.Payload)] {
			got[string(pk.Payload)] = true
		} else {
			odd = append(odd, fmt.Sprintf("%q on %q", pk.Payload, pk.TopicName))
		}
	}
	var missing []string
	for p := range want {
		if !got[p] {
			missing = append(missing, p)
		}
	}
	if len(missing) > 0 || len(odd) > 0 {
		slices.Sort(missing)
		t.Fatalf("missing %v; unexpected %v", missing, odd)
	}
}

// TestTakeoverKeepsMessagesDeliveredMeanwhile: a message delivered while
// a connection takes over a session that had no queue yet is kept for the
// new connection. It used to start a queue on the connection being taken
// over, whose in-flight map mochi then cleared: the message was lost.
func TestTakeoverKeepsMessagesDeliveredMeanwhile(t *testing.T) {
	saved := newGate()
	kv := &gatedKV{key: clientKey(keySession, "quiet", 0), g: saved}
	n := startStateBroker(t, func(o *Options) {
		kv.StateKV = o.State
		o.State = kv
	})
	t.Cleanup(saved.open)
	s := dialRaw(t, n.addr, 4)
	s.connect("quiet", false, packets.Properties{})
	s.subscribe(1, packets.Subscription{Filter: "quiet/#", Qos: 1})

	// The takeover stops while saving the session, before mochi moves it.
	kv.armed.Store(true)
	next := dialRaw(t, n.addr, 4)
	next.send(packets.Packet{
		FixedHeader: packets.FixedHeader{Type: packets.Connect},
		Connect:     packets.ConnectParams{ProtocolName: []byte("MQTT"), ClientIdentifier: "quiet", Keepalive: 30},
	})
	testutil.Eventually(t, 5*time.Second, "the takeover to save the session", saved.isHeld)
	pub := dialRaw(t, n.addr, 4)
	pub.connect("quiet-pub", true, packets.Properties{})
	pub.publish(1, 1, "quiet/x", "meanwhile", false)
	pub.expect(packets.Puback)
	saved.open()
	if ack := next.expect(packets.Connack); !ack.SessionPresent {
		t.Fatal("session not present")
	}
	pk := next.expect(packets.Publish)
	if string(pk.Payload) != "meanwhile" || pk.TopicName != "quiet/x" {
		t.Fatalf("got %q on %q, want the message published during the takeover", pk.Payload, pk.TopicName)
	}
}

// TestDisconnectOnlyForMQTT5: a connection taken over, or closed by a
// stopping server, gets a DISCONNECT with the reason in MQTT 5; in MQTT
// 3.1.1, where only clients send DISCONNECT, it is closed without one.
func TestDisconnectOnlyForMQTT5(t *testing.T) {
	n := startBroker(t, nil, nil, nil)
	for _, version := range []byte{4, 5} {
		first := dialRaw(t, n.addr, version)
		first.connect(fmt.Sprintf("taken-%d", version), true, packets.Properties{})
		second := dialRaw(t, n.addr, version)
		second.connect(fmt.Sprintf("taken-%d", version), true, packets.Properties{})
		pk, err := first.read(5 * time.Second)
		switch {
		case version == 5 && (err != nil || pk.FixedHeader.Type != packets.Disconnect || pk.ReasonCode != packets.ErrSessionTakenOver.Code):
			t.Fatalf("MQTT 5 taken over: %+v, %v; want DISCONNECT 0x8E", pk.FixedHeader, err)
		case version == 4 && err == nil:
			t.Fatalf("MQTT 3.1.1 taken over: got packet type %d, want the connection closed", pk.FixedHeader.Type)
		}
	}
	v3, v5 := dialRaw(t, n.addr, 4), dialRaw(t, n.addr, 5)
	v3.connect("stopping-4", true, packets.Properties{})
	v5.connect("stopping-5", true, packets.Properties{})
	if err := n.broker.Close(); err != nil {
		t.Fatal(err)
	}
	if pk, err := v5.read(5 * time.Second); err != nil || pk.FixedHeader.Type != packets.Disconnect || pk.ReasonCode != packets.ErrServerShuttingDown.Code {
		t.Fatalf("MQTT 5 at shutdown: %+v, %v; want DISCONNECT 0x8B", pk.FixedHeader, err)
	}
	if pk, err := v3.read(5 * time.Second); err == nil {
		t.Fatalf("MQTT 3.1.1 at shutdown: got packet type %d, want the connection closed", pk.FixedHeader.Type)
	}
}

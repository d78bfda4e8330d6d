package mqtt

import (
	"net"
	"strings"
	"testing"
	"time"

	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
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
	h.OnSessionEstablished(cl, packets.Packet{})
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

	// Persistent sessions: mochi deletes nothing, nothing waits.
	old, _ = client("f")
	cl, _ = client("f")
	h.OnSessionEstablish(cl, packets.Packet{})
	h.OnDisconnect(old, nil, false)
}

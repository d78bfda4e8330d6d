package mqtt

import (
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/mqstream/mqstream/streams"
)

// gatedAppender refuses the appends to the streams in refuse, holds the
// first append to hold until release is closed (telling held when it
// arrives), and passes the others to inner.
type gatedAppender struct {
	inner   Appender
	refuse  map[string]bool
	hold    string
	held    chan struct{}
	release chan struct{}
	once    sync.Once
	opened  sync.Once
}

// open lets the held append go on (once).
func (a *gatedAppender) open() { a.opened.Do(func() { close(a.release) }) }

// startGated starts a broker whose appends go through gate, which lets
// what it holds go before the broker stops.
func startGated(t *testing.T, gate *gatedAppender) *testNode {
	n := startBroker(t, nil, func(o *Options) {
		gate.inner = o.Store
		o.Store = gate
	}, nil)
	if gate.release != nil {
		t.Cleanup(gate.open) // before the broker's Close, which waits for it
	}
	return n
}

func (a *gatedAppender) Submit(req streams.AppendRequest) error {
	if a.refuse[req.Stream] {
		go req.Done(0, fmt.Errorf("%w: the shard has no leader", streams.ErrUnavailable))
		return nil
	}
	first := false
	if req.Stream == a.hold {
		a.once.Do(func() { first = true })
	}
	if !first {
		return a.inner.Submit(req)
	}
	close(a.held)
	go func() {
		<-a.release
		if err := a.inner.Submit(req); err != nil {
			req.Done(0, err)
		}
	}()
	return nil
}

// connectPersistent31 opens an MQTT 3.1.1 connection with clean session
// 0 and reads its CONNACK.
func connectPersistent31(t *testing.T, addr, id string) net.Conn {
	t.Helper()
	return connect31(t, addr, id, 0x00)
}

// connect31 opens an MQTT 3.1.1 connection with the connect flags given
// and reads its CONNACK.
func connect31(t *testing.T, addr, id string, flags byte) net.Conn {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	body := append(mqttString("MQTT"), 4, flags, 0, 30)
	body = append(body, mqttString(id)...)
	if _, err := conn.Write(append([]byte{0x10, byte(len(body))}, body...)); err != nil {
		t.Fatal(err)
	}
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	ack := make([]byte, 4)
	if _, err := readFull(conn, ack); err != nil || ack[0] != 0x20 || ack[3] != 0 {
		t.Fatalf("CONNACK % x: %v", ack, err)
	}
	return conn
}

// expectPubrec reads a PUBREC for id from conn.
func expectPubrec(t *testing.T, conn net.Conn, id uint16) {
	t.Helper()
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	b := make([]byte, 4)
	if _, err := readFull(conn, b); err != nil || b[0] != 0x50 || uint16(b[2])<<8|uint16(b[3]) != id {
		t.Fatalf("want PUBREC %d, got % x: %v", id, b, err)
	}
}

// TestQoS2StoredBehindARefusalIsNotStoredAgain: an MQTT 3.1.1 client
// pipelines a publish that is refused and a QoS 2 publish that is
// stored; it is disconnected (3.1.1 has no negative ack) before the
// PUBREC. Resent with DUP on its next connection, the QoS 2 publish is
// answered with PUBREC and not stored a second time [MQTT-4.3.3].
func TestQoS2StoredBehindARefusalIsNotStoredAgain(t *testing.T) {
	n := startGated(t, &gatedAppender{refuse: map[string]bool{"bad": true}})
	conn := connectPersistent31(t, n.addr, "pipeliner")
	if _, err := conn.Write(append(rawPublish(1, 1, "bad/x", "refused", false), rawPublish(2, 2, "good/x", "once", false)...)); err != nil {
		t.Fatal(err)
	}
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	buf := make([]byte, 64)
	for { // the broker disconnects it
		if _, err := conn.Read(buf); err != nil {
			break
		}
	}
	conn.Close()
	conn = connectPersistent31(t, n.addr, "pipeliner")
	defer conn.Close()
	if _, err := conn.Write(rawPublish(2, 2, "good/x", "once", true)); err != nil {
		t.Fatal(err)
	}
	expectPubrec(t, conn, 2)
	if got := recordCount(n.store, "good"); got != 1 {
		t.Fatalf("the QoS 2 publish is stored %d times", got)
	}
}

// TestQoS2ResentWhileItsFirstCopyIsStoredWaitsForIt: a QoS 2 publish is
// being stored (its shard elects a leader) when the connection drops;
// the client resumes its session and resends it with DUP. The copy waits
// for the first one's outcome and is answered with PUBREC once it is
// stored, not stored a second time.
func TestQoS2ResentWhileItsFirstCopyIsStoredWaitsForIt(t *testing.T) {
	gate := &gatedAppender{hold: "good", held: make(chan struct{}), release: make(chan struct{})}
	n := startGated(t, gate)
	conn := connectPersistent31(t, n.addr, "mover")
	if _, err := conn.Write(rawPublish(2, 5, "good/x", "once", false)); err != nil {
		t.Fatal(err)
	}
	<-gate.held
	conn.Close()
	conn = connectPersistent31(t, n.addr, "mover")
	defer conn.Close()
	if _, err := conn.Write(rawPublish(2, 5, "good/x", "once", true)); err != nil {
		t.Fatal(err)
	}
	gate.open()
	expectPubrec(t, conn, 5)
	n.broker.ingest.pending.wait() // the first copy's append too
	if got := recordCount(n.store, "good"); got != 1 {
		t.Fatalf("the QoS 2 publish is stored %d times", got)
	}
}

// TestQoS2OfANewSessionReusingAnIDIsStored: a clean-session client's QoS
// 2 publish is being stored when its connection drops; on its next
// (clean) connection it sends another message under the same packet id,
// not a DUP. That one is a new message: stored and delivered, not taken
// for a copy of the first.
func TestQoS2OfANewSessionReusingAnIDIsStored(t *testing.T) {
	gate := &gatedAppender{hold: "good", held: make(chan struct{}), release: make(chan struct{})}
	n := startGated(t, gate)
	conn := connect31(t, n.addr, "reuser", 0x02)
	if _, err := conn.Write(rawPublish(2, 1, "good/x", "old", false)); err != nil {
		t.Fatal(err)
	}
	<-gate.held
	conn.Close()
	conn = connect31(t, n.addr, "reuser", 0x02)
	defer conn.Close()
	if _, err := conn.Write(rawPublish(2, 1, "good/x", "new", false)); err != nil {
		t.Fatal(err)
	}
	expectPubrec(t, conn, 1) // stored: not waiting for the first session's copy
	gate.open()
	n.broker.ingest.pending.wait()
	recs, err := n.store.Read("good", 0, streams.ReadOptions{MaxRecords: 10})
	if err != nil || len(recs) != 2 {
		t.Fatalf("%d records of good (%v), want the old and the new message", len(recs), err)
	}
}

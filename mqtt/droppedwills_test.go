package mqtt

import (
	"fmt"
	"testing"
	"time"

	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/mqstream/mqstream/internal/testutil"
	"github.com/mqstream/mqstream/streams"
	"github.com/mqstream/mqstream/topic"
)

// connectWithWill connects an MQTT 5 client whose will is payload "gone"
// on willTopic (QoS 1), after delay seconds.
func connectWithWill(t *testing.T, c *rawClient, id, willTopic string, delay uint32) {
	t.Helper()
	c.send(packets.Packet{
		FixedHeader: packets.FixedHeader{Type: packets.Connect},
		Connect: packets.ConnectParams{
			ProtocolName: []byte("MQTT"), ClientIdentifier: id, Keepalive: 30, Clean: true,
			WillFlag: true, WillTopic: willTopic, WillPayload: []byte("gone"), WillQos: 1,
			WillProperties: packets.Properties{WillDelayInterval: delay},
		},
		Properties: packets.Properties{SessionExpiryInterval: 60, SessionExpiryIntervalFlag: true},
	})
	if ack := c.expect(packets.Connack); ack.ReasonCode != 0 {
		t.Fatalf("connect %s: 0x%02x", id, ack.ReasonCode)
	}
}

// overflowReceiveMaximum makes the broker (Receive Maximum 3) disconnect
// c with 0x93 from inside the processing of a publish: mochi's read loop
// then ends without an error.
func overflowReceiveMaximum(t *testing.T, c *rawClient) {
	t.Helper()
	for id := uint16(1); id <= 3; id++ {
		c.publish(id, 2, "rm/t", "m", false)
		c.expect(packets.Pubrec)
	}
	c.publish(4, 2, "rm/t", "one too many", false)
	if pk := c.expect(packets.Disconnect); pk.ReasonCode != packets.ErrReceiveMaximum.Code {
		t.Fatalf("DISCONNECT reason 0x%02x, want 0x93", pk.ReasonCode)
	}
}

// startWillWatch starts a broker with Receive Maximum 3 and a client
// subscribed to dw/+.
func startWillWatch(t *testing.T) (*testNode, *rawClient) {
	t.Helper()
	n := startBroker(t, nil, func(o *Options) { o.ReceiveMaximum = 3 }, nil)
	watcher := dialRaw(t, n.addr, 5)
	watcher.connect("dw-watcher", true, packets.Properties{})
	watcher.subscribe(1, packets.Subscription{Filter: "dw/+", Qos: 1})
	return n, watcher
}

// TestWillOfAClientDisconnectedByTheServerIsPublished: a client the
// server disconnects while one of its packets is processed (0x93, one
// publish beyond Receive Maximum) did not send DISCONNECT, so its will is
// published [MQTT-3.1.2-8]. mochi deleted it: its read loop found the
// client closed and ended as after a DISCONNECT.
func TestWillOfAClientDisconnectedByTheServerIsPublished(t *testing.T) {
	n, watcher := startWillWatch(t)

	c := dialRaw(t, n.addr, 5)
	connectWithWill(t, c, "dw-rude", "dw/rude", 0)
	overflowReceiveMaximum(t, c)
	if pk := nextPublish(t, watcher, "the watcher"); string(pk.Payload) != "gone" || pk.TopicName != "dw/rude" {
		t.Fatalf("watcher got %q on %s, want the will", pk.Payload, pk.TopicName)
	}
	testutil.Eventually(t, 5*time.Second, "the will stored", func() bool {
		recs, err := n.store.Read("dw", 0, streams.ReadOptions{MaxRecords: 10})
		return err == nil && len(recs) == 1 && string(recs[0].Payload) == "gone" && recs[0].ClientID == "dw-rude"
	})
}

// TestDelayedWillOfAClientDisconnectedByTheServer: as above with a Will
// Delay Interval: the will comes after its delay; a client that connects
// again within the delay has none published [MQTT-3.1.3-9].
func TestDelayedWillOfAClientDisconnectedByTheServer(t *testing.T) {
	n, watcher := startWillWatch(t)

	back := dialRaw(t, n.addr, 5)
	connectWithWill(t, back, "dw-back", "dw/back", 2)
	overflowReceiveMaximum(t, back)
	back = dialRaw(t, n.addr, 5)
	back.connect("dw-back", false, packets.Properties{}) // within the delay: no will

	late := dialRaw(t, n.addr, 5)
	connectWithWill(t, late, "dw-late", "dw/late", 1)
	overflowReceiveMaximum(t, late)
	start := time.Now()
	pk := nextPublish(t, watcher, "the watcher")
	if string(pk.Payload) != "gone" || pk.TopicName != "dw/late" {
		t.Fatalf("watcher got %q on %s, want dw-late's will", pk.Payload, pk.TopicName)
	}
	if waited := time.Since(start); waited < 500*time.Millisecond {
		t.Fatalf("the will came after %v, before its delay of 1s", waited)
	}
	// dw-back's will (due 2s after it left) never comes.
	if pk, err := watcher.read(2500 * time.Millisecond); err == nil {
		t.Fatalf("watcher got %q on %s, want nothing more", pk.Payload, pk.TopicName)
	}
}

// holdEstablishment blocks OnSessionEstablished of one client until
// release is closed.
type holdEstablishment struct {
	mochi.HookBase
	client  string
	held    chan *mochi.Client
	release chan struct{}
}

func (h *holdEstablishment) ID() string { return "test-hold-establishment" }

func (h *holdEstablishment) Provides(b byte) bool { return b == mochi.OnSessionEstablished }

func (h *holdEstablishment) OnSessionEstablished(cl *mochi.Client, _ packets.Packet) {
	if cl.ID == h.client {
		h.held <- cl
		<-h.release
	}
}

// TestWillOfAClientConnectingWhileTheBrokerStops: a client whose session
// is still being established (after its CONNACK, before mochi reads from
// it) when the broker stops gets its will published and stored. mochi
// deleted it (TestWillsOfAStoppingNodeAreStoredAndDelivered lost 1 to 3 of
// 8 wills under load).
func TestWillOfAClientConnectingWhileTheBrokerStops(t *testing.T) {
	store, err := streams.Open(streams.Options{Dir: t.TempDir(), AutoCreate: true, Logger: testLogger()})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	mapper, err := topic.NewMapper(nil, topic.DefaultRule{Kind: topic.DefaultFirstLevel})
	if err != nil {
		t.Fatal(err)
	}
	b, err := New(Options{TCPAddr: "127.0.0.1:0", Mapper: mapper, Store: store, Logger: testLogger(), MaxPayload: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	hold := &holdEstablishment{client: "dw-early", held: make(chan *mochi.Client, 1), release: make(chan struct{})}
	if err := b.AddHook(hold); err != nil {
		t.Fatal(err)
	}
	if err := b.Start(); err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	c := dialRaw(t, b.TCPAddr(), 5)
	connectWithWill(t, c, "dw-early", "dw/early", 0)
	cl := <-hold.held
	closed := make(chan struct{})
	go func() {
		defer close(closed)
		b.Close()
	}()
	testutil.Eventually(t, 5*time.Second, "the stopping broker to disconnect the client", cl.Closed)
	close(hold.release)
	<-closed
	recs, err := store.Read("dw", 0, streams.ReadOptions{MaxRecords: 10})
	if err != nil || len(recs) != 1 || string(recs[0].Payload) != "gone" || recs[0].ClientID != "dw-early" {
		t.Fatalf("stream dw after the stop: %v %v, want the will", recs, err)
	}
}

// TestDelayedWillHandedBackSurvivesARestart: a delayed will mochi dropped
// is kept in the persistent session's record, so a broker that restarts
// within the delay publishes it when due. Before, it waited in a timer
// of the stopped process only.
func TestDelayedWillHandedBackSurvivesARestart(t *testing.T) {
	n := startStateBroker(t, func(o *Options) { o.ReceiveMaximum = 3 })
	c := dialRaw(t, n.addr, 5)
	connectWithWill(t, c, "dw-restart", "dw/restart", 2)
	overflowReceiveMaximum(t, c)
	testutil.Eventually(t, 5*time.Second, "the client gone", func() bool {
		cl, ok := n.b.server.Clients.Get("dw-restart")
		return ok && cl.Closed()
	})
	n.close()
	n.open()
	watcher := dialRaw(t, n.addr, 5)
	watcher.connect("dw-watcher", true, packets.Properties{})
	watcher.subscribe(1, packets.Subscription{Filter: "dw/+", Qos: 1})
	if pk := nextPublish(t, watcher, "the watcher"); string(pk.Payload) != "gone" || pk.TopicName != "dw/restart" {
		t.Fatalf("watcher got %q on %s, want the will", pk.Payload, pk.TopicName)
	}
}

// TestWillAfterADisconnectWithAnErrorIsPublished: MQTT discards the will
// only after a DISCONNECT of reason 0x00 [MQTT-3.14.4-3]. A client that
// ends with 0x80 (Unspecified error) or 0x83 (Implementation specific
// error) has its will published, at once or after its delay, also when
// its DISCONNECT carries the reason code alone (Remaining Length 1, as
// libmosquitto sends it), and so does one that ends with 0x04 (Disconnect
// with Will Message), once; one that ends with 0x00 has none. mochi
// deleted it after any DISCONNECT but one of 0x04 in the long form.
func TestWillAfterADisconnectWithAnErrorIsPublished(t *testing.T) {
	n, watcher := startWillWatch(t)

	normal := dialRaw(t, n.addr, 5)
	connectWithWill(t, normal, "dw-normal", "dw/normal", 0)
	normal.send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Disconnect}, ReasonCode: packets.CodeSuccess.Code})

	failed := dialRaw(t, n.addr, 5)
	connectWithWill(t, failed, "dw-failed", "dw/failed", 0)
	failed.send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Disconnect}, ReasonCode: packets.ErrUnspecifiedError.Code})
	if pk := nextPublish(t, watcher, "the watcher"); string(pk.Payload) != "gone" || pk.TopicName != "dw/failed" {
		t.Fatalf("watcher got %q on %s, want dw-failed's will", pk.Payload, pk.TopicName)
	}

	// The reason code alone: 0x80, then 0x04.
	for _, reason := range []byte{packets.ErrUnspecifiedError.Code, packets.CodeDisconnectWillMessage.Code} {
		id := fmt.Sprintf("dw-short-%02x", reason)
		short := dialRaw(t, n.addr, 5)
		connectWithWill(t, short, id, "dw/"+id, 0)
		if _, err := short.conn.Write([]byte{packets.Disconnect << 4, 1, reason}); err != nil {
			t.Fatal(err)
		}
		if pk := nextPublish(t, watcher, "the watcher"); string(pk.Payload) != "gone" || pk.TopicName != "dw/"+id {
			t.Fatalf("watcher got %q on %s, want %s's will", pk.Payload, pk.TopicName, id)
		}
	}
	// 0x04 in the long form (mochi publishes the will itself): once.
	withWill := dialRaw(t, n.addr, 5)
	connectWithWill(t, withWill, "dw-with-will", "dw/with-will", 0)
	withWill.send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Disconnect}, ReasonCode: packets.CodeDisconnectWillMessage.Code})
	if pk := nextPublish(t, watcher, "the watcher"); string(pk.Payload) != "gone" || pk.TopicName != "dw/with-will" {
		t.Fatalf("watcher got %q on %s, want dw-with-will's will", pk.Payload, pk.TopicName)
	}

	late := dialRaw(t, n.addr, 5)
	connectWithWill(t, late, "dw-late-error", "dw/late", 1)
	late.send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Disconnect}, ReasonCode: packets.ErrImplementationSpecificError.Code})
	start := time.Now()
	if pk := nextPublish(t, watcher, "the watcher"); string(pk.Payload) != "gone" || pk.TopicName != "dw/late" {
		t.Fatalf("watcher got %q on %s, want dw-late-error's will", pk.Payload, pk.TopicName)
	}
	if waited := time.Since(start); waited < 500*time.Millisecond {
		t.Fatalf("the will came after %v, before its delay of 1s", waited)
	}
	// dw-normal's will never comes, nor a second copy of any.
	if pk, err := watcher.read(time.Second); err == nil {
		t.Fatalf("watcher got %q on %s, want nothing more", pk.Payload, pk.TopicName)
	}
	want := []string{"dw-failed", "dw-short-80", "dw-short-04", "dw-with-will", "dw-late-error"}
	testutil.Eventually(t, 5*time.Second, "the wills stored once each", func() bool {
		recs, err := n.store.Read("dw", 0, streams.ReadOptions{MaxRecords: 10})
		if err != nil || len(recs) != len(want) {
			return false
		}
		for i, r := range recs {
			if r.ClientID != want[i] {
				return false
			}
		}
		return true
	})
}

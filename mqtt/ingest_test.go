package mqtt

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	paho3 "github.com/eclipse/paho.mqtt.golang"

	"github.com/mqstream/mqstream/internal/testutil"
	"github.com/mqstream/mqstream/streams"
	"github.com/mqstream/mqstream/topic"
)

var testRules = []topic.Rule{
	{Filter: "sensors/+/temperature", Stream: "temperatures"},
	{Filter: "sensors/#", Stream: "sensors"},
	{Filter: "jobs/#", Stream: "jobs"},
}

// TestIngestStoresEveryPublish: several MQTT 3.1.1 publishers with many
// messages in flight, QoS 0/1/2, topics spread over rules and the default
// rule. Every acknowledged message is in the right stream, in per-publisher
// order, with its metadata.
func TestIngestStoresEveryPublish(t *testing.T) {
	n := startBroker(t, testRules, nil, nil)
	const publishers, perPublisher = 4, 300
	topics := []struct{ topic, stream string }{
		{"sensors/%d/temperature", "temperatures"},
		{"sensors/%d/humidity", "sensors"},
		{"jobs/%d", "jobs"},
		{"devices/%d/state", "devices"}, // default rule: first level
	}
	var wg sync.WaitGroup
	for p := 0; p < publishers; p++ {
		c := connectV3(t, "tcp://"+n.addr, fmt.Sprintf("pub-%d", p), nil)
		wg.Add(1)
		go func(p int, c paho3.Client) {
			defer wg.Done()
			var toks []paho3.Token
			for i := 0; i < perPublisher; i++ {
				tp := topics[i%len(topics)]
				qos := byte(i % 3)
				toks = append(toks, c.Publish(fmt.Sprintf(tp.topic, p), qos, false, fmt.Sprintf("%d:%d", p, i)))
			}
			for i, tok := range toks {
				if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
					t.Errorf("publisher %d message %d: %v", p, i, tok.Error())
				}
			}
		}(p, c)
	}
	wg.Wait()
	perStream := publishers * perPublisher / len(topics)
	for _, tp := range topics {
		testutil.Eventually(t, 10*time.Second, "records in "+tp.stream, func() bool { return recordCount(n.store, tp.stream) == int64(perStream) })
	}
	for _, tp := range topics {
		next := map[string]int{}
		for _, r := range streamRecords(t, n.store, tp.stream) {
			var p, i int
			if _, err := fmt.Sscanf(string(r.Payload), "%d:%d", &p, &i); err != nil {
				t.Fatalf("%s: payload %q", tp.stream, r.Payload)
			}
			if want := fmt.Sprintf("pub-%d", p); r.ClientID != want {
				t.Fatalf("%s: client id %q, want %q", tp.stream, r.ClientID, want)
			}
			if want := fmt.Sprintf(tp.topic, p); r.Topic != want {
				t.Fatalf("%s: topic %q, want %q", tp.stream, r.Topic, want)
			}
			if r.QoS != byte(i%3) {
				t.Fatalf("%s: message %d has QoS %d", tp.stream, i, r.QoS)
			}
			if i <= next[r.ClientID]-1 {
				t.Fatalf("%s: %s's message %d after %d: order broken", tp.stream, r.ClientID, i, next[r.ClientID]-1)
			}
			next[r.ClientID] = i + 1
		}
	}
	if st := n.broker.Stats(); st.Stored != publishers*perPublisher || st.Refused != 0 {
		t.Fatalf("stats %+v", st)
	}
}

// TestIngestOneConnectionManyInFlight: one publisher keeps hundreds of QoS 1
// messages in flight; all are acknowledged and stored in order.
func TestIngestOneConnectionManyInFlight(t *testing.T) {
	n := startBroker(t, nil, nil, nil)
	c := connectV3(t, "tcp://"+n.addr, "fast", nil)
	const total = 2000
	toks := make([]paho3.Token, 0, total)
	for i := 0; i < total; i++ {
		toks = append(toks, c.Publish("burst/x", 1, false, fmt.Sprint(i)))
	}
	for i, tok := range toks {
		waitToken(t, tok, fmt.Sprintf("message %d", i))
	}
	recs := streamRecords(t, n.store, "burst")
	if len(recs) != total {
		t.Fatalf("%d records, want %d", len(recs), total)
	}
	for i, r := range recs {
		if string(r.Payload) != fmt.Sprint(i) || r.Offset != uint64(i) {
			t.Fatalf("record %d: offset %d payload %q", i, r.Offset, r.Payload)
		}
	}
}

// TestIngestMQTT5Properties: MQTT 5 properties are stored with the record and
// ordinary MQTT 5 subscribers get them as from a plain broker.
func TestIngestMQTT5Properties(t *testing.T) {
	n := startBroker(t, testRules, nil, nil)
	recv := make(chan *paho.Publish, 10)
	sub := connectV5(t, n.addr, "sub5", recv, nil)
	ctx := context.Background()
	if _, err := sub.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "sensors/#", QoS: 1}}}); err != nil {
		t.Fatal(err)
	}
	pub := connectV5(t, n.addr, "pub5", nil, nil)
	pf := byte(1)
	res, err := pub.Publish(ctx, &paho.Publish{Topic: "sensors/9/temperature", QoS: 1, Payload: []byte(`{"temp":30}`),
		Properties: &paho.PublishProperties{ContentType: "application/json", ResponseTopic: "reply/9",
			CorrelationData: []byte("corr"), PayloadFormat: &pf,
			User: paho.UserProperties{{Key: "site", Value: "north"}, {Key: "site", Value: "south"}}}})
	if err != nil || res.ReasonCode != 0 {
		t.Fatalf("publish: %v %+v", err, res)
	}
	if res.Properties != nil && len(res.Properties.User) > 0 {
		t.Fatalf("ack echoes user properties: %+v", res.Properties.User)
	}
	recs := streamRecords(t, n.store, "temperatures")
	if len(recs) != 1 {
		t.Fatalf("%d records", len(recs))
	}
	r := recs[0]
	if r.ContentType != "application/json" || r.ResponseTopic != "reply/9" || string(r.CorrelationData) != "corr" ||
		!r.HasPayloadFormat || r.PayloadFormat != 1 || r.ClientID != "pub5" || r.QoS != 1 ||
		fmt.Sprint(r.UserProperties) != "[{site north} {site south}]" {
		t.Fatalf("record %+v", r)
	}
	select {
	case m := <-recv:
		if m.Topic != "sensors/9/temperature" || string(m.Payload) != `{"temp":30}` || m.Properties.ContentType != "application/json" ||
			len(m.Properties.User) != 2 || m.Properties.User.Get("site") != "north" || m.Properties.ResponseTopic != "reply/9" {
			t.Fatalf("subscriber got %+v %+v", m, m.Properties)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("subscriber got nothing")
	}
}

// TestIngestRefusesOversizedPayload: MQTT 5 gets PUBACK 0x95 and keeps its
// connection; MQTT 3.1.1 gets no ack and is disconnected; nothing is stored.
func TestIngestRefusesOversizedPayload(t *testing.T) {
	n := startBroker(t, nil, func(o *Options) { o.MaxPayload = 1000 }, nil)
	ctx := context.Background()
	pub := connectV5(t, n.addr, "big5", nil, nil)
	res, err := pub.Publish(ctx, &paho.Publish{Topic: "big/x", QoS: 1, Payload: bytes.Repeat([]byte("x"), 1001)})
	if err == nil || res == nil || res.ReasonCode != 0x95 {
		t.Fatalf("oversized v5 QoS 1: %v %+v", err, res)
	}
	if res.Properties == nil || !strings.Contains(res.Properties.ReasonString, "exceeds the limit of 1000") {
		t.Fatalf("no reason string: %+v", res.Properties)
	}
	res, err = pub.Publish(ctx, &paho.Publish{Topic: "big/x", QoS: 2, Payload: bytes.Repeat([]byte("x"), 1001)})
	if res == nil || res.ReasonCode != 0x95 {
		t.Fatalf("oversized v5 QoS 2: %v %+v", err, res)
	}
	// The connection still works.
	if res, err := pub.Publish(ctx, &paho.Publish{Topic: "big/x", QoS: 1, Payload: []byte("small")}); err != nil || res.ReasonCode != 0 {
		t.Fatalf("small after big: %v %+v", err, res)
	}

	lost := make(chan error, 1)
	c3 := connectV3(t, "tcp://"+n.addr, "big3", func(o *paho3.ClientOptions) {
		o.SetConnectionLostHandler(func(_ paho3.Client, err error) { lost <- err })
	})
	tok := c3.Publish("big/y", 1, false, bytes.Repeat([]byte("y"), 1001))
	select {
	case <-lost:
	case <-time.After(5 * time.Second):
		t.Fatal("MQTT 3.1.1 client not disconnected after an oversized publish")
	}
	if tok.WaitTimeout(100*time.Millisecond) && tok.Error() == nil {
		t.Fatal("oversized v3 publish was acknowledged")
	}
	recs := streamRecords(t, n.store, "big")
	if len(recs) != 1 || string(recs[0].Payload) != "small" {
		t.Fatalf("stored %d records: %+v", len(recs), recs)
	}
	if st := n.broker.Stats(); st.Refused != 3 {
		t.Fatalf("refused %d, want 3", st.Refused)
	}
}

// TestIngestStoreErrorIsNotAcked: when the store refuses (here: a rule names
// a stream that does not exist and auto-create is off), MQTT 5 gets 0x80,
// MQTT 3.1.1 is disconnected, and with fan-out after store, subscribers get
// nothing.
func TestIngestStoreErrorIsNotAcked(t *testing.T) {
	n := startBroker(t, []topic.Rule{{Filter: "missing/#", Stream: "nowhere"}, {Filter: "ok/#", Stream: "ok"}},
		func(o *Options) { o.FanoutAfterStore = true },
		func(o *streams.Options) { o.AutoCreate = false })
	if _, err := n.store.CreateStream(context.Background(), "ok", streams.Retention{}); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	got := make(chan paho3.Message, 10)
	sub := connectV3(t, "tcp://"+n.addr, "watcher", nil)
	waitToken(t, sub.Subscribe("#", 1, func(_ paho3.Client, m paho3.Message) { got <- m }), "subscribe")

	pub := connectV5(t, n.addr, "p5", nil, nil)
	res, err := pub.Publish(ctx, &paho.Publish{Topic: "missing/a", QoS: 1, Payload: []byte("x")})
	if err == nil || res == nil || res.ReasonCode != 0x80 || !strings.Contains(res.Properties.ReasonString, "stream not found") {
		t.Fatalf("v5 publish to missing stream: %v %+v", err, res)
	}
	if res, err := pub.Publish(ctx, &paho.Publish{Topic: "ok/a", QoS: 1, Payload: []byte("fine")}); err != nil || res.ReasonCode != 0 {
		t.Fatalf("v5 publish after refusal: %v %+v", err, res)
	}
	lost := make(chan error, 1)
	c3 := connectV3(t, "tcp://"+n.addr, "p3", func(o *paho3.ClientOptions) {
		o.SetConnectionLostHandler(func(_ paho3.Client, err error) { lost <- err })
	})
	c3.Publish("missing/b", 1, false, "y")
	select {
	case <-lost:
	case <-time.After(5 * time.Second):
		t.Fatal("v3 client not disconnected after a refused publish")
	}
	select {
	case m := <-got:
		if m.Topic() != "ok/a" {
			t.Fatalf("subscriber got refused message %s", m.Topic())
		}
	case <-time.After(5 * time.Second):
		t.Fatal("subscriber did not get the stored message")
	}
	select {
	case m := <-got:
		t.Fatalf("subscriber got extra message %s", m.Topic())
	case <-time.After(50 * time.Millisecond):
	}
}

// TestOrdinarySubscribersStillWork: plain MQTT semantics for ordinary
// subscriptions: real-time delivery, retained messages, QoS downgrade, and
// topics that no rule stores.
func TestOrdinarySubscribersStillWork(t *testing.T) {
	n := startBroker(t, testRules, nil, nil)
	pub := connectV3(t, "tcp://"+n.addr, "pub", nil)
	waitToken(t, pub.Publish("sensors/1/temperature", 1, true, "21"), "retained publish")

	got := make(chan paho3.Message, 10)
	sub := connectV3(t, "tcp://"+n.addr, "sub", nil)
	waitToken(t, sub.Subscribe("sensors/+/temperature", 0, func(_ paho3.Client, m paho3.Message) { got <- m }), "subscribe")
	select {
	case m := <-got:
		if !m.Retained() || string(m.Payload()) != "21" {
			t.Fatalf("retained: %+v", m)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no retained message")
	}
	waitToken(t, pub.Publish("sensors/2/temperature", 2, false, "22"), "publish")
	select {
	case m := <-got:
		if m.Retained() || string(m.Payload()) != "22" || m.Qos() != 0 {
			t.Fatalf("live: retained=%v payload=%s qos=%d", m.Retained(), m.Payload(), m.Qos())
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no live message")
	}

	// A topic no rule stores still flows (default rule none would apply to
	// "$"-topics; here "has space/x" has no valid stream name).
	got2 := make(chan paho3.Message, 1)
	waitToken(t, sub.Subscribe("has space/#", 1, func(_ paho3.Client, m paho3.Message) { got2 <- m }), "subscribe")
	waitToken(t, pub.Publish("has space/x", 1, false, "unstored"), "publish unstored")
	select {
	case m := <-got2:
		if string(m.Payload()) != "unstored" {
			t.Fatalf("unstored: %s", m.Payload())
		}
	case <-time.After(5 * time.Second):
		t.Fatal("unstored topic not delivered")
	}
}

// TestIngestOverWebSocket: the WebSocket listener ingests like TCP.
func TestIngestOverWebSocket(t *testing.T) {
	n := startBroker(t, nil, nil, nil)
	c := connectV3(t, "ws://"+n.broker.WSAddr(), "ws-pub", nil)
	for i := 0; i < 10; i++ {
		waitToken(t, c.Publish("web/x", 1, false, fmt.Sprint(i)), "ws publish")
	}
	if got := recordCount(n.store, "web"); got != 10 {
		t.Fatalf("%d records over websocket", got)
	}
}

// TestWillIsStored: a will message published on an abrupt disconnect is
// delivered and stored.
func TestWillIsStored(t *testing.T) {
	n := startBroker(t, nil, nil, nil)
	got := make(chan paho3.Message, 1)
	sub := connectV3(t, "tcp://"+n.addr, "watch", nil)
	waitToken(t, sub.Subscribe("status/#", 1, func(_ paho3.Client, m paho3.Message) { got <- m }), "subscribe")

	conn, err := net.Dial("tcp", n.addr)
	if err != nil {
		t.Fatal(err)
	}
	// CONNECT (3.1.1) with a will on status/dev1, QoS 1.
	conn.Write(rawConnectWithWill("dev1", "status/dev1", "offline"))
	ack := make([]byte, 4)
	if _, err := conn.Read(ack); err != nil || ack[0] != 0x20 || ack[3] != 0 {
		t.Fatalf("connack % x: %v", ack, err)
	}
	conn.Close() // no DISCONNECT: the will fires
	select {
	case m := <-got:
		if string(m.Payload()) != "offline" {
			t.Fatalf("will payload %s", m.Payload())
		}
	case <-time.After(5 * time.Second):
		t.Fatal("will not delivered")
	}
	testutil.Eventually(t, 5*time.Second, "will stored", func() bool { return recordCount(n.store, "status") == 1 })
	recs := streamRecords(t, n.store, "status")
	if recs[0].Topic != "status/dev1" || recs[0].ClientID != "dev1" || string(recs[0].Payload) != "offline" {
		t.Fatalf("will record %+v", recs[0])
	}
}

// TestQoS2DuplicateStoredOnce: a QoS 2 PUBLISH resent with DUP before or
// after its PUBREC is stored once.
func TestQoS2DuplicateStoredOnce(t *testing.T) {
	n := startBroker(t, nil, nil, nil)
	conn, err := net.Dial("tcp", n.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.Write(rawConnect("q2"))
	buf := make([]byte, 4)
	if _, err := readFull(conn, buf); err != nil || buf[0] != 0x20 {
		t.Fatalf("connack % x %v", buf, err)
	}
	pub := rawPublish(2, 7, "dup/x", "once", false)
	dup := rawPublish(2, 7, "dup/x", "once", true)
	conn.Write(append(append(pub, dup...), dup...)) // original and two DUPs back to back
	// Every PUBREC the broker sends must be for id 7; then complete the flow.
	if _, err := readFull(conn, buf); err != nil || buf[0]>>4 != 5 || buf[2] != 0 || buf[3] != 7 {
		t.Fatalf("pubrec % x %v", buf, err)
	}
	conn.Write([]byte{0x62, 2, 0, 7}) // PUBREL
	conn.SetReadDeadline(time.Now().Add(2 * time.Second))
	for {
		if _, err := readFull(conn, buf); err != nil {
			t.Fatalf("waiting for PUBCOMP: %v", err)
		}
		if buf[0]>>4 == 7 {
			break // PUBCOMP
		}
		if buf[0]>>4 != 5 {
			t.Fatalf("unexpected packet % x", buf)
		}
	}
	testutil.Eventually(t, 2*time.Second, "record", func() bool { return recordCount(n.store, "dup") >= 1 })
	if got := recordCount(n.store, "dup"); got != 1 {
		t.Fatalf("QoS 2 message stored %d times", got)
	}
}

func readFull(c net.Conn, b []byte) (int, error) {
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	n := 0
	for n < len(b) {
		m, err := c.Read(b[n:])
		n += m
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

func mqttString(s string) []byte { return append([]byte{byte(len(s) >> 8), byte(len(s))}, s...) }

func rawConnect(id string) []byte {
	body := append(mqttString("MQTT"), 4, 0x02, 0, 30) // level 4, clean session, keepalive 30
	body = append(body, mqttString(id)...)
	return append([]byte{0x10, byte(len(body))}, body...)
}

func rawConnectWithWill(id, willTopic, will string) []byte {
	body := append(mqttString("MQTT"), 4, 0x02|0x04|0x08, 0, 30) // clean, will flag, will QoS 1
	body = append(body, mqttString(id)...)
	body = append(body, mqttString(willTopic)...)
	body = append(body, mqttString(will)...)
	return append([]byte{0x10, byte(len(body))}, body...)
}

func rawPublish(qos byte, id uint16, topic, payload string, dup bool) []byte {
	h := byte(0x30 | qos<<1)
	if dup {
		h |= 0x08
	}
	body := mqttString(topic)
	if qos > 0 {
		body = append(body, byte(id>>8), byte(id))
	}
	body = append(body, payload...)
	return append([]byte{h, byte(len(body))}, body...)
}

var _ = errors.Is

// TestKeepaliveCap: an MQTT 5 client asking for a longer keepalive than
// mqtt.keepalive_max is told the server's value in CONNACK.
func TestKeepaliveCap(t *testing.T) {
	n := startBroker(t, nil, func(o *Options) { o.KeepaliveMax = 30 }, nil)
	conn, err := net.Dial("tcp", n.addr)
	if err != nil {
		t.Fatal(err)
	}
	c := paho.NewClient(paho.ClientConfig{ClientID: "ka", Conn: conn})
	ca, err := c.Connect(context.Background(), &paho.Connect{ClientID: "ka", KeepAlive: 600, CleanStart: true})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Disconnect(&paho.Disconnect{})
	if ca.Properties == nil || ca.Properties.ServerKeepAlive == nil || *ca.Properties.ServerKeepAlive != 30 {
		t.Fatalf("connack properties %+v", ca.Properties)
	}
	if got := n.broker.Server().Options.Capabilities.MaximumMessageExpiryInterval; got != 0 {
		t.Fatalf("in-flight messages would expire after %d s", got)
	}
}

// TestEarlyFanoutDeliversBeforeTheCommit: by default QoS 0/1 messages reach
// subscribers on arrival; a message the store then refuses was delivered but
// its publisher gets the failure (and the record is not stored).
func TestEarlyFanoutDeliversBeforeTheCommit(t *testing.T) {
	n := startBroker(t, []topic.Rule{{Filter: "missing/#", Stream: "nowhere"}}, nil,
		func(o *streams.Options) { o.AutoCreate = false })
	got := make(chan paho3.Message, 1)
	sub := connectV3(t, "tcp://"+n.addr, "watcher", nil)
	waitToken(t, sub.Subscribe("missing/#", 1, func(_ paho3.Client, m paho3.Message) { got <- m }), "subscribe")
	pub := connectV5(t, n.addr, "p5", nil, nil)
	res, err := pub.Publish(context.Background(), &paho.Publish{Topic: "missing/a", QoS: 1, Payload: []byte("x")})
	if err == nil || res == nil || res.ReasonCode != 0x80 {
		t.Fatalf("publish: %v %+v", err, res)
	}
	select {
	case m := <-got:
		if string(m.Payload()) != "x" {
			t.Fatalf("got %s", m.Payload())
		}
	case <-time.After(5 * time.Second):
		t.Fatal("not delivered on arrival")
	}
	if recordCount(n.store, "nowhere") != 0 {
		t.Fatal("refused message stored")
	}
}

// TestAPIPublish: Broker.Publish stores like a QoS 1 publish (returning the
// offset once durable) and delivers to subscribers, properties included.
func TestAPIPublish(t *testing.T) {
	n := startBroker(t, testRules, nil, nil)
	recv := make(chan *paho.Publish, 1)
	sub := connectV5(t, n.addr, "s", recv, nil)
	if _, err := sub.Subscribe(context.Background(), &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "jobs/#", QoS: 1}}}); err != nil {
		t.Fatal(err)
	}
	res, err := n.broker.Publish(context.Background(), Message{Topic: "jobs/1", Payload: []byte("hi"), QoS: 1,
		ContentType: "text/plain", UserProperties: []streams.UserProperty{{Key: "a", Value: "b"}}})
	if err != nil || !res.Stored || res.Stream != "jobs" || res.Offset == nil || *res.Offset != 0 {
		t.Fatalf("%+v %v", res, err)
	}
	// The first record's offset is in the answer too.
	if b, _ := json.Marshal(res); string(b) != `{"stored":true,"stream":"jobs","offset":0}` {
		t.Fatalf("answer %s", b)
	}
	select {
	case m := <-recv:
		if string(m.Payload) != "hi" || m.Properties.ContentType != "text/plain" || m.Properties.User.Get("a") != "b" {
			t.Fatalf("%+v", m)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("not delivered")
	}
	recs := streamRecords(t, n.store, "jobs")
	if len(recs) != 1 || recs[0].ClientID != "mqstream-api" || recs[0].ContentType != "text/plain" {
		t.Fatalf("%+v", recs)
	}
	// A will published for a dead node's client names that client.
	if _, err := n.broker.Publish(context.Background(), Message{Topic: "jobs/2", Payload: []byte("bye"), QoS: 1, ClientID: "willer"}); err != nil {
		t.Fatal(err)
	}
	if recs := streamRecords(t, n.store, "jobs"); len(recs) != 2 || recs[1].ClientID != "willer" {
		t.Fatalf("%+v", recs)
	}
	for _, bad := range []string{"", "a/+", "a/#", "$SYS/x"} {
		if _, err := n.broker.Publish(context.Background(), Message{Topic: bad}); !errors.Is(err, topic.ErrInvalidTopic) {
			t.Errorf("topic %q: %v", bad, err)
		}
	}
	if _, err := n.broker.Publish(context.Background(), Message{Topic: "x", Payload: make([]byte, 2<<20)}); !errors.Is(err, streams.ErrRecordTooLarge) {
		t.Errorf("oversized: %v", err)
	}
}

package cq_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/mqstream/mqstream/internal/testnode"
	"github.com/mqstream/mqstream/internal/testutil"
	"github.com/mqstream/mqstream/streams"
)

// TestJoinsOverMQTT runs joins on a real node: orders and payments
// published with paho into two streams, an interval join publishing its
// pairs on MQTT, and a lookup of a view of the device registry; a
// subscriber receives the pairs, and the output streams hold them.
func TestJoinsOverMQTT(t *testing.T) {
	n := testnode.Start(t, testnode.Config(t.TempDir()))
	ctx := context.Background()
	url := "tcp://" + n.MQTTAddr()
	connect := func(id string, handler paho.MessageHandler) paho.Client {
		c := paho.NewClient(paho.NewClientOptions().AddBroker(url).SetClientID(id).SetAutoReconnect(false).SetDefaultPublishHandler(handler))
		if tok := c.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
			t.Fatalf("connect %s: %v", id, tok.Error())
		}
		t.Cleanup(func() { c.Disconnect(0) })
		return c
	}
	wait := func(tok paho.Token, what string) {
		t.Helper()
		if !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
			t.Fatalf("%s: %v", what, tok.Error())
		}
	}
	sql := func(q string) {
		t.Helper()
		if _, err := n.Query().Query(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	for _, s := range []string{"orders", "payments", "registry", "temps"} {
		if _, err := n.Store().CreateStream(ctx, s, streams.Retention{}); err != nil {
			t.Fatal(err)
		}
	}
	sql("CREATE STREAM paid WITH (topic = 'paid/{id}') AS SELECT /*+ IDLE_TIMEOUT('200ms') */ o.id AS id, o.amount AS amount, p.method AS method " +
		"FROM orders o JOIN payments p ON o.id = p.order_id AND p._timestamp BETWEEN o._timestamp - INTERVAL 1 MINUTE AND o._timestamp + INTERVAL 1 MINUTE")
	sql("CREATE VIEW devs AS SELECT id, max(floor) AS floor FROM registry GROUP BY id")
	sql("CREATE STREAM placed AS SELECT t.sensor, t.temp, d.floor FROM temps t LEFT JOIN devs d ON t.sensor = d.id")

	var mu sync.Mutex
	var got []string
	sub := connect("sub", func(_ paho.Client, m paho.Message) {
		mu.Lock()
		defer mu.Unlock()
		got = append(got, m.Topic()+" "+string(m.Payload()))
	})
	wait(sub.Subscribe("paid/#", 1, nil), "subscribe")

	pub := connect("pub", nil)
	wait(pub.Publish("registry/s1", 1, false, `{"id":"s1","floor":4}`), "publish registry")
	testutil.Eventually(t, 5*time.Second, "the view's row", func() bool {
		res, err := n.Query().Query(ctx, "SELECT floor FROM devs WHERE id = 's1'")
		return err == nil && len(res.Rows) == 1
	})
	for i, m := range [][2]string{
		{"orders/1", `{"id":1,"amount":10}`},
		{"payments/1", `{"order_id":1,"method":"card"}`},
		{"orders/2", `{"id":2,"amount":20}`},
		{"payments/3", `{"order_id":3,"method":"cash"}`},
		{"payments/2", `{"order_id":2,"method":"iou"}`},
		{"temps/s1", `{"sensor":"s1","temp":21}`},
		{"temps/s2", `{"sensor":"s2","temp":22}`},
	} {
		wait(pub.Publish(m[0], 1, false, m[1]), fmt.Sprintf("publish %d", i))
	}
	want := []string{`paid/1 {"id":1,"amount":10,"method":"card"}`, `paid/2 {"id":2,"amount":20,"method":"iou"}`}
	testutil.Eventually(t, 10*time.Second, "the pairs on MQTT", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(got) >= len(want)
	})
	mu.Lock()
	if !slices.Equal(got, want) {
		t.Fatalf("received %q, want %q", got, want)
	}
	mu.Unlock()
	rows := func(q string) string {
		res, err := n.Query().Query(ctx, q)
		if err != nil {
			t.Fatal(err)
		}
		return fmt.Sprint(res.Rows)
	}
	if s := rows("SELECT _payload FROM paid ORDER BY _offset"); s != `[[{"id":1,"amount":10,"method":"card"}] [{"id":2,"amount":20,"method":"iou"}]]` {
		t.Fatalf("stream paid: %s", s)
	}
	testutil.Eventually(t, 5*time.Second, "the lookups", func() bool {
		return rows("SELECT _payload FROM placed ORDER BY _offset") == `[[{"sensor":"s1","temp":21,"floor":4}] [{"sensor":"s2","temp":22,"floor":null}]]`
	})
	if s := rows("EXPLAIN CREATE STREAM x AS SELECT t.temp, d.floor FROM temps t JOIN devs d ON d.id = t.sensor"); !strings.Contains(s, "lookup of view devs on 1 key(s)") {
		t.Fatalf("EXPLAIN of a lookup: %s", s)
	}
	if s := rows("SELECT id, status FROM queries WHERE id = 'paid'"); !strings.Contains(s, "running") {
		t.Fatalf("SHOW QUERIES: %s", s)
	}
}

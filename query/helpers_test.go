package query

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	paho3 "github.com/eclipse/paho.mqtt.golang"

	"github.com/mqstream/mqstream/internal/testutil"
	"github.com/mqstream/mqstream/mqtt"
	"github.com/mqstream/mqstream/shared"
	"github.com/mqstream/mqstream/stats"
	"github.com/mqstream/mqstream/streams"
	"github.com/mqstream/mqstream/topic"
)

// node is a real store, MQTT broker on 127.0.0.1, consumer-group manager
// and statistics sampler (on an injected clock), with an SQL engine over
// them.
type node struct {
	t       testing.TB
	store   *streams.Store
	broker  *mqtt.Broker
	groups  *shared.Manager
	sampler *stats.Sampler
	clock   *testutil.Clock
	engine  *Engine
	mapper  *topic.Mapper
	addr    string
}

type nodeOptions struct {
	rules   []topic.Rule
	maxRows int64
	timeout time.Duration
}

func startNode(t testing.TB, o nodeOptions) *node {
	t.Helper()
	store, err := streams.Open(streams.Options{Dir: t.TempDir(), AutoCreate: true, Sync: streams.SyncNone, Logger: testutil.Logger()})
	if err != nil {
		t.Fatal(err)
	}
	mapper, err := topic.NewMapper(o.rules, topic.DefaultRule{Kind: topic.DefaultFirstLevel})
	if err != nil {
		t.Fatal(err)
	}
	groups, err := shared.New(shared.Options{Store: store, Progress: store.KV("groups"), Mapper: mapper, Defaults: shared.DefaultGroupOptions(),
		FlushInterval: 20 * time.Millisecond, Logger: testutil.Logger()})
	if err != nil {
		t.Fatal(err)
	}
	if err := groups.Start(); err != nil {
		t.Fatal(err)
	}
	b, err := mqtt.New(mqtt.Options{TCPAddr: "127.0.0.1:0", Mapper: mapper, Store: store, Groups: groups, Logger: testutil.Logger(),
		State: store.KV("mqtt")})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Start(); err != nil {
		t.Fatal(err)
	}
	clk := testutil.NewClock(time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC))
	sampler, err := stats.New(stats.Options{Source: store, Interval: time.Second, Now: clk.Now, Logger: testutil.Logger()})
	if err != nil {
		t.Fatal(err)
	}
	engine, err := New(Options{Store: store, Groups: groups, Stats: samplerStats{sampler}, Sessions: brokerSessions{b}, MaxRowsScanned: o.maxRows, Timeout: o.timeout, Logger: testutil.Logger()})
	if err != nil {
		t.Fatal(err)
	}
	n := &node{t: t, store: store, broker: b, groups: groups, sampler: sampler, clock: clk, engine: engine, mapper: mapper, addr: b.TCPAddr()}
	t.Cleanup(func() {
		sampler.Close()
		b.Close()
		groups.Close()
		store.Close()
	})
	return n
}

// msg is one publish.
type msg struct {
	topic, payload string
	qos            byte
}

// publish sends msgs from one MQTT 3.1.1 client, in order, each QoS 1
// publish waiting for its PUBACK (so offsets follow the order given), and
// waits until every message (QoS 0 too) is stored.
func (n *node) publish(clientID string, msgs ...msg) {
	n.t.Helper()
	want := map[string]uint64{}
	for _, m := range msgs {
		if stream, ok := n.mapper.StreamFor(m.topic); ok {
			if _, seen := want[stream]; !seen {
				info, _ := n.store.DescribeStream(stream)
				want[stream] = info.NextOffset
			}
			want[stream]++
		}
	}
	c := n.connect(clientID)
	defer c.Disconnect(0)
	for _, m := range msgs {
		tok := c.Publish(m.topic, m.qos, false, m.payload)
		if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
			n.t.Fatalf("publish %s: %v", m.topic, tok.Error())
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for stream, next := range want {
		for {
			info, err := n.store.DescribeStream(stream)
			if err == nil && info.NextOffset >= next {
				break
			}
			if time.Now().After(deadline) {
				n.t.Fatalf("stream %s: publishes not stored in time", stream)
			}
			time.Sleep(2 * time.Millisecond)
		}
	}
}

// publishMany sends count QoS 1 messages on topic with up to 256 in flight
// and waits for every PUBACK.
func (n *node) publishMany(clientID, topic string, count int, payload func(i int) string) {
	n.t.Helper()
	c := n.connect(clientID)
	defer c.Disconnect(0)
	toks := make(chan paho3.Token, 256)
	errc := make(chan error, 1)
	go func() {
		defer close(errc)
		for tok := range toks {
			if !tok.WaitTimeout(30*time.Second) || tok.Error() != nil {
				errc <- fmt.Errorf("publish: %v", tok.Error())
				for range toks {
				}
				return
			}
		}
	}()
	for i := 0; i < count; i++ {
		toks <- c.Publish(topic, 1, false, payload(i))
	}
	close(toks)
	if err := <-errc; err != nil {
		n.t.Fatal(err)
	}
}

func (n *node) connect(clientID string) paho3.Client {
	n.t.Helper()
	o := paho3.NewClientOptions().AddBroker("tcp://" + n.addr).SetClientID(clientID).SetAutoReconnect(false).
		SetOrderMatters(true).SetConnectTimeout(5 * time.Second)
	c := paho3.NewClient(o)
	if tok := c.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		n.t.Fatalf("connect %s: %v", clientID, tok.Error())
	}
	return c
}

// query runs sql and fails the test on error.
func (n *node) query(sql string) *Result {
	n.t.Helper()
	res, err := n.engine.Query(context.Background(), sql)
	if err != nil {
		n.t.Fatalf("%s\n=> %v", sql, err)
	}
	return res
}

// queryErr runs sql that must fail and returns its error.
func (n *node) queryErr(sql string) *Error {
	n.t.Helper()
	res, err := n.engine.Query(context.Background(), sql)
	if err == nil {
		n.t.Fatalf("%s\n=> no error, got %s", sql, render(res))
	}
	qe, ok := err.(*Error)
	if !ok {
		n.t.Fatalf("%s\n=> error %T %v, want *query.Error", sql, err, err)
	}
	return qe
}

// render prints a result as text: a header of name:type, then one line per
// row, values separated by " | ".
func render(r *Result) string {
	var sb strings.Builder
	for i, c := range r.Columns {
		if i > 0 {
			sb.WriteString(" | ")
		}
		sb.WriteString(c.Name + ":" + c.Type)
	}
	sb.WriteByte('\n')
	for _, row := range r.Rows {
		for i, v := range row {
			if i > 0 {
				sb.WriteString(" | ")
			}
			sb.WriteString(renderValue(v))
		}
		sb.WriteByte('\n')
	}
	return sb.String()
}

func renderValue(v any) string {
	switch x := v.(type) {
	case nil:
		return "NULL"
	case string:
		return x
	case map[string]any, []any:
		b, _ := json.Marshal(x)
		return string(b)
	}
	return textOf(v)
}

// rows renders only the rows of a result, one per line.
func rows(r *Result) []string {
	out := []string{}
	for _, row := range r.Rows {
		parts := make([]string, len(row))
		for i, v := range row {
			parts[i] = renderValue(v)
		}
		out = append(out, strings.Join(parts, " | "))
	}
	return out
}

// brokerSessions adapts the broker to the engine's Sessions, as node does.
type brokerSessions struct{ b *mqtt.Broker }

func (s brokerSessions) Sessions(context.Context) []Session {
	infos := s.b.Sessions()
	out := make([]Session, len(infos))
	for i, s := range infos {
		out[i] = Session{ClientID: s.ClientID, Connected: s.Connected, Persistent: s.Persistent,
			ProtocolVersion: s.ProtocolVersion, Expiry: s.Expiry, NeverExpires: s.NeverExpires,
			DisconnectedAt: s.DisconnectedAt, Subscriptions: s.Subscriptions, Queued: s.Queued, InFlight: s.InFlight, Node: "test"}
	}
	return out
}

// samplerStats serves the rate and latency tables from one sampler, as a
// standalone node does.
type samplerStats struct{ s *stats.Sampler }

func (s samplerStats) StreamRates(context.Context) []stats.StreamRates { return s.s.StreamRates() }

func (s samplerStats) AppendLatencies(context.Context) []NodeLatency {
	return []NodeLatency{{Node: "test", Latency: s.s.AppendLatency()}}
}

package shared

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"testing"
	"time"

	paho3 "github.com/eclipse/paho.mqtt.golang"

	"github.com/mqstream/mqstream/mqtt"
	"github.com/mqstream/mqstream/streams"
	"github.com/mqstream/mqstream/topic"
)

func testLogger() *slog.Logger {
	if os.Getenv("MQSTREAM_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// env is a store, a broker and a group manager on 127.0.0.1.
type env struct {
	t      testing.TB
	dir    string
	store  *streams.Store
	broker *mqtt.Broker
	groups *Manager
	addr   string
	closed bool
}

type envOptions struct {
	rules    []topic.Rule
	def      topic.DefaultRule
	defaults GroupOptions
	declared []Declaration
	dir      string
	owner    func(name, filter string) (uint64, bool)
	// readVia, if set, is the store the groups read through, and
	// progressVia the progress store they write to.
	readVia     func(*streams.Store) Store
	progressVia func(ProgressStore) ProgressStore
}

func startEnv(t testing.TB, o envOptions) *env {
	t.Helper()
	if o.dir == "" {
		o.dir = t.TempDir()
	}
	store, err := streams.Open(streams.Options{Dir: o.dir, AutoCreate: true, Logger: testLogger()})
	if err != nil {
		t.Fatal(err)
	}
	mapper, err := topic.NewMapper(o.rules, o.def)
	if err != nil {
		t.Fatal(err)
	}
	if o.defaults == (GroupOptions{}) {
		o.defaults = DefaultGroupOptions()
	}
	var reads Store = store
	if o.readVia != nil {
		reads = o.readVia(store)
	}
	var progress ProgressStore = store.KV("groups")
	if o.progressVia != nil {
		progress = o.progressVia(progress)
	}
	m, err := New(Options{Store: reads, Progress: progress, Mapper: mapper, Defaults: o.defaults, Declared: o.declared,
		FlushInterval: 20 * time.Millisecond, Logger: testLogger(), Owner: o.owner})
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Start(); err != nil {
		t.Fatal(err)
	}
	b, err := mqtt.New(mqtt.Options{TCPAddr: "127.0.0.1:0", Mapper: mapper, Store: store, Groups: m, Logger: testLogger()})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Start(); err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, dir: o.dir, store: store, broker: b, groups: m, addr: b.TCPAddr()}
	t.Cleanup(e.close)
	return e
}

// close shuts the node down gracefully (progress is persisted).
func (e *env) close() {
	if e.closed {
		return
	}
	e.closed = true
	e.broker.Close()
	e.groups.Close()
	e.store.Close()
}

// consumer is a paho MQTT 3.1.1 group member that records what it gets and
// acks (or not) under the test's control.
type consumer struct {
	id     string
	c      paho3.Client
	mu     sync.Mutex
	got    []paho3.Message
	noAck  bool
	maxInf int // most unacked messages held at once
	held   []paho3.Message
}

func (e *env) consumer(id, filter string, qos byte, noAck bool) *consumer {
	e.t.Helper()
	cons := &consumer{id: id, noAck: noAck}
	o := paho3.NewClientOptions().AddBroker("tcp://" + e.addr).SetClientID(id).SetAutoReconnect(false).
		SetOrderMatters(true).SetAutoAckDisabled(true).SetCleanSession(true).SetWriteTimeout(time.Second)
	o.SetDefaultPublishHandler(func(_ paho3.Client, m paho3.Message) { cons.receive(m) })
	cons.c = paho3.NewClient(o)
	if tok := cons.c.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		e.t.Fatalf("connect %s: %v", id, tok.Error())
	}
	if tok := cons.c.Subscribe(filter, qos, nil); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		e.t.Fatalf("subscribe %s: %v", id, tok.Error())
	}
	e.t.Cleanup(func() { cons.c.Disconnect(0) })
	return cons
}

func (c *consumer) receive(m paho3.Message) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.got = append(c.got, m)
	if c.noAck {
		c.held = append(c.held, m)
		c.maxInf = max(c.maxInf, len(c.held))
		return
	}
	m.Ack()
}

func (c *consumer) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.got)
}

func (c *consumer) payloads() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]string, len(c.got))
	for i, m := range c.got {
		out[i] = string(m.Payload())
	}
	return out
}

// ackHeld acks every message held so far.
func (c *consumer) ackHeld() {
	c.mu.Lock()
	held := c.held
	c.held = nil
	c.mu.Unlock()
	for _, m := range held {
		m.Ack()
	}
}

// publish sends n QoS 1 messages "prefix-i" on topic (i from start) and
// waits for every PUBACK.
func (e *env) publish(topic func(i int) string, prefix string, start, n int) {
	e.t.Helper()
	o := paho3.NewClientOptions().AddBroker("tcp://" + e.addr).SetClientID(fmt.Sprintf("pub-%s-%d", prefix, start)).
		SetAutoReconnect(false).SetOrderMatters(false)
	c := paho3.NewClient(o)
	if tok := c.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		e.t.Fatalf("connect publisher: %v", tok.Error())
	}
	defer c.Disconnect(0)
	const window = 512
	toks := make(chan paho3.Token, window)
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
	for i := start; i < start+n; i++ {
		toks <- c.Publish(topic(i), 1, false, fmt.Sprintf("%s-%d", prefix, i))
	}
	close(toks)
	if err := <-errc; err != nil {
		e.t.Fatal(err)
	}
}

func (e *env) stats(name, filter string) GroupStats {
	e.t.Helper()
	st, err := e.groups.Group(context.Background(), name, filter)
	if err != nil {
		e.t.Fatal(err)
	}
	return st
}

func constTopic(s string) func(int) string { return func(int) string { return s } }

func mqttDefaultNone() topic.DefaultRule { return topic.DefaultRule{Kind: topic.DefaultNone} }

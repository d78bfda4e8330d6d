package bench

import (
	"context"
	"encoding/binary"
	"strings"
	"testing"
	"time"

	"github.com/mqstream/mqstream/internal/testnode"
)

// startNode runs a real mqstream node on 127.0.0.1.
func startNode(t *testing.T) string {
	t.Helper()
	cfg := testnode.Config(t.TempDir())
	cfg.HTTP.Listen = ""
	return testnode.Start(t, cfg).MQTTAddr()
}

func opts(addr string, mode Mode) Options {
	return Options{Mode: mode, Broker: addr, Publishers: 2, Subscribers: 1, QoS: 1, SubQoS: 1, PayloadSize: 64,
		Window: 32, Version: 4, Count: 2000, Duration: 20 * time.Second, Drain: 2 * time.Second}
}

func TestPubCountsAcks(t *testing.T) {
	addr := startNode(t)
	res, err := Run(context.Background(), opts(addr, ModePub))
	if err != nil {
		t.Fatal(err)
	}
	if res.Published != 2000 || res.Acked != 2000 || res.Refused != 0 || res.PubRate <= 0 {
		t.Fatalf("%+v", res)
	}
	if l := res.AckLatency; l == nil || l.P50 <= 0 || l.P99 < l.P50 || !strings.Contains(res.String(), "ack latency us") {
		t.Fatalf("ack latency %+v", l)
	}
	o := opts(addr, ModePub)
	o.Version = 5
	o.QoS = 2
	if res, err := Run(context.Background(), o); err != nil || res.Acked != 2000 {
		t.Fatalf("MQTT 5, QoS 2: %+v %v", res, err)
	}
}

// TestE2EAccountsLossAndDuplicates: with a real broker delivering
// everything, deliberately dropped and duplicated deliveries are counted
// exactly.
func TestE2EAccountsLossAndDuplicates(t *testing.T) {
	addr := startNode(t)
	clean, err := Run(context.Background(), opts(addr, ModeE2E))
	if err != nil {
		t.Fatal(err)
	}
	if clean.Received != 2000 || clean.Expected != 2000 || clean.Lost != 0 || clean.Duplicated != 0 || clean.Latency == nil {
		t.Fatalf("clean run %+v", clean)
	}
	// The dropped deliveries never count as arrived, so this run waits
	// out the Drain after the last delivery, as it would for a lossy
	// broker: everything the broker sends is counted.
	o := opts(addr, ModeE2E)
	o.dropEvery, o.dupEvery = 10, 7
	res, err := Run(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	// Of 2000 deliveries, every 10th is dropped (200) and every 7th that is
	// not dropped is counted twice (285 multiples of 7, minus 28 of 70).
	if res.Lost != 200 || res.Duplicated != 257 || res.Expected != 2000 {
		t.Fatalf("lost %d duplicated %d expected %d, want 200 257 2000", res.Lost, res.Duplicated, res.Expected)
	}
}

// TestShareSpreadsWithoutLoss: a 3-member group on mqstream gets every
// record once.
func TestShareSpreadsWithoutLoss(t *testing.T) {
	addr := startNode(t)
	o := opts(addr, ModeShare)
	o.Subscribers = 3
	o.Count = 3000
	res, err := Run(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	if res.Received != 3000 || res.Lost != 0 || res.Duplicated != 0 || len(res.PerSubscriber) != 3 {
		t.Fatalf("%+v", res)
	}
	for _, n := range res.PerSubscriber {
		if n < 800 || n > 1200 {
			t.Fatalf("uneven spread %v", res.PerSubscriber)
		}
	}
	if !strings.Contains(res.String(), "lost 0, duplicated 0") {
		t.Fatalf("summary %q", res.String())
	}
}

func TestOptionsAreValidated(t *testing.T) {
	_, err := Run(context.Background(), Options{Mode: "fast", Window: 0, PayloadSize: 5, Version: 3})
	if err == nil {
		t.Fatal("accepted")
	}
	for _, want := range []string{"mode", "broker", "payload size", "window", "count", "duration", "version"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not mention %s: %v", want, err)
		}
	}
	if _, err := Run(context.Background(), opts("127.0.0.1:1", ModePub)); err == nil {
		t.Fatal("connected to nothing")
	}
}

// TestE2EPersistentSubscribers: with persistent sessions (both protocol
// versions) every message arrives once, and the sessions are gone after
// the run, so a second run starts clean.
func TestE2EPersistentSubscribers(t *testing.T) {
	addr := startNode(t)
	for _, version := range []byte{4, 5, 4} {
		o := opts(addr, ModeE2E)
		o.Persistent, o.Version, o.ClientPrefix = true, version, "persist"
		res, err := Run(context.Background(), o)
		if err != nil {
			t.Fatal(err)
		}
		if res.Received != 2000 || res.Lost != 0 || res.Duplicated != 0 {
			t.Fatalf("MQTT %d persistent run %+v", version, res)
		}
	}
}

// TestSpreadOverBrokersAndTopics: connections go round-robin over a list
// of brokers, and publishers cycle over --topics topics; every message is
// counted.
func TestSpreadOverBrokersAndTopics(t *testing.T) {
	a, b := startNode(t), startNode(t)
	o := opts(a+","+b, ModePub)
	o.Topic, o.Topics, o.Publishers, o.Count = "spread/%d", 6, 4, 600
	res, err := Run(context.Background(), o)
	if err != nil || res.Acked != 600 {
		t.Fatalf("%+v %v", res, err)
	}
	if got := brokerFor(a+", "+b, 3); got != b {
		t.Fatalf("connection 3 of 2 brokers dials %q", got)
	}
	if _, err := Run(context.Background(), opts(a+",", ModePub)); err == nil || !strings.Contains(err.Error(), "empty address") {
		t.Fatalf("a list with an empty address: %v", err)
	}
}

// TestDrainCountsDistinctMessages: the wait for deliveries ends when every
// expected message arrived, not when the deliveries, duplicates included,
// add up to the number expected (which ended it with messages still on
// their way, reported lost: TestE2EAccountsLossAndDuplicates failed that
// way one run in three).
func TestDrainCountsDistinctMessages(t *testing.T) {
	for _, mode := range []Mode{ModeE2E, ModeShare} {
		o := opts("unused:1", mode)
		o.Subscribers = 2
		r := &run{o: o, perPub: perPublisher(o)}
		for range o.Subscribers {
			s := &subscriber{seen: make([][]uint64, len(r.perPub))}
			for p, n := range r.perPub {
				s.seen[p] = make([]uint64, n/64+1)
			}
			r.subs = append(r.subs, s)
		}
		payload := make([]byte, headerSize)
		deliver := func(s *subscriber, p, seq int) {
			binary.BigEndian.PutUint32(payload, uint32(p))
			binary.BigEndian.PutUint64(payload[4:], uint64(seq))
			r.account(s, payload)
		}
		// Each subscriber gets publisher 0's 1000 messages twice and
		// publisher 1's first 900 once.
		for _, s := range r.subs {
			for seq := range 1000 {
				deliver(s, 0, seq)
				deliver(s, 0, seq)
			}
			for seq := range 900 {
				deliver(s, 1, seq)
			}
		}
		expected := int64(2000 * o.Subscribers)
		if mode == ModeShare {
			expected = 2000
		}
		if got := r.received.Load(); got < expected {
			t.Fatalf("%s: received %d, the test needs at least %d", mode, got, expected)
		}
		want := int64(1900 * o.Subscribers)
		if mode == ModeShare {
			want = 1900
		}
		if got := r.arrived(expected); got != want {
			t.Fatalf("%s: arrived %d, want %d", mode, got, want)
		}
		for _, s := range r.subs {
			for seq := 900; seq < 1000; seq++ {
				deliver(s, 1, seq)
			}
		}
		if got := r.arrived(expected); got != expected {
			t.Fatalf("%s: arrived %d after the rest, want %d", mode, got, expected)
		}
	}
}

package mqtt

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	paho3 "github.com/eclipse/paho.mqtt.golang"

	"github.com/mqstream/mqstream/shared"
	"github.com/mqstream/mqstream/streams"
	"github.com/mqstream/mqstream/topic"
)

// testLogger discards logs unless MQSTREAM_TEST_LOG is set.
func testLogger() *slog.Logger {
	if os.Getenv("MQSTREAM_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

type testNode struct {
	store  *streams.Store
	broker *Broker
	addr   string
}

// startBroker runs a store and a broker on 127.0.0.1 with random ports and
// data in a temp dir; both stop at the end of the test.
func startBroker(t testing.TB, rules []topic.Rule, mod func(*Options), storeMod func(*streams.Options)) *testNode {
	t.Helper()
	return startNode(t, rules, mod, storeMod, nil)
}

// startBrokerWithGroups also runs consumer groups that serve $share
// subscriptions, as a node does.
func startBrokerWithGroups(t testing.TB, mod func(*Options)) *testNode {
	t.Helper()
	return startNode(t, nil, mod, nil, func(*shared.GroupOptions) {})
}

// startBrokerWithGroupOptions runs consumer groups whose default options
// groupMod adjusts (nil: the defaults).
func startBrokerWithGroupOptions(t testing.TB, groupMod func(*shared.GroupOptions)) *testNode {
	t.Helper()
	if groupMod == nil {
		groupMod = func(*shared.GroupOptions) {}
	}
	return startNode(t, nil, nil, nil, groupMod)
}

// startNode runs a store and a broker, and consumer groups if groupMod is
// not nil.
func startNode(t testing.TB, rules []topic.Rule, mod func(*Options), storeMod func(*streams.Options), groupMod func(*shared.GroupOptions)) *testNode {
	t.Helper()
	sopts := streams.Options{Dir: t.TempDir(), AutoCreate: true, Logger: testLogger()}
	if storeMod != nil {
		storeMod(&sopts)
	}
	store, err := streams.Open(sopts)
	if err != nil {
		t.Fatal(err)
	}
	mapper, err := topic.NewMapper(rules, topic.DefaultRule{Kind: topic.DefaultFirstLevel})
	if err != nil {
		t.Fatal(err)
	}
	opts := Options{TCPAddr: "127.0.0.1:0", WSAddr: "127.0.0.1:0", Mapper: mapper, Store: store, Logger: testLogger(), MaxPayload: 1 << 20}
	var groups *shared.Manager
	if groupMod != nil {
		defaults := shared.DefaultGroupOptions()
		groupMod(&defaults)
		groups, err = shared.New(shared.Options{Store: store, Progress: store.KV("groups"), Mapper: mapper,
			Defaults: defaults, FlushInterval: 20 * time.Millisecond, Logger: testLogger()})
		if err == nil {
			err = groups.Start()
		}
		if err != nil {
			t.Fatal(err)
		}
		opts.Groups = groups
	}
	if mod != nil {
		mod(&opts)
	}
	b, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		b.Close()
		if groups != nil {
			groups.Close()
		}
		store.Close()
	})
	return &testNode{store: store, broker: b, addr: b.TCPAddr()}
}

// connectV3 connects an MQTT 3.1.1 paho client.
func connectV3(t testing.TB, url, id string, mod func(*paho3.ClientOptions)) paho3.Client {
	t.Helper()
	o := paho3.NewClientOptions().AddBroker(url).SetClientID(id).SetAutoReconnect(false).
		SetConnectRetry(false).SetOrderMatters(false).SetConnectTimeout(5 * time.Second)
	if mod != nil {
		mod(o)
	}
	c := paho3.NewClient(o)
	tok := c.Connect()
	if !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("connect %s: %v", id, tok.Error())
	}
	t.Cleanup(func() { c.Disconnect(50) })
	return c
}

// connectV5 connects an MQTT 5 paho client; received publishes go to recv (if not nil).
func connectV5(t testing.TB, addr, id string, recv chan<- *paho.Publish, mod func(*paho.Connect)) *paho.Client {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	cfg := paho.ClientConfig{ClientID: id, Conn: conn}
	if recv != nil {
		cfg.OnPublishReceived = []func(paho.PublishReceived) (bool, error){func(pr paho.PublishReceived) (bool, error) {
			recv <- pr.Packet
			return true, nil
		}}
	}
	c := paho.NewClient(cfg)
	cp := &paho.Connect{ClientID: id, KeepAlive: 30, CleanStart: true}
	if mod != nil {
		mod(cp)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ca, err := c.Connect(ctx, cp)
	if err != nil {
		t.Fatalf("connect %s: %v", id, err)
	}
	if ca.ReasonCode != 0 {
		t.Fatalf("connect %s: reason 0x%02x", id, ca.ReasonCode)
	}
	t.Cleanup(func() { _ = c.Disconnect(&paho.Disconnect{}) })
	return c
}

func streamRecords(t testing.TB, s *streams.Store, name string) []streams.Record {
	t.Helper()
	var out []streams.Record
	err := s.Scan(context.Background(), name, 0, 0, func(r streams.Record) (bool, error) {
		out = append(out, r)
		return true, nil
	})
	if err != nil {
		t.Fatalf("scan %s: %v", name, err)
	}
	return out
}

func recordCount(s *streams.Store, name string) int64 {
	info, err := s.DescribeStream(name)
	if err != nil {
		return 0
	}
	return info.Records
}

func waitToken(t testing.TB, tok paho3.Token, what string) {
	t.Helper()
	if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("%s: %v", what, fmt.Sprint(tok.Error()))
	}
}

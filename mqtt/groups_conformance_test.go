package mqtt_test

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	paho3 "github.com/eclipse/paho.mqtt.golang"
	"github.com/mqstream/mqstream/config"
	"github.com/mqstream/mqstream/internal/testnode"
)

// TestSharedWildcardGetsNoDollarTopicsFromGroups (issue item 3, with
// consumer groups as a node runs them): a "$share/g/#" member gets neither
// the broker's $SYS messages nor stored records on '$' topics (a rule may
// store them), since a filter starting with a wildcard does not match
// topics starting with '$' [MQTT-4.7.2-1]; it gets the other records.
func TestSharedWildcardGetsNoDollarTopicsFromGroups(t *testing.T) {
	cfg := testnode.Config(t.TempDir())
	cfg.Streams.Rules = []config.Rule{{Filter: "$foo/#", Stream: "dollar"}}
	n := testnode.Start(t, cfg)
	groups := n.Groups()
	url := "tcp://" + n.MQTTAddr()
	connect := func(id string, handler paho3.MessageHandler) paho3.Client {
		c := paho3.NewClient(paho3.NewClientOptions().AddBroker(url).SetClientID(id).SetAutoReconnect(false).
			SetDefaultPublishHandler(handler))
		if tok := c.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
			t.Fatalf("connect %s: %v", id, tok.Error())
		}
		t.Cleanup(func() { c.Disconnect(50) })
		return c
	}
	wait := func(tok paho3.Token, what string) {
		t.Helper()
		if !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
			t.Fatalf("%s: %v", what, tok.Error())
		}
	}

	var mu sync.Mutex // guards got
	var got []string
	member := connect("member", func(_ paho3.Client, m paho3.Message) {
		mu.Lock()
		got = append(got, m.Topic())
		mu.Unlock()
	})
	wait(member.Subscribe("$share/g/#", 1, nil), "subscribe $share/g/#")
	ticks := make(chan struct{}, 16)
	obs := connect("observer", func(paho3.Client, paho3.Message) {
		select {
		case ticks <- struct{}{}:
		default:
		}
	})
	wait(obs.Subscribe("$SYS/broker/uptime", 0, nil), "subscribe $SYS")
	pub := connect("pub", nil)
	wait(pub.Publish("$foo/x", 1, false, "stored, not for #"), "publish $foo/x")
	wait(pub.Publish("jobs/1", 1, false, "for #"), "publish jobs/1")
	for i := 0; i < 3; i++ { // $SYS rounds go by
		select {
		case <-ticks:
		case <-time.After(5 * time.Second):
			t.Fatal("no $SYS tick")
		}
	}
	// The group has read past the $foo/x record and delivered jobs/1.
	deadline := time.Now().Add(5 * time.Second)
	for {
		st, err := groups.Group(context.Background(), "g", "#")
		if err != nil {
			t.Fatal(err)
		}
		passed := false
		for _, c := range st.Streams {
			if c.Stream == "dollar" {
				passed = c.ReadPos >= 1 && c.Lag == 0
			}
		}
		mu.Lock()
		n := len(got)
		mu.Unlock()
		if passed && st.Lag == 0 && n >= 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("group did not settle: %+v, member got %d", st, n)
		}
		time.Sleep(10 * time.Millisecond)
	}
	mu.Lock()
	defer mu.Unlock()
	for _, tp := range got {
		if strings.HasPrefix(tp, "$") {
			t.Fatalf("$share/g/# member got %s (all: %v)", tp, got)
		}
	}
	if len(got) != 1 || got[0] != "jobs/1" {
		t.Fatalf("member got %v, want [jobs/1]", got)
	}
}

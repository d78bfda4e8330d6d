package node

import (
	"context"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	paho3 "github.com/eclipse/paho.mqtt.golang"

	"github.com/mqstream/mqstream/config"
	"github.com/mqstream/mqstream/internal/testutil"
	"github.com/mqstream/mqstream/mqtt"
	"github.com/mqstream/mqstream/streams"
)

// storedAndLive maps stored/# to the stream "stored" and stores nothing
// else.
func storedAndLive(c *config.Config) {
	c.Streams.DefaultRule = "none"
	c.Streams.Rules = []config.Rule{{Filter: "stored/#", Stream: "stored"}}
}

// subscriber is an MQTT 3.1.1 client that records what it receives, by
// topic, with the QoS it came with.
type subscriber struct {
	c    paho3.Client
	mu   sync.Mutex
	got  map[string][]string // topic -> payloads in arrival order
	qos  map[string]byte     // topic -> QoS of the last message
	seen int
}

func subscribe(t *testing.T, addr, id string, filters map[string]byte) *subscriber {
	t.Helper()
	s := &subscriber{got: map[string][]string{}, qos: map[string]byte{}}
	o := paho3.NewClientOptions().AddBroker("tcp://" + addr).SetClientID(id).SetAutoReconnect(false).SetOrderMatters(true)
	o.SetDefaultPublishHandler(func(_ paho3.Client, m paho3.Message) {
		s.mu.Lock()
		s.got[m.Topic()] = append(s.got[m.Topic()], string(m.Payload()))
		s.qos[m.Topic()] = m.Qos()
		s.seen++
		s.mu.Unlock()
	})
	s.c = paho3.NewClient(o)
	if tok := s.c.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("connect %s to %s: %v", id, addr, tok.Error())
	}
	t.Cleanup(func() { s.c.Disconnect(0) })
	if len(filters) > 0 {
		if tok := s.c.SubscribeMultiple(filters, nil); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
			t.Fatalf("subscribe %s: %v", id, tok.Error())
		}
	}
	return s
}

func (s *subscriber) payloads(topic string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.got[topic])
}

func (s *subscriber) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.seen
}

// publishAll publishes n messages on each topic at qos from one client,
// interleaved, many in flight, and waits for every acknowledgement.
func publishAll(t *testing.T, addr, id string, qos byte, n int, topics ...string) {
	t.Helper()
	c := paho3.NewClient(paho3.NewClientOptions().AddBroker("tcp://" + addr).SetClientID(id).SetOrderMatters(true))
	if tok := c.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	defer c.Disconnect(0)
	var toks []paho3.Token
	for i := range n {
		for _, tp := range topics {
			toks = append(toks, c.Publish(tp, qos, false, fmt.Sprintf("%s-%d", tp, i)))
		}
	}
	for _, tok := range toks {
		if !tok.WaitTimeout(20*time.Second) || tok.Error() != nil {
			t.Fatalf("publish through %s: %v", addr, tok.Error())
		}
	}
}

// sequence is what publishAll publishes on topic.
func sequence(topic string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("%s-%d", topic, i)
	}
	return out
}

// TestSubscribersOnOtherNodesGetMessages: subscribers on every node get
// what a client publishes on one node, stored or not, at every QoS, in the
// publisher's order, with the QoS downgraded to the subscription's.
func TestSubscribersOnOtherNodesGetMessages(t *testing.T) {
	nodes := startClusterWith(t, storedAndLive)
	filters := map[string]byte{"stored/#": 2, "live/+": 1, "q0/#": 0}
	var subs []*subscriber
	for i, n := range nodes {
		subs = append(subs, subscribe(t, n.MQTTAddr(), fmt.Sprintf("sub-%d", i), filters))
	}
	const n = 200
	var wg sync.WaitGroup
	for qos, topics := range map[byte][]string{0: {"q0/a"}, 1: {"stored/a", "live/a"}, 2: {"stored/b", "live/b"}} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			publishAll(t, nodes[0].MQTTAddr(), fmt.Sprintf("pub-q%d", qos), qos, n, topics...)
		}()
	}
	wg.Wait()
	topics := []string{"q0/a", "stored/a", "live/a", "stored/b", "live/b"}
	for i, s := range subs {
		testutil.Eventually(t, 20*time.Second, fmt.Sprintf("subscriber on %s gets every message", nodes[i].ID()), func() bool {
			return s.count() >= n*len(topics)
		})
		for _, tp := range topics {
			if got := s.payloads(tp); !slices.Equal(got, sequence(tp, n)) {
				t.Fatalf("subscriber on %s, %s: %d messages, order or duplicates wrong: %v", nodes[i].ID(), tp, len(got), got)
			}
		}
		s.mu.Lock()
		if s.qos["live/b"] != 1 || s.qos["stored/b"] != 2 || s.qos["q0/a"] != 0 {
			t.Errorf("subscriber on %s: QoS not min(publish, subscription): %v", nodes[i].ID(), s.qos)
		}
		s.mu.Unlock()
	}
	// The stored ones were stored once.
	sameRecords(t, nodes, "stored", 2*n)
}

// TestPublishRightAfterSubackReachesAnotherNode: a message published on
// one node right after a client on another got its SUBACK reaches it:
// SUBACK waits until the other nodes know the new route.
func TestPublishRightAfterSubackReachesAnotherNode(t *testing.T) {
	nodes := startClusterWith(t, storedAndLive)
	pub := paho3.NewClient(paho3.NewClientOptions().AddBroker("tcp://" + nodes[0].MQTTAddr()).SetClientID("pub"))
	if tok := pub.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	defer pub.Disconnect(0)
	sub := subscribe(t, nodes[2].MQTTAddr(), "sub", nil)
	for i := range 20 {
		tp := fmt.Sprintf("live/new-%d", i) // a filter new to the cluster each time
		if tok := sub.c.Subscribe(tp, 1, nil); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
			t.Fatal(tok.Error())
		}
		if tok := pub.Publish(tp, 1, false, "x"); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
			t.Fatal(tok.Error())
		}
		testutil.Eventually(t, 5*time.Second, tp+" delivered across nodes", func() bool { return len(sub.payloads(tp)) == 1 })
	}
	// Unsubscribed: the publishing node stops routing the topic there.
	if tok := sub.c.Unsubscribe("live/new-0"); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	testutil.Eventually(t, 5*time.Second, "n1 forgets the route", func() bool { return !nodes[0].routes.Wanted("live/new-0") })
	if !nodes[0].routes.Wanted("live/new-1") {
		t.Fatal("n1 forgot a route still subscribed")
	}
	// A session that ends takes its routes with it.
	sub.c.Disconnect(0)
	testutil.Eventually(t, 5*time.Second, "n1 forgets the disconnected client's routes", func() bool {
		return !nodes[0].routes.Wanted("live/new-1")
	})
}

// TestMQTT5PropertiesCrossNodes: an MQTT 5 message keeps its properties on
// the way to another node (the expiry counts down), and the
// subscription's identifier and Retain As Published apply there.
func TestMQTT5PropertiesCrossNodes(t *testing.T) {
	nodes := startClusterWith(t, storedAndLive)
	got := make(chan *paho.Publish, 10)
	conn, err := net.Dial("tcp", nodes[1].MQTTAddr())
	if err != nil {
		t.Fatal(err)
	}
	sub := paho.NewClient(paho.ClientConfig{ClientID: "sub5", Conn: conn,
		OnPublishReceived: []func(paho.PublishReceived) (bool, error){func(pr paho.PublishReceived) (bool, error) {
			got <- pr.Packet
			return true, nil
		}}})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if ca, err := sub.Connect(ctx, &paho.Connect{ClientID: "sub5", KeepAlive: 30, CleanStart: true}); err != nil || ca.ReasonCode != 0 {
		t.Fatalf("connect: %v %v", ca, err)
	}
	defer sub.Disconnect(&paho.Disconnect{})
	subID := 7
	if _, err := sub.Subscribe(ctx, &paho.Subscribe{Properties: &paho.SubscribeProperties{SubscriptionIdentifier: &subID},
		Subscriptions: []paho.SubscribeOptions{{Topic: "live/#", QoS: 1, RetainAsPublished: true}}}); err != nil {
		t.Fatal(err)
	}
	pconn, err := net.Dial("tcp", nodes[0].MQTTAddr())
	if err != nil {
		t.Fatal(err)
	}
	pub := paho.NewClient(paho.ClientConfig{ClientID: "pub5", Conn: pconn})
	if ca, err := pub.Connect(ctx, &paho.Connect{ClientID: "pub5", KeepAlive: 30, CleanStart: true}); err != nil || ca.ReasonCode != 0 {
		t.Fatalf("connect: %v %v", ca, err)
	}
	defer pub.Disconnect(&paho.Disconnect{})
	expiry := uint32(60)
	if _, err := pub.Publish(ctx, &paho.Publish{Topic: "live/x", QoS: 1, Retain: true, Payload: []byte("hello"),
		Properties: &paho.PublishProperties{ContentType: "text/plain", ResponseTopic: "live/reply", CorrelationData: []byte{1, 2},
			MessageExpiry: &expiry, User: paho.UserProperties{{Key: "k", Value: "v"}}}}); err != nil {
		t.Fatal(err)
	}
	select {
	case p := <-got:
		pr := p.Properties
		if string(p.Payload) != "hello" || !p.Retain || pr == nil || pr.ContentType != "text/plain" || pr.ResponseTopic != "live/reply" ||
			string(pr.CorrelationData) != "\x01\x02" || pr.User.Get("k") != "v" || pr.SubscriptionIdentifier == nil ||
			*pr.SubscriptionIdentifier != 7 || pr.MessageExpiry == nil || *pr.MessageExpiry > 60 || *pr.MessageExpiry < 55 {
			t.Fatalf("delivered across nodes as %+v with %+v", p, pr)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("nothing delivered across nodes")
	}
}

// retainedOn returns the retained payload n holds for topic ("" if none).
func retainedOn(n *Node, topic string) string {
	pk, ok := n.broker.Server().Topics.Retained.Get(topic)
	if !ok {
		return ""
	}
	return string(pk.Payload)
}

// retainedEverywhere waits until every node holds want ("" = nothing) as
// topic's retained message.
func retainedEverywhere(t *testing.T, nodes []*Node, topic, want string) {
	t.Helper()
	for _, n := range nodes {
		testutil.Eventually(t, 10*time.Second, fmt.Sprintf("%s holds %q retained on %s", n.ID(), want, topic), func() bool {
			return retainedOn(n, topic) == want
		})
	}
}

func publishRetained(t *testing.T, addr, topic, payload string) {
	t.Helper()
	c := paho3.NewClient(paho3.NewClientOptions().AddBroker("tcp://" + addr).SetClientID(fmt.Sprintf("retainer-%s-%s-%s", addr, topic, payload)))
	if tok := c.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	defer c.Disconnect(0)
	if tok := c.Publish(topic, 1, true, payload); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
}

// TestRetainedMessagesAreClusterWide: a retained message set, replaced and
// cleared on any node is seen by new subscriptions on every node; a node
// that was down while it changed gets it when it comes back; concurrent
// sets on two nodes end the same everywhere.
func TestRetainedMessagesAreClusterWide(t *testing.T) {
	nodes, cfgs := startClusterConfigs(t, storedAndLive)
	publishRetained(t, nodes[0].MQTTAddr(), "live/r", "v1")
	retainedEverywhere(t, nodes, "live/r", "v1")
	sub := subscribe(t, nodes[1].MQTTAddr(), "sub-r", map[string]byte{"live/#": 1})
	testutil.Eventually(t, 5*time.Second, "a new subscription on n2 gets it", func() bool { return len(sub.payloads("live/r")) == 1 })
	if got := sub.payloads("live/r"); got[0] != "v1" {
		t.Fatalf("retained on n2: %v", got)
	}
	publishRetained(t, nodes[2].MQTTAddr(), "live/r", "v2") // replaced on n3
	retainedEverywhere(t, nodes, "live/r", "v2")
	publishRetained(t, nodes[2].MQTTAddr(), "stored/r", "kept") // stored topics too
	publishRetained(t, nodes[1].MQTTAddr(), "live/r", "")       // cleared on n2
	retainedEverywhere(t, nodes, "live/r", "")
	retainedEverywhere(t, nodes, "stored/r", "kept")

	// n3 goes down; meanwhile a topic is set and another cleared.
	if err := nodes[2].Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	publishRetained(t, nodes[0].MQTTAddr(), "live/away", "while-down")
	publishRetained(t, nodes[0].MQTTAddr(), "stored/r", "")
	n3 := startNode(t, cfgs[2])
	testutil.Eventually(t, 20*time.Second, "n3 ready again", n3.Ready)
	nodes[2] = n3
	retainedEverywhere(t, nodes, "live/away", "while-down")
	retainedEverywhere(t, nodes, "stored/r", "")
	retainedEverywhere(t, nodes, "live/r", "")

	// Concurrent sets of one topic on two nodes: one wins everywhere.
	var wg sync.WaitGroup
	for i, n := range nodes[:2] {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range 20 {
				publishRetained(t, n.MQTTAddr(), "live/race", fmt.Sprintf("n%d-%d", i, j))
			}
		}()
	}
	wg.Wait()
	testutil.Eventually(t, 10*time.Second, "every node holds the same live/race", func() bool {
		a, b, c := retainedOn(nodes[0], "live/race"), retainedOn(nodes[1], "live/race"), retainedOn(nodes[2], "live/race")
		return a != "" && a == b && b == c
	})
	if got := retainedOn(nodes[0], "live/race"); got != "n0-19" && got != "n1-19" {
		t.Fatalf("live/race ended as %q, not one node's last set", got)
	}
}

// liveOn reports whether client id has an open connection on n.
func liveOn(n *Node, id string) bool {
	cl, ok := n.broker.Server().Clients.Get(id)
	return ok && !cl.Closed()
}

// connectV3 connects client id to addr (MQTT 3.1.1, clean session as
// given); lost is closed when the server drops the connection.
func connectV3(t *testing.T, addr, id string, clean bool) (paho3.Client, chan struct{}) {
	t.Helper()
	lost := make(chan struct{})
	var once sync.Once
	o := paho3.NewClientOptions().AddBroker("tcp://" + addr).SetClientID(id).SetCleanSession(clean).SetAutoReconnect(false).
		SetConnectionLostHandler(func(paho3.Client, error) { once.Do(func() { close(lost) }) })
	c := paho3.NewClient(o)
	if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("connect %s to %s: %v", id, addr, tok.Error())
	}
	t.Cleanup(func() { c.Disconnect(0) })
	return c, lost
}

// TestClientIDIsTakenOverAcrossNodes: a client id connected on one node
// and connecting on another is disconnected on the first, whose session
// (and its routes) ends; an id flapping between nodes, one after the
// other or at once, ends with exactly one live connection.
func TestClientIDIsTakenOverAcrossNodes(t *testing.T) {
	nodes := startClusterWith(t, storedAndLive)
	c1, lost1 := connectV3(t, nodes[0].MQTTAddr(), "dev", false)
	if tok := c1.Subscribe("live/dev", 1, nil); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	if !nodes[1].routes.Wanted("live/dev") {
		t.Fatal("n2 does not route live/dev to n1")
	}
	connectV3(t, nodes[2].MQTTAddr(), "dev", false)
	select {
	case <-lost1:
	case <-time.After(10 * time.Second):
		t.Fatal("the connection on n1 was not taken over")
	}
	testutil.Eventually(t, 5*time.Second, "dev's session, with its subscription, moved from n1 to n3", func() bool {
		_, held := nodes[0].broker.Server().Clients.Get("dev")
		s, ok := sessionOn(nodes[2], "dev")
		return !held && ok && s.Subscriptions == 1
	})
	if !liveOn(nodes[2], "dev") {
		t.Fatal("dev is not connected on n3")
	}

	// One after the other: n1, n2, n1.
	for _, i := range []int{0, 1, 0} {
		connectV3(t, nodes[i].MQTTAddr(), "flap", true)
	}
	testutil.Eventually(t, 5*time.Second, "flap connected on n1 only", func() bool {
		return liveOn(nodes[0], "flap") && !liveOn(nodes[1], "flap") && !liveOn(nodes[2], "flap")
	})

	// At once on all three nodes, a few times: exactly one stays.
	for round := range 5 {
		id := fmt.Sprintf("race-%d", round)
		var wg sync.WaitGroup
		for _, n := range nodes {
			wg.Add(1)
			go func() {
				defer wg.Done()
				o := paho3.NewClientOptions().AddBroker("tcp://" + n.MQTTAddr()).SetClientID(id).SetAutoReconnect(false)
				c := paho3.NewClient(o)
				if tok := c.Connect(); tok.WaitTimeout(10*time.Second) && tok.Error() == nil {
					t.Cleanup(func() { c.Disconnect(0) })
				}
			}()
		}
		wg.Wait()
		testutil.Eventually(t, 10*time.Second, id+" live on exactly one node", func() bool {
			live := 0
			for _, n := range nodes {
				if liveOn(n, id) {
					live++
				}
			}
			return live == 1
		})
	}
}

// sessionOn returns client id's session on n (ok false: none).
func sessionOn(n *Node, id string) (mqtt.SessionInfo, bool) {
	for _, s := range n.broker.Sessions() {
		if s.ClientID == id {
			return s, true
		}
	}
	return mqtt.SessionInfo{}, false
}

// TestPersistentSessionMovesToAnotherNode: a persistent session with 1,000
// queued QoS 1 messages moves with its client from n1 to n3 (session
// present, every message once, in order, its subscription with it), and
// again from n3 to n2 while connected with messages in flight.
func TestPersistentSessionMovesToAnotherNode(t *testing.T) {
	nodes := startClusterWith(t, storedAndLive)
	c, _ := connectCollector(t, nodes[0].MQTTAddr(), "mover", true)
	if tok := c.c.Subscribe("live/m", 1, nil); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	c.c.Disconnect(0)
	testutil.Eventually(t, 5*time.Second, "mover's session kept on n1", func() bool {
		s, ok := sessionOn(nodes[0], "mover")
		return ok && !s.Connected
	})
	const n = 1000
	publishWindow(t, nodes[1].MQTTAddr(), "live/m", "m", n, false) // queued on n1 from n2
	testutil.Eventually(t, 10*time.Second, "1,000 queued for mover on n1", func() bool {
		s, _ := sessionOn(nodes[0], "mover")
		return s.Queued == n
	})

	moved, present := connectCollector(t, nodes[2].MQTTAddr(), "mover", true)
	if !present {
		t.Fatal("no session present on n3: the session did not move")
	}
	testutil.Eventually(t, 20*time.Second, "mover gets the 1,000 messages on n3", func() bool { return len(moved.payloads()) >= n })
	want := sequenceOf("m", n)
	if got := moved.payloads(); !slices.Equal(got, want) {
		t.Fatalf("on n3: %d messages, lost, duplicated or out of order", len(got))
	}
	if _, ok := sessionOn(nodes[0], "mover"); ok {
		t.Fatal("n1 still holds mover's session")
	}
	// The subscription moved too: a new message reaches the client on n3.
	publishWindow(t, nodes[0].MQTTAddr(), "live/m", "after", 1, false)
	testutil.Eventually(t, 10*time.Second, "a message published after the move", func() bool {
		got := moved.payloads()
		return len(got) == n+1 && got[n] == "after-0"
	})

	// Connected, with unacknowledged messages: they move too.
	moved.c.Disconnect(0)
	unacked, _ := connectCollector(t, nodes[2].MQTTAddr(), "mover", false)
	publishWindow(t, nodes[0].MQTTAddr(), "live/m", "late", 20, false)
	testutil.Eventually(t, 10*time.Second, "20 in flight on n3", func() bool { return len(unacked.payloads()) == 20 })
	again, present := connectCollector(t, nodes[1].MQTTAddr(), "mover", true)
	if !present {
		t.Fatal("no session present on n2")
	}
	testutil.Eventually(t, 10*time.Second, "the 20 unacknowledged are sent again on n2", func() bool {
		return len(again.payloads()) >= 20
	})
	if got := again.payloads(); !slices.Equal(got[:20], sequenceOf("late", 20)) {
		t.Fatalf("on n2: %v", got)
	}
}

// sequenceOf is what publishWindow publishes.
func sequenceOf(prefix string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("%s-%d", prefix, i)
	}
	return out
}

// strandSession leaves client id's session on n1 subscribed to live/old,
// stops n1 as a crash would (stopWithoutLeaving: a node stopped
// gracefully hands its sessions over), has the client connect on n2 (no session present) and
// subscribe to live/new there, then restarts n1, which restores its old
// copy of the session from disk. It returns the nodes, the restarted n1
// first.
func strandSession(t *testing.T, id string) []*Node {
	t.Helper()
	return strandSessionThen(t, id, nil)
}

// strandSessionThen is strandSession, running then (if not nil) once the
// client's session on n2 is disconnected, before n1 restarts.
func strandSessionThen(t *testing.T, id string, then func(nodes []*Node)) []*Node {
	t.Helper()
	nodes, cfgs := startClusterConfigs(t, storedAndLive)
	old, _ := connectCollector(t, nodes[0].MQTTAddr(), id, true)
	if tok := old.c.Subscribe("live/old", 1, nil); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	old.c.Disconnect(0)
	stopWithoutLeaving(t, nodes[0])
	testutil.Eventually(t, 20*time.Second, "n2 no longer counts n1 up", func() bool {
		for _, m := range nodes[1].Members() {
			if m.ID == "n1" {
				return m.Status != "alive" && m.Status != "suspect"
			}
		}
		return true
	})
	moved, present := connectCollector(t, nodes[1].MQTTAddr(), id, true)
	if present {
		t.Fatal("a session present on n2 although n1, which held it, was down")
	}
	if tok := moved.c.Subscribe("live/new", 1, nil); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	moved.c.Disconnect(0)
	if then != nil {
		then(nodes)
	}

	n1 := startNode(t, cfgs[0])
	testutil.Eventually(t, 20*time.Second, "n1 ready again", n1.Ready)
	if s, ok := sessionOn(n1, id); !ok || s.Subscriptions != 1 {
		t.Fatalf("n1 did not restore its old copy: %+v %v", s, ok)
	}
	return []*Node{n1, nodes[1], nodes[2]}
}

// stopWithoutLeaving stops n as a crash would for the other nodes: it
// neither leaves the cluster (they find it failed) nor hands its
// persistent sessions over; its disk is closed cleanly.
func stopWithoutLeaving(t *testing.T, n *Node) {
	t.Helper()
	n.refused.Store(true) // the cluster closer then abandons membership
	if err := n.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// TestStaleSessionOfARestartedNodeYields: a client moves to n2 while n1,
// which held its session, is down; n1 comes back with the old session
// from its disk. At the client's next connect on n2 it keeps the session
// it has there (its subscription, not the old one), and n1's copy ends.
func TestStaleSessionOfARestartedNodeYields(t *testing.T) {
	nodes := strandSession(t, "wanderer")
	n1 := nodes[0]
	// Claims go to the nodes a node routes to: wait until n2 counts n1
	// again (membership events reach it a moment after n1 is back).
	testutil.Eventually(t, 10*time.Second, "n2 routes to n1 again", func() bool {
		return slices.Contains(nodes[1].routes.Stats().Peers, "n1")
	})
	again, present := connectCollector(t, nodes[1].MQTTAddr(), "wanderer", true)
	if !present {
		t.Fatal("no session present on n2")
	}
	publishWindow(t, nodes[2].MQTTAddr(), "live/new", "new", 1, false)
	testutil.Eventually(t, 10*time.Second, "n2's own subscription delivers", func() bool { return len(again.payloads()) == 1 })
	testutil.Eventually(t, 5*time.Second, "n1's stale copy ended", func() bool {
		_, ok := sessionOn(n1, "wanderer")
		return !ok
	})
	publishWindow(t, nodes[2].MQTTAddr(), "live/old", "old", 1, false)
	publishWindow(t, nodes[2].MQTTAddr(), "live/new", "new2", 1, false)
	testutil.Eventually(t, 10*time.Second, "the next message on live/new", func() bool { return len(again.payloads()) == 2 })
	if got := again.payloads(); got[0] != "new-0" || got[1] != "new2-0" {
		t.Fatalf("got %v: the old subscription came back", got)
	}
}

// TestStaleSessionOfARestartedNodeIsReplacedThere: as above, but the
// client's next connect is on n1, the node with the stale copy. The copy
// n2 hands over is of a newer claim: n1 replaces its own with it, so the
// client gets its subscription on live/new and what was queued for it on
// n2, not the old subscription.
func TestStaleSessionOfARestartedNodeIsReplacedThere(t *testing.T) {
	nodes := strandSession(t, "returner")
	n1 := nodes[0]
	testutil.Eventually(t, 10*time.Second, "n1 routes to n2", func() bool {
		return slices.Contains(n1.routes.Stats().Peers, "n2")
	})
	publishWindow(t, nodes[2].MQTTAddr(), "live/new", "queued", 3, false) // queued on n2
	testutil.Eventually(t, 10*time.Second, "3 queued on n2", func() bool {
		s, _ := sessionOn(nodes[1], "returner")
		return s.Queued == 3
	})
	back, present := connectCollector(t, n1.MQTTAddr(), "returner", true)
	if !present {
		t.Fatal("no session present on n1")
	}
	testutil.Eventually(t, 10*time.Second, "the 3 queued on n2", func() bool { return len(back.payloads()) >= 3 })
	publishWindow(t, nodes[2].MQTTAddr(), "live/old", "old", 1, false)
	publishWindow(t, nodes[2].MQTTAddr(), "live/new", "new", 1, false)
	testutil.Eventually(t, 10*time.Second, "the next message on live/new", func() bool { return len(back.payloads()) >= 4 })
	if got := back.payloads(); !slices.Equal(got, []string{"queued-0", "queued-1", "queued-2", "new-0"}) {
		t.Fatalf("got %v: want n2's session (its queue, then live/new only)", got)
	}
	if _, ok := sessionOn(nodes[1], "returner"); ok {
		t.Fatal("n2 still holds returner's session")
	}
}

// TestWillsOfAStoppingNodeAreStoredAndDelivered: a node stopped
// gracefully disconnects its clients; their wills are stored (every one,
// in streams over several shards, led here or elsewhere) and reach
// subscribers on the other nodes, as a failed node's are. The node leaves
// the cluster only after that: once it has left, nobody acts for it.
func TestWillsOfAStoppingNodeAreStoredAndDelivered(t *testing.T) {
	nodes := startCluster(t)
	sub := subscribe(t, nodes[0].MQTTAddr(), "will-watcher", map[string]byte{"+/gone": 1})
	const clients = 8
	var topics []string
	for i := range clients {
		topic := fmt.Sprintf("will%d/gone", i) // stream will<i> (first-level)
		topics = append(topics, topic)
		o := paho3.NewClientOptions().AddBroker("tcp://"+nodes[2].MQTTAddr()).SetClientID(fmt.Sprintf("willing-%d", i)).
			SetAutoReconnect(false).SetBinaryWill(topic, []byte("gone"), 1, false)
		c := paho3.NewClient(o)
		if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
			t.Fatal(tok.Error())
		}
	}
	// n3 forwards to n1 once it knows n1's filter (the subscriber's
	// SUBACK waits for that at most routes.Options.SyncWait).
	testutil.Eventually(t, 10*time.Second, "n3 knows n1's filter", func() bool {
		return nodes[2].routes.Stats().RemoteFilters["n1"] >= 1
	})
	if err := nodes[2].Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	st := nodes[2].routes.Stats()
	received := func() string {
		var out []string
		for _, topic := range topics {
			out = append(out, fmt.Sprintf("%s:%d", topic, len(sub.payloads(topic))))
		}
		return strings.Join(out, " ")
	}
	defer func() {
		if t.Failed() {
			t.Logf("wills received by topic: %s; n3's routes when it stopped: forwarded %d, dropped %d", received(), st.Forwarded, st.Dropped)
		}
	}()
	testutil.Eventually(t, 20*time.Second, "every will on n1's subscriber", func() bool { return sub.count() >= clients })
	for _, topic := range topics {
		if got := sub.payloads(topic); !slices.Equal(got, []string{"gone"}) {
			t.Fatalf("%s: %v", topic, got)
		}
	}
	var missing []string
	defer func() {
		if t.Failed() && len(missing) > 0 {
			t.Logf("wills not stored: %v", missing)
		}
	}()
	testutil.Eventually(t, 5*time.Second, "every will stored", func() bool {
		missing = missing[:0]
		for i := range clients {
			stream := fmt.Sprintf("will%d", i)
			if recs, err := nodes[0].Store().Read(stream, 0, streams.ReadOptions{MaxRecords: 10}); err != nil || len(recs) != 1 {
				missing = append(missing, stream)
			}
		}
		return len(missing) == 0
	})
}

// TestCleanStartSessionKeepsItsStamp: as above, but before n1 comes back
// the client starts clean on n2 (MQTT 5, with a session expiry) and
// subscribes to live/newer. That new session carries its claim's stamp,
// so when the client connects to n1 it gets n2's copy (live/newer only),
// not n1's stale one (live/old).
func TestCleanStartSessionKeepsItsStamp(t *testing.T) {
	const id = "cleaner"
	nodes := strandSessionThen(t, id, func(nodes []*Node) {
		testutil.Eventually(t, 5*time.Second, "the session kept on n2", func() bool {
			s, ok := sessionOn(nodes[1], id)
			return ok && !s.Connected
		})
		conn, err := net.Dial("tcp", nodes[1].MQTTAddr())
		if err != nil {
			t.Fatal(err)
		}
		c5 := paho.NewClient(paho.ClientConfig{ClientID: id, Conn: conn})
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		expiry := uint32(300)
		if ca, err := c5.Connect(ctx, &paho.Connect{ClientID: id, KeepAlive: 30, CleanStart: true,
			Properties: &paho.ConnectProperties{SessionExpiryInterval: &expiry}}); err != nil || ca.ReasonCode != 0 {
			t.Fatalf("connect: %v %v", ca, err)
		}
		if _, err := c5.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "live/newer", QoS: 1}}}); err != nil {
			t.Fatal(err)
		}
		_ = c5.Disconnect(&paho.Disconnect{})
		testutil.Eventually(t, 5*time.Second, "n2's clean-start session disconnected", func() bool {
			s, ok := sessionOn(nodes[1], id)
			return ok && !s.Connected && s.Subscriptions == 1
		})
	})
	n1 := nodes[0]
	testutil.Eventually(t, 10*time.Second, "n1 routes to n2", func() bool {
		return slices.Contains(n1.routes.Stats().Peers, "n2")
	})
	back, present := connectCollector(t, n1.MQTTAddr(), id, true)
	if !present {
		t.Fatal("no session present on n1")
	}
	// In this order from one publisher: were live/old subscribed, its
	// message would come first.
	publishWindow(t, nodes[2].MQTTAddr(), "live/old", "old", 1, false)
	publishWindow(t, nodes[2].MQTTAddr(), "live/newer", "newer", 1, false)
	testutil.Eventually(t, 10*time.Second, "a message", func() bool { return len(back.payloads()) >= 1 })
	if got := back.payloads(); got[0] != "newer-0" {
		t.Fatalf("got %v: the stale copy (live/old) won over n2's newer clean-start session (live/newer)", got)
	}
}

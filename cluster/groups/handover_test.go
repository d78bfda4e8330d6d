package groups

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mqstream/mqstream/streams"
)

// faultyTransport wraps the test transport: leave calls can be made to
// fail, and a join call can be held until the test lets it go.
type faultyTransport struct {
	Transport
	failLeave   *atomic.Bool
	joinStarted chan struct{} // if set (capacity 1), a join call announces itself here...
	joinGo      chan struct{} // ...and waits until this is closed before it is made
}

func (t faultyTransport) Call(ctx context.Context, node, service string, req []byte) ([]byte, error) {
	if service == LeaveService && t.failLeave.Load() {
		return nil, errors.New("leave call timed out")
	}
	if service == JoinService && t.joinStarted != nil {
		select {
		case t.joinStarted <- struct{}{}:
		default:
		}
		<-t.joinGo
	}
	return t.Transport.Call(ctx, node, service, req)
}

func proxyCount(r *Relay) int {
	r.pmu.Lock()
	defer r.pmu.Unlock()
	return len(r.proxies)
}

func memberCount(r *Relay) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.members)
}

// TestFailedLeaveLeavesNoPhantom: a member whose leave call failed is
// dropped by the dispatcher at its next delivery (the member's node
// answers "gone"), so the group's records go to the live members.
func TestFailedLeaveLeavesNoPhantom(t *testing.T) {
	var failLeave atomic.Bool
	c := startClusterWith(t, time.Hour, func(node string, tr Transport) Transport {
		return faultyTransport{Transport: tr, failLeave: &failLeave}
	}, "a", "b")
	gone := &client{id: "gone", window: 8}
	leave, err := c.relays["b"].Join("g", "jobs/#", gone)
	if err != nil {
		t.Fatal(err)
	}
	failLeave.Store(true)
	leave()
	live := &client{id: "live", window: 8}
	if _, err := c.relays["a"].Join("g", "jobs/#", live); err != nil {
		t.Fatal(err)
	}
	c.publish("x", 40)
	waitFor(t, "every record acked by the live member, the phantom dropped", func() bool {
		return c.acked("a") == 40 && proxyCount(c.relays["a"]) == 0
	})
	if got := len(distinct(live.payloads())); got != 40 {
		t.Fatalf("live member got %d distinct records", got)
	}
}

// TestForgottenAttachmentIsDropped: a member's node that forgot an
// attachment without telling the dispatcher (a reset) attaches again, and
// the dispatcher drops the forgotten proxy at its next delivery.
func TestForgottenAttachmentIsDropped(t *testing.T) {
	c := startCluster(t, time.Hour, "a", "b")
	w := &client{id: "w", window: 8}
	if _, err := c.relays["b"].Join("g", "jobs/#", w); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "a proxy on a", func() bool { return proxyCount(c.relays["a"]) == 1 })
	c.relays["b"].NodeGone("a") // forgets without a leave call
	c.publish("x", 20)
	waitFor(t, "20 acked, one proxy left", func() bool { return c.acked("a") == 20 && proxyCount(c.relays["a"]) == 1 })
}

// roomClient's room is set by the test.
type roomClient struct {
	client
	room atomic.Int64
}

func (c *roomClient) Room() int { return int(c.room.Load()) }

// TestRoomReportedAfterJoin: a room report sent while the join call is
// under way (it may reach the dispatcher before the proxy exists) is sent
// again once the join is answered: a member that joined with a full
// window is not starved.
func TestRoomReportedAfterJoin(t *testing.T) {
	started, release := make(chan struct{}, 1), make(chan struct{})
	c := startClusterWith(t, time.Hour, func(node string, tr Transport) Transport {
		if node != "b" {
			return tr
		}
		return faultyTransport{Transport: tr, failLeave: new(atomic.Bool), joinStarted: started, joinGo: release}
	}, "a", "b")
	defer func() {
		select {
		case <-release:
		default:
			close(release)
		}
	}()
	c.place.move("", 0) // an election
	w := &roomClient{client: client{id: "w", window: 4}}
	if _, err := c.relays["b"].Join("g", "jobs/#", w); err != nil {
		t.Fatal(err)
	}
	c.moveTo("a", 2)
	<-started // the join call is under way, with room 0
	w.room.Store(4)
	w.mu.Lock()
	wake := w.wake
	w.mu.Unlock()
	wake() // its room report is dropped: no proxy yet
	close(release)
	c.publish("x", 5)
	waitFor(t, "5 acked", func() bool { return c.acked("a") == 5 })
}

// syncAckClient acks inside Deliver (acked may run on any goroutine,
// before Deliver returns).
type syncAckClient struct{ client }

func (c *syncAckClient) Deliver(_ *streams.Record, _ byte, _ bool, acked func(byte)) (func(), error) {
	acked(0)
	return func() {}, nil
}

// TestAckBeforeDeliverReturnsLeavesNothing: deliveries acked before
// Deliver returned leave no entry behind on the member's node.
func TestAckBeforeDeliverReturnsLeavesNothing(t *testing.T) {
	c := startCluster(t, time.Hour, "a", "b")
	w := &syncAckClient{client{id: "w", window: 8}}
	if _, err := c.relays["b"].Join("g", "jobs/#", w); err != nil {
		t.Fatal(err)
	}
	c.publish("x", 50)
	waitFor(t, "50 acked", func() bool { return c.acked("a") == 50 })
	r := c.relays["b"]
	r.mu.Lock()
	defer r.mu.Unlock()
	for ms := range r.members {
		if n := len(ms.pending); n != 0 {
			t.Fatalf("%d deliveries left pending after every one was acked", n)
		}
	}
}

// TestReelectionMovesMembersToTheNewGroup: when the dispatcher is
// re-elected (same node, new epoch), memberships that attach again before
// the manager restarts the group are refused by the old group (it is
// about to stop) and attach to the new one: delivery goes on.
func TestReelectionMovesMembersToTheNewGroup(t *testing.T) {
	c := startCluster(t, time.Hour, "a", "b")
	la := &client{id: "la", window: 8}
	rb := &client{id: "rb", window: 8}
	if _, err := c.relays["a"].Join("g", "jobs/#", la); err != nil {
		t.Fatal(err)
	}
	if _, err := c.relays["b"].Join("g", "jobs/#", rb); err != nil {
		t.Fatal(err)
	}
	c.publish("x", 10)
	waitFor(t, "10 acked", func() bool { return c.acked("a") == 10 })
	c.persisted(10)
	c.place.move("a", 2) // re-elected: same node, new term; relays reconcile before Refresh
	c.relays["a"].Reconcile()
	c.relays["b"].Reconcile()
	if err := c.groups["a"].Refresh(); err != nil {
		t.Fatal(err)
	}
	c.publish("y", 10)
	waitFor(t, "the records published after the re-election delivered", func() bool {
		n := 0
		for _, p := range distinct(append(la.payloads(), rb.payloads()...)) {
			if strings.HasPrefix(p, "y-") {
				n++
			}
		}
		return n == 10
	})
	if memberCount(c.relays["a"]) != 1 || memberCount(c.relays["b"]) != 1 {
		t.Fatal("memberships lost")
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

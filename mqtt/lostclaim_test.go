package mqtt

import (
	"bytes"
	"fmt"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/mqstream/mqstream/internal/testutil"
)

// settledPayloads settles the move of client id's session handed over
// by n to the claim at stamp, and returns the payloads of the delta it
// answers with.
func settledPayloads(t *testing.T, n *stateBroker, id string, stamp rversion) []string {
	t.Helper()
	delta, err := n.b.HandleSettle(encodeSettle(id, stamp))
	if err != nil {
		t.Fatal(err)
	}
	return queuedPayloads(t, id, delta)
}

// queuedPayloads returns the payloads of the queued deliveries among a
// handed-over session's pairs (nil pairs: none).
func queuedPayloads(t *testing.T, id string, pairs []byte) []string {
	t.Helper()
	if len(pairs) == 0 {
		return nil
	}
	writes, err := decodeSessionMove(id, pairs)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, w := range writes {
		if !bytes.HasPrefix(w.Key, clientKey(keyQueue, id, 0)) {
			continue
		}
		d, err := decodeDelivery(w.Value)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, string(d.pk.Payload))
	}
	return got
}

// connectLosing connects client id on n while rem holds its claim; the
// claim is released once during has run, and the connection, its claim
// lost, gets its CONNACK and is disconnected as taken over.
func connectLosing(t *testing.T, n *stateBroker, rem *heldClaimRemote, id string, during func()) {
	t.Helper()
	rem.hold.Store(&id)
	c := dialRaw(t, n.addr, 4)
	c.send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Connect},
		Connect: packets.ConnectParams{ProtocolName: []byte("MQTT"), ClientIdentifier: id, Keepalive: 30}})
	<-rem.entered
	during()
	close(rem.release)
	c.expect(packets.Connack)
	if _, err := c.read(5 * time.Second); err == nil {
		t.Fatal("the connection whose claim lost was not disconnected")
	}
	waitGone(t, n.b, id)
}

// keptSessionOnN1 starts n1 keeping the offline session of client
// "racer", subscribed to live/r, with q-0 and q-1 queued; other nodes
// refuse its claims (rem.refuse) once rem releases them.
func keptSessionOnN1(t *testing.T) (*stateBroker, *heldClaimRemote) {
	t.Helper()
	rem := &heldClaimRemote{entered: make(chan struct{}), release: make(chan struct{}), refuse: true}
	n := startStateBroker(t, func(o *Options) { o.Remote, o.NodeID = rem, "n1" })
	awaySession(t, n, "racer", "live/r")
	publishAcked(t, n.addr, "live/r", "q", 2)
	n.b.state.wait()
	return n, rem
}

// TestLosingConnectionHereLeavesTheSessionToTheWinner: n1 holds a client's
// offline session; the client connects on n1 and, at the same instant, on
// n2 with a newer claim, which wins (n2 refuses n1's claim). The
// connection here is disconnected; the session it took over must wait for
// n2's claim, which takes it with what was queued, rather than end here.
func TestLosingConnectionHereLeavesTheSessionToTheWinner(t *testing.T) {
	n, rem := keptSessionOnN1(t)
	connectLosing(t, n, rem, "racer", func() {})
	n.b.state.wait()
	newer := rversion{ts: uint64(time.Now().UnixNano()), node: "n2"}
	answer, err := n.b.HandleClaim(encodeClaim("racer", newer, false, nil))
	if err != nil || len(answer) < 2 || answer[0] != claimGranted {
		t.Fatalf("n2's claim: %x %v", answer, err)
	}
	if got := queuedPayloads(t, "racer", answer[1:]); !slices.Equal(got, []string{"q-0", "q-1"}) {
		t.Fatalf("n2's claim got queued %v", got)
	}
}

// TestSessionHandedOverWhileALosingConnectionTookItHere: n2's newer claim
// takes a client's session from n1 while a connection of the client on
// n1 is claiming; that connection lost, but takes the session over here
// before it is disconnected. What is queued for the client here since n2
// took its copy reaches n2 with the settle, and the session ends here.
func TestSessionHandedOverWhileALosingConnectionTookItHere(t *testing.T) {
	n, rem := keptSessionOnN1(t)
	var newer rversion
	connectLosing(t, n, rem, "racer", func() {
		newer = rversion{ts: uint64(time.Now().UnixNano()), node: "n2"}
		answer, err := n.b.HandleClaim(encodeClaim("racer", newer, false, nil))
		if err != nil || len(answer) < 2 {
			t.Fatalf("n2's claim: %x %v", answer, err)
		}
		if got := queuedPayloads(t, "racer", answer[1:]); !slices.Equal(got, []string{"q-0", "q-1"}) {
			t.Fatalf("n2's claim got queued %v", got)
		}
	})
	publishAcked(t, n.addr, "live/r", "late", 1)
	n.b.state.wait()
	if got := settledPayloads(t, n, "racer", newer); !slices.Equal(got, []string{"late-0"}) {
		t.Fatalf("the settle answered %v", got)
	}
	testutil.Eventually(t, 5*time.Second, "the session to end here", func() bool {
		_, ok := sessionInfo(n.b, "racer")
		return !ok
	})
}

// gatedBarrierRemote is a heldClaimRemote whose flush barrier, once armed,
// waits until barrierGo is closed (signalling barrierIn).
type gatedBarrierRemote struct {
	heldClaimRemote
	armed                atomic.Bool
	barrierIn, barrierGo chan struct{}
}

func (r *gatedBarrierRemote) Barrier(time.Duration) {
	if r.armed.CompareAndSwap(true, false) {
		close(r.barrierIn)
		<-r.barrierGo
	}
}

// TestSettleBeforeTheLosingConnectionTookTheSessionOver: n2's claim takes
// the session while a connection here is claiming, and n2's settle
// arrives before that connection (which lost) took the session over here.
// The settle still answers with what was queued since n2's copy.
func TestSettleBeforeTheLosingConnectionTookTheSessionOver(t *testing.T) {
	rem := &gatedBarrierRemote{heldClaimRemote: heldClaimRemote{entered: make(chan struct{}), release: make(chan struct{}), refuse: true},
		barrierIn: make(chan struct{}), barrierGo: make(chan struct{})}
	n := startStateBroker(t, func(o *Options) { o.Remote, o.NodeID = rem, "n1" })
	awaySession(t, n, "racer", "live/r")
	publishAcked(t, n.addr, "live/r", "q", 2)
	n.b.state.wait()
	type settleAnswer struct {
		out []byte
		err error
	}
	settled := make(chan settleAnswer, 1)
	connectLosing(t, n, &rem.heldClaimRemote, "racer", func() {
		newer := rversion{ts: uint64(time.Now().UnixNano()), node: "n2"}
		if answer, err := n.b.HandleClaim(encodeClaim("racer", newer, false, nil)); err != nil || len(answer) < 2 {
			t.Fatalf("n2's claim: %x %v", answer, err)
		}
		publishAcked(t, n.addr, "live/r", "late", 1)
		n.b.state.wait()
		rem.armed.Store(true)
		go func() {
			out, err := n.b.HandleSettle(encodeSettle("racer", newer))
			settled <- settleAnswer{out, err}
		}()
	})
	<-rem.barrierIn
	close(rem.barrierGo)
	r := <-settled
	if r.err != nil {
		t.Fatal(r.err)
	}
	if got := queuedPayloads(t, "racer", r.out); !slices.Equal(got, []string{"late-0"}) {
		t.Fatalf("the settle answered %v", got)
	}
	testutil.Eventually(t, 5*time.Second, "the session to end here", func() bool {
		_, ok := sessionInfo(n.b, "racer")
		return !ok
	})
}

// TestLosingConnectionEndsASessionItStarted: a connection here whose claim
// lost, for a client this node kept no session of, started one: it is
// ended, not handed to the winning claim as if it were the client's.
func TestLosingConnectionEndsASessionItStarted(t *testing.T) {
	n, rem := keptSessionOnN1(t)
	connectLosing(t, n, rem, "fresh", func() {})
	testutil.Eventually(t, 5*time.Second, "the session it started to end", func() bool {
		_, ok := sessionInfo(n.b, "fresh")
		return !ok
	})
	newer := rversion{ts: uint64(time.Now().UnixNano()), node: "n2"}
	if answer, err := n.b.HandleClaim(encodeClaim("fresh", newer, false, nil)); err != nil || len(answer) != 1 || answer[0] != claimGranted {
		t.Fatalf("n2's claim: %x %v", answer, err)
	}
}

// seqClaimRemote holds the claims of client id (once set) one by one: the
// i-th waits for release[i] (signalling entered[i]) and gets answers[i]
// from "n2"; it answers every other claim as a node alone would.
type seqClaimRemote struct {
	aloneRemote
	mu               sync.Mutex
	id               string
	n                int
	entered, release [2]chan struct{}
	answers          [2][]byte
}

func (r *seqClaimRemote) Claim(req []byte, _ time.Duration) ([]string, [][]byte) {
	id, _, _, _, _ := decodeClaim(req)
	r.mu.Lock()
	if id != r.id || r.n >= 2 {
		r.mu.Unlock()
		return nil, nil
	}
	i := r.n
	r.n++
	r.mu.Unlock()
	close(r.entered[i])
	<-r.release[i]
	return []string{"n2"}, [][]byte{r.answers[i]}
}

// TestRetryHereResumesWhatALosingConnectionLeft: a connection here resumes
// the session this node keeps and loses (n2 refuses its claim), and the
// client, which reset it, connects here again at once. The retry, the
// newest connection, resumes the session: what the losing connection
// leaves is not ended under it.
func TestRetryHereResumesWhatALosingConnectionLeft(t *testing.T) {
	rem := &seqClaimRemote{answers: [2][]byte{{claimRefused}, {claimGranted}}}
	for i := range 2 {
		rem.entered[i], rem.release[i] = make(chan struct{}), make(chan struct{})
	}
	close(rem.release[1])
	n := startStateBroker(t, func(o *Options) { o.Remote, o.NodeID = rem, "n1" })
	awaySession(t, n, "racer", "live/r")
	publishAcked(t, n.addr, "live/r", "q", 2)
	n.b.state.wait()
	rem.mu.Lock()
	rem.id = "racer"
	rem.mu.Unlock()
	connect := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Connect},
		Connect: packets.ConnectParams{ProtocolName: []byte("MQTT"), ClientIdentifier: "racer", Keepalive: 30}}
	first := dialRaw(t, n.addr, 4)
	first.send(connect)
	<-rem.entered[0]
	retry := dialRaw(t, n.addr, 4)
	retry.send(connect)
	testutil.Eventually(t, 5*time.Second, "the retry to wait for the first connection", func() bool { return n.b.takeover.waiting("racer") == 1 })
	if err := first.conn.(*net.TCPConn).SetLinger(0); err != nil {
		t.Fatal(err)
	}
	first.drop()
	close(rem.release[0])
	if ack := retry.expect(packets.Connack); !ack.SessionPresent {
		t.Fatal("the retry got no session")
	}
	for i := range 2 {
		pk := retry.expect(packets.Publish)
		if want := fmt.Sprintf("q-%d", i); string(pk.Payload) != want {
			t.Fatalf("got %q, want %s", pk.Payload, want)
		}
		retry.ack(packets.Puback, pk.PacketID)
	}
	if s, ok := sessionInfo(n.b, "racer"); !ok || s.Subscriptions != 1 {
		t.Fatalf("the retry's session: %+v %v", s, ok)
	}
}

// TestNewerClaimSettlesAMoveHandedOverAgainToAnOlderOne: n1 handed a
// session to n2's claim; a claim older than n2's (two connections at
// once, or n3's clock behind; n2 may have died) gets it too, and n2's
// settle still gets what was queued meanwhile, while n3's settle (n2's
// claim newer) is refused.
func TestNewerClaimSettlesAMoveHandedOverAgainToAnOlderOne(t *testing.T) {
	n := startClusterStateBroker(t, "n1")
	exportedSession(t, n, "mover", "live/o", 1)
	toN2 := rversion{ts: uint64(time.Now().UnixNano()), node: "n2"}
	if answer, err := n.b.HandleClaim(encodeClaim("mover", toN2, false, nil)); err != nil || len(answer) < 2 {
		t.Fatalf("n2's claim: %v %v", answer, err)
	}
	older := rversion{ts: toN2.ts - 1, node: "n3"}
	answer, err := n.b.HandleClaim(encodeClaim("mover", older, false, nil))
	if err != nil || len(answer) < 2 || answer[0] != claimGranted {
		t.Fatalf("the older claim: %v %v", answer, err)
	}
	if got := queuedPayloads(t, "mover", answer[1:]); !slices.Equal(got, []string{"q-0"}) {
		t.Fatalf("the older claim got queued %v", got)
	}
	publishAcked(t, n.addr, "live/o", "meanwhile", 1)
	n.b.state.wait()
	if delta, err := n.b.HandleSettle(encodeSettle("mover", older)); err != nil || delta != nil {
		t.Fatalf("the older claim's settle: %v %v", delta, err)
	}
	if got := settledPayloads(t, n, "mover", toN2); !slices.Equal(got, []string{"meanwhile-0"}) {
		t.Fatalf("n2's settle answered %v", got)
	}
}

// gateHook holds the first OnSessionEstablished of client id (after every
// other hook's) until gate is closed, signalling in: that connection's
// goroutine is slow to go on.
type gateHook struct {
	mochi.HookBase
	id       string
	once     sync.Once
	in, gate chan struct{}
}

func (h *gateHook) ID() string           { return "test-gate" }
func (h *gateHook) Provides(b byte) bool { return b == mochi.OnSessionEstablished }
func (h *gateHook) OnSessionEstablished(cl *mochi.Client, _ packets.Packet) {
	if cl.ID == h.id {
		h.once.Do(func() {
			close(h.in)
			<-h.gate
		})
	}
}

// TestCleanLosingConnectionLeavesTheRetryListed: a clean-session
// connection here loses its claim and its goroutine is slow to end; the
// client's retry here takes over. The losing connection's end (mochi
// deletes a clean session's client id after OnDisconnect unless taken
// over) must not remove the retry from the client list.
func TestCleanLosingConnectionLeavesTheRetryListed(t *testing.T) {
	rem := &seqClaimRemote{answers: [2][]byte{{claimRefused}, {claimGranted}}}
	for i := range 2 {
		rem.entered[i], rem.release[i] = make(chan struct{}), make(chan struct{})
		close(rem.release[i])
	}
	n := startStateBroker(t, func(o *Options) { o.Remote, o.NodeID = rem, "n1" })
	gate := &gateHook{id: "racer", in: make(chan struct{}), gate: make(chan struct{})}
	if err := n.b.server.AddHook(gate, nil); err != nil {
		t.Fatal(err)
	}
	opened := false
	defer func() {
		if !opened {
			close(gate.gate)
		}
	}()
	rem.mu.Lock()
	rem.id = "racer"
	rem.mu.Unlock()
	connect := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Connect},
		Connect: packets.ConnectParams{ProtocolName: []byte("MQTT"), ClientIdentifier: "racer", Keepalive: 30, Clean: true}}
	first := dialRaw(t, n.addr, 4)
	first.send(connect)
	<-gate.in
	loser, _ := n.b.server.Clients.Get("racer")
	testutil.Eventually(t, 5*time.Second, "what the losing connection leaves to be settled", func() bool {
		return n.b.departing.lostConnection("racer") == nil
	})
	retry := dialRaw(t, n.addr, 4)
	retry.connect("racer", true, packets.Properties{})
	close(gate.gate)
	opened = true
	testutil.Eventually(t, 5*time.Second, "the losing connection to be gone", func() bool { return n.b.takeover.connection(loser) == nil })
	if cur, ok := n.b.server.Clients.Get("racer"); !ok || cur == loser {
		t.Fatalf("the retry is not in the client list: %v", ok)
	}
	retry.subscribe(1, packets.Subscription{Filter: "live/x", Qos: 1})
	publishAcked(t, n.addr, "live/x", "m", 1)
	if pk := retry.expect(packets.Publish); string(pk.Payload) != "m-0" {
		t.Fatalf("the retry got %q", pk.Payload)
	}
}

// TestOlderClaimsLeaveANewerMoveToSettle: n1 handed a session to n2's
// claim, the newest; older claims then arrive before n2 settles (clocks
// apart, or connections at once): two that resume the session get it too,
// a clean one ends nothing, and n2's settle still gets what was queued.
func TestOlderClaimsLeaveANewerMoveToSettle(t *testing.T) {
	n := startClusterStateBroker(t, "n1")
	exportedSession(t, n, "mover", "live/m", 1)
	newest := rversion{ts: uint64(time.Now().UnixNano()), node: "n2"}
	if answer, err := n.b.HandleClaim(encodeClaim("mover", newest, false, nil)); err != nil || len(answer) < 2 {
		t.Fatalf("n2's claim: %v %v", answer, err)
	}
	for i, node := range []string{"n3", "n4"} {
		older := rversion{ts: newest.ts - uint64(2-i), node: node}
		if answer, err := n.b.HandleClaim(encodeClaim("mover", older, false, nil)); err != nil || len(answer) < 2 {
			t.Fatalf("%s's claim: %v %v", node, answer, err)
		}
	}
	clean := rversion{ts: newest.ts - 3, node: "n5"}
	if answer, err := n.b.HandleClaim(encodeClaim("mover", clean, true, nil)); err != nil || !slices.Equal(answer, []byte{claimGranted}) {
		t.Fatalf("the older clean claim: %v %v", answer, err)
	}
	publishAcked(t, n.addr, "live/m", "meanwhile", 1)
	n.b.state.wait()
	if got := settledPayloads(t, n, "mover", newest); !slices.Equal(got, []string{"meanwhile-0"}) {
		t.Fatalf("n2's settle answered %v", got)
	}
}

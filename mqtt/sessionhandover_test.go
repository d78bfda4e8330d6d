package mqtt

import (
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/mqstream/mqstream/internal/testutil"
)

// startClusterStateBroker is a broker with its state on disk, in cluster
// mode as node id (alone: no other node answers).
func startClusterStateBroker(t *testing.T, id string) *stateBroker {
	t.Helper()
	return startStateBroker(t, func(o *Options) { o.Remote, o.NodeID = aloneRemote{}, id })
}

// sessionInfo returns what b keeps of client id's session.
func sessionInfo(b *Broker, id string) (SessionInfo, bool) {
	for _, s := range b.Sessions() {
		if s.ClientID == id {
			return s, true
		}
	}
	return SessionInfo{}, false
}

// exportedSession returns client id's session as src hands it over: the
// client subscribed to filter and left, then queued messages q-0.. were
// queued for it.
func exportedSession(t *testing.T, src *stateBroker, id, filter string, queued int) []byte {
	t.Helper()
	awaySession(t, src, id, filter)
	publishAcked(t, src.addr, filter, "q", queued)
	testutil.Eventually(t, 5*time.Second, "the messages queued", func() bool {
		s, _ := sessionInfo(src.b, id)
		return s.Queued == queued
	})
	src.b.state.wait()
	p, _ := src.b.exportSession(id)
	if p == nil {
		t.Fatal("nothing exported")
	}
	return p
}

// TestHandedOverSessionIsInstalled: a session another node hands over is
// installed; its client reconnects here to session present and its queue.
func TestHandedOverSessionIsInstalled(t *testing.T) {
	src, dst := startClusterStateBroker(t, "n1"), startClusterStateBroker(t, "n2")
	payload := exportedSession(t, src, "mover", "live/x", 3)
	answer, err := dst.b.HandleHandOver(encodeHandOver("mover", payload))
	if err != nil || !slices.Equal(answer, []byte{handOverTaken}) {
		t.Fatalf("hand-over: %v %v", answer, err)
	}
	if s, ok := sessionInfo(dst.b, "mover"); !ok || s.Subscriptions != 1 || s.Queued != 3 {
		t.Fatalf("installed: %+v %v", s, ok)
	}
	c := dialRaw(t, dst.addr, 4)
	if ca := c.connect("mover", false, packets.Properties{}); !ca.SessionPresent {
		t.Fatal("no session present")
	}
	expectPublishes(t, c, "q", 3, true)
}

// TestHandedOverSessionOlderThanAClaimIsRefused: once a node granted a
// claim of a client (it connected on a third node), a session of it
// handed over with an older stamp is refused, so that the stopping node
// keeps it for that claim; one newer than every claim is taken.
func TestHandedOverSessionOlderThanAClaimIsRefused(t *testing.T) {
	src, dst := startClusterStateBroker(t, "n1"), startClusterStateBroker(t, "n2")
	payload := exportedSession(t, src, "racer", "live/r", 1)
	moved := movedStamp("racer", payload)
	if moved == (rversion{}) {
		t.Fatal("the exported session has no stamp")
	}
	newer := rversion{ts: moved.ts + 1, node: "n3"}
	if answer, err := dst.b.HandleClaim(encodeClaim("racer", newer, false, nil)); err != nil || answer[0] != claimGranted {
		t.Fatalf("claim: %v %v", answer, err)
	}
	answer, err := dst.b.HandleHandOver(encodeHandOver("racer", payload))
	if err != nil || !slices.Equal(answer, []byte{handOverRefused}) {
		t.Fatalf("hand-over after a newer claim: %v %v", answer, err)
	}
	if _, ok := sessionInfo(dst.b, "racer"); ok {
		t.Fatal("the refused session was installed")
	}

	// A claim older than the session does not stand in its way.
	payload = exportedSession(t, src, "later", "live/l", 1)
	older := rversion{ts: movedStamp("later", payload).ts - 1, node: "n3"}
	if _, err := dst.b.HandleClaim(encodeClaim("later", older, false, nil)); err != nil {
		t.Fatal(err)
	}
	if answer, err := dst.b.HandleHandOver(encodeHandOver("later", payload)); err != nil || answer[0] != handOverTaken {
		t.Fatalf("hand-over after an older claim: %v %v", answer, err)
	}
}

// TestClaimWaitsForAHandOver: a claim of a client whose session is being
// handed over is answered once the hand-over is, with the session when it
// is still here.
func TestClaimWaitsForAHandOver(t *testing.T) {
	n := startClusterStateBroker(t, "n1")
	c := dialRaw(t, n.addr, 4)
	c.connect("waiter", false, packets.Properties{})
	c.subscribe(1, packets.Subscription{Filter: "live/w", Qos: 1})
	c.drop()
	waitGone(t, n.b, "waiter")

	done, ok := n.b.claims.moving("waiter", n.b.state.stamp("waiter"))
	if !ok {
		t.Fatal("move refused")
	}
	answered := make(chan []byte, 1)
	go func() {
		answer, err := n.b.HandleClaim(encodeClaim("waiter", rversion{ts: uint64(time.Now().UnixNano()), node: "n2"}, false, nil))
		if err != nil {
			t.Error(err)
		}
		answered <- answer
	}()
	select {
	case a := <-answered:
		t.Fatalf("the claim was answered (%v) while the session was being handed over", a)
	case <-time.After(200 * time.Millisecond):
	}
	done()
	select {
	case a := <-answered:
		if len(a) < 2 || a[0] != claimGranted {
			t.Fatalf("answer %v: want the session", a)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the claim was not answered after the hand-over")
	}
}

// TestClaimDuringAnImportGetsTheSession: a claim that reaches a node
// while a session handed over to it is being installed waits for the
// install and is answered with that session, so no copy is left behind.
func TestClaimDuringAnImportGetsTheSession(t *testing.T) {
	src, dst := startClusterStateBroker(t, "n1"), startClusterStateBroker(t, "n2")
	payload := exportedSession(t, src, "arriving", "live/i", 2)
	done, ok := dst.b.claims.moving("arriving", movedStamp("arriving", payload))
	if !ok {
		t.Fatal("import refused")
	}
	answered := make(chan []byte, 1)
	claim := rversion{ts: uint64(time.Now().UnixNano()), node: "n3"}
	go func() {
		answer, err := dst.b.HandleClaim(encodeClaim("arriving", claim, false, nil))
		if err != nil {
			t.Error(err)
		}
		answered <- answer
	}()
	select {
	case a := <-answered:
		t.Fatalf("the claim was answered (%v) while a session of its client was being installed", a)
	case <-time.After(200 * time.Millisecond):
	}
	if err := dst.b.importSession("arriving", payload); err != nil {
		t.Fatal(err)
	}
	done()
	select {
	case a := <-answered:
		if len(a) < 2 || a[0] != claimGranted || movedStamp("arriving", a[1:]) != movedStamp("arriving", payload) {
			t.Fatalf("answer %v: want the installed session", a)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the claim was not answered after the install")
	}
	// Kept until the claiming node settles the move.
	if delta, err := dst.b.HandleSettle(encodeSettle("arriving", claim)); err != nil || delta != nil {
		t.Fatalf("settle: %v %v", delta, err)
	}
	if _, ok := sessionInfo(dst.b, "arriving"); ok {
		t.Fatal("a copy is left on n2 after the settle")
	}
	// And the claim is remembered: the same session handed over again
	// is refused.
	if answer, err := dst.b.HandleHandOver(encodeHandOver("arriving", payload)); err != nil || answer[0] != handOverRefused {
		t.Fatalf("hand-over after the claim: %v %v", answer, err)
	}
}

// TestSettleAnswersWhatWasQueuedMeanwhile: a node that handed a session
// over in its answer to a claim keeps queueing for the client until the
// claiming node settles the move, and answers the settle with those
// messages; a settle of another claim gets nothing and ends nothing.
func TestSettleAnswersWhatWasQueuedMeanwhile(t *testing.T) {
	n := startClusterStateBroker(t, "n1")
	exportedSession(t, n, "mover", "live/d", 2)
	claim := rversion{ts: uint64(time.Now().UnixNano()), node: "n2"}
	answer, err := n.b.HandleClaim(encodeClaim("mover", claim, false, nil))
	if err != nil || len(answer) < 2 || answer[0] != claimGranted {
		t.Fatalf("claim: %v %v", answer, err)
	}
	publishAcked(t, n.addr, "live/d", "meanwhile", 3)
	if s, ok := sessionInfo(n.b, "mover"); !ok || s.Queued != 5 {
		t.Fatalf("held session: %+v %v", s, ok)
	}
	other := rversion{ts: claim.ts + 1, node: "n3"}
	if delta, err := n.b.HandleSettle(encodeSettle("mover", other)); err != nil || delta != nil {
		t.Fatalf("settle of another claim: %v %v", delta, err)
	}
	delta, err := n.b.HandleSettle(encodeSettle("mover", claim))
	if err != nil {
		t.Fatal(err)
	}
	writes, err := decodeSessionMove("mover", delta)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, w := range writes {
		d, err := decodeDelivery(w.Value)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, string(d.pk.Payload))
	}
	if !slices.Equal(got, []string{"meanwhile-0", "meanwhile-1", "meanwhile-2"}) {
		t.Fatalf("settle answered %v", got)
	}
	if _, ok := sessionInfo(n.b, "mover"); ok {
		t.Fatal("the session is still here after the settle")
	}
	if delta, err := n.b.HandleSettle(encodeSettle("mover", claim)); err != nil || delta != nil {
		t.Fatalf("a second settle: %v %v", delta, err)
	}
	if _, _, _, err := decodeSettle([]byte{9}); !errors.Is(err, errBadForward) {
		t.Fatalf("bad settle: %v", err)
	}
}

// TestRestOfAHandedOverSessionIsQueued: what was queued for a session on
// the stopping node between its export and its end there follows it to
// the node that took it (a rest frame), after what came with it, also
// when the client connected there meanwhile (its claim stamped the
// session anew); a rest of another copy (another stamp) is ignored.
func TestRestOfAHandedOverSessionIsQueued(t *testing.T) {
	src, dst := startClusterStateBroker(t, "n1"), startClusterStateBroker(t, "n2")
	payload := exportedSession(t, src, "mover", "live/r", 2)
	_, last := src.b.exportSession("mover")
	stamp := movedStamp("mover", payload)
	if answer, err := dst.b.HandleHandOver(encodeHandOver("mover", payload)); err != nil || answer[0] != handOverTaken {
		t.Fatalf("hand-over: %v %v", answer, err)
	}
	publishAcked(t, src.addr, "live/r", "later", 3)
	src.b.state.wait()
	rest := src.b.exportQueueAfter("mover", last)
	other := rversion{ts: stamp.ts + 1, node: "n9"}
	if _, err := dst.b.HandleSettle(encodeRest("mover", other, rest)); err != nil {
		t.Fatal(err)
	}
	if s, _ := sessionInfo(dst.b, "mover"); s.Queued != 2 {
		t.Fatalf("a rest of another copy was queued: %+v", s)
	}
	c := dialRaw(t, dst.addr, 4)
	if ca := c.connect("mover", false, packets.Properties{}); !ca.SessionPresent {
		t.Fatal("no session present")
	}
	expectPublishes(t, c, "q", 2, true)
	if _, err := dst.b.HandleSettle(encodeRest("mover", stamp, rest)); err != nil {
		t.Fatal(err)
	}
	expectPublishes(t, c, "later", 3, true)
}

// TestBadHandOversAreRefused: frames that do not decode, a session with a
// key of another client, a standalone broker and a stopping one.
func TestBadHandOversAreRefused(t *testing.T) {
	n := startClusterStateBroker(t, "n1")
	other := encodeHandOver("x", nil)[:0]
	other = append(other, handOverVersion1)
	other = appendStr(other, "a")
	other = append(other, 1, 3, 'b'|0, 'z', 'z', 0) // one pair whose key is not a's
	for name, req := range map[string][]byte{
		"empty":          nil,
		"version":        {9, 1, 'a', 0},
		"no client":      {handOverVersion1, 0},
		"another client": other,
		"trailing":       append(encodeHandOver("a", []byte{0}), 7),
		"no record":      encodeHandOver("a", []byte{0}),
	} {
		if _, err := n.b.HandleHandOver(req); !errors.Is(err, errBadForward) {
			t.Errorf("%s: %v, want errBadForward", name, err)
		}
	}

	payload := exportedSession(t, n, "a", "live/a", 0)
	alone := startStateBroker(t, nil)
	if _, err := alone.b.HandleHandOver(encodeHandOver("a", payload)); err == nil {
		t.Error("a standalone broker took a session")
	}
	dst := startClusterStateBroker(t, "n2")
	dst.b.Close()
	if _, err := dst.b.HandleHandOver(encodeHandOver("a", payload)); err == nil {
		t.Error("a stopping broker took a session")
	}
}

// TestClaimAnsweredWhileTheHandOverEndsIsSettled: a stopping node that
// ends its hand-over (departures.close) while a claim of one of its
// sessions is being answered keeps that session until the claim's move
// is settled, so what is routed here meanwhile follows the client. Before,
// the claim found the departures closed and ended the session at once: in
// the rolling restart, every client of the stopping node reconnected
// elsewhere at the moment its hand-over ended, and messages published in
// the next milliseconds reached neither node.
func TestClaimAnsweredWhileTheHandOverEndsIsSettled(t *testing.T) {
	n := startClusterStateBroker(t, "n1")
	exportedSession(t, n, "late", "live/late", 1)
	done, ok := n.b.claims.moving("late", n.b.state.stamp("late")) // a hand-over under way
	if !ok {
		t.Fatal("move refused")
	}
	claim := rversion{ts: uint64(time.Now().UnixNano()), node: "n2"}
	answered := make(chan []byte, 1)
	go func() {
		answer, err := n.b.HandleClaim(encodeClaim("late", claim, false, nil))
		if err != nil {
			t.Error(err)
		}
		answered <- answer
	}()
	testutil.Eventually(t, 5*time.Second, "the claim being answered", func() bool {
		n.b.departing.mu.Lock()
		defer n.b.departing.mu.Unlock()
		return n.b.departing.answering == 1
	})
	closed := make(chan struct{})
	go func() {
		defer close(closed)
		n.b.departing.close(departuresWait) // the hand-over ends
	}()
	done()
	if a := <-answered; len(a) < 2 || a[0] != claimGranted {
		t.Fatalf("answer %v: want the session", a)
	}
	publishAcked(t, n.addr, "live/late", "meanwhile", 2)
	delta, err := n.b.HandleSettle(encodeSettle("late", claim))
	if err != nil {
		t.Fatal(err)
	}
	writes, err := decodeSessionMove("late", delta)
	if err != nil {
		t.Fatalf("settle answered %v: %v; want what was queued meanwhile", delta, err)
	}
	if len(writes) != 2 {
		t.Fatalf("settle answered %d deliveries, want 2", len(writes))
	}
	select {
	case <-closed:
	case <-time.After(5 * time.Second):
		t.Fatal("the hand-over's end still waits after the move was settled")
	}
}

// TestMessageRoutedWhileAHandOverIsInstalledIsQueued: a message published
// here as soon as a handed-over session's subscriptions are in the index
// joins that session's queue, after what it brought: it does not make a
// session of its own, which the install replaced (and whose keys
// overwrote the queue's on disk).
func TestMessageRoutedWhileAHandOverIsInstalledIsQueued(t *testing.T) {
	src, dst := startClusterStateBroker(t, "n1"), startClusterStateBroker(t, "n2")
	payload := exportedSession(t, src, "mover", "live/x", 3)
	dst.b.subscribed = func() {
		dst.b.subscribed = nil
		publishAcked(t, dst.addr, "live/x", "during", 1)
	}
	if answer, err := dst.b.HandleHandOver(encodeHandOver("mover", payload)); err != nil || answer[0] != handOverTaken {
		t.Fatalf("hand-over: %v %v", answer, err)
	}
	if s, ok := sessionInfo(dst.b, "mover"); !ok || s.Queued != 4 {
		t.Fatalf("installed: %+v %v; want the 3 handed over and 1 published meanwhile", s, ok)
	}
	c := dialRaw(t, dst.addr, 4)
	if ca := c.connect("mover", false, packets.Properties{}); !ca.SessionPresent {
		t.Fatal("no session present")
	}
	expectPublishes(t, c, "q", 3, true)
	expectPublishes(t, c, "during", 1, true)
}

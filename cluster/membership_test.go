package cluster

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mqstream/mqstream/internal/testutil"
)

// start runs a member on 127.0.0.1 with a random gossip port and fast timers.
func start(t *testing.T, id, cluster string, expect int, seeds ...string) (*Membership, error) {
	t.Helper()
	m, err := Start(Options{NodeID: id, Cluster: cluster, Gossip: "127.0.0.1:0", RPC: "127.0.0.1:1" + id,
		MQTT: "127.0.0.1:2" + id, HTTP: "127.0.0.1:3" + id, Version: "test", Seeds: seeds, Features: []string{"f2", "f1"},
		BootstrapExpect: expect, Timers: LocalTimers(), Logger: testutil.Logger().With("node", id)})
	if err == nil {
		t.Cleanup(func() { _ = m.Close() })
	}
	return m, err
}

func mustStart(t *testing.T, id, cluster string, expect int, seeds ...string) *Membership {
	t.Helper()
	m, err := start(t, id, cluster, expect, seeds...)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// statuses is "id=status ..." of m's view.
func statuses(m *Membership) string {
	var parts []string
	for _, mem := range m.Members() {
		parts = append(parts, mem.ID+"="+mem.Status)
	}
	return strings.Join(parts, " ")
}

func TestThreeNodesMeetLeaveAndFail(t *testing.T) {
	a := mustStart(t, "a", "demo", 3)
	if ok, reason := a.Ready(); ok || !strings.Contains(reason, "1 of 3") {
		t.Fatalf("alone: ready %v %q", ok, reason)
	}
	b := mustStart(t, "b", "demo", 3, a.GossipAddr())
	c := mustStart(t, "c", "demo", 3, b.GossipAddr()) // any member is a seed
	for _, m := range []*Membership{a, b, c} {
		testutil.Eventually(t, 10*time.Second, "three alive members", func() bool { return statuses(m) == "a=alive b=alive c=alive" })
	}
	if ok, reason := a.Ready(); !ok {
		t.Fatalf("three alive, not ready: %s", reason)
	}
	mems := a.Members()
	if mems[1].ID != "b" || mems[1].RPC != "127.0.0.1:1b" || mems[1].MQTT != "127.0.0.1:2b" || mems[1].HTTP != "127.0.0.1:3b" ||
		mems[1].Version != "test" || mems[1].Gossip != b.GossipAddr() || strings.Join(mems[1].Features, ",") != "f1,f2" {
		t.Fatalf("member b as a sees it: %+v", mems[1])
	}
	changed := a.Changed()
	if err := c.Close(); err != nil { // graceful
		t.Fatal(err)
	}
	testutil.Eventually(t, 10*time.Second, "c seen as left", func() bool { return strings.Contains(statuses(a), "c=left") })
	select {
	case <-changed:
	default:
		t.Fatal("the change feed did not fire")
	}
	b.shutdown() // no leave: a crash
	testutil.Eventually(t, 10*time.Second, "b seen as failed", func() bool { return strings.Contains(statuses(a), "b=failed") })
	if ok, reason := a.Ready(); !ok {
		t.Fatalf("a formed cluster stays ready when members fail: %s", reason)
	}
}

func TestOtherClusterIsRefused(t *testing.T) {
	a := mustStart(t, "a", "demo", 1)
	_, err := start(t, "x", "other", 1, a.GossipAddr())
	if !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), `"demo"`) || !strings.Contains(err.Error(), `"other"`) {
		t.Fatalf("joining another cluster: %v", err)
	}
	// A later legitimate join is seen; x never was.
	mustStart(t, "y", "demo", 1, a.GossipAddr())
	testutil.Eventually(t, 10*time.Second, "y listed", func() bool { return statuses(a) == "a=alive y=alive" })
}

func TestDuplicateNodeIDIsRefused(t *testing.T) {
	a := mustStart(t, "n1", "demo", 1)
	_, err := start(t, "n1", "demo", 1, a.GossipAddr())
	if !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), `node id "n1"`) || !strings.Contains(err.Error(), a.GossipAddr()) {
		t.Fatalf("second node with id n1: %v", err)
	}
	if got := statuses(a); got != "n1=alive" {
		t.Fatalf("first node's view after the refusal: %s", got)
	}
	if ok, reason := a.Ready(); !ok {
		t.Fatalf("first node not ready: %s", reason)
	}
}

// unusedAddr returns a 127.0.0.1 address nothing listens on (a port the
// system just handed out and that was closed again).
func unusedAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func TestUnreachableSeedIsRetried(t *testing.T) {
	seed := unusedAddr(t)
	z := mustStart(t, "z", "demo", 2, seed)
	if ok, reason := z.Ready(); ok || !strings.Contains(reason, seed) {
		t.Fatalf("with an unreachable seed: ready %v %q", ok, reason)
	}
	w, err := Start(Options{NodeID: "w", Cluster: "demo", Gossip: seed, Timers: LocalTimers(), Logger: testutil.Logger()})
	if err != nil {
		t.Skipf("the freed port was taken meanwhile: %v", err)
	}
	t.Cleanup(func() { _ = w.Close() })
	testutil.Eventually(t, 10*time.Second, "z to join through the seed once it answers", func() bool { ok, _ := z.Ready(); return ok })
}

func TestDifferentClusterWideSettingsAreRefused(t *testing.T) {
	startWith := func(id string, settings map[string]string, seeds ...string) (*Membership, error) {
		m, err := Start(Options{NodeID: id, Cluster: "demo", Gossip: "127.0.0.1:0", Seeds: seeds, Settings: settings,
			Timers: LocalTimers(), Logger: testutil.Logger()})
		if err == nil {
			t.Cleanup(func() { _ = m.Close() })
		}
		return m, err
	}
	a, err := startWith("a", map[string]string{"cluster.shards": "1111", "streams.rules": "2222"})
	if err != nil {
		t.Fatal(err)
	}
	_, err = startWith("b", map[string]string{"cluster.shards": "9999", "streams.rules": "2222"}, a.GossipAddr())
	if !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), "cluster.shards") || strings.Contains(err.Error(), "streams.rules") {
		t.Fatalf("different shards: %v", err)
	}
	if _, err := startWith("c", map[string]string{"cluster.shards": "1111", "streams.rules": "2222"}, a.GossipAddr()); err != nil {
		t.Fatalf("same settings: %v", err)
	}
	testutil.Eventually(t, 10*time.Second, "a to see only c", func() bool { return statuses(a) == "a=alive c=alive" })
}

// TestDifferingKeysOfASettingAreNamed: a setting made of several keys
// (the group defaults) is refused naming the keys that differ, when both
// sides announce its parts; a node that does not (an earlier version)
// is told the setting.
func TestDifferingKeysOfASettingAreNamed(t *testing.T) {
	parts := func(prints ...string) map[string][]SettingPart {
		var ps []SettingPart
		for i, p := range prints {
			ps = append(ps, SettingPart{Key: fmt.Sprintf("groups.k%d", i), Print: p})
		}
		return map[string][]SettingPart{"groups": ps}
	}
	startWith := func(id, print string, parts map[string][]SettingPart, seeds ...string) (*Membership, error) {
		m, err := Start(Options{NodeID: id, Cluster: "demo", Gossip: "127.0.0.1:0", Seeds: seeds,
			Settings: map[string]string{"groups": print, "cluster.shards": "1111"}, SettingParts: parts,
			BootstrapExpect: 2, Timers: LocalTimers(), Logger: testutil.Logger()})
		if err == nil {
			t.Cleanup(func() { _ = m.Close() })
		}
		return m, err
	}
	a, err := startWith("a", "aaaa", parts("111", "222", "333"))
	if err != nil {
		t.Fatal(err)
	}
	_, err = startWith("b", "bbbb", parts("111", "999", "333"), a.GossipAddr())
	if !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), ": groups.k1 (every member needs the same values") {
		t.Fatalf("one group default differs: %v", err)
	}
	// a, waiting for a second member, says why none came (once its own
	// merge check has refused b: b's may have refused first).
	testutil.Eventually(t, 5*time.Second, "a's reason to name the refusal", func() bool {
		ok, reason := a.Ready()
		return !ok && strings.Contains(reason, "1 of 2 expected nodes alive; the last node refused: ") && strings.Contains(reason, "groups.k1")
	})
	_, err = startWith("c", "cccc", nil, a.GossipAddr())
	if !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), ": groups (every member") {
		t.Fatalf("group defaults differ, the joining node has no parts: %v", err)
	}

	for _, tc := range []struct {
		theirs string
		want   string
	}{
		{"111.999.333", "groups.k1"},
		{"999.222.999", "groups.k0 groups.k2"},
		{"111.222.333", "groups"}, // the parts' prints collide
		{"111.222", "groups"},     // another version's parts
		{"", "groups"},
	} {
		if got := strings.Join(differingParts("groups", parts("111", "222", "333")["groups"], tc.theirs), " "); got != tc.want {
			t.Errorf("theirs %q: %q, want %q", tc.theirs, got, tc.want)
		}
	}
}

func TestTagsOverTheLimitLeaveThePartsOut(t *testing.T) {
	m := &Membership{log: testutil.Logger()}
	tags := map[string]string{tagParts + "groups": "111.222", tagRPC: "127.0.0.1:7947"}
	m.fitTags(tags)
	if tags[tagParts+"groups"] == "" {
		t.Fatal("short tags lost the parts")
	}
	tags[tagFormed] = strings.Repeat("a-long-node-id,", 33)
	m.fitTags(tags)
	if _, ok := tags[tagParts+"groups"]; ok || tags[tagRPC] == "" || tags[tagFormed] == "" {
		t.Fatalf("tags over the limit: %v", tags)
	}
}

// TestJoinedByAnotherMember: a node whose seeds are unreachable, waiting
// long between retries, is joined by a member that reaches it; it counts
// as joined at once (ready), without waiting for its next retry.
func TestJoinedByAnotherMember(t *testing.T) {
	seed := unusedAddr(t)
	timers := LocalTimers()
	timers.JoinRetryMin, timers.JoinRetryMax = time.Hour, time.Hour
	a, err := Start(Options{NodeID: "a", Cluster: "demo", Gossip: "127.0.0.1:0", Seeds: []string{seed}, BootstrapExpect: 2,
		Timers: timers, Logger: testutil.Logger().With("node", "a")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = a.Close() })
	if ok, reason := a.Ready(); ok || !strings.Contains(reason, "no seed reachable") {
		t.Fatalf("with an unreachable seed: ready %v %q", ok, reason)
	}
	mustStart(t, "b", "demo", 2, a.GossipAddr())
	testutil.Eventually(t, 10*time.Second, "a to count as joined once b joined it", func() bool { ok, _ := a.Ready(); return ok })
}

// TestForeignJoinDuringSeedRetryIsNotFatal: node a retries a seed that
// accepts connections but never answers (each attempt waits TCPTimeout).
// While a's join waits, a node of another cluster tries to join a: a's
// merge check refuses it. a's own join must not take that refusal for
// its own (it did, and a stopped: OnFatal).
func TestForeignJoinDuringSeedRetryIsNotFatal(t *testing.T) {
	silent, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	go func() {
		for {
			c, err := silent.Accept()
			if err != nil {
				return
			}
			defer c.Close() // never answers
		}
	}()
	timers := LocalTimers()
	timers.JoinRetryMin, timers.JoinRetryMax = 10*time.Millisecond, 10*time.Millisecond
	var fatal atomic.Value
	a, err := Start(Options{NodeID: "a", Cluster: "demo", Gossip: "127.0.0.1:0", Seeds: []string{silent.Addr().String()},
		BootstrapExpect: 1, Timers: timers, Logger: testutil.Logger().With("node", "a"),
		OnFatal: func(err error) { fatal.Store(err.Error()) }})
	if err != nil {
		t.Fatalf("a: %v", err)
	}
	t.Cleanup(func() { _ = a.Close() })
	// A misconfigured node of another cluster names a as its seed; it
	// tries again now and then (a restarts its own join every
	// TCPTimeout, and clears the refusal when it does).
	deadline := time.Now().Add(5 * time.Second)
	for i := 0; time.Now().Before(deadline); i++ { // bounded: 5 s
		if _, err := start(t, fmt.Sprintf("x%d", i), "other", 1, a.GossipAddr()); err == nil {
			t.Fatal("a node of another cluster was not refused")
		}
		if v := fatal.Load(); v != nil {
			t.Fatalf("after %d attempts of another cluster's node to join a, a was told it was refused by its own cluster: %v", i+1, v)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func TestSuspicionCountsMissedPingsInARow(t *testing.T) {
	var s suspicion
	steps := []struct {
		id       string
		answered bool
		changed  bool
		suspect  bool
	}{
		{"b", false, false, false}, // one miss is not enough
		{"b", true, false, false},  // and an answer starts over
		{"b", false, false, false},
		{"b", false, true, true},
		{"c", false, false, false}, // counted per member
		{"b", false, false, true},
		{"b", true, true, false},
	}
	for i, st := range steps {
		if changed := s.record(st.id, st.answered); changed != st.changed || s.suspect(st.id) != st.suspect {
			t.Fatalf("step %d (%s answered %v): changed %v suspect %v, want %v %v", i, st.id, st.answered, changed, s.suspect(st.id), st.changed, st.suspect)
		}
	}
	s.record("b", false)
	s.record("b", false)
	s.forget(map[string]bool{"c": true}) // b failed or left
	if s.suspect("b") || s.record("b", false) {
		t.Fatal("a member gossip gave up and that came back is suspect at once")
	}
}

func TestACrashedMemberIsSuspectBeforeItFails(t *testing.T) {
	timers := LocalTimers()
	timers.SuspicionMult = 40 // gossip gives a crashed member up after 4 s
	startSlow := func(id string, seeds ...string) *Membership {
		m, err := Start(Options{NodeID: id, Cluster: "demo", Gossip: "127.0.0.1:0", RPC: "127.0.0.1:1" + id, Seeds: seeds,
			BootstrapExpect: 2, Timers: timers, Logger: testutil.Logger().With("node", id)})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = m.Close() })
		return m
	}
	a := startSlow("a")
	b := startSlow("b", a.GossipAddr())
	testutil.Eventually(t, 10*time.Second, "two alive members", func() bool { return statuses(a) == "a=alive b=alive" })
	changed := a.Changed()
	b.shutdown() // no leave: a crash
	testutil.Eventually(t, 3*time.Second, "b seen as suspect", func() bool { return statuses(a) == "a=alive b=suspect" })
	select {
	case <-changed:
	default:
		t.Fatal("the change feed did not fire")
	}
	for _, mem := range a.Members() {
		if !mem.Up() {
			t.Fatalf("%s is %s: a suspect still counts as up", mem.ID, mem.Status)
		}
	}
	testutil.Eventually(t, 15*time.Second, "b seen as failed", func() bool { return statuses(a) == "a=alive b=failed" })
}

// multiErr stands for Serf's multi-error.
type multiErr []error

func (m multiErr) Error() string          { return "2 errors occurred:\n\t* a\n\t* b\n\n" }
func (m multiErr) WrappedErrors() []error { return m }

func TestSeedErrorsOnOneLine(t *testing.T) {
	sentinel := errors.New("dial tcp: connection refused")
	err := oneLine(multiErr{fmt.Errorf("failed to join 127.0.0.1:1: %w", sentinel), errors.New("no answer")})
	if err.Error() != "failed to join 127.0.0.1:1: dial tcp: connection refused; no answer" || !errors.Is(err, sentinel) {
		t.Fatalf("%q (is the dial error: %v)", err, errors.Is(err, sentinel))
	}
	if plain := errors.New("plain"); oneLine(plain) != plain {
		t.Fatal("a plain error changed")
	}
	if !expectedError("[ERR] memberlist: Failed fallback TCP ping: timeout") || expectedError("[ERR] memberlist: Failed to send ping") {
		t.Fatal("expected memberlist errors")
	}
}

func TestMissesToSuspectSpanASecond(t *testing.T) {
	for _, tc := range []struct {
		probe time.Duration
		want  int
	}{{time.Second, 2}, {2 * time.Second, 2}, {100 * time.Millisecond, 10}, {0, 2}} {
		if got := missesFor(tc.probe); got != tc.want {
			t.Errorf("probe %v: %d misses, want %d", tc.probe, got, tc.want)
		}
	}
	s := suspicion{need: 3}
	s.record("b", false)
	if s.record("b", false) || !s.record("b", false) || !s.suspect("b") {
		t.Fatal("three misses needed: the third makes the suspect")
	}
}

// TestAMemberWhoseUDPIsLostAnswersOverTCP: b's UDP is dropped while its
// TCP gets through (b advertises 127.0.0.2, where a proxy forwards TCP
// to it and a socket swallows UDP), so memberlist keeps it alive through
// its TCP fallback probes; a's own pings fall back to TCP too
// (PingFallback), so b is suspect only while that fails as well.
func TestAMemberWhoseUDPIsLostAnswersOverTCP(t *testing.T) {
	port := 0
	for try := 0; port == 0; try++ {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		p := ln.Addr().(*net.TCPAddr).Port
		ln.Close()
		if l2, err := net.Listen("tcp", fmt.Sprintf("127.0.0.2:%d", p)); err == nil {
			l2.Close()
			port = p
		} else if try > 10 {
			t.Skipf("no port free on both 127.0.0.1 and 127.0.0.2: %v", err)
		}
	}
	proxy, err := net.Listen("tcp", fmt.Sprintf("127.0.0.2:%d", port))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { proxy.Close() })
	go func() {
		for {
			c, err := proxy.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				d, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
				if err != nil {
					return
				}
				defer d.Close()
				go func() { _, _ = io.Copy(d, c); d.Close() }()
				_, _ = io.Copy(c, d)
			}()
		}
	}()
	swallow, err := net.ListenPacket("udp", fmt.Sprintf("127.0.0.2:%d", port))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { swallow.Close() })
	var swallowed atomic.Int64
	go func() {
		buf := make([]byte, 65536)
		for {
			if _, _, err := swallow.ReadFrom(buf); err != nil {
				return
			}
			swallowed.Add(1)
		}
	}()

	var tcpAnswers atomic.Bool
	tcpAnswers.Store(true)
	a, err := Start(Options{NodeID: "a", Cluster: "demo", Gossip: "127.0.0.1:0", RPC: "127.0.0.1:1",
		PingFallback: func(_ context.Context, rpc string) bool { return rpc == "127.0.0.1:2" && tcpAnswers.Load() },
		Timers:       LocalTimers(), Logger: testutil.Logger().With("node", "a")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = a.Close() })
	b, err := Start(Options{NodeID: "b", Cluster: "demo", Gossip: fmt.Sprintf("127.0.0.1:%d", port), Advertise: "127.0.0.2",
		RPC: "127.0.0.1:2", Seeds: []string{a.GossipAddr()}, Timers: LocalTimers(), Logger: testutil.Logger().With("node", "b")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })

	// Once a has lost 150 UDP packets to b (gossip every 20 ms, and
	// pings: two seconds' worth or so, twice what makes a suspect), b is
	// alive all the same: it answers over TCP.
	testutil.Eventually(t, 20*time.Second, "150 UDP packets to b lost", func() bool { return swallowed.Load() >= 150 })
	if got := statuses(a); got != "a=alive b=alive" {
		t.Fatalf("b answers over TCP, a shows %q", got)
	}
	tcpAnswers.Store(false)
	testutil.Eventually(t, 10*time.Second, "b suspect once TCP fails too", func() bool { return statuses(a) == "a=alive b=suspect" })
	tcpAnswers.Store(true)
	testutil.Eventually(t, 10*time.Second, "b alive once it answers again", func() bool { return statuses(a) == "a=alive b=alive" })
}

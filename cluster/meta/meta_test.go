package meta

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/mqstream/mqstream/cluster/shards"
	"github.com/mqstream/mqstream/internal/testutil"
)

// net is an in-memory cluster: Raft over raft.InmemTransport, and the
// group's operations delivered to the member at an address.
type net struct {
	mu      sync.Mutex // guards members and trs
	members map[string]*Meta
	trs     map[string]*raft.InmemTransport
	deps    map[string]shards.GroupDeps // by node id: kept across restarts
}

func (n *net) Call(ctx context.Context, addr, service string, req []byte) ([]byte, error) {
	n.mu.Lock()
	m := n.members[addr]
	n.mu.Unlock()
	if m == nil || service != Service {
		return nil, fmt.Errorf("%s unreachable", addr)
	}
	return m.Handle(ctx, "", req)
}

func (n *net) open(t *testing.T, id string) *Meta {
	t.Helper()
	return n.openWith(t, id, nil)
}

// openWith opens member id with options tune changes (nil: none).
func (n *net) openWith(t *testing.T, id string, tune func(*Options)) *Meta {
	t.Helper()
	addr, tr := raft.NewInmemTransport(raft.ServerAddress(id + ":7947"))
	n.mu.Lock()
	for a, other := range n.trs {
		tr.Connect(raft.ServerAddress(a), other)
		other.Connect(addr, tr)
	}
	n.trs[string(addr)] = tr
	n.mu.Unlock()
	store := raft.NewInmemStore()
	deps := shards.GroupDeps{Logs: store, Stable: store, Snapshots: raft.NewInmemSnapshotStore(), Transport: tr}
	n.mu.Lock()
	n.deps[id] = deps
	n.mu.Unlock()
	opts := Options{Self: shards.Peer{ID: id, RPC: string(addr)}, Call: n, Logger: testutil.Logger(),
		Timers: shards.LocalTimers(), Deps: deps}
	if tune != nil {
		tune(&opts)
	}
	m, err := Open(opts)
	if err != nil {
		t.Fatal(err)
	}
	n.mu.Lock()
	n.members[string(addr)] = m
	n.mu.Unlock()
	t.Cleanup(func() { _ = m.Close() })
	return m
}

func newNet(t *testing.T, ids ...string) (*net, []*Meta) {
	return newNetWith(t, nil, ids...)
}

// newNetWith founds a group of members ids, opened with options tune
// changes (nil: none).
func newNetWith(t *testing.T, tune func(*Options), ids ...string) (*net, []*Meta) {
	n := &net{members: map[string]*Meta{}, trs: map[string]*raft.InmemTransport{}, deps: map[string]shards.GroupDeps{}}
	var ms []*Meta
	var founders []shards.Peer
	for _, id := range ids {
		m := n.openWith(t, id, tune)
		ms = append(ms, m)
		founders = append(founders, m.self)
	}
	for _, m := range ms {
		if err := m.Bootstrap(founders); err != nil {
			t.Fatal(err)
		}
	}
	return n, ms
}

func follower(t *testing.T, ms []*Meta) *Meta {
	t.Helper()
	var f *Meta
	testutil.Eventually(t, 10*time.Second, "a leader of the metadata group", func() bool {
		for _, m := range ms {
			if m.IsLeader() {
				for _, o := range ms {
					if o != m {
						f = o
					}
				}
				return true
			}
		}
		return false
	})
	return f
}

// join makes m join the group through via, which may not know the
// group's leader yet (a join is then answered "no leader": try again).
func join(t *testing.T, m, via *Meta) {
	t.Helper()
	var err error
	testutil.Eventually(t, 10*time.Second, m.self.ID+" to join", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		err = m.Join(ctx, via.self.RPC)
		return err == nil
	})
}

func layoutOf(version uint64, ids ...string) shards.Layout {
	var peers []shards.Peer
	for _, id := range ids {
		peers = append(peers, shards.Peer{ID: id, RPC: id + ":7947"})
	}
	l, _ := shards.Plan(peers, 4, 3)
	l.Version = version
	return l
}

func TestLayoutChangesEverywhereAndOnlyOverItsVersion(t *testing.T) {
	_, ms := newNet(t, "n1", "n2", "n3")
	f := follower(t, ms)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := f.SetLayout(ctx, 0, layoutOf(1, "n1", "n2", "n3")); err != nil {
		t.Fatalf("set the first layout through a follower: %v", err)
	}
	for _, m := range ms {
		testutil.Eventually(t, 10*time.Second, "every member to apply version 1", func() bool { return m.State().Layout.Version == 1 })
	}
	if err := f.SetLayout(ctx, 0, layoutOf(2, "n1", "n2")); !errors.Is(err, ErrStale) {
		t.Fatalf("a layout planned from version 0 over version 1: %v, want ErrStale", err)
	}
	if err := ms[0].SetLayout(ctx, 1, layoutOf(1, "n1", "n2")); err == nil {
		t.Fatal("a layout whose version does not grow was applied")
	}
	if got := ms[2].State().Layout.Version; got != 1 {
		t.Fatalf("version %d after refused changes, want 1", got)
	}
}

func TestRemovedNodeCannotJoinAndAnotherVotesInItsPlace(t *testing.T) {
	n, ms := newNet(t, "n1", "n2", "n3")
	follower(t, ms)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	n4 := n.open(t, "n4")
	if n4.Bootstrapped() {
		t.Fatal("a new member has state")
	}
	join(t, n4, ms[0])
	if err := ms[1].SetLayout(ctx, 0, layoutOf(1, "n1", "n2", "n4")); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 10*time.Second, "the new member to apply the layout", func() bool { return n4.State().Layout.Version == 1 })
	// Remove n3 (the layout no longer places it).
	if err := ms[0].Remove(ctx, "n3"); err != nil {
		t.Fatalf("remove: %v", err)
	}
	testutil.Eventually(t, 10*time.Second, "n4 to vote in n3's place", func() bool {
		var l *Meta
		for _, m := range []*Meta{ms[0], ms[1], n4} {
			if m.IsLeader() {
				l = m
			}
		}
		if l == nil {
			return false
		}
		cfg := l.raft.GetConfiguration()
		if cfg.Error() != nil {
			return false
		}
		voters := map[string]bool{}
		for _, s := range cfg.Configuration().Servers {
			voters[string(s.ID)] = s.Suffrage == raft.Voter
		}
		_, has3 := voters["n3"]
		return !has3 && voters["n4"] && voters["n1"] && voters["n2"]
	})
	testutil.Eventually(t, 10*time.Second, "n4 to list n3 as removed", func() bool { return n4.State().IsRemoved("n3") })
	if err := ms[2].Join(ctx, ms[0].self.RPC); !errors.Is(err, ErrRemoved) {
		t.Fatalf("a removed node joined: %v, want ErrRemoved", err)
	}
	if err := ms[0].SetLayout(ctx, 1, layoutOf(2, "n1", "n2", "n3")); !errors.Is(err, ErrRemoved) {
		t.Fatalf("a layout placing a removed node: %v, want ErrRemoved", err)
	}
}

// TestMemberRestartsWithTheState: a member restarted on its log and
// snapshots (one taken after many changes) has the latest layout and the
// removed nodes again, once the group has a leader.
func TestMemberRestartsWithTheState(t *testing.T) {
	n, ms := newNet(t, "n1", "n2", "n3")
	follower(t, ms)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for v := uint64(0); v < 80; v++ {
		if err := ms[0].SetLayout(ctx, v, layoutOf(v+1, "n1", "n2", "n3")); err != nil {
			t.Fatalf("layout %d: %v", v+1, err)
		}
	}
	if err := ms[1].Remove(ctx, "n9"); err != nil {
		t.Fatal(err)
	}
	m3 := ms[2]
	testutil.Eventually(t, 10*time.Second, "n3 to apply everything", func() bool { return m3.State().IsRemoved("n9") })
	if err := m3.raft.Snapshot().Error(); err != nil {
		t.Fatalf("snapshot: %v", err)
	}
	if err := ms[0].SetLayout(ctx, 80, layoutOf(81, "n1", "n2", "n3")); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 10*time.Second, "n3 to apply version 81", func() bool { return m3.State().Layout.Version == 81 })
	n.mu.Lock()
	deps := n.deps["n3"]
	n.mu.Unlock()
	if err := m3.Close(); err != nil {
		t.Fatal(err)
	}
	again, err := Open(Options{Self: m3.self, Call: n, Logger: testutil.Logger(), Timers: shards.LocalTimers(), Deps: deps})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = again.Close() })
	n.mu.Lock()
	n.members[m3.self.RPC] = again
	n.mu.Unlock()
	if !again.Bootstrapped() {
		t.Fatal("a restarted member has no state")
	}
	testutil.Eventually(t, 10*time.Second, "the restarted member has the state", func() bool {
		st := again.State()
		return st.Layout.Version == 81 && st.IsRemoved("n9")
	})
}

// TestDeadVoterHandsItsVote: a voter given up for dead loses its vote to
// a live non-voter; the group then commits without it.
func TestDeadVoterHandsItsVote(t *testing.T) {
	n, ms := newNet(t, "n1", "n2", "n3")
	follower(t, ms)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	n4 := n.open(t, "n4")
	join(t, n4, ms[0])
	var leader, victim *Meta
	testutil.Eventually(t, 10*time.Second, "a leader", func() bool {
		for _, m := range ms {
			if m.IsLeader() {
				leader = m
			}
		}
		return leader != nil
	})
	for _, m := range ms {
		if m != leader {
			victim = m
			break
		}
	}
	_ = victim.Close()
	dead := func(id string) bool { return id == victim.self.ID }
	alive := func(id string) bool { return id != victim.self.ID }
	if err := leader.KeepVoters(alive, dead); err != nil {
		t.Fatal(err)
	}
	cfg := leader.raft.GetConfiguration()
	if err := cfg.Error(); err != nil {
		t.Fatal(err)
	}
	voters := map[string]bool{}
	for _, s := range cfg.Configuration().Servers {
		voters[string(s.ID)] = s.Suffrage == raft.Voter
	}
	if voters[victim.self.ID] || !voters["n4"] {
		t.Fatalf("votes after KeepVoters: %v", voters)
	}
	if err := n4.SetLayout(ctx, 0, layoutOf(1, "n1", "n2", "n4")); err != nil {
		t.Fatalf("a change after the vote moved: %v", err)
	}
	if err := leader.KeepVoters(alive, dead); err != nil {
		t.Fatalf("nothing left to hand: %v", err)
	}
}

// TestForwardedOnlyOnce: a member passes an operation on to the leader
// it knows, once: one passed on already and reaching a member that does
// not lead is answered "no leader" (its sender tries again), so members
// with out-of-date views of the leader never send it round in a circle.
func TestForwardedOnlyOnce(t *testing.T) {
	_, ms := newNet(t, "n1", "n2", "n3")
	f := follower(t, ms)
	// A follower just elected over does not know its leader until the
	// first heartbeat.
	testutil.Eventually(t, 10*time.Second, "the follower to know the leader", func() bool {
		l, ok := f.Leader()
		return ok && l.ID != f.self.ID
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cmd := &command{Op: "remove", Node: "n9"}
	for _, tc := range []struct {
		forwarded bool
		want      error
	}{{true, errNoLeader}, {false, nil}} {
		b, err := json.Marshal(request{Cmd: cmd, Forwarded: tc.forwarded})
		if err != nil {
			t.Fatal(err)
		}
		resp, err := f.Handle(ctx, "", b)
		if err != nil {
			t.Fatal(err)
		}
		if err := decodeResponse(resp); !errors.Is(err, tc.want) {
			t.Fatalf("forwarded %v, at a follower: %v, want %v", tc.forwarded, err, tc.want)
		}
	}
	testutil.Eventually(t, 10*time.Second, "the follower to apply the removal", func() bool { return f.State().IsRemoved("n9") })
}

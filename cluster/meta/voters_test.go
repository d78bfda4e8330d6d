package meta

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/mqstream/mqstream/internal/testutil"
)

// otherThan returns a member of ms other than m.
func otherThan(ms []*Meta, m *Meta) *Meta {
	for _, o := range ms {
		if o != m {
			return o
		}
	}
	return nil
}

// TestVotersToppedUpByALiveNonVoter: a dead voter was made a non-voter
// and the promotion of a live one that should have followed failed (the
// leadership moved in between): the group has two voters. KeepVoters
// makes the live non-voter a voter, though no voter is dead any more.
func TestVotersToppedUpByALiveNonVoter(t *testing.T) {
	n, ms := newNet(t, "n1", "n2", "n3")
	follower(t, ms)
	n4 := n.open(t, "n4")
	join(t, n4, ms[0])
	leader := leaderAmong(t, ms)
	victim := otherThan(ms, leader)
	if err := leader.raft.DemoteVoter(raft.ServerID(victim.self.ID), 0, 5*time.Second).Error(); err != nil {
		t.Fatal(err)
	}
	_ = victim.Close()
	dead := func(id string) bool { return id == victim.self.ID }
	alive := func(id string) bool { return id != victim.self.ID }
	if err := leader.KeepVoters(alive, dead); err != nil {
		t.Fatal(err)
	}
	if v := leader.Voters(); len(v) != maxVoters || !slices.Contains(v, "n4") {
		t.Fatalf("voters after KeepVoters: %v, want %d with n4", v, maxVoters)
	}
}

// TestRemovedVoteGoesToALiveNonVoter: removing a voter hands its vote to
// a non-voter that is up (n5), not to the first one listed (n4, down).
func TestRemovedVoteGoesToALiveNonVoter(t *testing.T) {
	var mu sync.Mutex
	down := map[string]bool{}
	alive := func(id string) bool {
		mu.Lock()
		defer mu.Unlock()
		return !down[id]
	}
	tune := func(o *Options) { o.Alive = alive }
	n, ms := newNetWith(t, tune, "n1", "n2", "n3")
	follower(t, ms)
	n4, n5 := n.openWith(t, "n4", tune), n.openWith(t, "n5", tune)
	join(t, n4, ms[0])
	join(t, n5, ms[0])
	leader := leaderAmong(t, ms)
	gone := otherThan(ms, leader)
	mu.Lock()
	down[gone.self.ID], down["n4"] = true, true
	mu.Unlock()
	_ = gone.Close()
	_ = n4.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := leader.Remove(ctx, gone.self.ID); err != nil {
		t.Fatal(err)
	}
	if v := leader.Voters(); slices.Contains(v, "n4") || !slices.Contains(v, "n5") {
		t.Fatalf("voters after removing %s: %v, want n5's vote and not n4's", gone.self.ID, v)
	}
}

// TestRemoveFinishesARemovalCutShort: a removal whose first step (the
// record that the node is removed) committed but whose second (dropping
// it from the group's configuration) never ran is finished when asked
// again: the node no longer votes.
func TestRemoveFinishesARemovalCutShort(t *testing.T) {
	_, ms := newNet(t, "n1", "n2", "n3")
	follower(t, ms)
	leader := leaderAmong(t, ms)
	gone := otherThan(ms, leader)
	_ = gone.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := leader.do(ctx, request{Cmd: &command{Op: "remove", Node: gone.self.ID}}); err != nil {
		t.Fatal(err)
	}
	if !leader.State().IsRemoved(gone.self.ID) || !slices.Contains(leader.Servers(), gone.self.ID) {
		t.Fatalf("the premise: removed %v, servers %v", leader.State().IsRemoved(gone.self.ID), leader.Servers())
	}
	if err := leader.Remove(ctx, gone.self.ID); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 10*time.Second, gone.self.ID+" out of the group", func() bool {
		return !slices.Contains(leader.Servers(), gone.self.ID)
	})
}

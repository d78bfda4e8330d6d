package shards

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/mqstream/mqstream/internal/testutil"
)

// TestReplicaMovedAwayStaysWhileItsGroupNeedsIt: the layout moves shard
// 0 from x to n4; the leader adds n4 and makes it a voter once caught up,
// but then cannot learn that n4 caught up (its fetches fail), so x stays
// and the group has four voters and needs three. Then n4 and the leader are cut off (n4 as if its catch-up
// blocked it): x and y, two of four, elect no one. x, moved away and
// hearing of no leader for Timers.Orphaned, must not close its replica:
// its vote is one of the three the group needs once n4 is back (before,
// it closed and dropped its data, and with the leader gone for good the
// shard could never elect one). Once the group has a leader again and
// removes x, the leader confirms it and x drops its replica, Raft state
// included.
func TestReplicaMovedAwayStaysWhileItsGroupNeedsIt(t *testing.T) {
	timers := LocalTimers()
	timers.Balance = time.Hour
	c := newClusterWith(t, 3, 1, 3, timers)
	lead := c.waitLeaders()[0]
	leader, x, y := c.nodes[lead], c.nodes[(lead+1)%3], c.nodes[(lead+2)%3]
	ctx := context.Background()
	if _, err := leader.set.Append(ctx, "s", recs("a", 3)...); err != nil {
		t.Fatal(err)
	}
	n4 := c.addNode(Peer{ID: "n4", RPC: "n4:7947"})
	// Once n4 votes, the leader never learns that it caught up, so x
	// stays a voter.
	c.mu.Lock()
	c.fetchFault = func(addr string) error {
		cfg := leader.set.replica(0).raft.GetConfiguration()
		if addr == n4.self.RPC && cfg.Error() == nil && isVoterIn(cfg.Configuration().Servers, "n4") {
			return errors.New("n4 is catching up")
		}
		return nil
	}
	c.mu.Unlock()
	c.update(replaced(c.layout, x.self.ID, &n4.self))
	testutil.Eventually(t, 10*time.Second, "n4 to be a voter of the group", func() bool {
		cfg := leader.set.replica(0).raft.GetConfiguration()
		return cfg.Error() == nil && isVoterIn(cfg.Configuration().Servers, "n4")
	})
	// An append committed after it commits n4's addition: x and y count
	// four voters.
	if _, err := leader.set.Append(ctx, "s", recs("a", 1)...); err != nil {
		t.Fatal(err)
	}
	for _, nd := range []*testNode{x, y} {
		testutil.Eventually(t, 10*time.Second, nd.self.ID+" to count n4 as a voter", func() bool {
			cfg := nd.set.replica(0).raft.GetConfiguration()
			return cfg.Error() == nil && isVoterIn(cfg.Configuration().Servers, "n4")
		})
	}
	// n4 and the leader are cut off: x and y are two of four.
	c.partition(n4)
	c.partition(leader)

	r := x.set.replica(0)
	testutil.Eventually(t, timers.Orphaned+15*time.Second, "x to hear of no leader for longer than Timers.Orphaned", func() bool {
		return x.set.replica(0) == nil || time.Since(r.raft.LastContact()) > timers.Orphaned+2*time.Second
	})
	if x.set.replica(0) == nil {
		t.Fatal("x closed its replica while its group needed its vote")
	}
	if !x.hasRaftState(groupName(0)) {
		t.Fatal("x dropped its Raft state while its group still lists it")
	}

	c.mu.Lock()
	c.fetchFault = nil
	c.mu.Unlock()
	c.heal()
	testutil.Eventually(t, 30*time.Second, "an append after the heal", func() bool {
		_, err := y.set.Append(ctx, "s", recs("b", 1)...)
		return err == nil
	})
	testutil.Eventually(t, 30*time.Second, "x to close its replica once its removal is committed", func() bool {
		return x.set.replica(0) == nil && !x.hasRaftState(groupName(0))
	})
}

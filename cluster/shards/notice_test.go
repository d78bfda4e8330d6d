package shards

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/mqstream/mqstream/internal/testutil"
)

// TestCommitNoticeTellsFollowers: with a commit timeout far longer than
// the test, each lone append reaches every replica's store soon after it
// is acknowledged, whichever node it was sent through: the leader's
// commit notice tells the followers that it is committed. Without
// notices they would apply it only after the commit timeout (or with the
// next entry).
func TestCommitNoticeTellsFollowers(t *testing.T) {
	timers := LocalTimers()
	timers.Commit = time.Hour
	c := newClusterWith(t, 3, 1, 3, timers)
	c.waitLeaders()
	stream := streamOfShard(t, 0, 1)
	var want []string
	for round := 0; round < 6; round++ {
		nd := c.nodes[round%len(c.nodes)]
		batch := recs(fmt.Sprintf("r%d", round), 1)
		if _, err := nd.set.Append(context.Background(), stream, batch...); err != nil {
			t.Fatalf("append through %s: %v", nd.self.ID, err)
		}
		want = append(want, string(batch[0].Payload))
		c.sameEverywhere(stream, want)
	}
}

// TestCommitNoticeAfterALeaderChange: the leader of a shard stops; under
// its successor, lone appends still reach every running replica at once
// (the new leader sends notices too), with a commit timeout far longer
// than the test.
func TestCommitNoticeAfterALeaderChange(t *testing.T) {
	timers := LocalTimers()
	timers.Commit = time.Hour
	c := newClusterWith(t, 3, 1, 3, timers)
	leader := c.nodes[c.waitLeaders()[0]]
	stream := streamOfShard(t, 0, 1)
	first := recs("before", 1)
	if _, err := leader.set.Append(context.Background(), stream, first...); err != nil {
		t.Fatal(err)
	}
	want := []string{string(first[0].Payload)}
	c.sameEverywhere(stream, want)
	leader.stop()
	c.waitLeaders()
	for round := 0; round < 3; round++ {
		for _, nd := range c.nodes {
			if nd == leader {
				continue
			}
			batch := recs(fmt.Sprintf("after-%s-%d", nd.self.ID, round), 1)
			if _, err := nd.set.Append(context.Background(), stream, batch...); err != nil {
				t.Fatalf("append through %s: %v", nd.self.ID, err)
			}
			want = append(want, string(batch[0].Payload))
			c.sameEverywhere(stream, want)
		}
	}
}

// TestAReplicaAddedWhileIdleServes: a replica a layout change adds to an
// idle cluster, whose shards' last entries are commit notices (barriers,
// which the state machine never sees), catches up and serves reads.
func TestAReplicaAddedWhileIdleServes(t *testing.T) {
	const shards = 2
	c := newCluster(t, 3, shards, 3)
	c.waitLeaders()
	for i := 0; i < shards; i++ {
		stream := streamOfShard(t, i, shards)
		batch := recs(stream, 2)
		if _, err := c.nodes[0].set.Append(context.Background(), stream, batch...); err != nil {
			t.Fatal(err)
		}
		c.sameEverywhere(stream, []string{string(batch[0].Payload), string(batch[1].Payload)})
	}
	n4 := c.addNode(Peer{ID: "n4", RPC: "n4:7947"})
	c.update(replaced(c.layout, "n3", &n4.self))
	c.waitConfigured()
	for i := 0; i < shards; i++ {
		testutil.Eventually(t, 10*time.Second, fmt.Sprintf("n4's replica of shard %d to serve reads", i), func() bool { return n4.set.Serves(i) })
	}
}

// TestNoticeWait: a shard written every few tens of milliseconds waits
// twice its gap before a notice (its next entry usually tells the
// followers first); one written more often or more rarely than that
// waits noticeDelay.
func TestNoticeWait(t *testing.T) {
	for _, tc := range []struct{ gap, want time.Duration }{
		{0, noticeDelay},
		{2 * time.Millisecond, noticeDelay},
		{5 * time.Millisecond, noticeDelay},
		{6 * time.Millisecond, 12 * time.Millisecond},
		{24 * time.Millisecond, 48 * time.Millisecond},
		{50 * time.Millisecond, noticeSpacing},
		{51 * time.Millisecond, noticeDelay},
		{time.Second, noticeDelay},
	} {
		if got := noticeWait(tc.gap); got != tc.want {
			t.Errorf("noticeWait(%v) = %v, want %v", tc.gap, got, tc.want)
		}
	}
}

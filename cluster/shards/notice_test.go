package shards

import (
	"context"
	"fmt"
	"testing"
	"time"
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

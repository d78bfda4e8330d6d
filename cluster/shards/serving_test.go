package shards

import (
	"context"
	"testing"
	"time"

	"github.com/mqstream/mqstream/internal/testutil"
)

// TestReplicaServesOnlyOnceCaughtUp: a replica serves reads (Set.Serves,
// which makes the node read the shard from its own store and answer other
// nodes' reads of it) only once its store holds what its group had
// committed: not when a layout change adds it to a shard with a long log
// (its commit index is then the end of the first batch it received), nor
// when its node restarts after missing writes.
func TestReplicaServesOnlyOnceCaughtUp(t *testing.T) {
	const n = 1500
	fill := func(t *testing.T, nd *testNode, stream string) uint64 {
		for i := 0; i < n; i++ {
			if _, err := nd.set.Append(context.Background(), stream, recs("r", 1)...); err != nil {
				t.Fatal(err)
			}
		}
		info, err := nd.store.DescribeStream(stream)
		if err != nil {
			t.Fatal(err)
		}
		return info.NextOffset
	}
	// waitServes waits until nd serves shard 0, failing if it does while
	// its store holds fewer than want records of stream.
	waitServes := func(t *testing.T, nd *testNode, stream string, want uint64) {
		testutil.Eventually(t, 20*time.Second, nd.self.ID+" to serve reads of shard 0", func() bool {
			if !nd.set.Serves(0) {
				return false
			}
			info, err := nd.store.DescribeStream(stream)
			if err != nil || info.NextOffset < want {
				t.Fatalf("%s serves reads of shard 0 while its store holds %d of the %d records (%v)", nd.self.ID, info.NextOffset, want, err)
			}
			return true
		})
	}
	t.Run("added by a layout change", func(t *testing.T) {
		c := newCluster(t, 2, 1, 2)
		c.waitLeaders()
		stream := streamOfShard(t, 0, 1)
		want := fill(t, c.nodes[0], stream)
		n3 := c.addNode(Peer{ID: "n3", RPC: "n3:7947"})
		l := c.layout.clone()
		l.Version++
		l.Shards[0] = append(l.Shards[0], n3.self)
		c.update(l)
		waitServes(t, n3, stream, want)
	})
	t.Run("restarted", func(t *testing.T) {
		c := newCluster(t, 3, 1, 3)
		lead := c.waitLeaders()[0]
		down, via := c.nodes[(lead+1)%3], c.nodes[lead]
		down.stop()
		stream := streamOfShard(t, 0, 1)
		want := fill(t, via, stream)
		down.start()
		waitServes(t, down, stream, want)
	})
	t.Run("leader after a restart of all", func(t *testing.T) {
		c := newCluster(t, 3, 1, 3)
		lead := c.waitLeaders()[0]
		stream := streamOfShard(t, 0, 1)
		want := fill(t, c.nodes[lead], stream)
		for _, nd := range c.nodes {
			nd.stop()
		}
		for _, nd := range c.nodes {
			nd.start()
		}
		for _, nd := range c.nodes {
			waitServes(t, nd, stream, want)
		}
	})
}

package shards

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/mqstream/mqstream/streams"
)

// BenchmarkAppendReplicated: appends of one 100-byte record, many in
// flight, through every node of a three-node cluster (4 shards, factor 3)
// whose Raft groups talk over raft's in-memory transport: the cost of
// proposing, forwarding, committing and applying, without the network
// and without fsyncs of the Raft log (the stores apply as in production).
func BenchmarkAppendReplicated(b *testing.B) {
	c := newCluster(b, 3, 4, 3)
	c.waitLeaders()
	var n atomic.Int64
	payload := make([]byte, 100)
	b.SetParallelism(128)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			i := n.Add(1)
			nd := c.nodes[i%3]
			stream := fmt.Sprintf("s%d", i%24)
			if _, err := nd.set.Append(context.Background(), stream, streams.Record{Topic: "t", Payload: payload}); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkAppendReplicatedSequential: one append at a time, through a
// follower (forwarded): the latency of a replicated append.
func BenchmarkAppendReplicatedSequential(b *testing.B) {
	c := newCluster(b, 3, 1, 3)
	leaders := c.waitLeaders()
	for _, via := range []struct {
		name string
		nd   *testNode
	}{{"leader", c.nodes[leaders[0]]}, {"follower", c.nodes[(leaders[0]+1)%3]}} {
		b.Run(via.name, func(b *testing.B) {
			payload := make([]byte, 100)
			for i := 0; i < b.N; i++ {
				if _, err := via.nd.set.Append(context.Background(), "s", streams.Record{Topic: "t", Payload: payload}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

package shards

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/raft"

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

// BenchmarkLeadershipHandBack: one shard on three nodes, a writer on each
// node appending every 3 ms without waiting for the answers (as a QoS 1
// publisher with messages in flight), forwards delayed 2 ms; each
// iteration hands the leadership to the other of two nodes and lets the
// load run 300 ms. It reports the longest any append waited for its
// answer (max-ack-ms) over the run: a handed leadership must not hold
// the writers up (before the forward to the old leader was interrupted,
// half the hand-overs held them 2 s). Production timers.
func BenchmarkLeadershipHandBack(b *testing.B) {
	timers := DefaultTimers()
	timers.Balance = time.Hour
	c := newClusterWith(b, 3, 1, 3, timers)
	a := c.nodes[c.waitLeaders()[0]]
	other := c.nodes[(c.waitLeaders()[0]+1)%3]
	ctx := context.Background()
	if _, err := a.set.CreateStream(ctx, "handback", streams.Retention{}); err != nil {
		b.Fatal(err)
	}
	var worst atomic.Int64 // nanoseconds
	var failed atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for _, nd := range c.nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tick := time.NewTicker(3 * time.Millisecond)
			defer tick.Stop()
			for {
				select {
				case <-stop:
					return
				case <-tick.C:
				}
				start := time.Now()
				err := nd.set.Submit(streams.AppendRequest{Stream: "handback", Records: recs("x", 1),
					Done: func(_ uint64, err error) {
						if err != nil {
							failed.Add(1)
						}
						d := int64(time.Since(start))
						for w := worst.Load(); d > w && !worst.CompareAndSwap(w, d); w = worst.Load() {
						}
					}})
				if err != nil {
					failed.Add(1)
				}
			}
		}()
	}
	time.Sleep(500 * time.Millisecond) // the writers' first appends
	c.mu.Lock()
	c.forwardFault = func(string) error { time.Sleep(2 * time.Millisecond); return nil }
	c.mu.Unlock()
	worst.Store(0)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		from, to := a, other
		if i%2 == 1 {
			from, to = other, a
		}
		r := from.set.replica(0)
		if err := r.raft.LeadershipTransferToServer(raft.ServerID(to.self.ID), raft.ServerAddress(to.self.RPC)).Error(); err != nil {
			b.Logf("transfer %d: %v", i, err)
		}
		time.Sleep(300 * time.Millisecond)
	}
	b.StopTimer()
	close(stop)
	wg.Wait()
	time.Sleep(2500 * time.Millisecond) // the last answers
	b.ReportMetric(float64(worst.Load())/1e6, "max-ack-ms")
	b.ReportMetric(float64(failed.Load()), "failed")
}

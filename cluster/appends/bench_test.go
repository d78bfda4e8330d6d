package appends

import (
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// BenchmarkReplicate: three nodes in this process, 12 groups with
// in-memory logs (no fsync, so the transport is a large share of the
// work), 64 appliers spread over the groups' leaders; the appends through
// the Batchers or through the groups' own NetworkTransports. Reports the
// process's CPU time (user+sys) per applied command and the Raft entries
// per command. Compare with
//
//	go test -run '^$' -bench Replicate -count 4 ./cluster/appends
func BenchmarkReplicate(b *testing.B) {
	for _, v := range []struct {
		name   string
		direct bool
	}{{"transport=network", true}, {"transport=batched", false}} {
		b.Run(v.name, func(b *testing.B) {
			c := startRaftClusterWith(b, nil, 3, 12, v.direct)
			leaders := make([]*raft.Raft, len(c.groups))
			for i, g := range c.groups {
				leaders[i] = c.leader(g).rafts[g]
			}
			before := lastIndexes(leaders)
			var next atomic.Int64
			var wg sync.WaitGroup
			cpu0 := cpuTime()
			b.ResetTimer()
			for range 64 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for {
						i := next.Add(1)
						if i > int64(b.N) {
							return
						}
						if err := leaders[i%int64(len(leaders))].Apply([]byte("0123456789abcdef0123456789abcdef"), 10*time.Second).Error(); err != nil {
							b.Error(err)
							return
						}
					}
				}()
			}
			wg.Wait()
			b.StopTimer()
			cpu := cpuTime() - cpu0
			entries := lastIndexes(leaders) - before
			b.ReportMetric(float64(cpu.Microseconds())/float64(b.N), "cpu-us/op")
			b.ReportMetric(float64(entries)/float64(b.N), "entries/op")
		})
	}
}

func lastIndexes(rs []*raft.Raft) (sum uint64) {
	for _, r := range rs {
		sum += r.LastIndex()
	}
	return sum
}

// cpuTime is the process's user+sys CPU time so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

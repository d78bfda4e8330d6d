package appends

import (
	"fmt"
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
//	go test -run '^$' -bench Replicate -benchtime 20000x -count 4 ./cluster/appends
func BenchmarkReplicate(b *testing.B) {
	// 32-byte commands, and 16 KiB ones (an entry at full load carries
	// about 50 publishes of some 300 bytes encoded).
	for _, size := range []int{32, 16 << 10} {
		for _, v := range []struct {
			name   string
			direct bool
		}{{"network", true}, {"batched", false}} {
			b.Run(fmt.Sprintf("size=%d/transport=%s", size, v.name), func(b *testing.B) {
				benchReplicate(b, v.direct, make([]byte, size))
			})
		}
	}
}

func benchReplicate(b *testing.B, direct bool, cmd []byte) {
	c := startRaftClusterWith(b, nil, 3, 12, direct)
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
				if err := leaders[i%int64(len(leaders))].Apply(cmd, 10*time.Second).Error(); err != nil {
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

package raftlog

import (
	"fmt"
	"io"
	"log/slog"
	"sync"
	"testing"

	"github.com/hashicorp/raft"
	dto "github.com/prometheus/client_model/go"
)

// BenchmarkStoreLogs appends one entry of 256 bytes per StoreLogs, synced,
// from one group or from 12 groups at once (each group appends from one
// goroutine, as Raft does). ns/op is per entry; syncs/op counts WAL syncs
// per entry, and falls below 1 as groups share syncs.
func BenchmarkStoreLogs(b *testing.B) {
	for _, groups := range []int{1, 12} {
		b.Run(fmt.Sprintf("groups=%d", groups), func(b *testing.B) {
			d, err := Open(b.TempDir(), Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
			if err != nil {
				b.Fatal(err)
			}
			defer d.Close()
			data := make([]byte, 256)
			b.SetBytes(int64(len(data)))
			syncsBefore := walSyncs(b, d)
			b.ResetTimer()
			var wg sync.WaitGroup
			for g := range groups {
				s := d.Group(fmt.Sprintf("shard-%d", g))
				n := b.N / groups
				if g < b.N%groups {
					n++
				}
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := range n {
						l := &raft.Log{Index: uint64(i) + 1, Term: 1, Data: data}
						if err := s.StoreLogs([]*raft.Log{l}); err != nil {
							b.Error(err)
							return
						}
					}
				}()
			}
			wg.Wait()
			b.StopTimer()
			b.ReportMetric(float64(walSyncs(b, d)-syncsBefore)/float64(b.N), "syncs/op")
		})
	}
}

// walSyncs returns how many times d synced its WAL: the number of samples
// in Pebble's WAL fsync latency histogram.
func walSyncs(b *testing.B, d *DB) uint64 {
	var m dto.Metric
	if err := d.pdb.Metrics().LogWriter.FsyncLatency.Write(&m); err != nil {
		b.Fatal(err)
	}
	return m.GetHistogram().GetSampleCount()
}

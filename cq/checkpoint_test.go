package cq

import (
	"fmt"
	"testing"
	"time"

	"github.com/mqstream/mqstream/internal/testutil"
	"github.com/mqstream/mqstream/streams"
)

// BenchmarkCheckpointCost measures what exactly-once output costs a
// query replaying a stream (issue 17's "checkpoint cost" bar): a
// TUMBLE(10s) count/avg/max over 10,000 keys reads 1,000,000 records
// (one per 100 us of record time: 10 windows of 10,000 rows) with its
// checkpoints on (every output request synced before the next, the
// progress hint at most once a second, as a node runs it) and off (the
// store syncs nothing, no hints). The difference is the cost of the
// checkpoints: in this design a checkpoint is the output request itself,
// which carries the query's progress (doc.go), plus the hint.
func BenchmarkCheckpointCost(b *testing.B) {
	const records, keys, batch = 1_000_000, 10_000, 1000
	for _, bc := range []struct {
		name  string
		sync  streams.SyncPolicy
		hints time.Duration
	}{
		{"checkpoints=on", streams.SyncAlways, time.Second},
		{"checkpoints=off", streams.SyncNone, time.Hour},
	} {
		b.Run(bc.name, func(b *testing.B) {
			e := &env{t: b}
			store, err := streams.Open(streams.Options{Dir: b.TempDir(), Sync: bc.sync, Logger: testutil.Logger()})
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { store.Close() })
			e.store, e.clock = store, testutil.NewClock(base.Add(time.Hour))
			e.createStreams("temps")
			payloads := make([]string, batch)
			for i := 0; i < records; i += batch {
				for j := range payloads {
					payloads[j] = fmt.Sprintf(`{"sensor":"s%d","temp":%d}`, (i+j)%keys, (i+j)%40)
				}
				// A batch of 1,000 records spans 100 ms of record time:
				// stamped at its start, as one commit group of a node is.
				e.appendStamped("temps", time.Duration(i)*100*time.Microsecond, payloads...)
			}
			m, err := New(Options{Reader: store, Writer: store, KV: store.KV("queries"), HintInterval: bc.hints, Tick: 5 * time.Millisecond,
				Now: e.clock.Now, Logger: testutil.Logger()})
			if err != nil {
				b.Fatal(err)
			}
			if err := m.Start(); err != nil {
				b.Fatal(err)
			}
			e.m = m
			defer m.Close()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				name := fmt.Sprintf("per10s_%d", i)
				e.create("CREATE STREAM " + name + " AS SELECT sensor, count(*) AS n, avg(temp) AS mean, max(temp) AS hi FROM temps " +
					"GROUP BY sensor, TUMBLING(INTERVAL 10 SECOND)")
				// The last window closes with the idle timeout: the clock
				// is an hour past the records.
				testutil.Eventually(b, time.Minute, "the query caught up", func() bool {
					q := e.info(name)
					return q.Lag == 0 && q.RowsOut == 10*keys
				})
			}
			b.StopTimer()
			b.ReportMetric(float64(records)*float64(b.N)/b.Elapsed().Seconds(), "records/s")
		})
	}
}

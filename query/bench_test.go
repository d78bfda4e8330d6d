package query

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mqstream/mqstream/internal/testutil"
	"github.com/mqstream/mqstream/streams"
)

// BenchmarkStreamQueries fills one stream with MQSTREAM_BENCH_RECORDS
// records (default 10,000,000) whose timestamps advance 10 s every 10,000
// records (1,000 records/s of simulated time, about 2.8 hours), then runs
// queries over it. It reports rows_scanned/op and, for full scans, rows/s.
//
//	go test -run XXX -bench StreamQueries -benchtime 1x -timeout 30m ./query/
func BenchmarkStreamQueries(b *testing.B) {
	total := 10_000_000
	if s := os.Getenv("MQSTREAM_BENCH_RECORDS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 100_000 {
			b.Fatalf("MQSTREAM_BENCH_RECORDS=%q: want a number >= 100000", s)
		}
		total = n
	}
	const batch = 10_000
	start := time.Date(2026, 11, 26, 0, 0, 0, 0, time.UTC)
	var simNow atomic.Int64 // the store's clock: set before each batch
	simNow.Store(start.UnixNano())
	store, err := streams.Open(streams.Options{Dir: b.TempDir(), AutoCreate: true, Sync: streams.SyncNone,
		Logger: testutil.Logger(), Now: func() time.Time { return time.Unix(0, simNow.Load()) }})
	if err != nil {
		b.Fatal(err)
	}
	defer store.Close()

	fillStart := time.Now()
	recs := make([]streams.Record, batch)
	for done := 0; done < total; done += batch {
		for i := range recs {
			n := done + i
			recs[i] = streams.Record{Topic: fmt.Sprintf("bench/device-%d", n%10), ClientID: "bench", QoS: 1,
				Payload: fmt.Appendf(nil, `{"i":%d,"v":%d.5,"site":"s%d"}`, n, n%1000, n%7)}
		}
		simNow.Store(start.Add(time.Duration(done/batch) * 10 * time.Second).UnixNano())
		if _, err := store.Append(context.Background(), "bench", recs...); err != nil {
			b.Fatal(err)
		}
	}
	last := time.Unix(0, simNow.Load())
	b.Logf("filled %d records in %s", total, time.Since(fillStart).Round(time.Millisecond))

	engine, err := New(Options{Store: store, MaxRowsScanned: int64(total) + 1, Timeout: 10 * time.Minute,
		Now: func() time.Time { return last.Add(time.Millisecond) }, Logger: testutil.Logger()})
	if err != nil {
		b.Fatal(err)
	}
	run := func(b *testing.B, sql string, check func(*Result)) {
		var res *Result
		var scanned int64
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			var err error
			res, err = engine.Query(context.Background(), sql)
			if err != nil {
				b.Fatal(err)
			}
			scanned += res.RowsScanned
		}
		b.StopTimer()
		check(res)
		b.ReportMetric(float64(scanned)/float64(b.N), "rows_scanned/op")
		b.ReportMetric(float64(scanned)/b.Elapsed().Seconds(), "rows/s")
	}
	wantRows := func(want string) func(*Result) {
		return func(res *Result) {
			if got := rows(res); len(got) != 1 || got[0] != want {
				b.Fatalf("got %v, want %s", got, want)
			}
		}
	}

	// The last minute holds the last 6 batches: 60,000 records.
	b.Run("LastMinute", func(b *testing.B) {
		run(b, "SELECT count(*), min(_offset) FROM bench WHERE _timestamp > now() - INTERVAL 1 MINUTE",
			wantRows(fmt.Sprintf("60000 | %d", total-60_000)))
	})
	b.Run("LatestTen", func(b *testing.B) {
		run(b, "SELECT _offset, i, v FROM bench ORDER BY _offset DESC LIMIT 10", func(res *Result) {
			if len(res.Rows) != 10 || res.Rows[0][0] != int64(total-1) {
				b.Fatalf("latest: %v", rows(res))
			}
		})
	})
	b.Run("FullScanCount", func(b *testing.B) {
		run(b, "SELECT count(*) FROM bench", wantRows(strconv.Itoa(total)))
	})
	b.Run("FullScanAggregateJSON", func(b *testing.B) {
		run(b, "SELECT count(*), max(i), avg(v) FROM bench WHERE v > 100", func(res *Result) {
			if res.Rows[0][1] != int64(total-1) {
				b.Fatalf("aggregate: %v", rows(res))
			}
		})
	})
	b.Run("FullScanGroupBy", func(b *testing.B) {
		run(b, "SELECT site, count(*) AS n, avg(v) FROM bench GROUP BY site ORDER BY n DESC", func(res *Result) {
			if len(res.Rows) != 7 {
				b.Fatalf("group by: %v", rows(res))
			}
		})
	})
}

package streams

import (
	"context"
	"fmt"
	"sync"
	"testing"
)

var benchPayload = make([]byte, 100)

// BenchmarkAppendSequential: one writer, one record per synced append (the
// floor: one fsync per record).
func BenchmarkAppendSequential(b *testing.B) {
	s := openTest(b, b.TempDir(), nil)
	ctx := context.Background()
	r := Record{Topic: "bench/t", Payload: benchPayload, QoS: 1, ClientID: "bench"}
	b.SetBytes(int64(len(benchPayload)))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := s.Append(ctx, "bench", r); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkAppendPipelined: one writer keeping 256 appends in flight, as one
// MQTT connection with a window of 256 does.
func BenchmarkAppendPipelined(b *testing.B) {
	benchmarkAppendInflight(b, 1, 256)
}

// BenchmarkAppendConcurrent: 8 writers x 256 in flight (the ingest benchmark's shape).
func BenchmarkAppendConcurrent(b *testing.B) {
	benchmarkAppendInflight(b, 8, 256)
}

// BenchmarkAppendConcurrentStreams: the same over 24 streams, each writer
// going round them (the cluster benchmark's shape, --topics 24): many
// streams' keys in every memtable, so flushes overlap and compactions
// rewrite.
func BenchmarkAppendConcurrentStreams(b *testing.B) {
	benchmarkAppendInflightOver(b, 8, 256, 24)
}

func benchmarkAppendInflight(b *testing.B, writers, window int) {
	benchmarkAppendInflightOver(b, writers, window, 1)
}

func benchmarkAppendInflightOver(b *testing.B, writers, window, streams int) {
	s := openTest(b, b.TempDir(), nil)
	b.SetBytes(int64(len(benchPayload)))
	b.ResetTimer()
	var wg sync.WaitGroup
	per := b.N/writers + 1
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			sem := make(chan struct{}, window)
			for i := 0; i < per; i++ {
				sem <- struct{}{}
				r := Record{Topic: fmt.Sprintf("bench/%d", w), Payload: benchPayload, QoS: 1}
				stream := "bench"
				if streams > 1 {
					stream = fmt.Sprintf("bench%d", (w+i)%streams)
				}
				err := s.Submit(AppendRequest{Stream: stream, Records: []Record{r}, Done: func(_ uint64, err error) {
					if err != nil {
						b.Error(err)
					}
					<-sem
				}})
				if err != nil {
					b.Error(err)
					return
				}
			}
			for i := 0; i < window; i++ {
				sem <- struct{}{}
			}
		}(w)
	}
	wg.Wait()
}

// BenchmarkRead reads 1000-record batches of 100-byte records.
func BenchmarkRead(b *testing.B) {
	s := openTest(b, b.TempDir(), nil)
	ctx := context.Background()
	recs := make([]Record, 1000)
	for i := range recs {
		recs[i] = Record{Topic: "bench/t", Payload: benchPayload, QoS: 1}
	}
	for i := 0; i < 100; i++ {
		if _, err := s.Append(ctx, "bench", recs...); err != nil {
			b.Fatal(err)
		}
	}
	b.SetBytes(int64(len(benchPayload)) * 1000)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		from := uint64(i%100) * 1000
		got, err := s.Read("bench", from, ReadOptions{MaxRecords: 1000})
		if err != nil || len(got) != 1000 {
			b.Fatalf("read %d: %v", len(got), err)
		}
	}
}

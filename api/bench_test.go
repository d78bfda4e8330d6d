package api_test

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/mqstream/mqstream/config"
)

// BenchmarkRESTAppend writes batches of 1, 100 and 1000 records of 100
// bytes over HTTP to a real node (fsync on); records/s is reported.
func BenchmarkRESTAppend(b *testing.B) {
	for _, size := range []int{1, 100, 1000} {
		b.Run(fmt.Sprintf("batch=%d", size), func(b *testing.B) {
			s := startNode(b, func(c *config.Config) { c.HTTP.MaxBatch, c.HTTP.MaxBody = 10_000, 8<<20 })
			rec := fmt.Sprintf(`{"topic":"bench/x","payload":%q}`, strings.Repeat("x", 100))
			body := `{"records":[` + strings.TrimSuffix(strings.Repeat(rec+",", size), ",") + `]}`
			client := &http.Client{}
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				resp, err := client.Post(s.base+"/v1/streams/bench/records", "application/json", strings.NewReader(body))
				if err != nil {
					b.Fatal(err)
				}
				_, _ = io.Copy(io.Discard, resp.Body) // read to EOF so the connection is reused
				resp.Body.Close()
				if resp.StatusCode != 200 {
					b.Fatalf("status %d", resp.StatusCode)
				}
			}
			b.ReportMetric(float64(b.N*size)/b.Elapsed().Seconds(), "records/s")
		})
	}
}

// BenchmarkRESTHealthz is the HTTP round trip without the store, for comparison.
func BenchmarkRESTHealthz(b *testing.B) {
	s := startNode(b, nil)
	for i := 0; i < b.N; i++ {
		resp, err := http.Get(s.base + "/healthz")
		if err != nil {
			b.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
}

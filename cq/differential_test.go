package cq

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand"
	"testing"
	"time"

	"github.com/mqstream/mqstream/internal/testutil"
	"github.com/mqstream/mqstream/query"
)

// TestClosedWindowsEqualAdHocGrouping is a differential test: for random
// inputs (records over a few sensors at random times, some payloads
// without the field or not JSON), the closed windows of a continuous
// TUMBLING query hold exactly what the ad-hoc engine computes over the
// same stored records grouped by sensor and window number
// (floor(unix_millis(_timestamp) / size)).
func TestClosedWindowsEqualAdHocGrouping(t *testing.T) {
	for seed := int64(1); seed <= 5; seed++ {
		t.Run(fmt.Sprint("seed", seed), func(t *testing.T) {
			e := newEnv(t)
			rng := rand.New(rand.NewSource(seed))
			size := []int{1, 3, 10}[rng.Intn(3)]
			at := time.Duration(0)
			for i := 0; i < 300; i++ {
				at += time.Duration(rng.Intn(1500)) * time.Millisecond
				batch := make([]string, 1+rng.Intn(4))
				for j := range batch {
					switch rng.Intn(20) {
					case 0:
						batch[j] = `not json`
					case 1:
						batch[j] = fmt.Sprintf(`{"sensor":"s%d"}`, rng.Intn(4))
					default:
						batch[j] = fmt.Sprintf(`{"sensor":"s%d","temp":%d}`, rng.Intn(4), rng.Intn(200)-100)
					}
				}
				e.appendAt(at, batch...)
			}
			e.create(fmt.Sprintf("CREATE STREAM w AS SELECT sensor, count(*) AS n, count(temp) AS nt, sum(temp) AS s, min(temp) AS lo, max(temp) AS hi "+
				"FROM temps GROUP BY sensor, TUMBLING(INTERVAL %d SECOND)", size))
			// Every window closes: the clock is past the last record by more
			// than the idle timeout.
			e.clock.Advance(at + idle + time.Duration(size)*time.Second)
			engine, err := query.New(query.Options{Store: e.store, Logger: testutil.Logger()})
			if err != nil {
				t.Fatal(err)
			}
			res, err := engine.Query(context.Background(), fmt.Sprintf("SELECT sensor, floor(unix_millis(_timestamp) / %d) AS win, count(*), count(temp), sum(temp), min(temp), max(temp) "+
				"FROM temps GROUP BY sensor, floor(unix_millis(_timestamp) / %d)", size*1000, size*1000))
			if err != nil {
				t.Fatal(err)
			}
			want := map[string]string{}
			for _, r := range res.Rows {
				want[fmt.Sprint(r[0], "@", r[1])] = fmt.Sprintf("%v %v %v %v %v", r[2], r[3], num(r[4]), num(r[5]), num(r[6]))
			}
			if len(want) < 20 {
				t.Fatalf("only %d groups: the input is too small to compare", len(want))
			}
			var got map[string]string
			testutil.Eventually(t, 10*time.Second, "every window closed", func() bool {
				got = map[string]string{}
				for _, p := range e.output("w") {
					var row struct {
						Sensor    any
						Start     time.Time `json:"window_start"`
						N, NT     int64
						S, Lo, Hi any
					}
					if err := json.Unmarshal([]byte(p), &row); err != nil {
						t.Fatalf("output %s: %v", p, err)
					}
					key := fmt.Sprint(row.Sensor, "@", row.Start.UnixMilli()/int64(size*1000))
					if row.Sensor == nil {
						key = fmt.Sprint("<nil>@", row.Start.UnixMilli()/int64(size*1000))
					}
					if _, dup := got[key]; dup {
						t.Fatalf("window %s output twice", key)
					}
					got[key] = fmt.Sprintf("%v %v %v %v %v", row.N, row.NT, num(row.S), num(row.Lo), num(row.Hi))
				}
				return len(got) >= len(want)
			})
			if len(got) != len(want) {
				t.Fatalf("%d windows, the ad-hoc grouping has %d", len(got), len(want))
			}
			for k, w := range want {
				if got[k] != w {
					t.Errorf("window %s (size %ds): continuous %q, ad-hoc %q", k, size, got[k], w)
				}
			}
		})
	}
}

// num prints a number (a JSON float64, or the engine's int64 or
// float64) as an integer, NULL as <nil>.
func num(v any) string {
	if f, ok := v.(float64); ok {
		return fmt.Sprint(int64(f))
	}
	return fmt.Sprint(v)
}

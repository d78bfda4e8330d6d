package cq

import (
	"fmt"
	"math/rand"
	"strings"
	"testing"
	"time"

	"github.com/mqstream/mqstream/streams"
)

// TestHoppingWindows: a record is in size/slide windows; windows close
// in order as the watermark passes their ends; panes are freed when the
// last window holding them closes.
func TestHoppingWindows(t *testing.T) {
	w := newWindower(compile(t, "CREATE STREAM o AS SELECT k, count(*) AS n, sum(v) AS s FROM i GROUP BY k, HOPPING(INTERVAL 10 SECOND, INTERVAL 5 SECOND)"))
	ts := func(s int) string { return base.Add(time.Duration(s) * time.Second).Format(time.RFC3339) }
	row := func(from int, rest string) string {
		return fmt.Sprintf(`{"window_start":%q,"window_end":%q,%s}`, ts(from), ts(from+10), rest)
	}
	feed(w, 1*time.Second, `{"k":"a","v":1}`)
	feed(w, 4999*time.Millisecond, `{"k":"a","v":0}`)
	if got := closedRows(w); got != "" {
		t.Fatalf("closed early: %s", got)
	}
	// A record exactly at 5 s closes [-5, 5).
	feed(w, 5*time.Second, `{"k":"b","v":2}`, `{"k":"a","v":3}`)
	if got := closedRows(w); got != row(-5, `"k":"a","n":2,"s":1`) {
		t.Fatalf("rows %s", got)
	}
	// 12 s closes [0, 10).
	feed(w, 12*time.Second, `{"k":"a","v":10}`)
	want := []string{row(0, `"k":"a","n":3,"s":4`), row(0, `"k":"b","n":1,"s":2`)}
	if got := closedRows(w); got != strings.Join(want, "\n") {
		t.Fatalf("rows\n%s\nwant\n%s", got, strings.Join(want, "\n"))
	}
	// The pane [0, 5) is in no open window any more; [5, 10) and [10, 15) are.
	if len(w.starts) != 2 || w.groups() != 3 || w.openWindows() != 2 {
		t.Fatalf("%d panes, %d groups, %d open windows", len(w.starts), w.groups(), w.openWindows())
	}
	// Input stops: the idle watermark closes the rest.
	w.advance(base.Add(time.Minute).UnixNano())
	want = []string{row(5, `"k":"b","n":1,"s":2`), row(5, `"k":"a","n":2,"s":13`), row(10, `"k":"a","n":1,"s":10`)}
	if got := closedRows(w); got != strings.Join(want, "\n") {
		t.Fatalf("rows\n%s\nwant\n%s", got, strings.Join(want, "\n"))
	}
	if len(w.starts) != 0 || len(w.keys) != 0 || w.openWindows() != 0 {
		t.Fatalf("%d panes left", len(w.starts))
	}
	// A record all of whose windows have closed is late.
	feed(w, 49*time.Second, `{"k":"a","v":1}`)
	if w.late != 1 {
		t.Fatalf("late %d", w.late)
	}
}

// TestHoppingEqualsTumblingAtEachOffset: a hopping window [s, s + size)
// holds exactly what the tumbling window of the same size at offset
// s mod size holds; for random input, the hopping query's rows equal
// those of the tumbling queries, window by window, byte for byte.
func TestHoppingEqualsTumblingAtEachOffset(t *testing.T) {
	const agg = "k, count(*) AS n, sum(v) AS s, min(v) AS lo, max(v) AS hi, avg(v) AS a, count(DISTINCT v) AS d"
	for seed := int64(1); seed <= 5; seed++ {
		rng := rand.New(rand.NewSource(seed))
		var recs []streams.Record
		at := time.Duration(0)
		for i := 0; i < 300; i++ {
			at += time.Duration(rng.Intn(400)) * time.Millisecond
			recs = append(recs, streams.Record{Timestamp: base.Add(at), Payload: []byte(fmt.Sprintf(`{"k":"k%d","v":%d}`, rng.Intn(4), rng.Intn(10)))})
		}
		run := func(sql string) []string {
			w := newWindower(compile(t, sql))
			var out []string
			for i := range recs {
				w.add(&recs[i])
				if i%7 == 0 {
					rows, _ := w.closeDue()
					for _, r := range rows {
						out = append(out, string(r.Payload))
					}
				}
			}
			w.advance(base.Add(at + time.Hour).UnixNano())
			rows, _ := w.closeDue()
			for _, r := range rows {
				out = append(out, string(r.Payload))
			}
			return out
		}
		hop := run("CREATE STREAM o AS SELECT " + agg + " FROM i GROUP BY k, HOP(_timestamp, INTERVAL 6 SECOND, INTERVAL 4 SECOND)")
		// Tumbling rows by window start; hop windows start every 4 s, at
		// offsets 0, 4 and 2 s modulo 6 s.
		byStart := map[string][]string{}
		for _, off := range []int{0, 2, 4} {
			offset := ""
			if off > 0 {
				offset = fmt.Sprintf(", INTERVAL %d SECOND", off)
			}
			for _, r := range run(fmt.Sprintf("CREATE STREAM o AS SELECT %s FROM i GROUP BY k, TUMBLE(_timestamp, INTERVAL 6 SECOND%s)", agg, offset)) {
				start := r[len(`{"window_start":"`):strings.Index(r, `","window_end"`)]
				byStart[start] = append(byStart[start], r)
			}
		}
		var want []string
		for s := -8 * time.Second; s <= at; s += 4 * time.Second {
			want = append(want, byStart[base.Add(s).Format(time.RFC3339)]...)
		}
		if len(hop) < 40 || strings.Join(hop, "\n") != strings.Join(want, "\n") {
			t.Fatalf("seed %d: hopping rows (%d)\n%s\nwant (%d)\n%s", seed, len(hop), strings.Join(hop, "\n"), len(want), strings.Join(want, "\n"))
		}
	}
}

package cq

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/mqstream/mqstream/query"
	"github.com/mqstream/mqstream/streams"
)

var base = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func compile(t *testing.T, sql string) *query.Continuous {
	t.Helper()
	c, err := query.CompileContinuous(sql)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// feed gives the windower records at base+at with the payloads, then
// returns the rows of the windows closed, one string per row.
func feed(w *windower, at time.Duration, payloads ...string) {
	for _, p := range payloads {
		w.add(&streams.Record{Timestamp: base.Add(at), Topic: "t", Payload: []byte(p)})
	}
}

func closedRows(w *windower) string {
	var out []string
	rows, _ := w.closeDue()
	for _, r := range rows {
		out = append(out, string(r.Payload))
	}
	return strings.Join(out, "\n")
}

func TestWindowsCloseOnEventTime(t *testing.T) {
	w := newWindower(compile(t, "CREATE STREAM o AS SELECT k, count(*) AS n, sum(v) AS s FROM i GROUP BY k, TUMBLING(INTERVAL 10 SECOND)"))
	feed(w, 0, `{"k":"a","v":1}`, `{"k":"b","v":2}`)
	feed(w, 9999*time.Millisecond, `{"k":"a","v":3}`)
	if got := closedRows(w); got != "" {
		t.Fatalf("closed before its end:\n%s", got)
	}
	// A record exactly at the end belongs to the next window and closes this one.
	feed(w, 10*time.Second, `{"k":"a","v":10}`)
	want := `{"window_start":"2026-03-01T12:00:00Z","window_end":"2026-03-01T12:00:10Z","k":"a","n":2,"s":4}` + "\n" +
		`{"window_start":"2026-03-01T12:00:00Z","window_end":"2026-03-01T12:00:10Z","k":"b","n":1,"s":2}`
	if got := closedRows(w); got != want {
		t.Fatalf("rows\n%s\nwant\n%s", got, want)
	}
	if w.openWindows() != 1 || w.groups() != 1 || len(w.starts) != 1 {
		t.Fatalf("state after close: %d windows, %d groups", w.openWindows(), w.groups())
	}
	// Empty windows output nothing; the next record far ahead closes [10, 20).
	feed(w, 35*time.Second, `{"k":"c","v":1}`)
	want = `{"window_start":"2026-03-01T12:00:10Z","window_end":"2026-03-01T12:00:20Z","k":"a","n":1,"s":10}`
	if got := closedRows(w); got != want {
		t.Fatalf("rows\n%s\nwant\n%s", got, want)
	}
}

// TestIdleWatermarkAndLateRecords: an idle query closes its windows on the
// clock; a record that arrives for a closed window is counted as late.
func TestIdleWatermarkAndLateRecords(t *testing.T) {
	w := newWindower(compile(t, "CREATE STREAM o AS SELECT count(*) AS n FROM i GROUP BY TUMBLING(INTERVAL 1 MINUTE)"))
	feed(w, 5*time.Second, `{}`, `{}`)
	idle := 30 * time.Second
	now := base.Add(80 * time.Second) // window end + idle - 10 s
	w.advance(now.Add(-idle).UnixNano())
	if got := closedRows(w); got != "" {
		t.Fatalf("closed too early: %s", got)
	}
	now = base.Add(90 * time.Second)
	w.advance(now.Add(-idle).UnixNano())
	if got := closedRows(w); got != `{"window_start":"2026-03-01T12:00:00Z","window_end":"2026-03-01T12:01:00Z","n":2}` {
		t.Fatalf("idle close: %s", got)
	}
	feed(w, 59*time.Second, `{}`)
	feed(w, 61*time.Second, `{}`)
	if w.late != 1 || w.in != 4 || w.openWindows() != 1 {
		t.Fatalf("late %d, in %d, open %d", w.late, w.in, w.openWindows())
	}
	// The watermark never goes back.
	w.advance(0)
	if w.wm != base.Add(61*time.Second).UnixNano() {
		t.Fatalf("watermark %d", w.wm)
	}
}

// TestBadRecordsAreNullsOrCounted: a non-JSON payload or a missing field is
// NULL; an error while evaluating skips the record and is counted.
func TestBadRecordsAreNullsOrCounted(t *testing.T) {
	w := newWindower(compile(t, "CREATE STREAM o AS SELECT k, count(*) AS n, avg(v) AS a FROM i WHERE _topic REGEXP coalesce(re, '.') "+
		"GROUP BY k, TUMBLING(INTERVAL 1 SECOND)"))
	feed(w, 0, `not json`, `{"k":"a"}`, `{"k":"a","v":"x"}`, `{"k":"a","v":4,"re":"("}`)
	feed(w, time.Second)
	w.advance(base.Add(time.Second).UnixNano())
	want := `{"window_start":"2026-03-01T12:00:00Z","window_end":"2026-03-01T12:00:01Z","k":null,"n":1,"a":null}` + "\n" +
		`{"window_start":"2026-03-01T12:00:00Z","window_end":"2026-03-01T12:00:01Z","k":"a","n":2,"a":null}`
	if got := closedRows(w); got != want {
		t.Fatalf("rows\n%s\nwant\n%s", got, want)
	}
	if w.skipped != 1 || w.lastErr == nil || !strings.Contains(w.lastErr.Error(), "regular expression") {
		t.Fatalf("skipped %d, error %v", w.skipped, w.lastErr)
	}
}

// TestResumeSkipsClosedWindows: a resumed windower treats windows the
// recovered watermark passed as output already.
func TestResumeSkipsClosedWindows(t *testing.T) {
	c := compile(t, "CREATE STREAM o AS SELECT count(*) AS n FROM i GROUP BY TUMBLING(INTERVAL 10 SECOND)")
	w := newWindower(c)
	wm := base.Add(14 * time.Second)
	w.resume(wm.UnixNano())
	if got := c.Window.FirstOpen(wm); !got.Equal(base.Add(10 * time.Second)) {
		t.Fatalf("replay starts at %s", got)
	}
	feed(w, 9*time.Second, `{}`)
	feed(w, 10*time.Second, `{}`)
	feed(w, 20*time.Second, `{}`)
	if got := closedRows(w); got != `{"window_start":"2026-03-01T12:00:10Z","window_end":"2026-03-01T12:00:20Z","n":1}` || w.late != 1 {
		t.Fatalf("rows %s, late %d", got, w.late)
	}
}

func BenchmarkWindower(b *testing.B) {
	benchWindower(b, "CREATE STREAM o AS SELECT k, count(*), avg(v), max(v) FROM i GROUP BY k, TUMBLING(INTERVAL 10 SECOND)", 10000)
}

// BenchmarkHopVersusTumble compares a record's cost under HOP(1h, 10s)
// and TUMBLE(1h): 1000 keys, a record every millisecond, windows closed
// as time passes (the bar: at most 1.5 times the cost).
func BenchmarkHopVersusTumble(b *testing.B) {
	for _, win := range []string{"TUMBLE(_timestamp, INTERVAL 1 HOUR)", "HOP(_timestamp, INTERVAL 1 HOUR, INTERVAL 10 SECOND)"} {
		b.Run(strings.Fields(win)[0], func(b *testing.B) {
			benchWindower(b, "CREATE STREAM o AS SELECT k, count(*), avg(v), max(v) FROM i GROUP BY k, "+win, 1000)
		})
	}
}

// BenchmarkSessioner is BenchmarkWindower's load (10,000 keys, each
// every 10 s) in sessions of 30 s gap cut every minute.
func BenchmarkSessioner(b *testing.B) {
	benchWindower(b, "CREATE STREAM o AS SELECT k, count(*), avg(v), max(v) FROM i GROUP BY k, SESSION(_timestamp, INTERVAL 30 SECOND, INTERVAL 1 MINUTE)", 10000)
}

// benchWindower feeds a record per millisecond over keys keys, closing
// windows (or sessions) every 1000 records.
func benchWindower(b *testing.B, sql string, keys int) {
	c, err := query.CompileContinuous(sql)
	if err != nil {
		b.Fatal(err)
	}
	var w finalState = windowState{newWindower(c)}
	if c.Window.Sessions() {
		w = sessionState{newSessioner(c)}
	}
	recs := make([]streams.Record, keys)
	for i := range recs {
		recs[i].Payload = []byte(fmt.Sprintf(`{"k":"key-%d","v":%d}`, i, i))
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		r := &recs[i%len(recs)]
		r.Timestamp = base.Add(time.Duration(i) * time.Millisecond)
		w.feed(r)
		if i%1000 == 0 {
			w.closeDue()
		}
	}
}

// BenchmarkWindowClose closes one tumbling window of 10,000 keys (one
// record each): the work between the watermark passing a window's end
// and its rows being ready to append (issue 17's live bar).
func BenchmarkWindowClose(b *testing.B) {
	c, err := query.CompileContinuous("CREATE STREAM o AS SELECT k, count(*) AS n, avg(v) AS mean, max(v) AS hi FROM i GROUP BY k, TUMBLING(INTERVAL 10 SECOND)")
	if err != nil {
		b.Fatal(err)
	}
	recs := make([]streams.Record, 10000)
	for i := range recs {
		recs[i].Payload = []byte(fmt.Sprintf(`{"k":"k%d","v":%d}`, i, i%1000))
		recs[i].Timestamp = base.Add(time.Duration(i) * 500 * time.Microsecond)
	}
	for b.Loop() {
		b.StopTimer()
		w := newWindower(c)
		for j := range recs {
			w.add(&recs[j])
		}
		w.advance(base.Add(20 * time.Second).UnixNano())
		b.StartTimer()
		if out, _ := w.closeDue(); len(out) != len(recs) {
			b.Fatalf("%d rows", len(out))
		}
	}
}

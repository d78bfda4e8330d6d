package cq

import (
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mqstream/mqstream/internal/testutil"
	"github.com/mqstream/mqstream/query"
	"github.com/mqstream/mqstream/streams"
)

// TestEmitInterval: with EMIT_INTERVAL('1s'), a push query outputs each
// key's row at most once per second of record time: the first update at
// once, later ones held back; a held update comes before the first record
// at or after its due time, or once the clock passes it with the input
// read to its end; the latest value is never lost.
func TestEmitInterval(t *testing.T) {
	e := newEnv(t)
	p, stop := e.startPush("SELECT /*+ EMIT_INTERVAL('1s') */ sensor, count(*) AS n FROM temps GROUP BY sensor EMIT CHANGES")
	defer stop()
	want := func(rows string) {
		t.Helper()
		testutil.Eventually(t, 5*time.Second, rows, func() bool { return p.got() == rows })
	}
	e.appendAt(0, `{"sensor":"a"}`, `{"sensor":"a"}`, `{"sensor":"a"}`, `{"sensor":"b"}`)
	want("a 1|b 1") // a 2 and a 3 held: due at 1 s
	e.appendAt(500*time.Millisecond, `{"sensor":"a"}`)
	e.appendAt(time.Second, `{"sensor":"b"}`) // a's due time: a 4 first
	want("a 1|b 1|a 4|b 2")
	e.appendAt(1200*time.Millisecond, `{"sensor":"a"}`) // held until 2 s
	e.clock.Advance(1999 * time.Millisecond)
	e.appendAt(1500*time.Millisecond, `{"sensor":"c"}`)
	want("a 1|b 1|a 4|b 2|c 1")
	e.clock.Advance(time.Millisecond) // the clock reaches a's due time
	want("a 1|b 1|a 4|b 2|c 1|a 5")
}

// TestEmitIntervalWindows: a held update of a window comes at the latest
// when the window ends, with the window's final value.
func TestEmitIntervalWindows(t *testing.T) {
	e := newEnv(t)
	p, stop := e.startPush("SELECT /*+ EMIT_INTERVAL('5s') */ sensor, count(*) AS n FROM temps GROUP BY sensor, TUMBLING(INTERVAL 10 SECOND) EMIT CHANGES")
	defer stop()
	e.appendAt(time.Second, `{"sensor":"a"}`)
	e.appendAt(7*time.Second, `{"sensor":"a"}`)  // output: 6 s after the last
	e.appendAt(8*time.Second, `{"sensor":"a"}`)  // held: due at 12 s, but the window ends at 10 s
	e.appendAt(9*time.Second, `{"sensor":"a"}`)  // held with it
	e.appendAt(11*time.Second, `{"sensor":"a"}`) // the next window
	w0, w1 := "2026-03-01 12:00:00 +0000 UTC 2026-03-01 12:00:10 +0000 UTC", "2026-03-01 12:00:10 +0000 UTC 2026-03-01 12:00:20 +0000 UTC"
	rows := w0 + " a 1|" + w0 + " a 2|" + w0 + " a 4|" + w1 + " a 1"
	testutil.Eventually(t, 5*time.Second, rows, func() bool { return p.got() == rows })
}

// TestEmitIntervalState: the rate limit's memory counts in the state
// estimate, and is freed with its windows.
func TestEmitIntervalState(t *testing.T) {
	sizes := map[string]int64{}
	for _, hint := range []string{"", "/*+ EMIT_INTERVAL('1s') */"} {
		ch := newChanger(compile(t, "CREATE STREAM o AS SELECT "+hint+" k, count(*) AS n FROM i GROUP BY k, TUMBLING(INTERVAL 10 SECOND) EMIT CHANGES"))
		for i, k := range []string{"a", "b", "a"} {
			r := streams.Record{Timestamp: base.Add(time.Duration(i) * time.Millisecond), Payload: []byte(fmt.Sprintf(`{"k":%q}`, k))}
			ch.add(&r, nil, false)
		}
		sizes[hint], _ = ch.stateSize()
		if rows := ch.flushTo(base.Add(10*time.Second).UnixNano(), nil, false); hint != "" && len(rows) != 1 {
			t.Fatalf("held rows at the window's end: %d", len(rows))
		}
		ch.advance(base.Add(10 * time.Second).UnixNano())
		if n, _ := ch.stateSize(); n != 0 {
			t.Fatalf("%q: %d bytes after the window closed", hint, n)
		}
	}
	if d := sizes["/*+ EMIT_INTERVAL('1s') */"] - sizes[""]; d <= 2*limitBytes || d > 2*(limitBytes+8) { // two groups, their keys
		t.Fatalf("state sizes %v", sizes)
	}
}

// BenchmarkChanger: a record per millisecond over 100 keys,
// TUMBLING(10s) with EMIT CHANGES, every update output (a row per record)
// or rate-limited to one per key and second (about a row per 10 records);
// on _timestamp, or on event time ("at", up to 60 ms before the append
// time, GRACE('100ms')).
func BenchmarkChanger(b *testing.B) {
	for _, win := range []string{"TUMBLING(INTERVAL 10 SECOND)", "TUMBLE(at, INTERVAL 10 SECOND)"} {
		for _, hint := range []string{"", "EMIT_INTERVAL('1s')"} {
			name := "every"
			if hint != "" {
				name = "EMIT_INTERVAL"
			}
			if strings.Contains(win, "at,") {
				name, hint = "event/"+name, hint+" GRACE('100ms')"
			}
			b.Run(name, func(b *testing.B) {
				c, err := query.CompileContinuous("CREATE STREAM o AS SELECT /*+ " + hint + " */ k, count(*), avg(v), max(v) FROM i GROUP BY k, " + win + " EMIT CHANGES")
				if err != nil {
					b.Fatal(err)
				}
				ch := newChanger(c)
				if c.EventTime {
					ch.idle = int64(idle)
				}
				var r streams.Record
				var out []query.Output
				rows := 0
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					r.Timestamp = base.Add(time.Duration(i) * time.Millisecond)
					k := strconv.Itoa(i % 100)
					p := append(r.Payload[:0], `{"k":"key-`+k+`","v":`+k+`,"at":`...)
					p = strconv.AppendInt(p, r.Timestamp.UnixMilli()-int64(i%4)*20, 10)
					r.Payload = append(p, '}')
					out = ch.add(&r, out[:0], false)
					rows += len(out)
				}
				b.ReportMetric(float64(rows)/float64(b.N), "rows/record")
			})
		}
	}
}

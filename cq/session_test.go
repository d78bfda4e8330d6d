package cq

import (
	"cmp"
	"fmt"
	"math/rand"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mqstream/mqstream/internal/testutil"
	"github.com/mqstream/mqstream/query"
	"github.com/mqstream/mqstream/streams"
)

// sessionRows feeds a sessioner (records at base+at, payloads), closes
// what the watermark ends, and returns the rows made, one per line.
func sessionRows(x *sessioner, at time.Duration, payloads ...string) string {
	var out []query.Output
	for _, p := range payloads {
		out = x.add(&streams.Record{Timestamp: base.Add(at), Payload: []byte(p)}, out)
	}
	closed, _ := x.closeDue()
	return outputs(append(out, closed...))
}

func outputs(out []query.Output) string {
	var s []string
	for _, o := range out {
		s = append(s, string(o.Payload))
	}
	return strings.Join(s, "\n")
}

func span(from, to time.Duration, rest string) string {
	return fmt.Sprintf(`{"window_start":%q,"window_end":%q,%s}`, base.Add(from).Format(time.RFC3339Nano), base.Add(to).Format(time.RFC3339Nano), rest)
}

func newSessionerFor(t *testing.T, sql string) *sessioner {
	t.Helper()
	c, err := query.CompilePush(sql)
	if err != nil {
		t.Fatal(err)
	}
	return newSessioner(c)
}

// TestSessions: a key's session lasts while its records come less than
// the gap apart, and is cut at every multiple of its maximum length (25 s
// here: base is one); it closes when the watermark reaches its end, which
// also closes the sessions of keys gone quiet, in order of their ends.
func TestSessions(t *testing.T) {
	x := newSessionerFor(t, "SELECT k, count(*) AS n FROM i GROUP BY k, SESSION(_timestamp, INTERVAL 10 SECOND, INTERVAL 25 SECOND) EMIT FINAL")
	sessionRows(x, 0, `{"k":"a"}`)
	sessionRows(x, 2*time.Second, `{"k":"b"}`)
	sessionRows(x, 9*time.Second, `{"k":"a"}`)
	// The watermark at 19 s ends b's session (at 12 s) and a's (at 19 s:
	// 10 s after its last record); the record at 19 s starts a's next.
	want := span(2*time.Second, 12*time.Second, `"k":"b","n":1`) + "\n" + span(0, 19*time.Second, `"k":"a","n":2`)
	if got := sessionRows(x, 19*time.Second, `{"k":"a"}`); got != want {
		t.Fatalf("first sessions:\n%s\nwant\n%s", got, want)
	}
	// a's records 8 s apart: its session is cut at 25 s, the next one
	// goes on until 50 s.
	var got []string
	for _, at := range []time.Duration{24, 27, 35, 43, 50} {
		if rows := sessionRows(x, at*time.Second, `{"k":"a"}`); rows != "" {
			got = append(got, rows)
		}
	}
	if got := strings.Join(got, "\n"); got != span(19*time.Second, 25*time.Second, `"k":"a","n":2`)+"\n"+span(27*time.Second, 50*time.Second, `"k":"a","n":3`) {
		t.Fatalf("sessions cut at the maximum length:\n%s", got)
	}
	if x.open != 1 || len(x.keys) != 1 {
		t.Fatalf("open sessions %d", x.open)
	}
	x.advance(base.Add(time.Minute).UnixNano())
	if got, closed := x.closeDue(); outputs(got) != span(50*time.Second, 60*time.Second, `"k":"a","n":1`) || closed != 1 || x.open != 0 {
		t.Fatalf("idle close: %s (%d closed, %d open)", outputs(got), closed, x.open)
	}
}

// TestSessionMerge: a record out of time order that bridges two sessions
// of its key merges them: the accumulators combined, the older first (its
// first row stays), the bounds those of the union; one outside any
// session makes its own, and one whose session would have closed is late.
func TestSessionMerge(t *testing.T) {
	x := newSessionerFor(t, "SELECT k, count(*) AS n, sum(v) AS total, min(v) AS lo, first AS f FROM i GROUP BY k, SESSION(INTERVAL 5 SECOND) EMIT FINAL")
	x.grace = int64(10 * time.Second) // the watermark 10 s behind the newest record
	sessionRows(x, 10*time.Second, `{"k":"a","v":1,"first":"x"}`)
	sessionRows(x, 18*time.Second, `{"k":"a","v":2,"first":"y"}`)
	if x.open != 2 {
		t.Fatalf("%d sessions before the bridge", x.open)
	}
	// 14 s is within 5 s of both 10 s and 18 s: one session [10, 23).
	x.add(&streams.Record{Timestamp: base.Add(14 * time.Second), Payload: []byte(`{"k":"a","v":4,"first":"z"}`)}, nil)
	// 8 s, earlier than the session's start but within the gap: it joins
	// and becomes the first row.
	x.add(&streams.Record{Timestamp: base.Add(8 * time.Second), Payload: []byte(`{"k":"a","v":8,"first":"w"}`)}, nil)
	if x.open != 1 || len(x.keys) != 1 {
		t.Fatalf("%d sessions after the bridge", x.open)
	}
	x.advance(base.Add(30 * time.Second).UnixNano())
	got, _ := x.closeDue()
	if want := span(8*time.Second, 23*time.Second, `"k":"a","n":4,"total":15,"lo":1,"f":"w"`); outputs(got) != want {
		t.Fatalf("merged session:\n%s\nwant\n%s", outputs(got), want)
	}
	// Watermark at 30 s: a record at 20 s would be in [20, 25), closed.
	x.add(&streams.Record{Timestamp: base.Add(20 * time.Second), Payload: []byte(`{"k":"a","v":1}`)}, nil)
	// One at 27 s opens [27, 32).
	x.add(&streams.Record{Timestamp: base.Add(27 * time.Second), Payload: []byte(`{"k":"a","v":1}`)}, nil)
	if x.late != 1 || x.open != 1 {
		t.Fatalf("late %d, open %d", x.late, x.open)
	}
}

// TestSessionMergeKeepsMaxCells: sessions are never merged across a
// multiple of the maximum length, even by a bridging record.
func TestSessionMergeKeepsMaxCells(t *testing.T) {
	x := newSessionerFor(t, "SELECT count(*) AS n FROM i GROUP BY SESSIONWINDOW(ss, 20, 5) EMIT FINAL")
	x.grace = int64(10 * time.Second)
	sessionRows(x, 17*time.Second, `{}`)
	sessionRows(x, 23*time.Second, `{}`)
	x.add(&streams.Record{Timestamp: base.Add(19 * time.Second), Payload: []byte(`{}`)}, nil) // joins [17, 20)
	x.add(&streams.Record{Timestamp: base.Add(20 * time.Second), Payload: []byte(`{}`)}, nil) // joins [23, ...): same cell
	x.advance(base.Add(time.Minute).UnixNano())
	got, _ := x.closeDue()
	if want := span(17*time.Second, 20*time.Second, `"n":2`) + "\n" + span(20*time.Second, 28*time.Second, `"n":2`); outputs(got) != want {
		t.Fatalf("sessions:\n%s\nwant\n%s", outputs(got), want)
	}
}

// TestSessionResume: a sessioner resumed at a watermark and fed the input
// from resumeFrom outputs exactly the rows an uninterrupted one outputs
// after that watermark, though it rebuilds the first sessions partially.
func TestSessionResume(t *testing.T) {
	const sql = "SELECT k, count(*) AS n, sum(v) AS total FROM i GROUP BY k, SESSION(INTERVAL 3 SECOND, INTERVAL 10 SECOND) EMIT FINAL"
	rng := rand.New(rand.NewSource(7))
	var recs []streams.Record
	at := time.Duration(0)
	for i := 0; i < 400; i++ {
		at += time.Duration(rng.Intn(900)) * time.Millisecond
		recs = append(recs, streams.Record{Timestamp: base.Add(at), Payload: []byte(fmt.Sprintf(`{"k":"k%d","v":%d}`, rng.Intn(3), rng.Intn(10)))})
	}
	end := base.Add(at + time.Hour).UnixNano()
	run := func(x *sessioner, recs []streams.Record, cut int) (all []string, wm, from int64) {
		for i := range recs {
			x.add(&recs[i], nil)
			if i == cut {
				out, _ := x.closeDue()
				all = append(all, outputs(out))
				wm, from = x.wm, x.resumeFrom()
			}
			if i%17 == 0 {
				out, _ := x.closeDue()
				all = append(all, outputs(out))
			}
		}
		x.advance(end)
		out, _ := x.closeDue()
		return append(all, outputs(out)), wm, from
	}
	ref, _, _ := run(newSessionerFor(t, sql), recs, -1)
	want := strings.Join(slices.DeleteFunc(ref, func(s string) bool { return s == "" }), "\n")
	for _, cut := range []int{5, 100, 233, 399} {
		x := newSessionerFor(t, sql)
		before, wm, from := run(x, recs[:cut+1], cut)
		y := newSessionerFor(t, sql)
		y.resume(wm)
		i, _ := slices.BinarySearchFunc(recs, from, func(r streams.Record, t int64) int { return cmp.Compare(r.Timestamp.UnixNano(), t) })
		after, _, _ := run(y, recs[i:], -1)
		_ = before[len(before)-1] // the rows closed after the cut are the resumed one's
		var got []string
		for _, s := range append(before[:len(before)-1], after...) {
			if s != "" {
				got = append(got, s)
			}
		}
		if strings.Join(got, "\n") != want {
			t.Fatalf("cut at %d (watermark %d, from %d):\n%s\nwant\n%s", cut, wm, from, strings.Join(got, "\n"), want)
		}
	}
}

// TestSessionChanges: with EMIT CHANGES each record outputs its session's
// updated row, its end moving with it.
func TestSessionChanges(t *testing.T) {
	x := newSessionerFor(t, "SELECT count(*) AS n FROM i GROUP BY SESSIONWINDOW(ss, 60, 5) EMIT CHANGES")
	got := sessionRows(x, 0, `{}`) + "\n" + sessionRows(x, 3*time.Second, `{}`) + "\n" + sessionRows(x, 9*time.Second, `{}`)
	want := span(0, 5*time.Second, `"n":1`) + "\n" + span(0, 8*time.Second, `"n":2`) + "\n" + span(9*time.Second, 14*time.Second, `"n":1`)
	if got != want {
		t.Fatalf("rows\n%s\nwant\n%s", got, want)
	}
	x.advance(base.Add(time.Minute).UnixNano())
	if out, _ := x.closeDue(); len(out) != 0 || len(x.keys) != 0 {
		t.Fatalf("closing with changes: %d rows, %d sessions", len(out), len(x.keys))
	}
}

// TestSessionPushQuery: a push query's sessions close on the idle
// watermark when input stops.
func TestSessionPushQuery(t *testing.T) {
	e := newEnv(t)
	p, stop := e.startPush("SELECT sensor, count(*) AS n FROM temps GROUP BY sensor, SESSION(INTERVAL 5 SECOND) EMIT FINAL")
	e.appendAt(time.Second, `{"sensor":"a"}`, `{"sensor":"a"}`)
	e.clock.Advance(time.Second + 5*time.Second + idle)
	testutil.Eventually(t, 5*time.Second, "the session closed by the idle watermark", func() bool { return p.got() != "" })
	if got := p.got(); got != "2026-03-01 12:00:01 +0000 UTC 2026-03-01 12:00:06 +0000 UTC a 2" {
		t.Fatalf("pushed %q", got)
	}
	stop()
}

// TestSessionChangesRestartsGiveTheUninterruptedOutput: a persistent
// query with session windows emitting changes, on _timestamp and on event
// time (out of order, late records written), restarted, crashed and
// paused at random, outputs what an uninterrupted run does, row for row.
func TestSessionChangesRestartsGiveTheUninterruptedOutput(t *testing.T) {
	for _, c := range []struct{ name, with, hints, win string }{
		{"append", "", "", "SESSION(INTERVAL 1 SECOND, INTERVAL 3 SECOND)"},
		{"event", "WITH (late = TRUE) ", "/*+ GRACE('500ms') IDLE_TIMEOUT('1s') */ ", "SESSION(at, INTERVAL 1 SECOND, INTERVAL 3 SECOND)"},
	} {
		sql := "CREATE STREAM %s " + c.with + "AS SELECT " + c.hints + "sensor, count(*) AS n, sum(temp) AS total, max(temp) AS hi FROM temps " +
			"GROUP BY sensor, " + c.win + " EMIT CHANGES"
		for seed := int64(1); seed <= 4; seed++ {
			t.Run(fmt.Sprint(c.name, seed), func(t *testing.T) {
				e := testRestarts(t, sql, seed)
				if len(e.output("reference")) == 0 {
					t.Fatal("no rows: a weak test")
				}
				if c.name == "event" {
					e.sameLate(false)
				}
			})
		}
	}
}

// TestSessionChangesCrashAfterAHintAtTheSameWatermark: a hint is written
// for a late record (no rows), then a record older than the newest
// bridges into a session and its row is output at the same watermark,
// and the query stops before its next hint. Restarted, it does not output
// that row again: the output's progress is the later one by offset.
func TestSessionChangesCrashAfterAHintAtTheSameWatermark(t *testing.T) {
	e := newEnv(t)
	e.create("CREATE STREAM sc AS SELECT k, count(*) AS n FROM temps GROUP BY k, SESSION(at, INTERVAL 1 SECOND) EMIT CHANGES")
	ev := func(at time.Duration) string { return fmt.Sprintf(`{"k":"a","at":%d}`, base.Add(at).UnixMilli()) }
	e.appendAt(10*time.Second, ev(10*time.Second))
	e.waitOutput("sc", row(10, 11, `"k":"a","n":1`))
	e.clock.Advance(100 * time.Millisecond)             // for the hint below
	e.appendAt(10100*time.Millisecond, ev(time.Second)) // late: no rows, a hint
	testutil.Eventually(t, 5*time.Second, "the late record read", func() bool { return e.info("sc").Offset == 2 })
	testutil.Eventually(t, 5*time.Second, "the hint written", func() bool {
		_, ok, _ := e.store.KV("queries").Get(eventChangesKey("sc"))
		return ok
	})
	e.crashNext.Store(true)
	e.appendAt(10200*time.Millisecond, ev(9500*time.Millisecond))
	e.waitOutput("sc", row(10, 11, `"k":"a","n":1`), `{"window_start":"`+base.Add(9500*time.Millisecond).UTC().Format(time.RFC3339Nano)+`","window_end":"`+base.Add(11*time.Second).UTC().Format(time.RFC3339)+`","k":"a","n":2}`)
	testutil.Eventually(t, 5*time.Second, "the query stopped after its output", e.crashed.Load)
	e.afterCrash(nil)
	e.appendAt(10300*time.Millisecond, ev(10200*time.Millisecond))
	testutil.Eventually(t, 5*time.Second, "the query caught up", func() bool { return e.info("sc").Offset == 4 })
	if out := e.output("sc"); len(out) != 3 {
		t.Fatalf("%d rows after the restart, want 3:\n%s", len(out), strings.Join(out, "\n"))
	}
}

package cq

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/mqstream/mqstream/internal/testutil"
	"github.com/mqstream/mqstream/streams"
)

// feedChanges gives changer ch records appended at base+at with the
// payloads and returns the rows they output, one string per row.
func feedChanges(ch *changer, at time.Duration, payloads ...string) string {
	var out []string
	for _, p := range payloads {
		for _, o := range ch.add(&streams.Record{Timestamp: base.Add(at), Topic: "t", Payload: []byte(p)}, nil, false) {
			out = append(out, string(o.Payload))
		}
	}
	return strings.Join(out, "\n")
}

// TestEventTimeChanges: on event time each record outputs the updated row
// of its window; a record within the grace of a window still open
// outputs that window's corrected row; once the watermark passes a
// window's end its groups are freed and a record for it is late
// (counted, not added, no row); a record without an event time is
// skipped.
func TestEventTimeChanges(t *testing.T) {
	ch := newChanger(compile(t, "CREATE STREAM o AS SELECT /*+ GRACE('5s') */ k, count(*) AS n FROM i GROUP BY k, TUMBLE(at, INTERVAL 10 SECOND) EMIT CHANGES"))
	steps := []struct {
		payload, rows string
		windows       int
	}{
		{event("a", 3*time.Second), row(0, 10, `"k":"a","n":1`), 1},
		{event("a", 12*time.Second), row(10, 20, `"k":"a","n":1`), 2}, // watermark 7 s
		{event("b", 8*time.Second), row(0, 10, `"k":"b","n":1`), 2},
		{event("a", 9*time.Second), row(0, 10, `"k":"a","n":2`), 2},   // late but in grace: the correction
		{event("a", 15*time.Second), row(10, 20, `"k":"a","n":2`), 1}, // watermark 10 s: [0, 10) closes, freed
		{event("a", 9*time.Second), "", 1},                            // past the grace: late
		{`{"k":"a"}`, "", 1},                                          // no event time: skipped
	}
	for i, s := range steps {
		if got := feedChanges(ch, time.Duration(i)*time.Millisecond, s.payload); got != s.rows || len(ch.windows) != s.windows {
			t.Fatalf("step %d: rows %s (want %s), %d windows (want %d)", i, got, s.rows, len(ch.windows), s.windows)
		}
	}
	if ch.late != 1 || ch.skipped != 1 || ch.groups != 1 || ch.wm != base.Add(10*time.Second).UnixNano() {
		t.Fatalf("late %d, skipped %d, groups %d, watermark %s", ch.late, ch.skipped, ch.groups, time.Unix(0, ch.wm).UTC())
	}
}

// TestEventTimeChangesHop: a record is in the open windows of its
// hopping windows only: one within the grace of one of them corrects
// that one; one all of whose windows have closed is late.
func TestEventTimeChangesHop(t *testing.T) {
	ch := newChanger(compile(t, "CREATE STREAM o AS SELECT k, count(*) AS n FROM i GROUP BY k, HOP(at, INTERVAL 10 SECOND, INTERVAL 5 SECOND) EMIT CHANGES"))
	if got, want := feedChanges(ch, 0, event("a", 7*time.Second)), row(0, 10, `"k":"a","n":1`)+"\n"+row(5, 15, `"k":"a","n":1`); got != want {
		t.Fatalf("rows\n%s\nwant\n%s", got, want)
	}
	// Watermark 12 s: [0, 10) closes.
	if got, want := feedChanges(ch, 0, event("a", 12*time.Second)), row(5, 15, `"k":"a","n":2`)+"\n"+row(10, 20, `"k":"a","n":1`); got != want {
		t.Fatalf("rows\n%s\nwant\n%s", got, want)
	}
	// At 6 s: [0, 10) has closed, [5, 15) is open: its row only.
	if got, want := feedChanges(ch, 0, event("a", 6*time.Second)), row(5, 15, `"k":"a","n":3`); got != want || ch.late != 0 {
		t.Fatalf("rows\n%s\nwant\n%s\nlate %d", got, want, ch.late)
	}
	// At 3 s: [-5, 5) and [0, 10) have closed.
	if got := feedChanges(ch, 0, event("a", 3*time.Second)); got != "" || ch.late != 1 || len(ch.windows) != 2 {
		t.Fatalf("rows %s, late %d, %d windows", got, ch.late, len(ch.windows))
	}
}

// TestEventTimeChangesEmitInterval: EMIT_INTERVAL holds updates back in
// append time; a window the newest event time closes outputs its held
// updates right after the record that closed it, its final value never
// lost.
func TestEventTimeChangesEmitInterval(t *testing.T) {
	ch := newChanger(compile(t, "CREATE STREAM o AS SELECT /*+ EMIT_INTERVAL('10s') GRACE('1s') */ k, count(*) AS n FROM i GROUP BY k, TUMBLE(at, INTERVAL 10 SECOND) EMIT CHANGES"))
	ch.idle = int64(time.Minute)
	if got := feedChanges(ch, time.Second, event("a", time.Second), event("a", 2*time.Second), event("b", 3*time.Second)); got != row(0, 10, `"k":"a","n":1`)+"\n"+row(0, 10, `"k":"b","n":1`) {
		t.Fatalf("rows %s", got)
	}
	feedChanges(ch, 2*time.Second, event("b", 4*time.Second)) // b held too
	// An event at 15 s raises the watermark to 14 s: [0, 10) closes with
	// its held updates, in key order, after the record's own row.
	want := row(10, 20, `"k":"c","n":1`) + "\n" + row(0, 10, `"k":"a","n":2`) + "\n" + row(0, 10, `"k":"b","n":2`)
	if got := feedChanges(ch, 3*time.Second, event("c", 15*time.Second)); got != want {
		t.Fatalf("rows\n%s\nwant\n%s", got, want)
	}
	// Nothing held is output twice.
	if rows := ch.flushTo(base.Add(time.Hour).UnixNano(), nil, false); len(rows) != 0 || len(ch.windows) != 1 {
		t.Fatalf("%d rows flushed again, %d windows", len(rows), len(ch.windows))
	}
}

// TestEventTimeChangesIdleClose: with input stopped, a held update is
// due at the latest when its window closes by the idle timeout: a
// persistent query goes on at now - idle, as if a record were appended
// then, so at end + 2 x idle on the node's clock. It comes then, with the
// window's final value, and the window is freed; a record for it after
// that is late and written to the late stream.
func TestEventTimeChangesIdleClose(t *testing.T) {
	e := newEnv(t)
	e.create("CREATE STREAM ch WITH (late = TRUE) AS SELECT /*+ EMIT_INTERVAL('20s') IDLE_TIMEOUT('2s') GRACE('1s') */ k, count(*) AS n " +
		"FROM temps GROUP BY k, TUMBLE(at, INTERVAL 10 SECOND) EMIT CHANGES")
	e.appendAt(time.Second, event("a", time.Second))
	e.appendAt(2*time.Second, event("a", 2*time.Second))
	e.appendAt(3*time.Second, event("a", 3*time.Second)) // held: due at min(1 s + 20 s, 10 s + 2 s)
	e.waitOutput("ch", row(0, 10, `"k":"a","n":1`))
	e.clock.Advance(14*time.Second - time.Millisecond)
	testutil.Eventually(t, 5*time.Second, "the idle watermark", func() bool {
		return e.info("ch").Watermark.Equal(base.Add(10*time.Second - time.Millisecond))
	})
	if got := len(e.output("ch")); got != 1 || e.info("ch").OpenWindows != 1 {
		t.Fatalf("%d rows, %d windows before the window closed", got, e.info("ch").OpenWindows)
	}
	e.clock.Advance(time.Millisecond)
	e.waitOutput("ch", row(0, 10, `"k":"a","n":1`), row(0, 10, `"k":"a","n":3`))
	testutil.Eventually(t, 5*time.Second, "the window freed", func() bool { return e.info("ch").OpenWindows == 0 })
	e.appendAt(14*time.Second, event("a", 9*time.Second))
	e.waitOutput("ch_late", event("a", 9*time.Second))
	testutil.Eventually(t, 5*time.Second, "a late record counted", func() bool { return e.info("ch").Late == 1 })
	if got := len(e.output("ch")); got != 2 {
		t.Fatalf("%d rows after a late record", got)
	}
}

// TestEventTimeChangesPushQuery: a push query emitting changes on event
// time corrects an older window still within the grace.
func TestEventTimeChangesPushQuery(t *testing.T) {
	e := newEnv(t)
	p, stop := e.startPush("SELECT /*+ GRACE('2s') */ k, count(*) AS n FROM temps GROUP BY k, TUMBLE(at, INTERVAL 10 SECOND) EMIT CHANGES")
	defer stop()
	e.appendAt(time.Second, event("a", 9*time.Second), event("a", 11*time.Second), event("a", 8*time.Second), event("a", 13*time.Second), event("a", 7*time.Second))
	w0, w1 := "2026-03-01 12:00:00 +0000 UTC 2026-03-01 12:00:10 +0000 UTC", "2026-03-01 12:00:10 +0000 UTC 2026-03-01 12:00:20 +0000 UTC"
	// The event at 7 s comes once the watermark is 11 s: late, no row
	// (the next record's row comes right after the others).
	e.appendAt(2*time.Second, event("a", 14*time.Second))
	want := strings.Join([]string{w0 + " a 1", w1 + " a 1", w0 + " a 2", w1 + " a 2", w1 + " a 3"}, "|")
	testutil.Eventually(t, 5*time.Second, want, func() bool { return len(p.got()) >= len(want) })
	if got := p.got(); got != want {
		t.Fatalf("pushed %s\nwant %s", got, want)
	}
}

// TestEventTimeChangesRestartsGiveTheUninterruptedOutput: the restart
// test of event-time windows, for queries emitting changes: tumbling and
// hopping windows, with and without EMIT_INTERVAL, late records written.
func TestEventTimeChangesRestartsGiveTheUninterruptedOutput(t *testing.T) {
	for _, win := range []string{
		"TUMBLE(at, INTERVAL 2 SECOND)",
		"HOP(at, INTERVAL 3 SECOND, INTERVAL 1 SECOND)",
	} {
		for _, hint := range []string{"", "EMIT_INTERVAL('700ms') "} {
			for seed := int64(1); seed <= 5; seed++ {
				idle := []string{"1s", "3s"}[seed%2]
				sql := "CREATE STREAM %s WITH (late = TRUE) AS SELECT /*+ " + hint + "GRACE('500ms') IDLE_TIMEOUT('" + idle + "') */ sensor, count(*) AS n, sum(temp) AS total, max(temp) AS hi FROM temps " +
					"GROUP BY sensor, " + win + " HAVING n > 1 EMIT CHANGES"
				t.Run(fmt.Sprint(strings.Fields(win)[0], len(hint) > 0, seed), func(t *testing.T) {
					e := testRestarts(t, sql, seed)
					e.sameLate(strings.HasPrefix(win, "HOP"))
					if hint != "" {
						e.sameLastRows(fmt.Sprintf(strings.Replace(sql, hint, "", 1), "every"), "live")
					}
				})
			}
		}
	}
}

// TestEventTimeChangesRestartsAtInputEnds is the restart test with
// EMIT_INTERVAL where the query reaches the input's end between batches
// (held updates come there, at now - idle, and windows close at now - 2 x
// idle): a restart does not output them again.
func TestEventTimeChangesRestartsAtInputEnds(t *testing.T) {
	const sql = "CREATE STREAM %s WITH (late = TRUE) AS SELECT /*+ EMIT_INTERVAL('700ms') GRACE('500ms') IDLE_TIMEOUT('300ms') */ sensor, count(*) AS n, sum(temp) AS total " +
		"FROM temps GROUP BY sensor, TUMBLE(at, INTERVAL 3 SECOND) EMIT CHANGES"
	for seed := int64(1); seed <= 4; seed++ {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			e := testRestartsIdle(t, sql, seed, 600*time.Millisecond)
			e.sameLate(false)
			e.sameLastRows(fmt.Sprintf(strings.Replace(sql, "EMIT_INTERVAL('700ms') ", "", 1), "every"), "live")
		})
	}
}

// TestEventTimeChangesInsertInto: INSERT INTO an existing stream emits
// changes on event time, its late records in <id>_late; a restart
// neither repeats nor loses rows or late records.
func TestEventTimeChangesInsertInto(t *testing.T) {
	e := newEnv(t)
	e.createStreams("merged")
	e.appendTo("merged", `{"other":"writer"}`)
	e.create("INSERT INTO merged WITH (late = TRUE) SELECT /*+ GRACE('1s') */ k, count(*) AS n FROM temps GROUP BY k, TUMBLE(at, INTERVAL 10 SECOND) EMIT CHANGES")
	e.appendAt(time.Second, event("a", time.Second), event("a", 12*time.Second), event("a", 9*time.Second)) // watermark 11 s: 9 s is late
	e.waitOutput("merged", `{"other":"writer"}`, row(0, 10, `"k":"a","n":1`), row(10, 20, `"k":"a","n":1`))
	e.waitOutput("merged_insert_1_late", event("a", 9*time.Second))
	e.restart()
	e.appendAt(2*time.Second, event("a", 11*time.Second), event("a", 5*time.Second))
	e.waitOutput("merged", `{"other":"writer"}`, row(0, 10, `"k":"a","n":1`), row(10, 20, `"k":"a","n":1`), row(10, 20, `"k":"a","n":2`))
	e.waitOutput("merged_insert_1_late", event("a", 9*time.Second), event("a", 5*time.Second))
	// The figures are reported after the batch's output is written: wait
	// for them.
	testutil.Eventually(t, 10*time.Second, "after the restart: 1 late, 1 open window", func() bool {
		q := e.info("merged_insert_1")
		return q.Late == 1 && q.OpenWindows == 1
	})
}

// TestEventTimeSessionChangesPushQuery: a push query emitting changes
// over session windows on event time outputs each record's session; a
// record out of order that bridges two sessions outputs the merged one;
// a record whose session has closed is late.
func TestEventTimeSessionChangesPushQuery(t *testing.T) {
	e := newEnv(t)
	p, stop := e.startPush("SELECT /*+ GRACE('10s') */ k, count(*) AS n FROM temps GROUP BY k, SESSION(at, INTERVAL 5 SECOND) EMIT CHANGES")
	defer stop()
	e.appendAt(time.Second, event("a", time.Second), event("a", 8*time.Second), event("a", 4*time.Second))
	// The watermark goes to 20 s: [1, 13) closes; 2 s is late, 30 s makes
	// a session of its own.
	e.appendAt(2*time.Second, event("a", 30*time.Second), event("a", 2*time.Second), event("a", 31*time.Second))
	span := func(from, to int) string {
		return fmt.Sprintf("%s %s", base.Add(time.Duration(from)*time.Second), base.Add(time.Duration(to)*time.Second))
	}
	want := strings.Join([]string{span(1, 6) + " a 1", span(8, 13) + " a 1", span(1, 13) + " a 3", span(30, 35) + " a 1", span(30, 36) + " a 2"}, "|")
	testutil.Eventually(t, 5*time.Second, "five rows", func() bool { return len(p.got()) >= len(want) })
	if got := p.got(); got != want {
		t.Fatalf("pushed %s\nwant %s", got, want)
	}
}

// TestEventTimeChangesState: the state is keys x open windows, never
// records: with 10 keys, 10 s windows and a grace of 2 s, at most two
// windows are open whatever the number of records, and closing them
// frees everything (the rate limit's memory too).
func TestEventTimeChangesState(t *testing.T) {
	for _, hint := range []string{"GRACE('2s')", "GRACE('2s') EMIT_INTERVAL('1s')"} {
		ch := newChanger(compile(t, "CREATE STREAM o AS SELECT /*+ "+hint+" */ k, count(*) AS n FROM i GROUP BY k, TUMBLE(at, INTERVAL 10 SECOND) EMIT CHANGES"))
		ch.idle = int64(idle)
		for i := range 5000 {
			at := time.Duration(i)*20*time.Millisecond - time.Duration(i%7)*300*time.Millisecond
			feedChanges(ch, time.Duration(i)*20*time.Millisecond, event(fmt.Sprint("k", i%10), at))
			if len(ch.windows) > 2 || ch.groups > 20 {
				t.Fatalf("%s: record %d: %d windows, %d groups", hint, i, len(ch.windows), ch.groups)
			}
		}
		end := base.Add(time.Hour).UnixNano()
		ch.flushTo(end, nil, false)
		ch.advance(end - ch.idle)
		if n, _ := ch.stateSize(); n != 0 || ch.groups != 0 || len(ch.first) != 0 || ch.limit != nil && (len(ch.limit.last) != 0 || len(ch.limit.held) != 0 || len(ch.limit.due) != 0) {
			t.Fatalf("%s: %d bytes, %d groups, %d first records left", hint, n, ch.groups, len(ch.first))
		}
	}
}

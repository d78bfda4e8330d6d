package cq

import (
	"fmt"
	"testing"
	"time"

	"github.com/mqstream/mqstream/internal/testutil"
)

// event is a payload whose event time "at" is base+at, for key k.
func event(k string, at time.Duration) string {
	return fmt.Sprintf(`{"k":%q,"at":%d}`, k, base.Add(at).UnixMilli())
}

// TestEventTimeWindows: on event time the watermark is the newest event
// time less the grace; a window closes once it passes the end; a record
// for a closed window is late (counted, not added); one without an event
// time is skipped and counted.
func TestEventTimeWindows(t *testing.T) {
	w := newWindower(compile(t, "CREATE STREAM o AS SELECT /*+ GRACE('5s') */ k, count(*) AS n FROM i GROUP BY k, TUMBLE(at, INTERVAL 10 SECOND)"))
	feed(w, 0, event("a", 3*time.Second), event("a", 12*time.Second)) // watermark 7 s
	feed(w, 0, event("a", 8*time.Second))                             // in grace: [0, 10) is open
	if got := closedRows(w); got != "" {
		t.Fatalf("closed before the grace: %s", got)
	}
	feed(w, 0, event("a", 16*time.Second)) // watermark 11 s
	if got := closedRows(w); got != row(0, 10, `"k":"a","n":2`) {
		t.Fatalf("rows %s", got)
	}
	feed(w, 0, event("a", 9*time.Second), `{"k":"a"}`, `{"k":"a","at":"later"}`)
	if w.late != 1 || w.skipped != 2 || w.wm != base.Add(11*time.Second).UnixNano() {
		t.Fatalf("late %d, skipped %d, watermark %s", w.late, w.skipped, time.Unix(0, w.wm).UTC())
	}
}

// TestEventTimeIdleRule: with an idle timeout, a record appended at t
// raises the watermark to t - idle before it is judged (the query may
// have been idle that long), whatever its event time.
func TestEventTimeIdleRule(t *testing.T) {
	w := newWindower(compile(t, "CREATE STREAM o AS SELECT /*+ IDLE_TIMEOUT('30s') */ k, count(*) AS n FROM i GROUP BY k, TUMBLE(at, INTERVAL 10 SECOND)"))
	w.idle = int64(30 * time.Second)
	feed(w, 0, event("a", 3*time.Second))
	// Appended at 45 s: the watermark is 15 s, so [0, 10) closes and an
	// event at 5 s is late; one at 12 s is not.
	feed(w, 45*time.Second, event("a", 5*time.Second), event("a", 12*time.Second))
	if got := closedRows(w); got != row(0, 10, `"k":"a","n":1`) || w.late != 1 {
		t.Fatalf("rows %s, late %d", got, w.late)
	}
}

// TestIdleTimeoutAndStartHints: IDLE_TIMEOUT replaces the node's idle
// timeout (30 s here) for one query; START('latest') skips what the
// input held when the query was created.
func TestIdleTimeoutAndStartHints(t *testing.T) {
	e := newEnv(t)
	e.appendAt(0, `{"sensor":"old"}`)
	e.create("CREATE STREAM quick AS SELECT /*+ IDLE_TIMEOUT('2s') START('latest') */ sensor, count(*) AS n FROM temps GROUP BY sensor, TUMBLING(INTERVAL 10 SECOND)")
	e.appendAt(time.Second, `{"sensor":"new"}`)
	e.clock.Advance(12 * time.Second)
	e.waitOutput("quick", row(0, 10, `"sensor":"new","n":1`))
	// The figures are reported after the batch's output is written.
	testutil.Eventually(t, 5*time.Second, "1 record read", func() bool { return e.info("quick").RecordsIn == 1 })
}

// TestEventTimePushQuery: a push query on event time outputs a window
// once the newest event time, less the grace, passes its end.
func TestEventTimePushQuery(t *testing.T) {
	e := newEnv(t)
	p, stop := e.startPush("SELECT /*+ GRACE('2s') */ k, count(*) AS n FROM temps GROUP BY k, TUMBLE(at, INTERVAL 10 SECOND) EMIT FINAL")
	e.appendAt(time.Second, event("a", 5*time.Second), event("a", 11*time.Second), event("a", 9*time.Second), event("a", 12*time.Second))
	testutil.Eventually(t, 5*time.Second, "the window [0, 10) out", func() bool { return p.got() != "" })
	if got := p.got(); got != "2026-03-01 12:00:00 +0000 UTC 2026-03-01 12:00:10 +0000 UTC a 2" {
		t.Fatalf("pushed %q", got)
	}
	stop()
}

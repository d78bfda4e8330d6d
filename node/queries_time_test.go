package node

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/mqstream/mqstream/internal/testutil"
	"github.com/mqstream/mqstream/streams"
)

// startNodeWith starts a node with the streams named.
func startNodeWith(t *testing.T, names ...string) *Node {
	t.Helper()
	n := startNode(t, testConfig(t.TempDir()))
	for _, name := range names {
		if _, err := n.Store().CreateStream(context.Background(), name, streams.Retention{}); err != nil {
			t.Fatal(err)
		}
	}
	return n
}

// TestSessionQueryThroughSQL: a persistent query with session windows,
// created through POST /v1/query: each key's session closes once a
// record comes past its end, rows in order of the sessions' ends; SHOW
// QUERIES counts the open ones; the rows are read back with SQL.
func TestSessionQueryThroughSQL(t *testing.T) {
	n := startNodeWith(t, "clicks")
	create := "CREATE STREAM visits AS SELECT user, count(*) AS n, max(page) AS last_page FROM clicks " +
		"GROUP BY user, SESSION(_timestamp, INTERVAL 1 SECOND, INTERVAL 1 HOUR)"
	if got := sqlRows(t, n, create); !strings.Contains(got, "query visits created") {
		t.Fatalf("create: %s", got)
	}
	t0 := time.Now().Truncate(time.Second).Add(time.Second)
	for _, r := range []struct {
		at time.Duration
		p  string
	}{
		{0, `{"user":"a","page":1}`},
		{100 * time.Millisecond, `{"user":"a","page":2}`},
		{200 * time.Millisecond, `{"user":"b","page":7}`},
		{900 * time.Millisecond, `{"user":"a","page":3}`},
		{3 * time.Second, `{"user":"a","page":4}`},
	} {
		appendAt(t, n.Store(), "clicks", t0.Add(r.at), r.p)
	}
	ts := func(d time.Duration) string { return t0.Add(d).UTC().Format(time.RFC3339Nano) }
	want := fmt.Sprintf("[[%s %s b 1 7] [%s %s a 3 3]]", ts(200*time.Millisecond), ts(1200*time.Millisecond), ts(0), ts(1900*time.Millisecond))
	read := "SELECT window_start, window_end, user, n, last_page FROM visits ORDER BY _offset"
	testutil.Eventually(t, 10*time.Second, "two sessions closed", func() bool { return sqlRows(t, n, "SELECT count(*) FROM visits") == "[[2]]" })
	if got := sqlRows(t, n, read); got != want {
		t.Fatalf("rows %s, want %s", got, want)
	}
	testutil.Eventually(t, 5*time.Second, "a's second session open", func() bool {
		return sqlRows(t, n, "SELECT open_windows, records_in, late FROM queries WHERE id = 'visits'") == "[[1 5 0]]"
	})
	if got := sqlRows(t, n, "EXPLAIN "+create); !strings.Contains(got, "cut at every multiple of 1h0m0s") {
		t.Fatalf("EXPLAIN: %s", got)
	}
}

// TestEventTimeQueryThroughSQL: a query windowed on a payload field with
// GRACE and START('latest') hints, created through POST /v1/query: records
// before its creation are not read, records out of order within the grace
// count, a record past it is late (SHOW QUERIES, and written to
// per10s_late), and the rows carry the event-time windows.
func TestEventTimeQueryThroughSQL(t *testing.T) {
	n := startNodeWith(t, "readings")
	// Event times ahead of the clock: the idle timeout (now - 10 s) does
	// not reach them while the test runs.
	now := time.Now()
	t0 := now.Truncate(10 * time.Second).Add(10 * time.Second).UTC()
	at := func(d time.Duration) int64 { return t0.Add(d).UnixMilli() }
	appendAt(t, n.Store(), "readings", now, fmt.Sprintf(`{"sensor":"a","at":%d}`, at(time.Second))) // before the query: not read
	create := "CREATE STREAM per10s WITH (late = TRUE) AS SELECT /*+ GRACE('5s') START('latest') */ sensor, count(*) AS n FROM readings " +
		"GROUP BY sensor, TUMBLE(at, INTERVAL 10 SECOND)"
	if got := sqlRows(t, n, create); !strings.Contains(got, "query per10s created") {
		t.Fatalf("create: %s", got)
	}
	for _, d := range []time.Duration{2, 12, 8, 16, 9, 27} { // 8 within the grace; 9 late (watermark 11 s)
		appendAt(t, n.Store(), "readings", now, fmt.Sprintf(`{"sensor":"a","at":%d}`, at(d*time.Second)))
	}
	testutil.Eventually(t, 10*time.Second, "two windows out", func() bool { return sqlRows(t, n, "SELECT count(*) FROM per10s") == "[[2]]" })
	ts := func(d time.Duration) string { return t0.Add(d).Format(time.RFC3339) }
	want := fmt.Sprintf("[[%s a 2] [%s a 2]]", ts(0), ts(10*time.Second))
	if got := sqlRows(t, n, "SELECT window_start, sensor, n FROM per10s ORDER BY _offset"); got != want {
		t.Fatalf("rows %s, want %s", got, want)
	}
	if got := sqlRows(t, n, "SELECT records_in, late FROM queries WHERE id = 'per10s'"); got != "[[6 1]]" {
		t.Fatalf("counts %s", got)
	}
	// The late record, as it came, in per10s_late; which per10s writes.
	if got := sqlRows(t, n, fmt.Sprintf("SELECT at = %d FROM per10s_late", at(9*time.Second))); got != "[[true]]" {
		t.Fatalf("late records %s", got)
	}
	if got := sqlRows(t, n, "DROP STREAM per10s_late"); !strings.Contains(got, "stream per10s_late is in use: written by per10s") {
		t.Fatalf("DROP STREAM of the late stream: %s", got)
	}
	if got := sqlRows(t, n, "EXPLAIN "+create); !strings.Contains(got, "event time, the window's first argument") {
		t.Fatalf("EXPLAIN: %s", got)
	}
}

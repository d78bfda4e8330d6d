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

// TestSessionQueryThroughSQL: a persistent query with session windows,
// created through POST /v1/query: each key's session closes once a
// record comes past its end, rows in order of the sessions' ends; SHOW
// QUERIES counts the open ones; the rows are read back with SQL.
func TestSessionQueryThroughSQL(t *testing.T) {
	n := startNode(t, testConfig(t.TempDir()))
	if _, err := n.Store().CreateStream(context.Background(), "clicks", streams.Retention{}); err != nil {
		t.Fatal(err)
	}
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

package node

import (
	"context"
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mqstream/mqstream/config"
	"github.com/mqstream/mqstream/internal/testutil"
	"github.com/mqstream/mqstream/query"
	"github.com/mqstream/mqstream/streams"
)

func runSQL(t *testing.T, n *Node, sql string) *query.Result {
	t.Helper()
	res, err := n.Query().Query(context.Background(), sql)
	if err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return res
}

func payloads(t *testing.T, s *streams.Store, name string) []string {
	t.Helper()
	var out []string
	if err := s.Scan(context.Background(), name, 0, 0, func(r streams.Record) (bool, error) {
		out = append(out, string(r.Payload))
		return true, nil
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

func queryInfo(n *Node, id string) (query.QueryInfo, bool) {
	for _, q := range n.Queries().List() {
		if q.ID == id {
			return q, true
		}
	}
	return query.QueryInfo{}, false
}

// TestContinuousQueryThroughSQL: CREATE STREAM ... AS SELECT through the
// node's SQL engine, SHOW QUERIES, the query restored by a restart, then
// TERMINATE QUERY.
func TestContinuousQueryThroughSQL(t *testing.T) {
	dir := t.TempDir()
	n := startNode(t, testConfig(dir))
	ctx := context.Background()
	if _, err := n.Store().CreateStream(ctx, "temps", streams.Retention{}); err != nil {
		t.Fatal(err)
	}
	res := runSQL(t, n, "CREATE STREAM hot WITH (topic = 'alerts/hot') AS SELECT sensor, max(temp) AS hi FROM temps "+
		"GROUP BY sensor, TUMBLING(INTERVAL 1 SECOND) HAVING hi > 30;")
	if got := fmt.Sprint(res.Rows); !strings.Contains(got, "query hot created") {
		t.Fatalf("CREATE answered %s", got)
	}
	if _, err := n.Query().Query(ctx, "CREATE STREAM hot AS SELECT count(*) FROM temps GROUP BY TUMBLING(INTERVAL 1 SECOND)"); err == nil ||
		!strings.Contains(err.Error(), "already exists") {
		t.Fatalf("second CREATE: %v", err)
	}
	// Two windows of records: the second closes the first.
	t0 := time.Now().Truncate(time.Second).Add(time.Second)
	for i, p := range []string{`{"sensor":"a","temp":31}`, `{"sensor":"b","temp":20}`, `{"sensor":"a","temp":35}`} {
		appendAt(t, n.Store(), "temps", t0.Add(time.Duration(i)*time.Millisecond), p)
	}
	appendAt(t, n.Store(), "temps", t0.Add(time.Second), `{"sensor":"b","temp":40}`)
	w := func(s time.Time) string { return s.UTC().Format(time.RFC3339) }
	first := fmt.Sprintf(`{"window_start":%q,"window_end":%q,"sensor":"a","hi":35}`, w(t0), w(t0.Add(time.Second)))
	testutil.Eventually(t, 5*time.Second, "the first window's row", func() bool { return len(payloads(t, n.Store(), "hot")) == 1 })
	if got := payloads(t, n.Store(), "hot"); got[0] != first {
		t.Fatalf("output %s, want %s", got[0], first)
	}
	show := runSQL(t, n, "SHOW QUERIES")
	if len(show.Rows) != 1 || show.Rows[0][0] != "hot" || show.Rows[0][1] != "running" || show.Columns[0].Name != "id" {
		t.Fatalf("SHOW QUERIES: %v", show.Rows)
	}
	testutil.Eventually(t, 5*time.Second, "the figures reported", func() bool {
		q, _ := queryInfo(n, "hot")
		return q.RowsOut == 1 && q.RecordsIn == 4
	})
	if got := fmt.Sprint(runSQL(t, n, "SELECT id, status, rows_out, lag_seconds FROM queries").Rows); got != "[[hot running 1 0]]" {
		t.Fatalf("the table queries: %s", got)
	}
	metrics := scrape(t, n)
	for _, m := range []string{`mqstream_query_rows_out_total{query="hot"} 1`, `mqstream_query_records_in_total{query="hot"} 4`,
		`mqstream_query_running{query="hot"} 1`, `mqstream_query_lag_records{query="hot"} 0`, `mqstream_query_late_records_total{query="hot"} 0`} {
		if !strings.Contains(metrics, m+"\n") {
			t.Errorf("/metrics lacks %s", m)
		}
	}
	rows := runSQL(t, n, "SELECT _topic, sensor, hi FROM hot")
	if fmt.Sprint(rows.Rows) != "[[alerts/hot a 35]]" {
		t.Fatalf("the output read with SQL: %v", rows.Rows)
	}

	if err := n.Close(ctx); err != nil {
		t.Fatal(err)
	}
	n = startNode(t, testConfig(dir))
	if q, ok := queryInfo(n, "hot"); !ok || q.Source != "temps" {
		t.Fatalf("not restored: %+v", n.Queries().List())
	}
	appendAt(t, n.Store(), "temps", t0.Add(2*time.Second), `{"sensor":"b","temp":1}`)
	testutil.Eventually(t, 5*time.Second, "the second window's row", func() bool { return len(payloads(t, n.Store(), "hot")) == 2 })
	second := fmt.Sprintf(`{"window_start":%q,"window_end":%q,"sensor":"b","hi":40}`, w(t0.Add(time.Second)), w(t0.Add(2*time.Second)))
	if got := payloads(t, n.Store(), "hot"); got[0] != first || got[1] != second {
		t.Fatalf("output after restart:\n%s\nwant\n%s\n%s", strings.Join(got, "\n"), first, second)
	}
	runSQL(t, n, "TERMINATE QUERY hot")
	if _, err := n.Query().Query(ctx, "TERMINATE QUERY hot"); err == nil || !strings.Contains(err.Error(), `unknown query "hot"`) {
		t.Fatalf("second TERMINATE: %v", err)
	}
	if len(runSQL(t, n, "SHOW QUERIES").Rows) != 0 {
		t.Fatal("terminated query still listed")
	}
}

func appendAt(t *testing.T, s *streams.Store, stream string, at time.Time, payload string) {
	t.Helper()
	done := make(chan error, 1)
	err := s.Submit(streams.AppendRequest{Stream: stream, Records: []streams.Record{{Topic: stream, Payload: []byte(payload)}}, Timestamp: at,
		Done: func(_ uint64, err error) { done <- err }})
	if err == nil {
		err = <-done
	}
	if err != nil {
		t.Fatal(err)
	}
}

// TestContinuousQuerySurvivesSIGKILL kills a server process with SIGKILL
// three times while it ingests MQTT publishes and runs a continuous query;
// then the query's output must equal, byte for byte, that of the same
// query run once, uninterrupted, over the same stored input.
func TestContinuousQuerySurvivesSIGKILL(t *testing.T) {
	if testing.Short() {
		t.Skip("starts server processes")
	}
	dir := t.TempDir()
	const sql = "CREATE STREAM %s AS SELECT _topic AS topic, count(*) AS n, min(_offset) AS first, max(_offset) AS last " +
		"FROM crash GROUP BY _topic, TUMBLING(INTERVAL 50 MILLISECOND)"
	// The same for a query emitting changes over hopping windows.
	const changes = "CREATE STREAM %s AS SELECT _topic AS topic, count(*) AS n, max(_offset) AS last " +
		"FROM crash GROUP BY _topic, HOPPING(INTERVAL 100 MILLISECOND, INTERVAL 50 MILLISECOND) EMIT CHANGES"
	// And for session windows, cut at every 200 ms.
	const sessions = "CREATE STREAM %s AS SELECT _topic AS topic, count(*) AS n, min(_offset) AS first, max(_offset) AS last " +
		"FROM crash GROUP BY _topic, SESSION(_timestamp, INTERVAL 30 MILLISECOND, INTERVAL 200 MILLISECOND)"
	// And on event time, up to 60 ms out of order against a grace of 20
	// ms, its late records kept.
	const events = "CREATE STREAM %s WITH (late = TRUE) AS SELECT /*+ GRACE('20ms') IDLE_TIMEOUT('1s') */ _topic AS topic, count(*) AS n, min(_offset) AS first " +
		"FROM crash GROUP BY _topic, TUMBLE(from_unixtime(unix_timestamp(_timestamp) - (_offset %% 4) * 0.02), INTERVAL 50 MILLISECOND)"
	// And emitting changes on event time, rate-limited (held updates at
	// the input's end and when windows close).
	const eventChanges = "CREATE STREAM %s WITH (late = TRUE) AS SELECT /*+ GRACE('20ms') IDLE_TIMEOUT('1s') EMIT_INTERVAL('30ms') */ _topic AS topic, count(*) AS n, max(_offset) AS last " +
		"FROM crash GROUP BY _topic, TUMBLE(from_unixtime(unix_timestamp(_timestamp) - (_offset %% 4) * 0.02), INTERVAL 50 MILLISECOND) EMIT CHANGES"
	n := startNode(t, testConfig(dir))
	if _, err := n.Store().CreateStream(context.Background(), "crash", streams.Retention{}); err != nil {
		t.Fatal(err)
	}
	runSQL(t, n, fmt.Sprintf(sql, "live"))
	runSQL(t, n, fmt.Sprintf(changes, "live_changes"))
	runSQL(t, n, fmt.Sprintf(sessions, "live_sessions"))
	runSQL(t, n, fmt.Sprintf(events, "live_events"))
	runSQL(t, n, fmt.Sprintf(eventChanges, "live_ec"))
	if err := n.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	for round := 0; round < 3; round++ {
		cmd, addr := startChild(t, dir)
		stop := make(chan struct{})
		time.AfterFunc(400*time.Millisecond, func() {
			_ = cmd.Process.Signal(syscall.SIGKILL)
			close(stop)
		})
		publishTagged(t, addr, fmt.Sprintf("r%d-", round), 2, 8, stop)
		_ = cmd.Wait()
	}
	n = startNode(t, testConfig(dir))
	runSQL(t, n, fmt.Sprintf(sql, "reference"))
	runSQL(t, n, fmt.Sprintf(changes, "reference_changes"))
	runSQL(t, n, fmt.Sprintf(sessions, "reference_sessions"))
	runSQL(t, n, fmt.Sprintf(events, "reference_events"))
	runSQL(t, n, fmt.Sprintf(eventChanges, "reference_ec"))
	for _, pair := range [][2]string{{"live", "reference"}, {"live_changes", "reference_changes"}, {"live_sessions", "reference_sessions"},
		{"live_events", "reference_events"}, {"live_events_late", "reference_events_late"}, {"live_ec", "reference_ec"}, {"live_ec_late", "reference_ec_late"}} {
		var live, ref []string
		testutil.Eventually(t, 30*time.Second, "both queries caught up with the same output", func() bool {
			for _, id := range pair {
				id = strings.TrimSuffix(id, "_late")
				if q, ok := queryInfo(n, id); !ok || q.Status != "running" || q.Lag != 0 || q.RecordsIn == 0 {
					return false
				}
			}
			live, ref = payloads(t, n.Store(), pair[0]), payloads(t, n.Store(), pair[1])
			return len(live) == len(ref)
		})
		t.Logf("%s: %d rows", pair[0], len(ref))
		if len(ref) < 10 && !strings.HasSuffix(pair[0], "_late") {
			t.Fatalf("only %d reference rows: a weak test", len(ref))
		}
		if strings.Join(live, "\n") != strings.Join(ref, "\n") {
			t.Fatalf("%s after SIGKILLs differs from the uninterrupted one:\nlive (%d)\n%s\nreference (%d)\n%s",
				pair[0], len(live), strings.Join(live, "\n"), len(ref), strings.Join(ref, "\n"))
		}
	}
}

// TestQueriesOverHTTP: continuous queries are created with POST /v1/query,
// listed and terminated under /v1/queries; with tokens, creating and
// terminating need the admin role.
func TestQueriesOverHTTP(t *testing.T) {
	cfg := testConfig(t.TempDir())
	readToken, adminToken := "read-token-0123456789", "admin-token-0123456789"
	cfg.HTTP.Tokens = []config.HTTPToken{{Token: readToken, Role: "read"}, {Token: adminToken, Role: "admin"}}
	n := startNode(t, cfg)
	if _, err := n.Store().CreateStream(context.Background(), "temps", streams.Retention{}); err != nil {
		t.Fatal(err)
	}
	create := `{"sql": "CREATE STREAM hot AS SELECT count(*) AS n FROM temps GROUP BY TUMBLING(INTERVAL 1 SECOND)"}`
	for _, c := range []struct {
		method, path, token, body string
		want                      int
		has                       string
		poll                      bool // asked again until it answers so (a query starts on its own goroutine)
	}{
		{"POST", "/v1/query", readToken, create, 403, "needs the admin role", false},
		{"POST", "/v1/query", adminToken, create, 200, "query hot created", false},
		{"POST", "/v1/query", readToken, `{"sql": "SHOW QUERIES"}`, 200, `"hot","running"`, true},
		{"GET", "/v1/queries", readToken, "", 200, `"sink":"hot"`, false},
		{"GET", "/v1/queries/hot", readToken, "", 200, `"source":"temps"`, false},
		{"GET", "/v1/queries/cold", readToken, "", 404, "not_found", false},
		{"POST", "/v1/query", readToken, `{"sql": "TERMINATE QUERY hot"}`, 403, "forbidden", false},
		{"DELETE", "/v1/queries/hot", readToken, "", 403, "forbidden", false},
		{"POST", "/v1/query", readToken, `{"sql": "DROP STREAM temps"}`, 403, "dropping streams and views, needs the admin role", false},
		{"DELETE", "/v1/streams/temps", adminToken, "", 409, "stream temps is in use: read by hot", false},
		{"DELETE", "/v1/queries/hot", adminToken, "", 204, "", false},
		{"DELETE", "/v1/queries/hot", adminToken, "", 404, "not_found", false},
		{"GET", "/v1/queries", readToken, "", 200, `{"queries":[]}`, false},
	} {
		got, body := callAPI(t, n, c.method, c.path, c.token, c.body)
		for deadline := time.Now().Add(10 * time.Second); c.poll && (got != c.want || !strings.Contains(body, c.has)) && time.Now().Before(deadline); {
			time.Sleep(20 * time.Millisecond)
			got, body = callAPI(t, n, c.method, c.path, c.token, c.body)
		}
		if got != c.want || !strings.Contains(body, c.has) {
			t.Errorf("%s %s %s: %d %s, want %d ...%s...", c.method, c.path, c.body, got, body, c.want, c.has)
		}
	}
}

// TestHoppingQueryThroughSQL: a hopping window's rows, each record
// counted in size/slide windows, through a node.
func TestHoppingQueryThroughSQL(t *testing.T) {
	n := startNode(t, testConfig(t.TempDir()))
	if _, err := n.Store().CreateStream(context.Background(), "temps", streams.Retention{}); err != nil {
		t.Fatal(err)
	}
	runSQL(t, n, "CREATE STREAM hop AS SELECT count(*) AS n, max(temp) AS hi FROM temps GROUP BY HOPPINGWINDOW(ss, 2, 1)")
	t0 := time.Now().Truncate(time.Second).Add(time.Second)
	appendAt(t, n.Store(), "temps", t0, `{"temp":1}`)
	appendAt(t, n.Store(), "temps", t0.Add(time.Second), `{"temp":2}`)
	appendAt(t, n.Store(), "temps", t0.Add(2*time.Second), `{"temp":3}`)
	w := func(s time.Duration) string { return t0.Add(s).UTC().Format(time.RFC3339) }
	testutil.Eventually(t, 5*time.Second, "two windows", func() bool { return len(payloads(t, n.Store(), "hop")) == 2 })
	want := fmt.Sprintf(`{"window_start":%q,"window_end":%q,"n":1,"hi":1}`+"\n"+`{"window_start":%q,"window_end":%q,"n":2,"hi":2}`,
		w(-time.Second), w(time.Second), w(0), w(2*time.Second))
	if got := strings.Join(payloads(t, n.Store(), "hop"), "\n"); got != want {
		t.Fatalf("rows\n%s\nwant\n%s", got, want)
	}
}

// TestSessionChangesThroughSQL: a persistent query with session windows
// and EMIT CHANGES, created through SQL on a real node: each record
// outputs its session's row as it stands.
func TestSessionChangesThroughSQL(t *testing.T) {
	n := startNode(t, testConfig(t.TempDir()))
	if _, err := n.Store().CreateStream(context.Background(), "temps", streams.Retention{}); err != nil {
		t.Fatal(err)
	}
	runSQL(t, n, "CREATE STREAM sess AS SELECT k, count(*) AS n FROM temps GROUP BY k, SESSION(INTERVAL 10 SECOND) EMIT CHANGES")
	t0 := time.Now().Truncate(time.Second).Add(time.Second)
	appendAt(t, n.Store(), "temps", t0, `{"k":"a"}`)
	appendAt(t, n.Store(), "temps", t0.Add(time.Second), `{"k":"a"}`)
	appendAt(t, n.Store(), "temps", t0.Add(2*time.Second), `{"k":"b"}`)
	w := func(s time.Duration) string { return t0.Add(s).UTC().Format(time.RFC3339) }
	testutil.Eventually(t, 5*time.Second, "three rows", func() bool { return len(payloads(t, n.Store(), "sess")) == 3 })
	want := strings.Join([]string{
		fmt.Sprintf(`{"window_start":%q,"window_end":%q,"k":"a","n":1}`, w(0), w(10*time.Second)),
		fmt.Sprintf(`{"window_start":%q,"window_end":%q,"k":"a","n":2}`, w(0), w(11*time.Second)),
		fmt.Sprintf(`{"window_start":%q,"window_end":%q,"k":"b","n":1}`, w(2*time.Second), w(12*time.Second)),
	}, "\n")
	if got := strings.Join(payloads(t, n.Store(), "sess"), "\n"); got != want {
		t.Fatalf("rows\n%s\nwant\n%s", got, want)
	}
}

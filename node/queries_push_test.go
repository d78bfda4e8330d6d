package node

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/mqstream/mqstream/config"
	"github.com/mqstream/mqstream/internal/testutil"
	"github.com/mqstream/mqstream/streams"
)

// pushLines starts a push query with POST /v1/query and returns its
// answer's lines (NDJSON, or SSE "event: ..."/"data: ..." lines) as they
// come, and the response.
func pushLines(t *testing.T, n *Node, ctx context.Context, sql, accept, token string) (*http.Response, <-chan string) {
	t.Helper()
	req, _ := http.NewRequestWithContext(ctx, "POST", "http://"+n.HTTPAddr()+"/v1/query", strings.NewReader(fmt.Sprintf(`{"sql": %q}`, sql)))
	req.Header.Set("Accept", accept)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	lines := make(chan string, 100)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			if sc.Text() != "" {
				lines <- sc.Text()
			}
		}
	}()
	return resp, lines
}

func next(t *testing.T, lines <-chan string) string {
	t.Helper()
	select {
	case l, ok := <-lines:
		if !ok {
			t.Fatal("the answer ended")
		}
		return l
	case <-time.After(10 * time.Second):
		t.Fatal("no line within 10 s")
	}
	return ""
}

// TestPushQueryOverHTTP: SELECT ... EMIT CHANGES through POST /v1/query
// streams NDJSON (or SSE) rows for records appended after it started,
// until the client goes away or its LIMIT; a read token may run it.
func TestPushQueryOverHTTP(t *testing.T) {
	cfg := testConfig(t.TempDir())
	readToken := "read-token-0123456789"
	cfg.HTTP.Tokens = []config.HTTPToken{{Token: readToken, Role: "read"}}
	n := startNode(t, cfg)
	if _, err := n.Store().CreateStream(context.Background(), "temps", streams.Retention{}); err != nil {
		t.Fatal(err)
	}
	appendAt(t, n.Store(), "temps", time.Now(), `{"sensor":"old","temp":1}`)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	resp, nd := pushLines(t, n, ctx, "SELECT sensor, count(*) AS n FROM temps GROUP BY sensor EMIT CHANGES", "application/x-ndjson", readToken)
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/x-ndjson" {
		t.Fatalf("%d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	if got := next(t, nd); got != `{"columns":[{"name":"sensor","type":"any"},{"name":"n","type":"int"}]}` {
		t.Fatalf("header %s", got)
	}
	_, sse := pushLines(t, n, ctx, "SELECT sensor, temp FROM temps WHERE temp > 10 EMIT CHANGES LIMIT 2", "text/event-stream", readToken)
	if got := next(t, sse) + " " + next(t, sse); got != `event: columns data: {"columns":[{"name":"sensor","type":"any"},{"name":"temp","type":"any"}]}` {
		t.Fatalf("SSE header %s", got)
	}
	testutil.Eventually(t, 5*time.Second, "both push queries running", func() bool { return n.Queries().Pushes() == 2 })
	for _, p := range []string{`{"sensor":"a","temp":20}`, `{"sensor":"a","temp":5}`, `{"sensor":"b","temp":30}`, `{"sensor":"c","temp":40}`} {
		appendAt(t, n.Store(), "temps", time.Now(), p)
	}
	var got []string
	for range 4 {
		got = append(got, next(t, nd))
	}
	if strings.Join(got, " ") != `["a",1] ["a",2] ["b",1] ["c",1]` {
		t.Fatalf("NDJSON rows %v", got)
	}
	got = nil
	for range 6 {
		got = append(got, next(t, sse))
	}
	want := `event: row|data: ["a",20]|event: row|data: ["b",30]|event: end|data: {"end":{"rows":2}}`
	if strings.Join(got, "|") != want {
		t.Fatalf("SSE\n%s\nwant\n%s", strings.Join(got, "|"), want)
	}
	cancel()
	testutil.Eventually(t, 5*time.Second, "push queries gone with their clients", func() bool { return n.Queries().Pushes() == 0 })
}

// TestPushQueryEndsWithTheNode: a node shutting down ends its push
// queries' answers (with an end message) rather than waiting for them.
func TestPushQueryEndsWithTheNode(t *testing.T) {
	n := startNode(t, testConfig(t.TempDir()))
	if _, err := n.Store().CreateStream(context.Background(), "temps", streams.Retention{}); err != nil {
		t.Fatal(err)
	}
	_, lines := pushLines(t, n, context.Background(), "SELECT temp FROM temps EMIT CHANGES", "application/x-ndjson", "")
	next(t, lines) // the columns
	testutil.Eventually(t, 5*time.Second, "the push query running", func() bool { return n.Queries().Pushes() == 1 })
	closed := make(chan error, 1)
	go func() { closed <- n.Close(context.Background()) }()
	if got := next(t, lines); got != `{"end":{"rows":0}}` {
		t.Fatalf("last line %s", got)
	}
	select {
	case err := <-closed:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the node did not close within 10 s")
	}
}

// TestPushJoinsOverHTTP: push queries join over POST /v1/query: an
// interval join of two streams (NDJSON, until cancelled) and a lookup of
// a view (SSE, until its LIMIT); a bad join is refused with its position
// before anything streams; cancelled, no push query goroutine is left.
func TestPushJoinsOverHTTP(t *testing.T) {
	n := startNodeWith(t, "orders", "payments", "registry", "temps")
	if got := sqlRows(t, n, "CREATE VIEW devs AS SELECT id, max(floor) AS floor FROM registry GROUP BY id"); !strings.Contains(got, "view devs created") {
		t.Fatalf("create view: %s", got)
	}
	bad := "SELECT o.id FROM orders o JOIN payments p ON o.id = p.order_id EMIT CHANGES"
	if got := sqlRows(t, n, bad); !strings.HasPrefix(got, "400 1:46 a join of two streams needs time bounds in ON") {
		t.Fatalf("bad join: %s", got)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	_, paid := pushLines(t, n, ctx, "SELECT o.id, p.method FROM orders o JOIN payments p ON o.id = p.order_id "+
		"AND p._timestamp BETWEEN o._timestamp - INTERVAL 5 SECOND AND o._timestamp + INTERVAL 5 SECOND EMIT CHANGES", "application/x-ndjson", "")
	if got := next(t, paid); got != `{"columns":[{"name":"id","type":"any"},{"name":"method","type":"any"}]}` {
		t.Fatalf("header %s", got)
	}
	_, placed := pushLines(t, n, ctx, "SELECT t.sensor, d.floor FROM temps t LEFT JOIN devs d ON t.sensor = d.id EMIT CHANGES LIMIT 2", "text/event-stream", "")
	next(t, placed)
	next(t, placed) // event: columns, its data
	testutil.Eventually(t, 5*time.Second, "both push queries running", func() bool { return n.Queries().Pushes() == 2 })

	// The interval join: the payment completes its pair once the orders
	// show a later record.
	t0 := time.Now()
	appendAt(t, n.Store(), "orders", t0, `{"id":1}`)
	appendAt(t, n.Store(), "payments", t0.Add(time.Second), `{"order_id":1,"method":"card"}`)
	appendAt(t, n.Store(), "orders", t0.Add(2*time.Second), `{"id":2}`)
	if got := next(t, paid); got != `[1,"card"]` {
		t.Fatalf("interval join row %s", got)
	}
	// The lookup: each reading with its device's row as the view holds it.
	appendAt(t, n.Store(), "registry", time.Now(), `{"id":"s1","floor":2}`)
	testutil.Eventually(t, 5*time.Second, "the view's row", func() bool { return sqlRows(t, n, "SELECT floor FROM devs WHERE id = 's1'") == "[[2]]" })
	appendAt(t, n.Store(), "temps", time.Now(), `{"sensor":"s1"}`)
	appendAt(t, n.Store(), "temps", time.Now(), `{"sensor":"s2"}`)
	var got []string
	for range 6 {
		got = append(got, next(t, placed))
	}
	if want := `event: row|data: ["s1",2]|event: row|data: ["s2",null]|event: end|data: {"end":{"rows":2}}`; strings.Join(got, "|") != want {
		t.Fatalf("lookup\n%s\nwant\n%s", strings.Join(got, "|"), want)
	}
	cancel()
	testutil.Eventually(t, 5*time.Second, "push queries gone with their clients", func() bool { return n.Queries().Pushes() == 0 })
	testutil.Eventually(t, 5*time.Second, "no push query goroutine left", func() bool {
		buf := make([]byte, 1<<20)
		stacks := string(buf[:runtime.Stack(buf, true)])
		return !strings.Contains(stacks, "cq.(*pusher)") && !strings.Contains(stacks, "cq.(*Manager).joinLoop")
	})
}

// TestEventTimeChangesPushOverHTTP: a push query emitting changes on
// event time streams over POST /v1/query the updated row of each record's
// window, a corrected row for a record within the grace of an older
// window, and nothing for a record past it.
func TestEventTimeChangesPushOverHTTP(t *testing.T) {
	n := startNode(t, testConfig(t.TempDir()))
	if _, err := n.Store().CreateStream(context.Background(), "readings", streams.Retention{}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	_, lines := pushLines(t, n, ctx, "SELECT /*+ GRACE('5s') */ k, count(*) AS n FROM readings GROUP BY k, TUMBLE(at, INTERVAL 10 SECOND) EMIT CHANGES",
		"application/x-ndjson", "")
	if got := next(t, lines); !strings.Contains(got, `{"name":"k","type":"any"},{"name":"n","type":"int"}`) {
		t.Fatalf("header %s", got)
	}
	testutil.Eventually(t, 5*time.Second, "the push query running", func() bool { return n.Queries().Pushes() == 1 })
	// Event times in 2100: ahead of the idle timeout's term.
	future := time.Date(2100, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, s := range []int{3, 12, 8, 16, 9, 17} { // the watermark: 7 s after 12, 11 s after 16 (9 is late)
		appendAt(t, n.Store(), "readings", time.Now(), fmt.Sprintf(`{"k":"a","at":%d}`, future.Add(time.Duration(s)*time.Second).UnixMilli()))
	}
	w0, w1 := `"2100-01-01T00:00:00Z","2100-01-01T00:00:10Z"`, `"2100-01-01T00:00:10Z","2100-01-01T00:00:20Z"`
	want := []string{"[" + w0 + `,"a",1]`, "[" + w1 + `,"a",1]`, "[" + w0 + `,"a",2]`, "[" + w1 + `,"a",2]`, "[" + w1 + `,"a",3]`}
	var got []string
	for range want {
		got = append(got, next(t, lines))
	}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("rows\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	cancel()
	testutil.Eventually(t, 5*time.Second, "the push query gone with its client", func() bool { return n.Queries().Pushes() == 0 })
}

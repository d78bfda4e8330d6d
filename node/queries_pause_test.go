package node

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/mqstream/mqstream/internal/testutil"
	"github.com/mqstream/mqstream/query"
	"github.com/mqstream/mqstream/streams"
)

// postAPI posts body (JSON, or nothing) to path and decodes the answer
// into out; it returns the status.
func postAPI(t *testing.T, n *Node, path, body string, out any) int {
	t.Helper()
	resp, err := http.Post("http://"+n.HTTPAddr()+path, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if out != nil {
		if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
			t.Fatalf("POST %s: %v", path, err)
		}
	}
	return resp.StatusCode
}

// callAPI makes a request to the node's HTTP API (with a bearer token
// unless token is empty) and returns the status and the body.
func callAPI(t *testing.T, n *Node, method, path, token, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, "http://"+n.HTTPAddr()+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

// TestPauseResumeOverREST: a query paused through the REST API outputs
// nothing for what is published on MQTT meanwhile, stays paused across a
// restart, and once resumed outputs every record's row, once, in order.
func TestPauseResumeOverREST(t *testing.T) {
	dir := t.TempDir()
	n := startNode(t, testConfig(dir))
	if _, err := n.Store().CreateStream(context.Background(), "input", streams.Retention{}); err != nil {
		t.Fatal(err)
	}
	var res struct {
		Rows [][]any `json:"rows"`
	}
	sql := `{"sql":"CREATE STREAM copy AS SELECT _payload AS p, _offset AS o FROM input"}`
	if st := postAPI(t, n, "/v1/query", sql, &res); st != http.StatusOK || !strings.Contains(fmt.Sprint(res.Rows), "query copy created") {
		t.Fatalf("create: %d %v", st, res.Rows)
	}
	want := func(k int) []string {
		var out []string
		for i := 0; i < k; i++ {
			prefix, j := "a", i
			switch {
			case i >= 8:
				prefix, j = "c", i-8
			case i >= 3:
				prefix, j = "b", i-3
			}
			out = append(out, fmt.Sprintf(`{"p":"%s-%d","o":%d}`, prefix, j, i))
		}
		return out
	}
	publishSeq(t, n.MQTTAddr(), "p1", "input/x", "a", 3)
	testutil.Eventually(t, 10*time.Second, "3 rows", func() bool { return len(payloads(t, n.Store(), "copy")) == 3 })

	var q query.QueryInfo
	if st := postAPI(t, n, "/v1/queries/copy/pause", "", &q); st != http.StatusOK || q.Status != "paused" {
		t.Fatalf("pause: %d %+v", st, q)
	}
	publishSeq(t, n.MQTTAddr(), "p2", "input/x", "b", 5)
	if err := n.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	n = startNode(t, testConfig(dir))
	if getJSON(t, n, "/v1/queries/copy", &q); q.Status != "paused" || q.Sink != "copy" {
		t.Fatalf("after a restart: %+v", q)
	}
	if m := scrape(t, n); !strings.Contains(m, `mqstream_query_paused{query="copy"} 1`+"\n") || !strings.Contains(m, `mqstream_query_running{query="copy"} 0`+"\n") {
		t.Fatal("/metrics does not show the query paused")
	}
	publishSeq(t, n.MQTTAddr(), "p3", "input/x", "c", 2)
	if got := payloads(t, n.Store(), "copy"); strings.Join(got, "\n") != strings.Join(want(3), "\n") {
		t.Fatalf("a paused query wrote:\n%s", strings.Join(got, "\n"))
	}
	if st := postAPI(t, n, "/v1/queries/copy/resume", "", &q); st != http.StatusOK || q.Status == "paused" {
		t.Fatalf("resume: %d %+v", st, q)
	}
	testutil.Eventually(t, 10*time.Second, "10 rows", func() bool { return len(payloads(t, n.Store(), "copy")) >= 10 })
	testutil.Eventually(t, 10*time.Second, "caught up", func() bool { q, _ := queryInfo(n, "copy"); return q.Lag == 0 && q.Status == "running" })
	if got := payloads(t, n.Store(), "copy"); strings.Join(got, "\n") != strings.Join(want(10), "\n") {
		t.Fatalf("after resume:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want(10), "\n"))
	}
	var e struct {
		Error struct{ Code, Message string } `json:"error"`
	}
	if st := postAPI(t, n, "/v1/queries/nope/pause", "", &e); st != http.StatusNotFound || !strings.Contains(e.Error.Message, `query "nope"`) {
		t.Fatalf("pause of an unknown query: %d %+v", st, e)
	}
	if st := postAPI(t, n, "/v1/query", `{"sql":"PAUSE QUERY copy"}`, &res); st != http.StatusOK || !strings.Contains(fmt.Sprint(res.Rows), "query copy paused") {
		t.Fatalf("PAUSE QUERY: %d %v", st, res.Rows)
	}
	for _, c := range [][2]string{
		{"PAUSE QUERY nope", `400 1:13 unknown query "nope" (SHOW QUERIES lists them)`},
		{"RESUME copy", "[[query copy resumed: status "},
		{"RESUME QUERY copy extra", "400 1:19 syntax error: write RESUME QUERY <id>"},
	} {
		if got := sqlRows(t, n, c[0]); !strings.HasPrefix(got, c[1]) {
			t.Errorf("%s: %s, want %s", c[0], got, c[1])
		}
	}
}

// TestInsertIntoOverREST: INSERT INTO through POST /v1/query writes the
// rows of what is published on MQTT into an existing stream; a missing
// stream is an error at its position.
func TestInsertIntoOverREST(t *testing.T) {
	n := startNode(t, testConfig(t.TempDir()))
	for _, s := range []string{"input", "merged"} {
		if _, err := n.Store().CreateStream(context.Background(), s, streams.Retention{}); err != nil {
			t.Fatal(err)
		}
	}
	var e struct {
		Error struct {
			Code, Message string
			Line, Column  int
		} `json:"error"`
	}
	if st := postAPI(t, n, "/v1/query", `{"sql":"INSERT INTO nope SELECT _payload AS p FROM input"}`, &e); st != http.StatusBadRequest ||
		e.Error.Code != "sql_error" || e.Error.Line != 1 || e.Error.Column != 13 || !strings.Contains(e.Error.Message, `unknown stream "nope"`) {
		t.Fatalf("missing stream: %d %+v", st, e)
	}
	var res struct {
		Rows [][]any `json:"rows"`
	}
	if st := postAPI(t, n, "/v1/query", `{"sql":"INSERT INTO merged SELECT _payload AS p FROM input WHERE _payload LIKE 'x%'"}`, &res); st != http.StatusOK ||
		!strings.Contains(fmt.Sprint(res.Rows), "query merged_insert_1 created: it reads stream input and writes stream merged") {
		t.Fatalf("insert: %d %v", st, res.Rows)
	}
	publishSeq(t, n.MQTTAddr(), "p1", "input/x", "x", 2)
	publishSeq(t, n.MQTTAddr(), "p2", "input/x", "y", 1)
	publishSeq(t, n.MQTTAddr(), "p3", "merged/m", "direct", 1)
	testutil.Eventually(t, 10*time.Second, "3 records in merged", func() bool { return len(payloads(t, n.Store(), "merged")) >= 3 })
	var rows []string
	for _, p := range payloads(t, n.Store(), "merged") {
		if strings.HasPrefix(p, "{") {
			rows = append(rows, p)
		}
	}
	if strings.Join(rows, " ") != `{"p":"x-0"} {"p":"x-1"}` {
		t.Fatalf("merged holds %v", payloads(t, n.Store(), "merged"))
	}
	var q query.QueryInfo
	if getJSON(t, n, "/v1/queries/merged_insert_1", &q); q.Kind != "insert" || q.Sink != "merged" {
		t.Fatalf("query %+v", q)
	}
}

package api_test

import (
	"bufio"
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	paho3 "github.com/eclipse/paho.mqtt.golang"

	"github.com/mqstream/mqstream/config"
	"github.com/mqstream/mqstream/internal/testutil"
)

// keys returns the sorted keys of a JSON object.
func keys(m map[string]any) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

func TestOverviewAndHistoryShapes(t *testing.T) {
	s := startNode(t, nil)
	s.call("POST", "/v1/streams/temps/records", `{"payload":{"temp":1}}`, nil)
	var ov map[string]any
	if st := s.call("GET", "/v1/overview", "", &ov); st != 200 {
		t.Fatalf("overview: %d", st)
	}
	want := []string{"append_p99_ms", "bytes", "bytes", "client_nodes", "connections", "dropped_per_sec", "group_lag", "groups", "in_per_sec", "node",
		"nodes", "nodes_alive", "out_per_sec", "queries", "records", "refused_per_sec", "stored_per_sec", "streams", "subscriptions", "time", "uptime_seconds"}
	want = slices.Compact(want)
	if got := keys(ov); !slices.Equal(got, want) {
		t.Fatalf("overview keys %v, want %v", got, want)
	}
	if ov["streams"] != 1.0 || ov["records"] != 1.0 || ov["nodes"] != 1.0 || ov["node"] != "api-test" || ov["client_nodes"] != 1.0 {
		t.Fatalf("overview %v", ov)
	}
	var h map[string]any
	testutil.Eventually(t, 5*time.Second, "a history point", func() bool {
		s.call("GET", "/v1/history?range=5m", "", &h)
		return len(h["time"].([]any)) > 0
	})
	n := len(h["time"].([]any))
	for _, k := range []string{"in_per_sec", "out_per_sec", "dropped_per_sec", "stored_per_sec", "refused_per_sec", "append_p99_ms", "group_lag", "connections"} {
		if col, ok := h[k].([]any); !ok || len(col) < n {
			t.Errorf("history %s: %v, want %d values", k, h[k], n)
		}
	}
	if h["interval_ms"] != 1000.0 || h["node"] != "api-test" {
		t.Errorf("history %v", h)
	}
	if s.call("GET", "/v1/history?range=24h", "", &h); h["interval_ms"] != 10000.0 {
		t.Errorf("24h history interval %v, want 10 s points", h["interval_ms"])
	}
	s.expectError("GET", "/v1/history?range=48h", "", 400, "bad_request", "range")
	s.expectError("GET", "/v1/history?node=nosuch", "", 404, "not_found", "nosuch")
}

// TestEventsFraming reads two overview events and checks the SSE framing.
func TestEventsFraming(t *testing.T) {
	s := startNode(t, nil)
	resp, err := http.Get(s.base + "/v1/events")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" || resp.Header.Get("Cache-Control") != "no-cache" {
		t.Fatalf("headers %v", resp.Header)
	}
	rd := bufio.NewReader(resp.Body)
	start := time.Now()
	for i := range 2 {
		ev, err := rd.ReadString('\n')
		if err != nil || ev != "event: overview\n" {
			t.Fatalf("event %d: %q %v", i, ev, err)
		}
		data, _ := rd.ReadString('\n')
		blank, _ := rd.ReadString('\n')
		var ov map[string]any
		if !strings.HasPrefix(data, "data: ") || blank != "\n" || json.Unmarshal([]byte(strings.TrimPrefix(data, "data: ")), &ov) != nil {
			t.Fatalf("event %d framing: %q %q", i, data, blank)
		}
		if _, ok := ov["in_per_sec"]; !ok {
			t.Fatalf("event %d lacks the figures: %v", i, ov)
		}
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("two events took %s, want about 1 s", d)
	}
}

func TestGroupTrendLagSecondsAndHistory(t *testing.T) {
	s := startNode(t, nil)
	opts := paho3.NewClientOptions().AddBroker("tcp://" + s.n.MQTTAddr()).SetClientID("w2").SetAutoReconnect(false).SetAutoAckDisabled(true)
	paused := paho3.NewClient(opts)
	if tok := paused.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	defer paused.Disconnect(0) // a member that never acknowledges
	if tok := paused.Subscribe("$share/g/jobs/#", 1, func(paho3.Client, paho3.Message) {}); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	type group struct {
		Lag        int64   `json:"lag"`
		LagSeconds float64 `json:"lag_seconds"`
		Trend      string  `json:"trend"`
	}
	var g group
	testutil.Eventually(t, 5*time.Second, "the group sampled, caught up", func() bool {
		s.call("GET", "/v1/groups/g", "", &g)
		return g.Trend == "caught_up"
	})
	for range 3 {
		s.call("POST", "/v1/publish", `{"topic":"jobs/a","payload":"x","qos":1}`, nil)
	}
	testutil.Eventually(t, 5*time.Second, "lag 3, growing, with an age", func() bool {
		s.call("GET", "/v1/groups/g", "", &g)
		return g.Lag == 3 && g.Trend == "growing" && g.LagSeconds > 0
	})
	var h struct {
		IntervalMS int64    `json:"interval_ms"`
		Time       []int64  `json:"time"`
		Lag        []*int64 `json:"lag"`
	}
	testutil.Eventually(t, 5*time.Second, "lag 3 in the group's history", func() bool {
		s.call("GET", "/v1/groups/g/history?range=1m", "", &h)
		return len(h.Lag) > 0 && len(h.Lag) == len(h.Time) && h.Lag[len(h.Lag)-1] != nil && *h.Lag[len(h.Lag)-1] == 3
	})
	s.expectError("GET", "/v1/groups/nosuch/history", "", 404, "not_found", "nosuch")
}

func TestClientsListAndDisconnect(t *testing.T) {
	s := startNode(t, nil)
	lost := make(chan struct{})
	opts := paho3.NewClientOptions().AddBroker("tcp://" + s.n.MQTTAddr()).SetClientID("c1").SetUsername("ann").
		SetAutoReconnect(false).SetKeepAlive(42 * time.Second).SetConnectionLostHandler(func(paho3.Client, error) { close(lost) })
	c := paho3.NewClient(opts)
	if tok := c.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	defer c.Disconnect(0)
	var list struct {
		Clients []map[string]any `json:"clients"`
	}
	s.call("GET", "/v1/clients", "", &list)
	if len(list.Clients) != 1 {
		t.Fatalf("clients %v", list.Clients)
	}
	cl := list.Clients[0]
	if cl["client_id"] != "c1" || cl["username"] != "ann" || cl["keep_alive"] != 42.0 || cl["connected"] != true ||
		cl["node"] != "api-test" || cl["protocol_version"] != 4.0 || !strings.HasPrefix(cl["address"].(string), "127.0.0.1:") {
		t.Fatalf("client %v", cl)
	}
	if st := s.call("DELETE", "/v1/clients/c1", "", nil); st != 204 {
		t.Fatalf("disconnect: %d", st)
	}
	select {
	case <-lost:
	case <-time.After(5 * time.Second):
		t.Fatal("the client was not disconnected")
	}
	s.expectError("DELETE", "/v1/clients/nosuch", "", 404, "not_found", "nosuch")
}

// TestDashboardAuth: with tokens on, the page and its files need none, the
// data does.
func TestDashboardAuth(t *testing.T) {
	s := startNode(t, func(c *config.Config) {
		c.HTTP.Tokens = []config.HTTPToken{{Token: strings.Repeat("r", 16), Role: "read"}}
	})
	for _, p := range []string{"/", "/ui/assets/js/app.js", "/favicon.ico"} {
		resp, err := http.Get(s.base + p)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 || resp.Header.Get("Content-Security-Policy") == "" {
			t.Errorf("GET %s without a token: %d", p, resp.StatusCode)
		}
	}
	for _, p := range []string{"/v1/events", "/v1/overview", "/v1/history", "/v1/clients"} {
		resp, err := http.Get(s.base + p)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 401 {
			t.Errorf("GET %s without a token: %d, want 401", p, resp.StatusCode)
		}
	}
	req, _ := http.NewRequest("DELETE", s.base+"/v1/clients/x", nil)
	req.Header.Set("Authorization", "Bearer "+strings.Repeat("r", 16))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 403 {
		t.Errorf("DELETE /v1/clients with a read token: %d, want 403", resp.StatusCode)
	}
}

// TestQueriesAndExplainShapes: what the SQL view reads and does: the
// continuous queries listed with every field, paused, resumed and
// terminated; EXPLAIN's plan as step and detail rows, and its errors
// positioned in the statement sent.
func TestQueriesAndExplainShapes(t *testing.T) {
	s := startNode(t, nil)
	s.call("POST", "/v1/streams", `{"name":"cqin"}`, nil)
	if st := s.call("POST", "/v1/query", `{"sql":"CREATE STREAM cqout AS SELECT _payload AS p FROM cqin"}`, nil); st != 200 {
		t.Fatalf("create query: %d", st)
	}
	var list struct {
		Queries []map[string]any `json:"queries"`
	}
	s.call("GET", "/v1/queries", "", &list)
	want := []string{"created_at", "groups", "id", "input_offset", "kind", "lag", "lag_seconds", "last_emit", "late", "open_windows",
		"published", "records_in", "rows_out", "sink", "skipped", "source", "sql", "state_bytes", "state_keys", "state_limit_pauses", "status", "watermark"} // error, publish_error: only when set
	if len(list.Queries) != 1 || !slices.Equal(keys(list.Queries[0]), want) {
		t.Fatalf("queries %v, want one with keys %v", list.Queries, want)
	}
	if q := list.Queries[0]; q["id"] != "cqout" || q["kind"] != "stream" || q["source"] != "cqin" || q["sink"] != "cqout" {
		t.Fatalf("query %v", q)
	}
	var q struct{ Status string }
	if st := s.call("POST", "/v1/queries/cqout/pause", "", &q); st != 200 || q.Status != "paused" {
		t.Fatalf("pause: %d %+v", st, q)
	}
	if st := s.call("POST", "/v1/queries/cqout/resume", "", &q); st != 200 || q.Status == "paused" {
		t.Fatalf("resume: %d %+v", st, q)
	}

	var plan struct {
		Columns []struct{ Name string } `json:"columns"`
		Rows    [][]string              `json:"rows"`
	}
	if st := s.call("POST", "/v1/query", `{"sql":"EXPLAIN SELECT name FROM streams WHERE records > 3"}`, &plan); st != 200 ||
		len(plan.Columns) != 2 || plan.Columns[0].Name != "step" || plan.Columns[1].Name != "detail" || len(plan.Rows) < 2 {
		t.Fatalf("EXPLAIN: %d %+v", st, plan)
	}
	var e struct {
		Error struct {
			Code         string
			Line, Column int
		} `json:"error"`
	}
	if st := s.call("POST", "/v1/query", `{"sql":"EXPLAIN SELECT nosuch FROM streams"}`, &e); st != 400 || e.Error.Line != 1 || e.Error.Column != 16 {
		t.Fatalf("EXPLAIN of a bad statement: %d %+v, want 400 at 1:16", st, e)
	}

	if st := s.call("DELETE", "/v1/queries/cqout", "", nil); st != 204 {
		t.Fatalf("terminate: %d", st)
	}
	if s.call("GET", "/v1/queries", "", &list); len(list.Queries) != 0 {
		t.Fatalf("queries after terminate: %v", list.Queries)
	}
}

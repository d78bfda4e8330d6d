package api_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	paho3 "github.com/eclipse/paho.mqtt.golang"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/mqstream/mqstream/config"
	"github.com/mqstream/mqstream/internal/testnode"
	"github.com/mqstream/mqstream/internal/testutil"
	"github.com/mqstream/mqstream/node"
)

type server struct {
	t    testing.TB
	n    *node.Node
	base string
}

func startNode(t testing.TB, mod func(*config.Config)) *server {
	t.Helper()
	cfg := testnode.Config(t.TempDir())
	cfg.Node.ID = "api-test"
	cfg.MQTT.MaxPayload = 64 << 10
	cfg.HTTP.MaxBody = 256 << 10
	cfg.HTTP.MaxBatch = 100
	if mod != nil {
		mod(&cfg)
	}
	n := testnode.Start(t, cfg)
	return &server{t: t, n: n, base: "http://" + n.HTTPAddr()}
}

// call sends a request and decodes the JSON answer; it returns the status.
func (s *server) call(method, path, body string, out any) int {
	s.t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, _ := http.NewRequest(method, s.base+path, rd)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		s.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusNoContent && !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
		s.t.Fatalf("%s %s: content type %q: %s", method, path, resp.Header.Get("Content-Type"), b)
	}
	if out != nil && len(b) > 0 {
		if err := json.Unmarshal(b, out); err != nil {
			s.t.Fatalf("%s %s: %v: %s", method, path, err, b)
		}
	}
	return resp.StatusCode
}

type apiErr struct {
	Error struct{ Code, Message string } `json:"error"`
}

// expectError checks status, code and that the message mentions want.
func (s *server) expectError(method, path, body string, status int, code, want string) {
	s.t.Helper()
	var e apiErr
	got := s.call(method, path, body, &e)
	if got != status || e.Error.Code != code || !strings.Contains(e.Error.Message, want) {
		s.t.Errorf("%s %s %s: got %d %+v, want %d %s mentioning %q", method, path, body, got, e.Error, status, code, want)
	}
}

func (s *server) mqtt(id string) paho3.Client {
	s.t.Helper()
	c := paho3.NewClient(paho3.NewClientOptions().AddBroker("tcp://" + s.n.MQTTAddr()).SetClientID(id).SetAutoReconnect(false))
	if tok := c.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		s.t.Fatal(tok.Error())
	}
	s.t.Cleanup(func() { c.Disconnect(0) })
	return c
}

func TestStreamsCRUD(t *testing.T) {
	s := startNode(t, nil)
	var created map[string]any
	if st := s.call("POST", "/v1/streams", `{"name":"temps","retention":{"max_age":"24h","max_records":1000}}`, &created); st != 201 {
		t.Fatalf("create: %d %v", st, created)
	}
	if created["name"] != "temps" || created["retention"].(map[string]any)["max_age"] != "24h0m0s" || created["last_offset"] != nil {
		t.Fatalf("created %v", created)
	}
	s.expectError("POST", "/v1/streams", `{"name":"temps"}`, 409, "conflict", "already exists")
	s.expectError("POST", "/v1/streams", `{"name":"a/b"}`, 400, "bad_request", "forbidden character")
	s.expectError("POST", "/v1/streams", `{"name":"$x"}`, 400, "bad_request", "reserved")
	s.expectError("POST", "/v1/streams", `{"name":"x","retention":{"max_age":"soon"}}`, 400, "bad_request", "max_age")
	s.expectError("POST", "/v1/streams", `{"name":"x","colour":"red"}`, 400, "bad_request", "colour")
	s.expectError("POST", "/v1/streams", `{"name":`, 400, "bad_request", "")
	s.expectError("POST", "/v1/streams", ``, 400, "bad_request", "empty")
	s.expectError("POST", "/v1/streams", `{"name":5}`, 400, "bad_request", "name")
	s.expectError("GET", "/v1/streams/nope", "", 404, "not_found", "nope")
	s.expectError("DELETE", "/v1/streams/nope", "", 404, "not_found", "nope")
	s.expectError("PUT", "/v1/streams", `{}`, 405, "method_not_allowed", "GET, POST")
	s.expectError("GET", "/v2/whatever", "", 404, "not_found", "no route")
	var list struct{ Streams []map[string]any }
	if s.call("GET", "/v1/streams", "", &list); len(list.Streams) != 1 || list.Streams[0]["name"] != "temps" {
		t.Fatalf("list %v", list)
	}
	if st := s.call("DELETE", "/v1/streams/temps", "", nil); st != 204 {
		t.Fatalf("delete %d", st)
	}
	s.expectError("GET", "/v1/streams/temps", "", 404, "not_found", "temps")
}

func TestWriteAndReadRecords(t *testing.T) {
	s := startNode(t, nil)
	var res struct {
		FirstOffset uint64 `json:"first_offset"`
		Count       int
		Offsets     []uint64
	}
	if st := s.call("POST", "/v1/streams/events/records", `{"payload":{"temp":21.5},"topic":"sensors/1"}`, &res); st != 200 || res.Count != 1 || res.FirstOffset != 0 {
		t.Fatalf("single: %d %+v", st, res)
	}
	batch := `{"records":[
		{"payload":"hello"},
		{"payload":"aGk=","encoding":"base64","qos":0},
		{"payload":[1,2,3],"content_type":"application/json","user_properties":[{"key":"k","value":"v"}]},
		{"payload":"\"quoted\"","encoding":"text"}]}`
	if st := s.call("POST", "/v1/streams/events/records", batch, &res); st != 200 || fmt.Sprint(res.Offsets) != "[1 2 3 4]" {
		t.Fatalf("batch: %d %+v", st, res)
	}
	// A rejected batch writes nothing.
	s.expectError("POST", "/v1/streams/events/records", `{"records":[{"payload":"ok"},{"payload":"%%%","encoding":"base64"}]}`, 400, "bad_request", "records[1]: payload is not valid base64")
	s.expectError("POST", "/v1/streams/events/records", `{"records":[{"payload":"ok","qos":"one"}]}`, 400, "bad_request", "qos")
	s.expectError("POST", "/v1/streams/events/records", `{"records":[{"payload":"ok","qos":3}]}`, 400, "bad_request", "qos")
	s.expectError("POST", "/v1/streams/events/records", `{"records":[{"topic":"x"}]}`, 400, "bad_request", "payload is missing")
	s.expectError("POST", "/v1/streams/events/records", `{"records":[]}`, 400, "bad_request", "empty")
	s.expectError("POST", "/v1/streams/events/records", `{"records":[{"payload":"x","wat":1}]}`, 400, "bad_request", "wat")
	s.expectError("POST", "/v1/streams/events/records", `{"payload":"x","encoding":"rot13"}`, 400, "bad_request", "rot13")
	many := `{"records":[` + strings.Repeat(`{"payload":1},`, 100) + `{"payload":1}]}`
	s.expectError("POST", "/v1/streams/events/records", many, 413, "too_large", "at most 100")
	big := fmt.Sprintf(`{"payload":%q}`, strings.Repeat("x", 65<<10))
	s.expectError("POST", "/v1/streams/events/records", big, 413, "too_large", "exceeds the limit")
	huge := fmt.Sprintf(`{"payload":%q}`, strings.Repeat("x", 300<<10))
	s.expectError("POST", "/v1/streams/events/records", huge, 413, "too_large", "request body")

	var read struct {
		Records []struct {
			Offset         uint64
			Topic          string
			Payload        json.RawMessage
			Encoding       string
			QoS            int
			ContentType    string                        `json:"content_type"`
			UserProperties []struct{ Key, Value string } `json:"user_properties"`
			Timestamp      string
		}
		NextOffset uint64 `json:"next_offset"`
	}
	if st := s.call("GET", "/v1/streams/events/records?from_offset=0&limit=10", "", &read); st != 200 || len(read.Records) != 5 || read.NextOffset != 5 {
		t.Fatalf("read: %d %+v", st, read)
	}
	got := []string{}
	for _, r := range read.Records {
		got = append(got, r.Encoding+":"+string(r.Payload))
	}
	want := `[json:{"temp":21.5} text:"hello" text:"hi" json:[1,2,3] json:"quoted"]`
	if fmt.Sprint(got) != want {
		t.Fatalf("payloads %v, want %s", got, want)
	}
	if r := read.Records[0]; r.Topic != "sensors/1" || r.QoS != 1 || read.Records[1].Topic != "events" || read.Records[2].QoS != 0 ||
		read.Records[3].ContentType != "application/json" || len(read.Records[3].UserProperties) != 1 {
		t.Fatalf("metadata %+v", read.Records)
	}
	s.call("GET", "/v1/streams/events/records?from_offset=3&limit=1", "", &read)
	if len(read.Records) != 1 || read.Records[0].Offset != 3 || read.NextOffset != 4 {
		t.Fatalf("from_offset/limit: %+v", read)
	}
	s.call("GET", "/v1/streams/events/records?from_time="+read.Records[0].Timestamp, "", &read)
	if len(read.Records) == 0 || read.Records[0].Offset > 3 {
		t.Fatalf("from_time: %+v", read)
	}
	s.expectError("GET", "/v1/streams/events/records?from_offset=x", "", 400, "bad_request", "from_offset")
	s.expectError("GET", "/v1/streams/events/records?from_time=yesterday", "", 400, "bad_request", "from_time")
	s.expectError("GET", "/v1/streams/events/records?limit=0", "", 400, "bad_request", "limit")
	s.expectError("GET", "/v1/streams/events/records?from_offset=1&from_time=2026-01-01T00:00:00Z", "", 400, "bad_request", "not both")
	s.expectError("GET", "/v1/streams/nope/records", "", 404, "not_found", "nope")
}

// TestFollowOverSSE: a client following a stream receives records published
// over MQTT while it is connected.
func TestFollowOverSSE(t *testing.T) {
	s := startNode(t, nil)
	s.call("POST", "/v1/streams", `{"name":"live"}`, nil)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", s.base+"/v1/streams/live/records", nil)
	req.Header.Set("Accept", "text/event-stream")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("content type %q", resp.Header.Get("Content-Type"))
	}
	events := make(chan string, 10)
	go func() {
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			if l := sc.Text(); strings.HasPrefix(l, "data: ") {
				events <- strings.TrimPrefix(l, "data: ")
			}
		}
	}()
	c := s.mqtt("pub")
	for i := 0; i < 3; i++ {
		if tok := c.Publish("live/x", 1, false, fmt.Sprintf(`{"n":%d}`, i)); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
			t.Fatal(tok.Error())
		}
	}
	for i := 0; i < 3; i++ {
		select {
		case ev := <-events:
			var r struct {
				Offset  int
				Payload struct{ N int }
			}
			if err := json.Unmarshal([]byte(ev), &r); err != nil || r.Offset != i || r.Payload.N != i {
				t.Fatalf("event %d: %s %v", i, ev, err)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("event %d not received", i)
		}
	}
}

// TestPublishReachesSubscribers: POST /v1/publish stores and delivers.
func TestPublishReachesSubscribers(t *testing.T) {
	s := startNode(t, nil)
	got := make(chan paho3.Message, 1)
	sub := s.mqtt("sub")
	sub.Subscribe("alerts/#", 1, func(_ paho3.Client, m paho3.Message) { got <- m }).WaitTimeout(5 * time.Second)
	var res struct {
		Stored bool
		Stream string
		Offset uint64
	}
	if st := s.call("POST", "/v1/publish", `{"topic":"alerts/fire","payload":{"level":3},"qos":1}`, &res); st != 200 || !res.Stored || res.Stream != "alerts" {
		t.Fatalf("publish: %d %+v", st, res)
	}
	select {
	case m := <-got:
		if string(m.Payload()) != `{"level":3}` {
			t.Fatalf("payload %s", m.Payload())
		}
	case <-time.After(5 * time.Second):
		t.Fatal("subscriber got nothing")
	}
	s.expectError("POST", "/v1/publish", `{"topic":"a/#","payload":1}`, 400, "bad_request", "wildcard")
	s.expectError("POST", "/v1/publish", `{"topic":"a","payload":1,"qos":5}`, 400, "bad_request", "qos")
}

// TestRESTBatchConsumedByGroup: a batch written over REST is read back over
// MQTT by a $share group declared (from earliest) over REST.
func TestRESTBatchConsumedByGroup(t *testing.T) {
	s := startNode(t, nil)
	recs := make([]string, 50)
	for i := range recs {
		recs[i] = fmt.Sprintf(`{"topic":"jobs/%d","payload":{"job":%d}}`, i%5, i)
	}
	if st := s.call("POST", "/v1/streams/jobs/records", `{"records":[`+strings.Join(recs, ",")+`]}`, nil); st != 200 {
		t.Fatalf("write %d", st)
	}
	var g map[string]any
	if st := s.call("POST", "/v1/groups", `{"name":"workers","filter":"jobs/#","start":"earliest","ack_timeout":"5s"}`, &g); st != 201 || g["lag"].(float64) != 50 {
		t.Fatalf("declare: %d %v", st, g)
	}
	s.expectError("POST", "/v1/groups", `{"name":"workers","filter":"jobs/#"}`, 409, "conflict", "exists")
	s.expectError("POST", "/v1/groups", `{"name":"w","filter":"jobs/#","start":"tomorrow"}`, 400, "bad_request", "start")
	s.expectError("POST", "/v1/groups", `{"name":"w","filter":"jobs/#","strategy":"random"}`, 400, "bad_request", "strategy")
	s.expectError("POST", "/v1/groups", `{"name":"w/x","filter":"jobs/#"}`, 400, "bad_request", "name")

	var mu sync.Mutex
	seen := map[string]bool{}
	c := s.mqtt("worker")
	c.Subscribe("$share/workers/jobs/#", 1, func(_ paho3.Client, m paho3.Message) {
		mu.Lock()
		seen[string(m.Payload())] = true
		mu.Unlock()
	}).WaitTimeout(5 * time.Second)
	testutil.Eventually(t, 10*time.Second, "all 50 consumed", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(seen) == 50
	})
	testutil.Eventually(t, 10*time.Second, "lag 0", func() bool {
		var g struct{ Lag, Acked int }
		s.call("GET", "/v1/groups/workers", "", &g)
		return g.Lag == 0 && g.Acked == 50
	})
	var desc struct {
		Members []struct {
			ClientID string `json:"client_id"`
			Node     string `json:"node"`
		}
		Streams []struct {
			Stream   string
			AckFloor uint64 `json:"ack_floor"`
		}
	}
	s.call("GET", "/v1/groups/workers?filter=jobs/%23", "", &desc)
	// Standalone, every member is on this node, and says so.
	if len(desc.Members) != 1 || desc.Members[0].ClientID != "worker" || desc.Members[0].Node != "api-test" || desc.Streams[0].AckFloor != 50 {
		t.Fatalf("describe %+v", desc)
	}
	var seeked struct{ Lag int }
	if st := s.call("POST", "/v1/groups/workers/seek", `{"position":"offset:40"}`, &seeked); st != 200 {
		t.Fatalf("seek %d", st)
	}
	testutil.Eventually(t, 10*time.Second, "records after seek redelivered", func() bool {
		var g struct{ Acked int }
		s.call("GET", "/v1/groups/workers", "", &g)
		return g.Acked == 60
	})
	s.expectError("POST", "/v1/groups/workers/seek", `{}`, 400, "bad_request", "position is required")
	s.expectError("POST", "/v1/groups/nope/seek", `{"position":"earliest"}`, 404, "not_found", "nope")
	var list struct{ Groups []map[string]any }
	if s.call("GET", "/v1/groups", "", &list); len(list.Groups) != 1 {
		t.Fatalf("list %v", list)
	}
	if st := s.call("DELETE", "/v1/groups/workers", "", nil); st != 204 {
		t.Fatalf("delete %d", st)
	}
	s.expectError("GET", "/v1/groups/workers", "", 404, "not_found", "workers")
}

func TestNodeAndMetrics(t *testing.T) {
	s := startNode(t, nil)
	var info struct {
		ID, Version string
		Ready       bool
		Listeners   map[string]string
		Counts      map[string]float64
	}
	if st := s.call("GET", "/v1/node", "", &info); st != 200 || info.ID != "api-test" || !info.Ready || info.Listeners["mqtt"] != s.n.MQTTAddr() {
		t.Fatalf("node %d %+v", st, info)
	}
	scrape := func() map[string]*dto.MetricFamily {
		resp, err := http.Get(s.base + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		p := expfmt.NewTextParser(model.LegacyValidation)
		fams, err := p.TextToMetricFamilies(resp.Body)
		if err != nil {
			t.Fatalf("metrics do not parse: %v", err)
		}
		return fams
	}
	value := func(fams map[string]*dto.MetricFamily, name, stream string) float64 {
		f, ok := fams[name]
		if !ok {
			return -1
		}
		for _, m := range f.Metric {
			for _, l := range m.Label {
				if l.GetName() == "stream" && l.GetValue() != stream {
					goto next
				}
			}
			if m.Counter != nil {
				return m.Counter.GetValue()
			}
			if m.Gauge != nil {
				return m.Gauge.GetValue()
			}
			if m.Histogram != nil {
				return float64(m.Histogram.GetSampleCount())
			}
		next:
		}
		return -1
	}
	before := scrape()
	if _, ok := before["go_goroutines"]; !ok {
		t.Fatal("no Go runtime metrics")
	}
	c := s.mqtt("m")
	for i := 0; i < 10; i++ {
		c.Publish("metered/x", 1, false, "x").WaitTimeout(5 * time.Second)
	}
	after := scrape()
	for _, name := range []string{"mqstream_ingest_stored_total", "mqstream_store_committed_records_total", "mqstream_mqtt_messages_received_total", "mqstream_store_append_latency_seconds"} {
		if d := value(after, name, "") - max(value(before, name, ""), 0); d < 10 {
			t.Errorf("%s moved by %v, want >= 10", name, d)
		}
	}
	if v := value(after, "mqstream_stream_records", "metered"); v != 10 {
		t.Errorf("stream records %v", v)
	}
	if v := value(after, "mqstream_mqtt_connections", ""); v < 1 {
		t.Errorf("connections %v", v)
	}
	for _, name := range []string{"mqstream_mqtt_sessions_absent", "mqstream_mqtt_sessions_persisted", "mqstream_mqtt_queued_messages", "mqstream_mqtt_queue_dropped_total"} {
		if v := value(after, name, ""); v < 0 {
			t.Errorf("%s missing", name)
		}
	}
	// The store's engine: the publishes went through its WAL; a
	// standalone node has no Raft log.
	engine := func(fams map[string]*dto.MetricFamily, name, db string) float64 {
		for _, m := range fams[name].GetMetric() {
			if len(m.Label) == 1 && m.Label[0].GetName() == "db" && m.Label[0].GetValue() == db {
				return m.GetCounter().GetValue() + m.GetGauge().GetValue()
			}
		}
		return -1
	}
	if d := engine(after, "mqstream_engine_wal_bytes_total", "store") - max(engine(before, "mqstream_engine_wal_bytes_total", "store"), 0); d <= 0 {
		t.Errorf("store WAL bytes moved by %v", d)
	}
	if v := engine(after, "mqstream_engine_disk_bytes", "store"); v <= 0 {
		t.Errorf("store disk bytes %v", v)
	}
	for _, name := range []string{"mqstream_engine_compaction_debt_bytes", "mqstream_engine_l0_files", "mqstream_engine_write_stalls_total", "mqstream_engine_memtable_bytes"} {
		if v := engine(after, name, "store"); v < 0 {
			t.Errorf("%s{db=store} missing", name)
		}
	}
	if v := engine(after, "mqstream_engine_wal_bytes_total", "raftlog"); v != -1 {
		t.Errorf("a standalone node reports a Raft log: %v", v)
	}
}

// TestStandaloneShowsNoPlacement: a standalone node runs no shards, so a
// stream has no shard, leader or replicas, members no shard counts, and
// /metrics no cluster metrics.
func TestStandaloneShowsNoPlacement(t *testing.T) {
	s := startNode(t, nil)
	if st := s.call("POST", "/v1/streams", `{"name":"alone"}`, nil); st != 201 {
		t.Fatalf("create: %d", st)
	}
	var stream map[string]any
	if st := s.call("GET", "/v1/streams/alone", "", &stream); st != 200 || stream["name"] != "alone" {
		t.Fatalf("stream %d %v", st, stream)
	}
	for _, k := range []string{"shard", "leader", "replicas"} {
		if v, ok := stream[k]; ok {
			t.Errorf("standalone stream has %s: %v", k, v)
		}
	}
	var cl struct {
		Members []map[string]any
		Shards  []any
	}
	if st := s.call("GET", "/v1/cluster", "", &cl); st != 200 || len(cl.Members) != 1 || cl.Shards == nil || len(cl.Shards) != 0 {
		t.Fatalf("cluster %d %+v", st, cl)
	}
	for _, k := range []string{"shards_led", "shards_held"} {
		if v, ok := cl.Members[0][k]; ok {
			t.Errorf("standalone member has %s: %v", k, v)
		}
	}
	// Its figures: the space of its data directory's filesystem, its uptime.
	m := cl.Members[0]
	free, okFree := m["disk_free_bytes"].(float64)
	total, okTotal := m["disk_total_bytes"].(float64)
	if up, ok := m["uptime_seconds"].(float64); !ok || up < 0 || !okFree || !okTotal || total <= 0 || free < 0 || free > total {
		t.Errorf("standalone member's figures: %v", m)
	}
	resp, err := http.Get(s.base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	for _, name := range []string{"mqstream_cluster_members", "mqstream_shard_", "mqstream_forwards_"} {
		if bytes.Contains(body, []byte(name)) {
			t.Errorf("standalone /metrics has %s", name)
		}
	}
}

var _ = bytes.NewReader

// TestRESTBatchQueriedBySQL: records written over REST answer SQL over
// POST /v1/query, and SQL errors come back positioned.
func TestRESTBatchQueriedBySQL(t *testing.T) {
	s := startNode(t, nil)
	recs := make([]string, 10)
	for i := range recs {
		recs[i] = fmt.Sprintf(`{"topic":"sensors/%d","payload":{"temp":%d}}`, i%2, 20+i)
	}
	if st := s.call("POST", "/v1/streams/temps/records", `{"records":[`+strings.Join(recs, ",")+`]}`, nil); st != 200 {
		t.Fatalf("write %d", st)
	}
	var res struct {
		Columns []struct{ Name string }
		Rows    [][]any
	}
	if st := s.call("POST", "/v1/query", `{"sql":"SELECT count(*) AS n, max(temp) AS hottest FROM temps WHERE temp > 24"}`, &res); st != 200 {
		t.Fatalf("query %d %+v", st, res)
	}
	if len(res.Rows) != 1 || fmt.Sprint(res.Rows[0]) != "[5 29]" || res.Columns[0].Name != "n" {
		t.Fatalf("result %+v", res)
	}
	var e struct {
		Error struct {
			Code         string
			Line, Column int
		}
	}
	if st := s.call("POST", "/v1/query", `{"sql":"SELECT FROM WHERE"}`, &e); st != 400 || e.Error.Line != 1 || e.Error.Column == 0 {
		t.Fatalf("bad SQL: %d %+v", st, e)
	}
}

package node

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	paho3 "github.com/eclipse/paho.mqtt.golang"

	"github.com/mqstream/mqstream/config"
	"github.com/mqstream/mqstream/internal/testutil"
	"github.com/mqstream/mqstream/query"
	"github.com/mqstream/mqstream/streams"
)

// TestStateLimitPausesQueryOverREST: a query over more distinct keys than
// queries.max_state_bytes allows is paused, with an error naming the limit
// and its keys in GET /v1/queries and in /metrics; once the limit is
// raised (a restart) RESUME outputs each row once.
func TestStateLimitPausesQueryOverREST(t *testing.T) {
	dir := t.TempDir()
	cfg := testConfig(dir)
	cfg.Queries.MaxStateBytes = 16 << 10
	n := startNode(t, cfg)
	if _, err := n.Store().CreateStream(context.Background(), "input", streams.Retention{}); err != nil {
		t.Fatal(err)
	}
	sql := `{"sql":"CREATE STREAM per_key AS SELECT k, count(*) AS n FROM input GROUP BY k, TUMBLING(INTERVAL 1 HOUR)"}`
	if st := postAPI(t, n, "/v1/query", sql, nil); st != http.StatusOK {
		t.Fatalf("create: %d", st)
	}
	const keys = 300
	c := paho3.NewClient(paho3.NewClientOptions().AddBroker("tcp://" + n.MQTTAddr()).SetClientID("keys").SetAutoReconnect(false))
	if tok := c.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("connect: %v", tok.Error())
	}
	for i := range keys {
		if tok := c.Publish("input/x", 1, false, fmt.Sprintf(`{"k":"key-%04d"}`, i)); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
			t.Fatalf("publish: %v", tok.Error())
		}
	}
	c.Disconnect(0)
	var q query.QueryInfo
	testutil.Eventually(t, 10*time.Second, "paused for its state", func() bool {
		getJSON(t, n, "/v1/queries/per_key", &q)
		return q.Status == "paused"
	})
	if !strings.Contains(q.Error, "queries.max_state_bytes (16.0 KiB)") || !strings.Contains(q.Error, "keys") || q.StateBytes <= 16<<10 {
		t.Fatalf("paused query: %+v", q)
	}
	m := scrape(t, n)
	for _, want := range []string{`mqstream_query_state_limit_pauses_total{query="per_key"} 1`, `mqstream_query_paused{query="per_key"} 1`, `mqstream_query_state_bytes{query="per_key"}`} {
		if !strings.Contains(m, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	if err := n.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	cfg.Queries.MaxStateBytes = config.ByteSize(0)
	n = startNode(t, cfg)
	if getJSON(t, n, "/v1/queries/per_key", &q); q.Status != "paused" || !strings.Contains(q.Error, "queries.max_state_bytes") {
		t.Fatalf("after a restart: %+v", q)
	}
	if st := postAPI(t, n, "/v1/queries/per_key/resume", "", &q); st != http.StatusOK {
		t.Fatalf("resume: %d %+v", st, q)
	}
	testutil.Eventually(t, 10*time.Second, "every key held", func() bool {
		q, _ := queryInfo(n, "per_key")
		return q.Status == "running" && q.Lag == 0 && q.StateKeys == keys
	})
	if got := payloads(t, n.Store(), "per_key"); len(got) != 0 {
		t.Fatalf("the open window output early: %v", got[:1])
	}
}

package bench

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/mqstream/mqstream/internal/testnode"
)

// startCQNode runs a real node with its HTTP API; it returns the MQTT
// and API addresses.
func startCQNode(t *testing.T) (mqtt, api string) {
	t.Helper()
	n := testnode.Start(t, testnode.Config(t.TempDir()))
	return n.MQTTAddr(), "http://" + n.HTTPAddr()
}

// TestCQLiveAndReplay: both modes publish every record, and the query
// reads them all, with a summary of its rate and lag; a second run on the
// same node starts clean.
func TestCQLiveAndReplay(t *testing.T) {
	mqtt, api := startCQNode(t)
	for _, replay := range []bool{false, true} {
		var progress strings.Builder
		o := CQOptions{Broker: mqtt, API: api, Count: 3000, Keys: 50, Replay: replay, Publishers: 2, Window: 64, Duration: 15 * time.Second, Progress: &progress}
		res, err := RunCQ(context.Background(), o)
		if err != nil {
			t.Fatal(err)
		}
		if res.Published != 3000 || res.RecordsIn != 3000 || res.Lag != 0 || res.Rate <= 0 || res.Status != "running" || res.StateBytes <= 0 {
			t.Fatalf("replay %v: %+v", replay, res)
		}
		want := "live"
		if replay {
			want = "replay"
		}
		if s := res.String(); !strings.Contains(s, "mode "+want) || !strings.Contains(s, "records/s") {
			t.Fatalf("summary:\n%s", s)
		}
	}
}

func TestCQOptionsErrors(t *testing.T) {
	_, err := RunCQ(context.Background(), CQOptions{Count: 0, Keys: -1, Duration: 0, SQL: "CREATE STREAM x AS SELECT 1 FROM y"})
	for _, want := range []string{"broker and API", "count, keys", "duration", "{in} and {out}"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v lacks %q", err, want)
		}
	}
	// Nothing listening: the run fails with the reason.
	if _, err := RunCQ(context.Background(), CQOptions{Broker: "127.0.0.1:1", API: "http://127.0.0.1:1", Count: 1, Keys: 1, Duration: time.Second}); err == nil || !strings.Contains(err.Error(), "create stream") {
		t.Fatalf("against nothing: %v", err)
	}
}

// TestCQEmitDelays: a paced live run of a windowed query with a short
// idle timeout reports the rows of windows that ended before the last
// record, and, having waited for them, those closed on the idle timeout,
// out no sooner than the timeout after their end.
func TestCQEmitDelays(t *testing.T) {
	mqtt, api := startCQNode(t)
	o := CQOptions{Broker: mqtt, API: api, Count: 3000, Keys: 5, Publishers: 2, Window: 32, Rate: 1500, Duration: 15 * time.Second, IdleWait: 10 * time.Second,
		SQL: "CREATE STREAM {out} AS SELECT /*+ IDLE_TIMEOUT('1s') */ k, count(*) AS n FROM {in} GROUP BY k, TUMBLING(INTERVAL 1 SECOND)"}
	res, err := RunCQ(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	e := res.Emit
	if res.Published != 3000 || e == nil {
		t.Fatalf("%+v", res)
	}
	// 3000 records at 1500/s span two seconds or more: at least one
	// window ended before the last record, and the last one closed idle.
	// (The first and last windows may hold fewer than the 5 keys.)
	if e.Rows < 5 || e.IdleRows < 1 || e.IdleRows > 5 || e.IdleMaxS < 1 || e.P50Ms < 0 || e.P99Ms < e.P50Ms || e.MaxMs < e.P99Ms {
		t.Fatalf("emit figures %+v", *e)
	}
	if s := res.String(); !strings.Contains(s, "windows out after their end") || !strings.Contains(s, "closed while the input was idle: ") {
		t.Fatalf("summary:\n%s", s)
	}
	// Bad pacing is refused.
	o.Rate = -1
	if _, err := RunCQ(context.Background(), o); err == nil || !strings.Contains(err.Error(), "rate and idle wait") {
		t.Fatalf("negative rate: %v", err)
	}
}

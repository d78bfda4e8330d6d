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

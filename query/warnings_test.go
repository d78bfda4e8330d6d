package query

import (
	"context"
	"fmt"
	"net/http/httptest"
	"slices"
	"testing"

	"github.com/mqstream/mqstream/stats"
)

// partialStats answers the rate and latency tables as a cluster node
// missing one other node does.
type partialStats struct{}

func (partialStats) StreamRates(ctx context.Context) []stats.StreamRates {
	Warn(ctx, "node n3 did not answer: its figures are left out")
	Warn(ctx, "node n3 did not answer: its figures are left out")
	return []stats.StreamRates{{Stream: "a"}}
}

func (partialStats) AppendLatencies(ctx context.Context) []NodeLatency {
	Warn(ctx, "node n3 did not answer: its figures are left out")
	Warn(ctx, "node n2 did not answer: its figures are left out")
	return []NodeLatency{{Node: "n1"}}
}

// TestWarningsOfPartialTables: a table's source warns that rows are
// missing; the result carries each warning once, sorted, and so does
// POST /v1/query; a complete result has none (and no "warnings" key).
func TestWarningsOfPartialTables(t *testing.T) {
	n := startNode(t, nodeOptions{})
	engine, err := New(Options{Store: n.store, Stats: partialStats{}})
	if err != nil {
		t.Fatal(err)
	}
	res, err := engine.Query(context.Background(), "SELECT * FROM append_throughput a JOIN append_latency l ON true")
	if err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(res.Warnings); got != "[node n2 did not answer: its figures are left out node n3 did not answer: its figures are left out]" {
		t.Fatalf("warnings: %s", got)
	}
	if res, err = engine.Query(context.Background(), "SELECT 1"); err != nil || res.Warnings != nil {
		t.Fatalf("SELECT 1: %v, warnings %q", err, res.Warnings)
	}
	Warn(context.Background(), "outside a query: nothing")

	srv := httptest.NewServer(Handler(engine))
	defer srv.Close()
	status, _, body := post(t, srv.URL, "application/json", `{"sql":"SELECT node FROM append_latency"}`)
	if status != 200 || fmt.Sprint(body["warnings"]) != "[node n2 did not answer: its figures are left out node n3 did not answer: its figures are left out]" {
		t.Fatalf("POST: %d %v", status, body)
	}
	if status, _, body = post(t, srv.URL, "application/json", `{"sql":"SELECT 1"}`); status != 200 || body["warnings"] != nil {
		t.Fatalf("POST SELECT 1: %d %v", status, body)
	}
	if _, ok := body["warnings"]; ok {
		t.Fatalf("a complete result has a warnings key: %v", body)
	}
}

// TestCollectedWarningsSayWhetherARowMayBeMissing: Warn collects a
// warning; WarnPartial also says that what was asked for may be among
// what was left out (a lookup then answers "unavailable", not "not
// found").
func TestCollectedWarningsSayWhetherARowMayBeMissing(t *testing.T) {
	ctx, got := CollectWarnings(context.Background())
	Warn(ctx, "node n3 is failed: its figures are left out")
	if list, partial := got(); len(list) != 1 || partial {
		t.Fatalf("after Warn: %v, partial %v", list, partial)
	}
	WarnPartial(ctx, "shard 2 has no leader")
	Warn(ctx, "shard 2 has no leader")
	if list, partial := got(); !slices.Equal(list, []string{"node n3 is failed: its figures are left out", "shard 2 has no leader"}) || !partial {
		t.Fatalf("after WarnPartial: %v, partial %v", list, partial)
	}
	Warn(context.Background(), "outside a collection: dropped")
}

package api

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mqstream/mqstream/cluster"
	"github.com/mqstream/mqstream/cluster/routes"
	"github.com/mqstream/mqstream/cluster/shards"
	"github.com/mqstream/mqstream/streams"
)

// fakeClusterNode is node n1 of a cluster whose shards and members the
// test sets.
type fakeClusterNode struct {
	members []cluster.Member
	shards  []shards.ShardStatus
}

func (f *fakeClusterNode) ID() string                   { return "n1" }
func (f *fakeClusterNode) Readiness() (bool, string)    { return true, "" }
func (f *fakeClusterNode) StartedAt() time.Time         { return time.Time{} }
func (f *fakeClusterNode) Listeners() map[string]string { return nil }
func (f *fakeClusterNode) ClusterName() string          { return "test" }
func (f *fakeClusterNode) Members() []cluster.Member    { return f.members }
func (f *fakeClusterNode) Shards() []shards.ShardStatus { return f.shards }
func (f *fakeClusterNode) Routes() routes.Stats {
	return routes.Stats{LocalFilters: 2, RemoteFilters: map[string]int{"n2": 3}, Forwarded: 7, Received: 4}
}

func (f *fakeClusterNode) ForwardCounters() shards.ForwardCounters {
	return shards.ForwardCounters{Sent: 5, Received: 3, Failed: 1}
}
func (f *fakeClusterNode) LeaderHandoffs() uint64 { return 2 }
func (f *fakeClusterNode) CommitNotices() uint64  { return 6 }

// ShardLags: shards 0 and 1 lag 4 and 0 entries; the others' replicas
// did not answer.
func (f *fakeClusterNode) ShardLags(context.Context) map[int]uint64 {
	return map[int]uint64{0: 4, 1: 0}
}
func (f *fakeClusterNode) StreamPlacement(_ context.Context, name string) (int, string, []string, bool) {
	st := f.shards[shards.ShardOf(name, len(f.shards))]
	return st.ID, st.Leader, st.Replicas, true
}

// fakeStreams knows every stream, empty; the rest of Streams is not used.
type fakeStreams struct{ Streams }

func (fakeStreams) DescribeStream(name string) (streams.StreamInfo, error) {
	return streams.StreamInfo{Name: name}, nil
}
func (fakeStreams) Counters() map[string]streams.StreamCounters { return nil }
func (fakeStreams) ListStreams() []streams.StreamInfo           { return nil }
func (fakeStreams) StoreCounters() streams.StoreCounters        { return streams.StoreCounters{} }

// TestClusterViews: a stream's shard, leader and replicas; each member's
// led and held shards; the cluster metrics, leader changes counted from
// one scrape to the next.
func TestClusterViews(t *testing.T) {
	node := &fakeClusterNode{
		members: []cluster.Member{{ID: "n1", Status: "alive"}, {ID: "n2", Status: "alive"}, {ID: "n3", Status: "failed"}},
		shards: []shards.ShardStatus{
			{ID: 0, Leader: "n1", Term: 2, Replicas: []string{"n1", "n2", "n3"}, Applied: 10, Local: true},
			{ID: 1, Leader: "n2", Term: 3, Replicas: []string{"n2", "n3", "n1"}, Applied: 11, Local: true},
			{ID: 2, Term: 5, Replicas: []string{"n3", "n1", "n2"}, Applied: 12, Local: true},
			{ID: 3, Replicas: []string{"n2", "n3", "n4"}},
		},
	}
	s := New(Options{Store: fakeStreams{}, Node: node})
	get := func(path string, out any) {
		t.Helper()
		rec := httptest.NewRecorder()
		s.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
		if rec.Code != http.StatusOK {
			t.Fatalf("GET %s: %d %s", path, rec.Code, rec.Body)
		}
		if err := json.Unmarshal(rec.Body.Bytes(), out); err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
	}

	var cl struct {
		Members []struct {
			ID         string
			ShardsLed  *int `json:"shards_led"`
			ShardsHeld *int `json:"shards_held"`
		}
		Shards []struct {
			shards.ShardStatus
			Lag *uint64
		}
	}
	get("/v1/cluster", &cl)
	if len(cl.Shards) != 4 {
		t.Fatalf("/v1/cluster: %+v", cl)
	}
	ptr := func(v uint64) *uint64 { return &v }
	for i, want := range []*uint64{ptr(uint64(4)), ptr(uint64(0)), nil, nil} {
		if got := cl.Shards[i].Lag; (got == nil) != (want == nil) || got != nil && *got != *want {
			t.Errorf("shard %d: lag %v, want %v", i, got, want)
		}
	}
	want := map[string][2]int{"n1": {1, 3}, "n2": {1, 4}, "n3": {0, 4}}
	for _, m := range cl.Members {
		if m.ShardsLed == nil || m.ShardsHeld == nil || [2]int{*m.ShardsLed, *m.ShardsHeld} != want[m.ID] {
			t.Errorf("member %s: led %v held %v, want %v", m.ID, m.ShardsLed, m.ShardsHeld, want[m.ID])
		}
	}
	if len(cl.Members) != 3 || len(cl.Shards) != 4 {
		t.Fatalf("/v1/cluster: %+v", cl)
	}

	for i := 0; i < 40; i++ {
		name := fmt.Sprintf("s%d", i)
		shard := shards.ShardOf(name, 4)
		var st map[string]any
		get("/v1/streams/"+name, &st)
		ss := node.shards[shard]
		if st["shard"] != float64(shard) || st["leader"] != ss.Leader || len(st["replicas"].([]any)) != len(ss.Replicas) ||
			st["replicas"].([]any)[0] != ss.Replicas[0] {
			t.Errorf("stream %s: %v, want shard %+v", name, st, ss)
		}
	}

	gather := func() map[string]float64 {
		t.Helper()
		fams, err := s.Registry().Gather()
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]float64{}
		for _, f := range fams {
			for _, m := range f.Metric {
				key := f.GetName()
				for _, l := range m.Label {
					key += " " + l.GetValue()
				}
				out[key] = m.GetGauge().GetValue() + m.GetCounter().GetValue()
			}
		}
		return out
	}
	check := func(got map[string]float64, want map[string]float64) {
		t.Helper()
		for k, v := range want {
			if g, ok := got[k]; !ok || g != v {
				t.Errorf("%s = %v (reported %v), want %v", k, g, ok, v)
			}
		}
	}
	m := gather()
	check(m, map[string]float64{
		"mqstream_cluster_members alive": 2, "mqstream_cluster_members failed": 1, "mqstream_cluster_members suspect": 0,
		"mqstream_shard_leader 0": 1, "mqstream_shard_leader 1": 0, "mqstream_shard_leader 3": 0,
		"mqstream_shard_term 0": 2, "mqstream_shard_applied_index 1": 11,
		"mqstream_shard_leader_changes_total 0": 0, "mqstream_shard_leader_changes_total 2": 0,
		"mqstream_forwards_total sent": 5, "mqstream_forwards_total received": 3, "mqstream_forwards_failed_total": 1,
		"mqstream_shard_leader_handoffs_total": 2, "mqstream_shard_commit_notices_total": 6, "mqstream_shard_replication_lag_entries 0": 4,
		"mqstream_route_filters  local": 2, "mqstream_route_filters n2 remote": 3, // labels by name: peer, scope
		"mqstream_routed_messages_total forwarded": 7, "mqstream_routed_messages_total received": 4, "mqstream_routed_messages_total dropped": 0,
	})
	if _, ok := m["mqstream_shard_replication_lag_entries 1"]; ok {
		t.Error("shard 1's lag reported by n1: its leader, n2, reports it")
	}
	for _, k := range []string{"mqstream_shard_term 3", "mqstream_shard_leader_changes_total 3"} {
		if _, ok := m[k]; ok {
			t.Errorf("%s reported for a shard this node holds no replica of", k)
		}
	}

	// Shard 0 moves to n2, shard 1 is re-elected (new term), shard 2
	// gets its first leader: two changes.
	node.shards[0].Leader, node.shards[0].Term = "n2", 3
	node.shards[1].Term = 4
	node.shards[2].Leader = "n3"
	check(gather(), map[string]float64{"mqstream_shard_leader 0": 0,
		"mqstream_shard_leader_changes_total 0": 1, "mqstream_shard_leader_changes_total 1": 1, "mqstream_shard_leader_changes_total 2": 0})
	// An election under way, then the same leader again: no change.
	node.shards[0].Leader = ""
	gather()
	node.shards[0].Leader = "n2"
	check(gather(), map[string]float64{"mqstream_shard_leader_changes_total 0": 1})
	if !slices.Contains(memberStatuses, "left") {
		t.Fatal("member statuses")
	}
}

// partialStreams lists one stream and says that shard 2's holders did
// not answer, as a node whose peers holding shard 2 are down does.
type partialStreams struct{ fakeStreams }

func (partialStreams) Listing() ([]streams.StreamInfo, []int) {
	return []streams.StreamInfo{{Name: "here"}}, []int{2}
}

// TestStreamListingSaysWhatIsLeftOut: a listing that lacks the streams of
// a shard no holder answered for says so in "warnings", not only by
// their absence.
func TestStreamListingSaysWhatIsLeftOut(t *testing.T) {
	srv := httptest.NewServer(New(Options{Store: partialStreams{}}).Handler())
	defer srv.Close()
	resp, err := http.Get(srv.URL + "/v1/streams")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var got struct {
		Streams  []struct{ Name string } `json:"streams"`
		Warnings []string                `json:"warnings"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&got); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /v1/streams: %d %v", resp.StatusCode, err)
	}
	if len(got.Streams) != 1 || len(got.Warnings) != 1 || !strings.Contains(got.Warnings[0], "shard 2") {
		t.Fatalf("listing %+v, want stream here and a warning about shard 2", got)
	}
}

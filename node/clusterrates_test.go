package node

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/mqstream/mqstream/internal/testutil"
	"github.com/mqstream/mqstream/query"
	"github.com/mqstream/mqstream/stats"
)

// TestMergeRatesCountsEachRecordOnce: a stream's appends come from one
// replica that serves its shard, the same whichever node is asked: the
// one whose sampler has run the longest, then the leader, then the
// smallest node id; its reads are summed over the nodes, and a stream no
// serving replica reported has no row.
func TestMergeRatesCountsEachRecordOnce(t *testing.T) {
	rates := func(stream string, appended, read float64, serves, leads bool, span time.Duration) streamRates {
		r := stats.Rate{RecordsPerSec: appended, BytesPerSec: 10 * appended, Span: span}
		rd := stats.Rate{RecordsPerSec: read, BytesPerSec: 10 * read, Span: span}
		return streamRates{StreamRates: stats.StreamRates{Stream: stream, Append: stats.Rates{M1: r, M5: r, M10: r},
			Read: stats.Rates{M1: rd, M5: rd, M10: rd}}, Serves: serves, Leads: leads}
	}
	const full = 10 * time.Minute
	reports := map[string]rateReport{
		// n1 restarted a minute ago: it counted the records it caught up
		// on (a: 50 a second), and leads d since.
		"n1": {Streams: []streamRates{rates("a", 50, 1, true, false, time.Minute), rates("stale", 7, 0, false, false, full),
			rates("d", 90, 0, true, true, time.Minute)}},
		"n2": {Streams: []streamRates{rates("a", 2, 2, true, true, full), rates("b", 3, 4, true, false, full),
			rates("d", 4, 0, true, false, full-10*time.Second)}},
		"n3": {Streams: []streamRates{rates("b", 5, 8, true, false, full), rates("c", 6, 0, true, false, full),
			rates("a", 9, 0, false, false, full), rates("d", 5, 0, true, false, full)}},
		"n4": {Streams: []streamRates{rates("b", 7, 16, true, true, full), rates("c", 8, 0, true, false, full)}},
	}
	var out []string
	for _, r := range mergeRates(reports) {
		out = append(out, fmt.Sprintf("%s:%g/%g,%g/%g", r.Stream, r.Append.M1.RecordsPerSec, r.Append.M10.BytesPerSec,
			r.Read.M5.RecordsPerSec, r.Read.M10.BytesPerSec))
	}
	// a: the leader n2, not the restarted n1 nor n3 (not serving); b: the
	// leader n4; c: the smallest id, n3; d: n2 (within a spanStep of n3's
	// span, smaller id), not its restarted leader n1.
	if got, want := strings.Join(out, " "), "a:2/20,3/30 b:7/70,28/280 c:6/60,0/0 d:4/40,0/0"; got != want {
		t.Errorf("got %s, want %s", got, want)
	}
}

// TestRateTablesCoverShardsHeldElsewhere: three nodes, replication
// factor 2, so no node holds every shard. From every node, the rate
// tables have one row per stream, each record counted once: the appends
// as the shard's leader counted them (not summed over its replicas), the
// reads summed over the nodes that served them; append_latency has a row
// per node.
func TestRateTablesCoverShardsHeldElsewhere(t *testing.T) {
	names, nodes := startSpreadCluster(t)
	var topics []string
	for _, name := range names {
		topics = append(topics, "stored/"+name+"/x")
	}
	const per = 25
	publishAll(t, nodes[0].MQTTAddr(), "pub", 1, per, topics...)
	allApplied(t, nodes, names, per)
	// Each node reads each stream once (SQL, through the node serving it).
	for _, n := range nodes {
		for _, name := range names {
			res, err := n.Query().Query(context.Background(), "SELECT count(*) FROM "+name)
			if err != nil || fmt.Sprint(res.Rows) != fmt.Sprintf("[[%d]]", per) {
				t.Fatalf("count of %s on %s: %v %v", name, n.ID(), res, err)
			}
		}
	}
	leaderOf := func(stream string) *Node {
		for _, n := range nodes {
			for _, s := range n.rateReport().Streams {
				if s.Stream == stream && s.Leads {
					return n
				}
			}
		}
		t.Fatalf("no leader of %s's shard", stream)
		return nil
	}
	localRates := func(n *Node, stream string) stats.StreamRates {
		for _, r := range n.sampler.StreamRates() {
			if r.Stream == stream {
				return r
			}
		}
		return stats.StreamRates{}
	}
	readSum := func(stream string) float64 {
		sum := 0.0
		for _, n := range nodes {
			sum += localRates(n, stream).Read.M1.RecordsPerSec
		}
		return sum
	}
	table := func(n *Node, sql string) map[string][]float64 {
		res, err := n.Query().Query(context.Background(), sql)
		if err != nil {
			t.Fatalf("%s on %s: %v", sql, n.ID(), err)
		}
		out := map[string][]float64{}
		for _, r := range res.Rows {
			name := r[0].(string)
			if _, dup := out[name]; dup {
				t.Fatalf("%s on %s: two rows for %s", sql, n.ID(), name)
			}
			out[name] = []float64{r[1].(float64)}
		}
		return out
	}
	elsewhere := 0
	for _, n := range nodes {
		for _, name := range names {
			if n.servesStream(name) {
				continue
			}
			elsewhere++
			// The figures of n's table lie between the leader's (appends)
			// or the nodes' summed (reads) figures taken just before and
			// just after: with no new records, a rate only falls as its
			// span grows. Twice the count would fall outside.
			leader := leaderOf(name)
			before := localRates(leader, name).Append.M1.RecordsPerSec
			got := table(n, "SELECT stream_name, throughput_1min FROM append_throughput")
			after := localRates(leader, name).Append.M1.RecordsPerSec
			if len(got) != len(names) || len(got[name]) != 1 || got[name][0] > before || got[name][0] < after || after <= 0 {
				t.Errorf("append_throughput on %s: %v; %s's leader %s: %g then %g", n.ID(), got, name, leader.ID(), before, after)
			}
			before = readSum(name)
			got = table(n, "SELECT stream_name, throughput_1min FROM read_throughput")
			after = readSum(name)
			if len(got) != len(names) || len(got[name]) != 1 || got[name][0] > before || got[name][0] < after || after <= 0 {
				t.Errorf("read_throughput on %s: %v; %s's reads on every node: %g then %g", n.ID(), got, name, before, after)
			}
		}
		res, err := n.Query().Query(context.Background(), "SELECT node FROM append_latency WHERE appends > 0")
		if err != nil || fmt.Sprint(res.Rows) != "[[n1] [n2] [n3]]" {
			t.Errorf("append_latency on %s: %v %v", n.ID(), res, err)
		}
	}
	if elsewhere == 0 {
		t.Fatal("every node serves every shard with replication factor 2")
	}
	// Every node knows every shard's leader, also of the shards it holds
	// no replica of: the shards table and GET /v1/cluster.
	leaders := map[int]string{}
	for _, n := range nodes {
		for _, s := range n.Shards() {
			if s.Local {
				leaders[s.ID] = s.Leader
			}
		}
	}
	want := fmt.Sprint(leaders)
	for _, n := range nodes {
		res, err := n.Query().Query(context.Background(), "SELECT id, leader FROM shards")
		if err != nil {
			t.Fatal(err)
		}
		got := map[int]string{}
		for _, r := range res.Rows {
			if l, ok := r[1].(string); ok {
				got[int(r[0].(int64))] = l
			}
		}
		if fmt.Sprint(got) != want {
			t.Errorf("shard leaders in the shards table on %s: %v, want %v", n.ID(), got, want)
		}
		var cl struct {
			Members []struct {
				ID  string `json:"id"`
				Led int    `json:"shards_led"`
			} `json:"members"`
			Shards []struct {
				ID     int    `json:"id"`
				Leader string `json:"leader"`
			} `json:"shards"`
		}
		getJSON(t, n, "/v1/cluster", &cl)
		got = map[int]string{}
		for _, s := range cl.Shards {
			got[s.ID] = s.Leader
		}
		led := 0
		for _, m := range cl.Members {
			led += m.Led
		}
		if fmt.Sprint(got) != want || led != len(names) {
			t.Errorf("GET /v1/cluster on %s: leaders %v, want %v; %d shards led", n.ID(), got, want, led)
		}
	}
}

// TestRateTablesWithoutANode: a node that stops answering calls (its RPC
// mux closes; gossip still has it up) leaves the tables answering with
// the others' figures, every stream still counted from a replica that
// answers, the nodes table lists it without its figures, and the result
// says which node is missing; a shard none of
// whose replicas answers is missing from the streams table, which says
// so.
func TestRateTablesWithoutANode(t *testing.T) {
	names, nodes := startSpreadCluster(t)
	var topics []string
	for _, name := range names {
		topics = append(topics, "stored/"+name+"/x")
	}
	publishAll(t, nodes[0].MQTTAddr(), "pub", 1, 5, topics...)
	allApplied(t, nodes, names, 5)
	if err := nodes[2].repl.mux.Close(); err != nil {
		t.Fatal(err)
	}
	run := func(sql string) *query.Result {
		res, err := nodes[0].Query().Query(context.Background(), sql)
		if err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
		if len(res.Warnings) != 1 || !strings.HasPrefix(res.Warnings[0], "node n3 did not answer (") ||
			!strings.HasSuffix(res.Warnings[0], "): its figures are left out") {
			t.Errorf("%s: warnings %q", sql, res.Warnings)
		}
		return res
	}
	if got := fmt.Sprint(run("SELECT node FROM append_latency").Rows); got != "[[n1] [n2]]" {
		t.Errorf("append_latency without n3: %s", got)
	}
	if got := fmt.Sprint(run("SELECT count(*), count(DISTINCT stream_name) FROM append_throughput WHERE throughput_10min > 0").Rows); got != "[[4 4]]" {
		t.Errorf("streams in append_throughput without n3: %s", got)
	}
	// The nodes table lists n3 (gossip has it up) without its disk figures.
	if got := fmt.Sprint(run("SELECT id, disk_free_bytes IS NULL FROM nodes ORDER BY id").Rows); got != "[[n1 false] [n2 false] [n3 true]]" {
		t.Errorf("nodes without n3's answer: %s", got)
	}
	// POST /v1/query carries the warnings.
	var body struct {
		Rows     [][]any  `json:"rows"`
		Warnings []string `json:"warnings"`
	}
	if st := postAPI(t, nodes[1], "/v1/query", `{"sql":"SELECT node FROM append_latency"}`, &body); st != 200 || len(body.Rows) != 2 ||
		len(body.Warnings) != 1 || !strings.HasPrefix(body.Warnings[0], "node n3 did not answer") {
		t.Fatalf("POST /v1/query on n2 without n3: %d %+v", st, body)
	}
	// n2 stops answering too: the streams table of n1 lacks the streams
	// of the shards held by n2 and n3 alone, and says so.
	var want []string
	for _, sh := range nodes[0].Shards() {
		if !sh.Local {
			want = append(want, fmt.Sprintf("no replica of shard %d answered: its streams are left out", sh.ID))
		}
	}
	if len(want) == 0 {
		t.Fatal("n1 holds every shard with replication factor 2")
	}
	if err := nodes[1].repl.mux.Close(); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 10*time.Second, "the streams table of n1 warns of the shards it cannot list", func() bool {
		res, err := nodes[0].Query().Query(context.Background(), "SELECT name FROM streams")
		return err == nil && len(res.Rows) < len(names) && fmt.Sprint(res.Warnings) == fmt.Sprint(want)
	})
}

// allApplied waits until every replica of each stream applied its per
// records: the append counts no longer move.
func allApplied(t *testing.T, nodes []*Node, names []string, per int64) {
	t.Helper()
	testutil.Eventually(t, 10*time.Second, "every replica applied every record", func() bool {
		for _, n := range nodes {
			for _, name := range names {
				if n.servesStream(name) && n.store.Counters()[name].AppendedRecords != per {
					return false
				}
			}
		}
		return true
	})
}

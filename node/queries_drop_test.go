package node

import (
	"net/http"
	"strings"
	"testing"
)

// TestDropStream: DROP STREAM through POST /v1/query and DELETE
// /v1/streams/{name} delete a stream and its records, and refuse, naming
// them, while queries or views read it or write into it.
func TestDropStream(t *testing.T) {
	n := startNodeWith(t, "temps", "alerts", "scratch")
	publishSeq(t, n.MQTTAddr(), "p1", "scratch/a", "x", 3)
	del := func(name string) (int, string) { return callAPI(t, n, "DELETE", "/v1/streams/"+name, "", "") }
	for _, sql := range []string{
		"CREATE STREAM hot AS SELECT count(*) AS n FROM temps GROUP BY TUMBLING(INTERVAL 1 SECOND)",
		"INSERT INTO alerts SELECT temp FROM temps WHERE temp > 30",
		"CREATE VIEW per_topic AS SELECT _topic AS k, count(*) AS n FROM hot GROUP BY _topic",
	} {
		if got := sqlRows(t, n, sql); !strings.Contains(got, "created") {
			t.Fatalf("%s: %s", sql, got)
		}
	}
	for _, c := range [][2]string{
		{"DROP STREAM temps", "400 1:13 stream temps is in use: read by alerts_insert_1, hot; TERMINATE QUERY (DROP VIEW for a view) each of them first, then DROP STREAM temps"},
		{"DROP STREAM hot", "400 1:13 stream hot is in use: read by per_topic (view); written by hot;"},
		{"DROP STREAM alerts", "400 1:13 stream alerts is in use: written by alerts_insert_1;"},
		{"DROP STREAM per_topic", "400 1:13 per_topic is a view: DROP VIEW per_topic removes it"},
		{"DROP STREAM nope", `400 1:13 unknown stream "nope" (SHOW STREAMS lists them)`},
		{"DROP STREAM IF EXISTS nope", "[[stream nope does not exist]]"},
		{"DROP STREAM", "400 1:12 syntax error: write DROP STREAM [IF EXISTS] <name> (SHOW STREAMS lists them)"},
		{"DROP STREAM a b", "400 1:15 syntax error: write DROP STREAM"},
		{"DROP STREAM scratch", "[[stream scratch dropped, with its records]]"},
		{"SELECT count(*) FROM scratch", "400 1:22 unknown table"},
		{"DROP STREAM IF EXISTS scratch", "[[stream scratch does not exist]]"},
	} {
		if got := sqlRows(t, n, c[0]); !strings.HasPrefix(got, c[1]) {
			t.Errorf("%s: %s, want %s", c[0], got, c[1])
		}
	}
	if st, body := del("temps"); st != http.StatusConflict || !strings.Contains(body, `"code":"conflict","message":"stream temps is in use: read by alerts_insert_1, hot;`) {
		t.Errorf("DELETE /v1/streams/temps: %d %s", st, body)
	}
	// Once its users are gone, the stream goes, records and all.
	for _, sql := range []string{"TERMINATE QUERY alerts_insert_1", "DROP VIEW per_topic", "TERMINATE QUERY hot"} {
		if got := sqlRows(t, n, sql); strings.HasPrefix(got, "4") {
			t.Fatalf("%s: %s", sql, got)
		}
	}
	if got := sqlRows(t, n, "DROP STREAM hot"); got != "[[stream hot dropped, with its records]]" {
		t.Errorf("DROP STREAM hot: %s", got)
	}
	if st, body := del("temps"); st != http.StatusNoContent {
		t.Errorf("DELETE /v1/streams/temps: %d %s", st, body)
	}
	if st, body := del("temps"); st != http.StatusNotFound {
		t.Errorf("DELETE /v1/streams/temps again: %d %s", st, body)
	}
	if _, err := n.Store().DescribeStream("temps"); err == nil {
		t.Error("temps still exists")
	}
	// A query cannot be created on a dropped stream.
	if got := sqlRows(t, n, "CREATE STREAM hot2 AS SELECT temp FROM temps"); !strings.Contains(got, `unknown stream "temps"`) {
		t.Errorf("query on a dropped stream: %s", got)
	}
}

// TestDropStreamChecksEveryNode: in a cluster, a query runs on the node
// that created it; DROP STREAM and DELETE /v1/streams/{name} on another
// node refuse while it reads the stream, naming it and its node, and drop
// the stream once it is terminated.
func TestDropStreamChecksEveryNode(t *testing.T) {
	nodes := startCluster(t)
	publishSeq(t, nodes[0].MQTTAddr(), "p1", "temps/a", "x", 3)
	sql := "CREATE STREAM hot AS SELECT count(*) AS n FROM temps GROUP BY TUMBLING(INTERVAL 1 SECOND)"
	if got := sqlRows(t, nodes[1], sql); !strings.Contains(got, "created") {
		t.Fatalf("%s: %s", sql, got)
	}
	// The query runs on the leader of its output's shard.
	home := leaderOf(t, nodes[0], "hot")
	for _, n := range nodes {
		want := "400 1:13 stream temps is in use: read by hot (on " + home + ")"
		if n.ID() == home {
			want = "400 1:13 stream temps is in use: read by hot;"
		}
		if got := sqlRows(t, n, "DROP STREAM temps"); !strings.HasPrefix(got, want) {
			t.Errorf("DROP STREAM temps on %s: %s, want %s", n.ID(), got, want)
		}
		if n.ID() != home {
			if st, body := callAPI(t, n, "DELETE", "/v1/streams/temps", "", ""); st != http.StatusConflict || !strings.Contains(body, "read by hot (on "+home+")") {
				t.Errorf("DELETE /v1/streams/temps on %s: %d %s", n.ID(), st, body)
			}
		}
	}
	if got := sqlRows(t, nodes[1], "TERMINATE QUERY hot"); strings.HasPrefix(got, "4") {
		t.Fatalf("TERMINATE QUERY hot: %s", got)
	}
	if got := sqlRows(t, nodes[2], "DROP STREAM temps"); got != "[[stream temps dropped, with its records]]" {
		t.Errorf("DROP STREAM temps once hot is terminated: %s", got)
	}
}

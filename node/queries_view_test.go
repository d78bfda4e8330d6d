package node

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/mqstream/mqstream/internal/testutil"
	"github.com/mqstream/mqstream/streams"
)

// sqlRows runs sql through POST /v1/query and returns its rows printed,
// or the error's message with its position.
func sqlRows(t *testing.T, n *Node, sql string) string {
	t.Helper()
	var res struct {
		Rows  [][]any `json:"rows"`
		Error *struct {
			Message      string
			Line, Column int
		} `json:"error"`
	}
	body := fmt.Sprintf(`{"sql":%q}`, sql)
	st := postAPI(t, n, "/v1/query", body, &res)
	if res.Error != nil {
		return fmt.Sprintf("%d %d:%d %s", st, res.Error.Line, res.Error.Column, res.Error.Message)
	}
	return fmt.Sprint(res.Rows)
}

// TestViewOverREST: a view of what is published on MQTT, read with plain
// SELECT ... WHERE through POST /v1/query, listed by SHOW VIEWS and SHOW
// QUERIES, the same after a restart, then dropped.
func TestViewOverREST(t *testing.T) {
	dir := t.TempDir()
	n := startNode(t, testConfig(dir))
	if _, err := n.Store().CreateStream(context.Background(), "input", streams.Retention{}); err != nil {
		t.Fatal(err)
	}
	if got := sqlRows(t, n, "CREATE VIEW per_topic AS SELECT _topic AS k, count(*) AS n, max(_offset) AS last FROM input GROUP BY _topic"); !strings.Contains(got, "view per_topic created") {
		t.Fatalf("create: %s", got)
	}
	publishSeq(t, n.MQTTAddr(), "p1", "input/d1", "a", 3)
	publishSeq(t, n.MQTTAddr(), "p2", "input/d2", "b", 2)
	read := "SELECT k, n, last FROM per_topic WHERE k = 'input/d1'"
	testutil.Eventually(t, 10*time.Second, "5 records counted", func() bool { return sqlRows(t, n, "SELECT sum(n) FROM per_topic") == "[[5]]" })
	if got := sqlRows(t, n, read); got != "[[input/d1 3 2]]" {
		t.Fatalf("the view's row: %s", got)
	}
	// A view joins like any table: each record with its topic's totals.
	if got := sqlRows(t, n, "SELECT i._payload, v.n FROM input i JOIN per_topic v ON v.k = i._topic WHERE i._offset = 4"); got != "[[b-1 2]]" {
		t.Fatalf("join with the view: %s", got)
	}
	if got := sqlRows(t, n, "SHOW TABLES"); !strings.Contains(got, "[per_topic view view over stream input: CREATE VIEW per_topic") {
		t.Fatalf("SHOW TABLES: %s", got)
	}
	if got := sqlRows(t, n, "SHOW VIEWS"); !strings.Contains(got, "per_topic running input 2 5") {
		t.Fatalf("SHOW VIEWS: %s", got)
	}
	if got := sqlRows(t, n, "SELECT id, kind FROM queries"); got != "[[per_topic view]]" {
		t.Fatalf("queries: %s", got)
	}
	if got := sqlRows(t, n, "DESCRIBE per_topic"); !strings.HasPrefix(got, "[[k text view column] [n int view column] [last int view column]]") {
		t.Fatalf("DESCRIBE: %s", got)
	}
	if got := sqlRows(t, n, "EXPLAIN SELECT n FROM per_topic WHERE k = 'input/d1'"); !strings.Contains(got, "[source view per_topic: its current rows, kept in memory by its query] [filter k = 'input/d1']") {
		t.Fatalf("EXPLAIN: %s", got)
	}
	if got := sqlRows(t, n, "EXPLAIN CREATE VIEW w AS SELECT count(*) FROM inputs"); got != `400 1:47 unknown stream "inputs": a continuous query reads an existing stream (SHOW STREAMS lists them)` {
		t.Fatalf("EXPLAIN with an error: %s", got)
	}
	if err := n.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	n = startNode(t, testConfig(dir))
	if got := sqlRows(t, n, read); got != "[[input/d1 3 2]]" {
		t.Fatalf("after a restart: %s", got)
	}
	publishSeq(t, n.MQTTAddr(), "p3", "input/d1", "c", 1)
	testutil.Eventually(t, 10*time.Second, "the view updated", func() bool { return sqlRows(t, n, read) == "[[input/d1 4 5]]" })
	if got := sqlRows(t, n, "TERMINATE per_topic"); !strings.Contains(got, "terminated") {
		// TERMINATE works on views too; create it again for DROP VIEW.
		t.Fatalf("terminate: %s", got)
	}
	sqlRows(t, n, "CREATE VIEW per_topic AS SELECT _topic AS k, count(*) AS n FROM input GROUP BY _topic")
	for _, c := range [][2]string{
		{"PAUSE QUERY per_topic", "400 1:13 per_topic is a view: a view cannot be paused"},
		{"DROP VIEW per_topic", "[[view per_topic dropped]]"},
		{"DROP VIEW IF EXISTS per_topic", "[[view per_topic does not exist]]"},
		{"DROP VIEW per_topic;", `400 1:11 unknown view "per_topic" (SHOW VIEWS lists them)`},
		{"SELECT * FROM per_topic", "400 1:15 unknown table"},
		{"CREATE VIEW v AS SELECT k FROM input", "400 1:18 a view aggregates"},
		{"CREATE VIEW v AS\n  SELECT count(*) FROM inputs", `400 2:24 unknown stream "inputs"`},
	} {
		if got := sqlRows(t, n, c[0]); !strings.HasPrefix(got, c[1]) {
			t.Errorf("%s: %s, want %s", c[0], got, c[1])
		}
	}
	if st := postAPI(t, n, "/v1/queries/per_topic/pause", "", nil); st != http.StatusNotFound {
		t.Fatalf("pause of a dropped view: %d", st)
	}
}

package cq

import (
	"context"
	"encoding/binary"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/mqstream/mqstream/internal/testutil"
	"github.com/mqstream/mqstream/query"
	"github.com/mqstream/mqstream/streams"
)

// appendTo appends payloads to stream name, as another writer would.
func (e *env) appendTo(name string, payloads ...string) {
	e.t.Helper()
	e.appendRecords(name, name, time.Time{}, payloads)
}

// TestInsertInto: INSERT INTO writes an existing stream that others write
// too; its id is new for every query; after a crash it finds its progress
// behind the others' records and neither repeats nor loses a row.
func TestInsertInto(t *testing.T) {
	e := newEnv(t)
	if _, err := e.store.CreateStream(context.Background(), "merged", streams.Retention{}); err != nil {
		t.Fatal(err)
	}
	e.appendTo("merged", `{"old":1}`)
	q, err := e.m.Create(context.Background(), "INSERT INTO merged SELECT sensor, temp FROM temps WHERE temp > 30")
	if err != nil {
		t.Fatal(err)
	}
	if q.ID != "merged_insert_1" || q.Sink != "merged" || q.Source != "temps" || q.Kind != query.KindInsert {
		t.Fatalf("query %+v", q)
	}
	e.appendAt(time.Second, `{"sensor":"a","temp":31}`, `{"sensor":"b","temp":3}`)
	e.waitOutput("merged", `{"old":1}`, `{"sensor":"a","temp":31}`)
	// Past that output's crash point before arming the next crash.
	testutil.Eventually(t, 5*time.Second, "the first output reported", func() bool { return e.info(q.ID).RowsOut == 1 })
	e.crashNext.Store(true)
	e.appendAt(2*time.Second, `{"sensor":"c","temp":32}`)
	e.waitOutput("merged", `{"old":1}`, `{"sensor":"a","temp":31}`, `{"sensor":"c","temp":32}`)
	testutil.Eventually(t, 5*time.Second, "the crash", e.crashed.Load)
	// Others write after the query's last output and its hint is lost:
	// the restarted query finds its progress behind their records.
	e.appendTo("merged", `{"other":1}`, `{"other":2}`)
	e.m.Close()
	if err := e.store.KV("queries").Write(context.Background(), streams.KVWrite{Key: inputKey(q.ID), Delete: true}); err != nil {
		t.Fatal(err)
	}
	e.start()
	e.appendAt(3*time.Second, `{"sensor":"d","temp":33}`)
	e.waitOutput("merged", `{"old":1}`, `{"sensor":"a","temp":31}`, `{"sensor":"c","temp":32}`, `{"other":1}`, `{"other":2}`, `{"sensor":"d","temp":33}`)
	testutil.Eventually(t, 5*time.Second, "caught up", func() bool { return e.info(q.ID).Lag == 0 && e.info(q.ID).Status == "running" })
	if n := len(e.output("merged")); n != 6 {
		t.Fatalf("%d records", n)
	}

	// Ids are never reused: a terminated query's records stay in the
	// stream and must not be taken for a new query's progress.
	if err := e.m.Terminate(context.Background(), q.ID); err != nil {
		t.Fatal(err)
	}
	e.restart()
	q2, err := e.m.Create(context.Background(), "INSERT INTO merged SELECT sensor FROM temps WHERE temp > 32")
	if err != nil {
		t.Fatal(err)
	}
	if q2.ID != "merged_insert_2" {
		t.Fatalf("second id %s", q2.ID)
	}
	e.waitOutput("merged", `{"old":1}`, `{"sensor":"a","temp":31}`, `{"sensor":"c","temp":32}`, `{"other":1}`, `{"other":2}`, `{"sensor":"d","temp":33}`, `{"sensor":"d"}`)
}

// TestInsertIntoErrors: SQL errors with the position of the problem.
func TestInsertIntoErrors(t *testing.T) {
	e := newEnv(t)
	for sql, want := range map[string]string{
		"INSERT INTO nope SELECT sensor FROM temps":                        `unknown stream "nope": INSERT INTO writes an existing stream (CREATE STREAM nope AS SELECT ... creates one) (line 1, column 13)`,
		"INSERT INTO temps SELECT sensor FROM temps":                       "a query cannot read the stream it writes (line 1, column 38)",
		"INSERT INTO temps SELECT sensor FROM tmps":                        `unknown stream "tmps"`,
		"INSERT INTO temps (a, b) SELECT sensor FROM temps":                "takes no column list: the output records' fields are the select list's names (use AS to rename) (line 1, column 19)",
		"INSERT INTO temps SELECT FROM temps":                              `syntax error at "FROM" (line 1, column 26)`,
		"INSERT INTO temps SELECT count(*) FROM temps":                     "a continuous query that aggregates needs a window",
		"INSERT INTO temps SELECT sensor FROM temps EMIT FINAL":            "EMIT FINAL needs a window: a final row per key comes when its window closes (GROUP BY <keys>, TUMBLING(INTERVAL 10 SECOND)) (line 1, column 44)",
		"INSERT INTO temps\n  SELECT sensor FROM temps WHERE tmp(1)":       "(line 2, column",
		"INSERT INTO temps WITH (topic = 'x') SELECT sensor FROM temps":    "published (or not) as that one says (line 1, column 25)",
		"INSERT INTO temps WITH (late = TRUE) AS SELECT sensor FROM temps": "syntax error: expected SELECT: INSERT INTO <stream> [WITH (late = TRUE)] SELECT ... (line 1, column 38)",
		"INSERT INTO temps WITH (late = TRUE) SELECT sensor FROM temps":    "late = TRUE applies to windows with EMIT FINAL",
	} {
		_, err := e.m.Create(context.Background(), sql)
		var qe *query.Error
		if !errors.As(err, &qe) || !strings.Contains(qe.Error(), want) {
			t.Errorf("%s: %v, want %s", sql, err, want)
		}
	}
	if n := len(e.m.List()); n != 0 {
		t.Fatalf("%d queries after failed creations", n)
	}
}

// TestHintBoundsTheSearch: a hint carries the output stream's end when it
// was written, and the search for the query's newest output record stops
// there (what came before, the hint covers).
func TestHintBoundsTheSearch(t *testing.T) {
	e := newEnv(t)
	if _, err := e.store.CreateStream(context.Background(), "out", streams.Retention{}); err != nil {
		t.Fatal(err)
	}
	mark := func(v int64) {
		done := make(chan error, 1)
		_ = e.store.Submit(streams.AppendRequest{Stream: "out", Records: []streams.Record{{Topic: "out", Payload: []byte("{}"),
			UserProperties: markers("q", propWatermark, v)}}, Done: func(_ uint64, err error) { done <- err }})
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
	mark(100) // offset 0: before the hint's end, so not searched
	e.appendTo("out", "{}", "{}")
	kv := e.store.KV("queries")
	hint := binary.BigEndian.AppendUint64(encodeHint(7), 3)
	if err := kv.Write(context.Background(), streams.KVWrite{Key: hintKey("q"), Value: hint}); err != nil {
		t.Fatal(err)
	}
	e.appendTo("out", "{}")
	if wm, ok, err := recoverWatermark(e.store, kv, "q", streamFrom{name: "out"}); err != nil || !ok || wm != 7 {
		t.Fatalf("watermark %d %v %v, want the hint's 7", wm, ok, err)
	}
	mark(9) // after the hint's end: found
	if wm, _, _ := recoverWatermark(e.store, kv, "q", streamFrom{name: "out"}); wm != 9 {
		t.Fatalf("watermark %d, want 9", wm)
	}
	// An 8-byte hint (before the end was kept) searches the whole stream.
	if err := kv.Write(context.Background(), streams.KVWrite{Key: hintKey("q"), Value: encodeHint(7)}); err != nil {
		t.Fatal(err)
	}
	e.appendTo("out", "{}")
	if wm, _, _ := recoverWatermark(e.store, kv, "q", streamFrom{name: "out"}); wm != 9 {
		t.Fatalf("watermark %d, want 9", wm)
	}
}

// TestInsertIntoLate: INSERT INTO ... WITH (late = TRUE) writes its late
// records to <query>_late, each once across a restart.
func TestInsertIntoLate(t *testing.T) {
	e := newEnv(t)
	e.createStreams("merged")
	q, err := e.m.Create(context.Background(), "INSERT INTO merged WITH (late = TRUE) SELECT /*+ GRACE('1s') */ k, count(*) AS n FROM temps GROUP BY k, TUMBLE(at, INTERVAL 10 SECOND)")
	if err != nil {
		t.Fatal(err)
	}
	if q.ID != "merged_insert_1" {
		t.Fatalf("query %+v", q)
	}
	e.appendAt(time.Second, event("a", time.Second), event("a", 12*time.Second)) // watermark 11 s: [0, 10) closes
	e.waitOutput("merged", row(0, 10, `"k":"a","n":1`))
	// Late: its window closed. A restart replays from the first record of
	// the open window [10, 20), before it: the late record is not
	// written again.
	e.appendAt(2*time.Second, event("late", 5*time.Second))
	e.waitOutput("merged_insert_1_late", event("late", 5*time.Second))
	e.restart()
	e.appendAt(3*time.Second, event("late", 6*time.Second), event("a", 25*time.Second))
	e.waitOutput("merged_insert_1_late", event("late", 5*time.Second), event("late", 6*time.Second))
	e.waitOutput("merged", row(0, 10, `"k":"a","n":1`), row(10, 20, `"k":"a","n":1`))
	// Its late stream exists: a second such query gets its own.
	q2, err := e.m.Create(context.Background(), "INSERT INTO merged WITH (late = TRUE) SELECT k, count(*) AS n FROM temps GROUP BY k, TUMBLE(at, INTERVAL 10 SECOND)")
	if err != nil || q2.ID != "merged_insert_2" {
		t.Fatalf("second query %+v %v", q2, err)
	}
	if _, err := e.m.Create(context.Background(), "CREATE STREAM merged_insert_3 AS SELECT k FROM temps"); err != nil {
		t.Fatal(err)
	}
}

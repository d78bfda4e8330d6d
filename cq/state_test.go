package cq

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/mqstream/mqstream/internal/testutil"
	"github.com/mqstream/mqstream/query"
	"github.com/mqstream/mqstream/streams"
)

// TestStateAccounting: the estimate grows with keys and panes, not with
// records, and falls back to zero once every window has closed.
func TestStateAccounting(t *testing.T) {
	w := newWindower(compile(t, hotSQL))
	for i := range 100 {
		feed(w, time.Second, fmt.Sprintf(`{"sensor":"s%03d","temp":%d}`, i, i))
	}
	per := w.bytes / 100
	if len(w.keys) != 100 || per < keyOverhead+paneOverhead || per > 1000 {
		t.Fatalf("100 keys: %d bytes (%d a key)", w.bytes, per)
	}
	before := w.bytes
	for range 50 { // more records of the same keys and pane: no new state
		feed(w, 2*time.Second, `{"sensor":"s000","temp":1}`)
	}
	if w.bytes != before {
		t.Fatalf("records of a held key and pane changed the state: %d -> %d", before, w.bytes)
	}
	feed(w, 11*time.Second, `{"sensor":"s000","temp":1}`) // closes [0, 10): one key, one pane left
	if rows, _ := w.closeDue(); len(rows) != 100 {
		t.Fatalf("%d rows", len(rows))
	}
	if len(w.keys) != 1 || w.bytes != per || w.bytes <= 0 {
		t.Fatalf("after the close: %d keys, %d bytes (one key was %d)", len(w.keys), w.bytes, per)
	}
	w.advance(base.Add(time.Minute).UnixNano())
	w.closeDue()
	if w.bytes != 0 || len(w.keys) != 0 {
		t.Fatalf("all closed: %d bytes, %d keys", w.bytes, len(w.keys))
	}

	// Sessions: one per key; a merge frees the merged one.
	x := newSessioner(compile(t, "CREATE STREAM o AS SELECT k, count(*) AS n FROM i GROUP BY k, SESSION(INTERVAL 5 SECOND)"))
	for i := range 10 {
		x.add(&streams.Record{Timestamp: base, Payload: []byte(fmt.Sprintf(`{"k":"k%d"}`, i))}, nil)
	}
	if x.bytes <= 10*sessionOverhead || len(x.keys) != 10 {
		t.Fatalf("10 sessions: %d bytes", x.bytes)
	}
	x.advance(base.Add(time.Minute).UnixNano())
	x.closeDue()
	if x.bytes != 0 {
		t.Fatalf("all sessions closed: %d bytes", x.bytes)
	}

	// Changes: a group per key and window, freed with its window.
	ch := newChanger(compile(t, "CREATE STREAM o AS SELECT k, count(*) AS n FROM i GROUP BY k, TUMBLING(INTERVAL 10 SECOND) EMIT CHANGES"))
	for i := range 20 {
		ch.add(&streams.Record{Timestamp: base.Add(time.Duration(i%2) * 10 * time.Second), Payload: []byte(fmt.Sprintf(`{"k":"k%d"}`, i%10))}, nil, true)
	}
	if b, keys := ch.stateSize(); keys != 5 || b < 10*keyOverhead {
		t.Fatalf("changes: %d bytes, %d keys", b, keys)
	}
	ch.advance(base.Add(time.Minute).UnixNano())
	if b, _ := ch.stateSize(); b != 0 || ch.groups != 0 {
		t.Fatalf("changes, all closed: %d bytes, %d groups", b, ch.groups)
	}
}

// TestStateAccountingHop: a hopping window's cached combinations of panes
// count in the estimate while they are kept, and leave it with their panes.
func TestStateAccountingHop(t *testing.T) {
	w := newWindower(compile(t, "CREATE STREAM o AS SELECT k, count(*) AS n FROM i GROUP BY k, HOPPING(INTERVAL 10 SECOND, INTERVAL 2 SECOND)"))
	panes := func() int64 {
		var n int64
		for k, kp := range w.keys {
			n += keyOverhead + int64(len(k))
			for _, pg := range kp.panes {
				n += pg.bytes
			}
		}
		return n
	}
	for sec := range 30 { // one key, a record every second: 15 panes
		feed(w, time.Duration(sec)*time.Second, `{"k":"a"}`)
	}
	if rows, _ := w.closeDue(); len(rows) == 0 {
		t.Fatal("no window closed")
	}
	if w.bytes <= panes() {
		t.Fatalf("combinations not counted: %d bytes, the panes alone %d", w.bytes, panes())
	}
	w.advance(base.Add(time.Hour).UnixNano())
	w.closeDue()
	if w.bytes != 0 || len(w.keys) != 0 {
		t.Fatalf("all closed: %d bytes, %d keys", w.bytes, len(w.keys))
	}
}

// TestStateLimitPausesQuery: a query whose keys pass the limit is paused
// with an error naming the limit and its keys, stays paused across a
// restart, and once the limit is raised, resumes without losing or
// repeating output.
func TestStateLimitPausesQuery(t *testing.T) {
	e := newEnv(t)
	e.restartWith(8 << 10)
	e.create(hotSQL)
	e.appendAt(time.Second, `{"sensor":"a","temp":1}`, `{"sensor":"b","temp":2}`)
	many := make([]string, 200)
	for i := range many {
		many[i] = fmt.Sprintf(`{"sensor":"s%03d","temp":%d}`, i, i)
	}
	e.appendAt(11*time.Second, many...) // closes [0, 10), then holds 200 keys
	first := []string{row(0, 10, `"sensor":"a","n":1,"mean":1,"hi":1`), row(0, 10, `"sensor":"b","n":1,"mean":2,"hi":2`)}
	e.waitOutput("hot", first...)
	testutil.Eventually(t, 5*time.Second, "paused for its state", func() bool {
		d, _, _ := e.m.opts.KV.Get(defKey("hot"))
		return e.info("hot").Status == statusPaused && strings.Contains(string(d), "pause_error")
	})
	q := e.info("hot")
	for _, want := range []string{"queries.max_state_bytes", "200 keys", "8.0 KiB", "RESUME QUERY"} {
		if !strings.Contains(q.Error, want) {
			t.Errorf("error %q lacks %q", q.Error, want)
		}
	}
	if q.StateLimitPauses != 1 || q.StateKeys != 200 || q.StateBytes <= 8<<10 {
		t.Errorf("figures: %+v", q)
	}
	e.restart()
	if q := e.info("hot"); q.Status != statusPaused || !strings.Contains(q.Error, "queries.max_state_bytes") {
		t.Fatalf("after a restart: %s %q", q.Status, q.Error)
	}
	e.restartWith(0)
	e.setPaused("hot", false)
	e.appendAt(21*time.Second, `{"sensor":"a","temp":3}`) // closes [10, 20)
	testutil.Eventually(t, 5*time.Second, "the window of 200 keys output", func() bool { return len(e.output("hot")) >= 202 })
	got := e.output("hot")
	if len(got) != 202 || got[0] != first[0] || got[1] != first[1] || got[2] != row(10, 20, `"sensor":"s000","n":1,"mean":0,"hi":0`) {
		t.Fatalf("%d rows, first %v", len(got), got[:min(3, len(got))])
	}
	// The status is reported after the batch's output is written.
	testutil.Eventually(t, 5*time.Second, "running again, no error", func() bool {
		q := e.info("hot")
		return q.Status == "running" && q.Error == ""
	})
}

func (e *env) restartWith(limit int64) {
	e.maxState = limit
	e.restart()
}

func TestStateLimitError(t *testing.T) {
	err := error(&stateLimitError{bytes: 3 << 20, limit: 1 << 20, keys: 7})
	if !errors.Is(err, ErrStateLimit) || !strings.Contains(err.Error(), "3.0 MiB over 7 keys") || !strings.Contains(err.Error(), "(1.0 MiB)") {
		t.Fatal(err)
	}
	if _, err := New(Options{Reader: &streams.Store{}, Writer: &streams.Store{}, KV: &streams.KV{}, MaxStateBytes: -1}); err == nil || !strings.Contains(err.Error(), "max state bytes") {
		t.Fatalf("negative limit: %v", err)
	}
}

// TestStateLimitChangesAndViews: an EMIT CHANGES query is paused like a
// final one, keeping the rows it output; a view stops with an error that
// its reads answer, its groups freed.
func TestStateLimitChangesAndViews(t *testing.T) {
	e := newEnv(t)
	e.restartWith(8 << 10)
	e.create("CREATE STREAM live AS SELECT sensor, count(*) AS n FROM temps GROUP BY sensor, TUMBLING(INTERVAL 10 SECOND) EMIT CHANGES")
	e.create("CREATE VIEW per AS SELECT sensor, count(*) AS n FROM temps GROUP BY sensor")
	many := make([]string, 100)
	for i := range many {
		many[i] = fmt.Sprintf(`{"sensor":"s%03d","temp":%d}`, i, i)
	}
	e.appendAt(time.Second, many...)
	testutil.Eventually(t, 5*time.Second, "both stopped for their state", func() bool {
		return e.info("live").Status == statusPaused && e.info("per").Status == "error"
	})
	if q := e.info("live"); !strings.Contains(q.Error, "the query's state") || !strings.Contains(q.Error, "RESUME QUERY") {
		t.Fatalf("changes: %q", q.Error)
	}
	v, _ := e.m.View("per")
	if _, err := v.Rows(t.Context()); err == nil || !strings.Contains(err.Error(), "the view's state") || !strings.Contains(err.Error(), "restart the node") {
		t.Fatalf("view read: %v", err)
	}
	if b, _ := v.(*viewState).ch.stateSize(); b != 0 {
		t.Fatalf("the stopped view holds %d bytes", b)
	}
	// The rows output before the pause stay, and a resume with no limit
	// outputs the others once: one row per record.
	e.restartWith(0)
	e.setPaused("live", false)
	testutil.Eventually(t, 5*time.Second, "100 rows", func() bool { return len(e.output("live")) >= 100 })
	testutil.Eventually(t, 5*time.Second, "caught up", func() bool { q := e.info("live"); return q.Lag == 0 && q.Status == "running" })
	if got := e.output("live"); len(got) != 100 {
		t.Fatalf("%d rows", len(got))
	}
	e.waitView("per", func() string {
		var b strings.Builder
		for i := range 100 {
			fmt.Fprintf(&b, "[s%03d 1] ", i)
		}
		return strings.TrimSpace(b.String())
	}())
}

// TestPushQueryStateLimit: a push query whose state passes
// queries.max_state_bytes ends with the reason (a push query keeps
// nothing to pause), whichever operator it runs; under the limit it runs
// on.
func TestPushQueryStateLimit(t *testing.T) {
	e := newEnv(t)
	e.maxState = 4 << 10
	e.restart()
	if _, err := e.store.CreateStream(context.Background(), "other", streams.Retention{}); err != nil {
		t.Fatal(err)
	}
	for _, sql := range []string{
		"SELECT sensor, count(*) AS n FROM temps GROUP BY sensor EMIT CHANGES",
		"SELECT sensor, count(*) AS n FROM temps GROUP BY sensor, TUMBLING('10s') EMIT FINAL",
		"SELECT sensor, count(*) AS n FROM temps GROUP BY sensor, SESSION(INTERVAL 5 SECOND) EMIT FINAL",
		"SELECT t.sensor, o.sensor AS other FROM temps t JOIN other o ON t.sensor = o.sensor AND o._timestamp BETWEEN t._timestamp - INTERVAL 1 HOUR AND t._timestamp + INTERVAL 1 HOUR EMIT CHANGES",
	} {
		c, err := query.CompilePush(sql)
		if err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
		done := make(chan error, 1)
		go func() { done <- e.m.Push(context.Background(), c, (&pushed{}).emit) }()
		testutil.Eventually(t, 5*time.Second, "the push query started", func() bool { return e.m.Pushes() == 1 })
		var payloads []string
		for i := range 200 {
			payloads = append(payloads, fmt.Sprintf(`{"sensor":"s%03d"}`, i))
		}
		e.appendAt(time.Second, payloads...)
		// The join reads each stream up to the other's time.
		e.appendRecords("other", "other", base.Add(2*time.Second), []string{`{"sensor":"x"}`})
		select {
		case err := <-done:
			if !errors.Is(err, ErrStateLimit) || !strings.Contains(err.Error(), "the push query's state") || !strings.Contains(err.Error(), "it ended") {
				t.Fatalf("%s: ended with %v", sql, err)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("%s: still running past the state limit", sql)
		}
	}
}

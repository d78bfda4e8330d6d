package cq

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mqstream/mqstream/internal/testutil"
	"github.com/mqstream/mqstream/query"
	"github.com/mqstream/mqstream/streams"
)

// TestChangesQuery: with EMIT CHANGES each record outputs the updated row
// of each window holding it; the output carries the input offset it
// covers.
func TestChangesQuery(t *testing.T) {
	e := newEnv(t)
	e.create("CREATE STREAM ch AS SELECT sensor, count(*) AS n, max(temp) AS hi FROM temps GROUP BY sensor, HOPPING('10s', '5s') EMIT CHANGES")
	e.appendAt(time.Second, `{"sensor":"a","temp":1}`, `{"sensor":"b","temp":5}`)
	e.appendAt(6*time.Second, `{"sensor":"a","temp":3}`)
	e.waitOutput("ch",
		row(-5, 5, `"sensor":"a","n":1,"hi":1`), row(0, 10, `"sensor":"a","n":1,"hi":1`),
		row(-5, 5, `"sensor":"b","n":1,"hi":5`), row(0, 10, `"sensor":"b","n":1,"hi":5`),
		row(0, 10, `"sensor":"a","n":2,"hi":3`), row(5, 15, `"sensor":"a","n":1,"hi":3`))
	var last int64
	_ = e.store.Scan(context.Background(), "ch", 0, 0, func(r streams.Record) (bool, error) {
		last, _ = markerOf(&r, "ch", propInput)
		return true, nil
	})
	if last != 2 {
		t.Fatalf("last input offset marker %d", last)
	}
	testutil.Eventually(t, 5*time.Second, "two open windows", func() bool { q := e.info("ch"); return q.OpenWindows == 2 && q.Groups == 3 })
	e.clock.Advance(time.Hour)
	testutil.Eventually(t, 5*time.Second, "windows freed when input stops", func() bool { return e.info("ch").OpenWindows == 0 })
}

// TestFilterQuery: a query without a window is a filter and transform,
// one row per matching record.
func TestFilterQuery(t *testing.T) {
	e := newEnv(t)
	e.create("CREATE STREAM hot AS SELECT sensor, temp * 10 AS deci, _offset AS at FROM temps WHERE temp > 30")
	e.appendAt(time.Second, `{"sensor":"a","temp":31}`, `{"sensor":"b","temp":5}`, `not json`, `{"sensor":"c","temp":40.5}`)
	e.waitOutput("hot", `{"sensor":"a","deci":310,"at":0}`, `{"sensor":"c","deci":405,"at":3}`)
	// The output can be read a moment before the runner reports its figures.
	testutil.Eventually(t, 5*time.Second, "the query's figures", func() bool {
		q := e.info("hot")
		return q.RecordsIn == 4 && q.RowsOut == 2 && q.Status == "running"
	})
}

// TestChangesRestartsGiveTheUninterruptedOutput: the restart test of
// tumbling windows, for a query emitting changes (rate-limited by
// EMIT_INTERVAL too: held updates output at the input's end, the idle
// timeout short, are not output again after a restart) and for a filter.
func TestChangesRestartsGiveTheUninterruptedOutput(t *testing.T) {
	for _, sql := range []string{
		"CREATE STREAM %s AS SELECT sensor, count(*) AS n, sum(temp) AS total FROM temps GROUP BY sensor, HOP(_timestamp, INTERVAL 2 SECOND, INTERVAL 1 SECOND) EMIT CHANGES",
		"CREATE STREAM %s AS SELECT sensor, temp FROM temps WHERE temp > 50",
	} {
		for seed := int64(1); seed <= 3; seed++ {
			t.Run(fmt.Sprint(strings.Fields(sql)[5], seed), func(t *testing.T) { testRestarts(t, sql, seed) })
		}
	}
	const limited = "CREATE STREAM %s AS SELECT /*+ EMIT_INTERVAL('700ms') IDLE_TIMEOUT('300ms') */ sensor, count(*) AS n, sum(temp) AS total " +
		"FROM temps GROUP BY sensor, TUMBLE(_timestamp, INTERVAL 3 SECOND) EMIT CHANGES"
	for seed := int64(1); seed <= 3; seed++ {
		t.Run(fmt.Sprint("EMIT_INTERVAL", seed), func(t *testing.T) {
			e := testRestartsIdle(t, limited, seed, 300*time.Millisecond)
			// The last row of each window and key is the one every update
			// gives: no final value lost.
			e.sameLastRows(strings.Replace(fmt.Sprintf(limited, "every"), "EMIT_INTERVAL('700ms') ", "", 1), "live")
		})
	}
}

// pushed collects a push query's rows.
type pushed struct {
	mu   sync.Mutex
	rows []string
}

func (p *pushed) emit(o query.Output) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.rows = append(p.rows, strings.TrimSpace(fmt.Sprintln(o.Values...)))
	return nil
}

func (p *pushed) got() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return strings.Join(p.rows, "|")
}

// startPush runs push query sql until the returned stop, which checks
// that it ended without error; it returns once the query runs.
func (e *env) startPush(sql string) (p *pushed, stop func()) {
	e.t.Helper()
	c, err := query.CompilePush(sql)
	if err != nil {
		e.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	p = &pushed{}
	done := make(chan error, 1)
	n := e.m.Pushes()
	go func() { done <- e.m.Push(ctx, c, p.emit) }()
	testutil.Eventually(e.t, 5*time.Second, "the push query running", func() bool { return e.m.Pushes() == n+1 })
	return p, func() {
		e.t.Helper()
		cancel()
		if err := <-done; err != nil {
			e.t.Fatal(err)
		}
	}
}

// TestPushQuery: a push query sees records appended after it started,
// until cancelled; LIMIT ends it; EMIT FINAL pushes closed windows.
func TestPushQuery(t *testing.T) {
	e := newEnv(t)
	e.appendAt(0, `{"sensor":"old","temp":99}`)
	run := func(ctx context.Context, sql string, p *pushed) chan error {
		c, err := query.CompilePush(sql)
		if err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- e.m.Push(ctx, c, p.emit) }()
		return done
	}
	ctx, cancel := context.WithCancel(context.Background())
	changes, limited, final := &pushed{}, &pushed{}, &pushed{}
	d1 := run(ctx, "SELECT sensor, count(*) AS n FROM temps GROUP BY sensor EMIT CHANGES", changes)
	d2 := run(context.Background(), "SELECT sensor FROM temps WHERE temp > 10 EMIT CHANGES LIMIT 2", limited)
	d3 := run(ctx, "SELECT count(*) AS n FROM temps GROUP BY TUMBLING('10s') EMIT FINAL", final)
	// The queries start at the end of the input: wait until they have
	// read it, then append.
	testutil.Eventually(t, 5*time.Second, "push queries started", func() bool { return e.m.Pushes() == 3 })
	e.appendAt(time.Second, `{"sensor":"a","temp":20}`, `{"sensor":"a","temp":30}`, `{"sensor":"b","temp":40}`, `{"sensor":"c","temp":1}`)
	testutil.Eventually(t, 5*time.Second, "changes pushed", func() bool { return len(changes.got()) >= len("a 1|a 2|b 1|c 1") })
	if got := changes.got(); got != "a 1|a 2|b 1|c 1" {
		t.Fatalf("changes pushed: %s", got)
	}
	if err := <-d2; err != nil || limited.got() != "a|a" {
		t.Fatalf("limited push: %v %q", err, limited.got())
	}
	e.appendAt(10*time.Second, `{}`)
	testutil.Eventually(t, 5*time.Second, "a final row", func() bool {
		return strings.HasPrefix(final.got(), "2026-03-01 12:00:00 +0000 UTC 2026-03-01 12:00:10 +0000 UTC 4")
	})
	cancel()
	for _, d := range []chan error{d1, d3} {
		if err := <-d; err != nil {
			t.Fatalf("cancelled push: %v", err)
		}
	}
	c, _ := query.CompilePush("SELECT x FROM nowhere EMIT CHANGES")
	var qe *query.Error
	if err := e.m.Push(context.Background(), c, (&pushed{}).emit); !errors.As(err, &qe) || qe.Column != 15 {
		t.Fatalf("unknown stream: %v", err)
	}
}

// sameLastRows runs query sql (CREATE STREAM every ...) over the input to
// its end, and fails unless the last row of each window and key in it
// and in stream name are the same: an update held back by EMIT_INTERVAL
// is never lost.
func (e *env) sameLastRows(sql, name string) {
	e.t.Helper()
	e.create(sql)
	testutil.Eventually(e.t, 10*time.Second, "every update", func() bool {
		q := e.info("every")
		return q.Status == "running" && q.RecordsIn > 0 && q.Lag == 0 && q.OpenWindows == 0
	})
	lastOf := func(name string) map[string]string {
		out := map[string]string{}
		for _, row := range e.output(name) {
			out[row[:strings.Index(row, `,"n":`)]] = row
		}
		return out
	}
	got, every := lastOf(name), lastOf("every")
	if len(e.output(name)) >= len(e.output("every")) || !maps.Equal(got, every) {
		for k, v := range every {
			if got[k] != v {
				e.t.Errorf("last row %s, want %s", got[k], v)
			}
		}
		e.t.Fatalf("rate-limited: %d rows (%d groups), every update: %d rows (%d groups)", len(e.output(name)), len(got), len(e.output("every")), len(every))
	}
}

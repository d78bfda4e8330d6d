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

// viewRows returns view name's rows, one line each.
func (e *env) viewRows(name string) string {
	e.t.Helper()
	v, ok := e.m.View(name)
	if !ok {
		e.t.Fatalf("no view %s", name)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	rows, err := v.Rows(ctx)
	if err != nil {
		e.t.Fatal(err)
	}
	var out []string
	for _, r := range rows {
		for i, x := range r {
			if t, ok := x.(time.Time); ok {
				r[i] = t.Sub(base).String()
			}
		}
		out = append(out, fmt.Sprint(r))
	}
	return strings.Join(out, " ")
}

// waitView waits until view name's rows are want.
func (e *env) waitView(name, want string) {
	e.t.Helper()
	testutil.Eventually(e.t, 5*time.Second, "view "+name+": "+want, func() bool { return e.viewRows(name) == want })
}

// TestViews: views kept up to date with each record, with and without a
// window (whose windows the watermark does not close), equal after a
// restart (rebuilt from the source), and dropped.
func TestViews(t *testing.T) {
	e := newEnv(t)
	e.appendAt(time.Second, `{"sensor":"d1","temp":20}`, `{"sensor":"d2","temp":30}`)
	e.create("CREATE VIEW totals AS SELECT sensor, count(*) AS n, max(temp) AS hi FROM temps GROUP BY sensor HAVING n < 3")
	e.create("CREATE VIEW tens AS SELECT sensor, count(*) AS n FROM temps GROUP BY sensor, TUMBLING(INTERVAL 10 SECOND)")
	e.waitView("totals", "[d1 1 20] [d2 1 30]")
	e.appendAt(12*time.Second, `{"sensor":"d1","temp":25}`, `not json`)
	e.waitView("totals", "[<nil> 1 <nil>] [d1 2 25] [d2 1 30]")
	e.waitView("tens", "[0s 10s d1 1] [0s 10s d2 1] [10s 20s <nil> 1] [10s 20s d1 1]")
	e.clock.Advance(time.Hour) // the watermark passes every window: they stay
	e.appendAt(13*time.Second, `{"sensor":"d1","temp":1}`)
	e.waitView("totals", "[<nil> 1 <nil>] [d2 1 30]") // HAVING n < 3 drops d1
	want := "[0s 10s d1 1] [0s 10s d2 1] [10s 20s <nil> 1] [10s 20s d1 2]"
	e.waitView("tens", want)
	// The figures are reported after the batch's output is written.
	testutil.Eventually(t, 5*time.Second, "the view's figures", func() bool {
		q := e.info("tens")
		return q.Kind == query.KindView && q.Source == "temps" && q.Groups == 4 && q.OpenWindows == 2
	})

	e.restart()
	if got := e.viewRows("tens"); got != want { // waits for the rebuild
		t.Fatalf("after a restart: %s, want %s", got, want)
	}
	if got := e.viewRows("totals"); got != "[<nil> 1 <nil>] [d2 1 30]" {
		t.Fatalf("after a restart: %s", got)
	}
	if _, err := e.m.Pause(context.Background(), "tens"); err == nil || !strings.Contains(err.Error(), "a view cannot be paused") {
		t.Fatalf("pause a view: %v", err)
	}
	e.create("CREATE STREAM copy AS SELECT sensor FROM temps")
	if err := e.m.DropView(context.Background(), "copy"); err == nil || !strings.Contains(err.Error(), "copy is not a view: TERMINATE QUERY copy stops it") {
		t.Fatalf("DROP VIEW of a stream's query: %v", err)
	}
	if err := e.m.DropView(context.Background(), "tens"); err != nil {
		t.Fatal(err)
	}
	if err := e.m.DropView(context.Background(), "tens"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("second drop: %v", err)
	}
	if _, ok := e.m.View("tens"); ok {
		t.Fatal("dropped view still there")
	}
	e.restart()
	if _, ok := e.m.View("tens"); ok {
		t.Fatal("dropped view restored")
	}
	for sql, want := range map[string]string{
		"CREATE VIEW temps AS SELECT count(*) FROM temps":                               "temps is a stream: a view needs a name of its own (line 1, column 13)",
		"CREATE VIEW v AS SELECT sensor FROM temps":                                     "a view aggregates",
		"CREATE VIEW v AS SELECT count(*) FROM temps EMIT CHANGES":                      "a view is kept up to date with every record: leave out EMIT (line 1, column 45)",
		"CREATE VIEW v WITH (topic = 'x') AS SELECT count(*) FROM temps":                "a view takes no WITH options",
		"CREATE VIEW queries AS SELECT count(*) FROM temps":                             "queries is a statistics table",
		"CREATE VIEW totals AS SELECT count(*) FROM temps":                              "query totals already exists",
		"CREATE VIEW v AS SELECT count(*) FROM tmps":                                    `unknown stream "tmps"`,
		"CREATE VIEW v AS SELECT count(*) FROM temps GROUP BY SESSION(INTERVAL 1 HOUR)": "a view cannot use SESSION windows",
	} {
		_, err := e.m.Create(context.Background(), sql)
		var qe *query.Error
		if !errors.As(err, &qe) || !strings.Contains(qe.Error(), want) {
			t.Errorf("%s: %v, want %s", sql, err, want)
		}
	}
}

// TestViewRetention: a windowed view drops the windows starting before
// its source's oldest record kept, and a rebuilt view equals the live one.
func TestViewRetention(t *testing.T) {
	e := newEnv(t)
	if _, err := e.store.CreateStream(context.Background(), "few", streams.Retention{MaxRecords: 2}); err != nil {
		t.Fatal(err)
	}
	e.create("CREATE VIEW v AS SELECT count(*) AS n FROM few GROUP BY TUMBLING(INTERVAL 10 SECOND)")
	add := func(at time.Duration) {
		done := make(chan error, 1)
		if err := e.store.Submit(streams.AppendRequest{Stream: "few", Records: []streams.Record{{Topic: "few", Payload: []byte("{}")}}, Timestamp: base.Add(at),
			Done: func(_ uint64, err error) { done <- err }}); err != nil {
			t.Fatal(err)
		}
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
	add(time.Second)
	add(11 * time.Second)
	e.waitView("v", "[0s 10s 1] [10s 20s 1]")
	add(12 * time.Second)
	if _, err := e.store.EnforceRetention(context.Background()); err != nil {
		t.Fatal(err)
	}
	// Retention keeps the records at 11 and 12 s: the windows starting
	// before 11 s go, and are not made again.
	e.waitView("v", "")
	add(15 * time.Second)
	add(21 * time.Second)
	e.waitView("v", "[20s 30s 1]")
	// The figures are reported after the batch's output is written.
	testutil.Eventually(t, 5*time.Second, "1 group, 1 open window, no lag", func() bool {
		q := e.info("v")
		return q.Groups == 1 && q.OpenWindows == 1 && q.Lag == 0
	})
	e.restart()
	if got := e.viewRows("v"); got != "[20s 30s 1]" {
		t.Fatalf("rebuilt: %s", got)
	}
}

// fillTemps appends n readings over keys sensors to temps, 1000 per
// millisecond of time.
func (e *env) fillTemps(n, keys int) {
	for i := 0; i < n; i += 1000 {
		batch := make([]string, 1000)
		for j := range batch {
			batch[j] = fmt.Sprintf(`{"sensor":"s%d","temp":%d}`, (i+j)%keys, j)
		}
		e.appendAt(time.Duration(i)*time.Millisecond, batch...)
	}
}

// BenchmarkViewRebuild measures a view's rebuild at start-up: 200,000
// records over 10,000 keys read again from the store until the view
// answers (count, avg and max per key).
func BenchmarkViewRebuild(b *testing.B) {
	e := benchEnv(b, base, "temps")
	const records, keys = 200_000, 10_000
	e.fillTemps(records, keys)
	e.start()
	e.create("CREATE VIEW v AS SELECT sensor, count(*) AS n, avg(temp) AS mean, max(temp) AS hi FROM temps GROUP BY sensor")
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		e.restart()
		v, _ := e.m.View("v")
		rows, err := v.Rows(context.Background())
		if err != nil || len(rows) != keys {
			b.Fatalf("%d rows, %v", len(rows), err)
		}
	}
	b.StopTimer()
	e.m.Close()
	b.ReportMetric(float64(records)*float64(b.N)/b.Elapsed().Seconds(), "records/s")
}

// TestViewOfDeletedStream: a view whose source is gone answers its reads
// with the reason at once rather than waiting for a rebuild.
func TestViewOfDeletedStream(t *testing.T) {
	e := newEnv(t)
	if _, err := e.store.CreateStream(context.Background(), "gone", streams.Retention{}); err != nil {
		t.Fatal(err)
	}
	e.create("CREATE VIEW v AS SELECT count(*) AS n FROM gone")
	e.waitView("v", "")
	if err := e.store.DeleteStream(context.Background(), "gone"); err != nil {
		t.Fatal(err)
	}
	e.restart()
	v, _ := e.m.View("v")
	testutil.Eventually(t, 5*time.Second, "the view's error", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
		defer cancel()
		_, err := v.Rows(ctx)
		return err != nil && strings.Contains(err.Error(), "view v cannot be read: stream gone")
	})
	if q := e.info("v"); q.Status != "error" {
		t.Fatalf("info %+v", q)
	}
}

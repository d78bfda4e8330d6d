package cq

import (
	"context"
	"errors"
	"fmt"
	"math/rand"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mqstream/mqstream/internal/testutil"
	"github.com/mqstream/mqstream/query"
	"github.com/mqstream/mqstream/streams"
)

// env is a real store in a temporary directory and a manager over it, on
// a fake clock (record timestamps are given explicitly).
type env struct {
	t     testing.TB
	store *streams.Store
	clock *testutil.Clock
	pub   *fakePublisher
	m     *Manager
	// crashNext makes the next output stop its query before the hint, as
	// a crash would; crashed tells it happened.
	crashNext, crashed atomic.Bool
	// maxState is Options.MaxStateBytes at the next start.
	maxState int64
}

const idle = 30 * time.Second

func newEnv(t *testing.T) *env {
	t.Helper()
	store, err := streams.Open(streams.Options{Dir: t.TempDir(), Sync: streams.SyncNone, Logger: testutil.Logger()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	if _, err := store.CreateStream(context.Background(), "temps", streams.Retention{}); err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, store: store, clock: testutil.NewClock(base), pub: &fakePublisher{}}
	e.start()
	return e
}

// start starts a manager (again), restoring the kept queries.
func (e *env) start() {
	e.t.Helper()
	m, err := New(Options{Reader: e.store, Writer: e.store, KV: e.store.KV("queries"), Publisher: e.pub, IdleTimeout: idle, Tick: 5 * time.Millisecond,
		HintInterval: time.Nanosecond, Now: e.clock.Now, Logger: testutil.Logger(), MaxStateBytes: e.maxState,
		afterOutput: func(string) bool {
			if e.crashNext.CompareAndSwap(true, false) {
				e.crashed.Store(true)
				return true
			}
			return false
		}})
	if err != nil {
		e.t.Fatal(err)
	}
	if err := m.Start(); err != nil {
		e.t.Fatal(err)
	}
	e.m = m
	e.t.Cleanup(func() { m.Close() })
}

func (e *env) restart() {
	e.t.Helper()
	if err := e.m.Close(); err != nil {
		e.t.Fatal(err)
	}
	e.start()
}

// appendAt appends payloads to temps stamped base+at.
func (e *env) appendAt(at time.Duration, payloads ...string) {
	e.t.Helper()
	e.appendRecords("temps", "sensors", base.Add(at), payloads)
}

// appendRecords appends payloads to stream name on topic, stamped ts
// (zero: when stored), as one request, and waits until it is durable.
func (e *env) appendRecords(name, topic string, ts time.Time, payloads []string) {
	e.t.Helper()
	recs := make([]streams.Record, len(payloads))
	for i, p := range payloads {
		recs[i] = streams.Record{Topic: topic, Payload: []byte(p)}
	}
	done := make(chan error, 1)
	err := e.store.Submit(streams.AppendRequest{Stream: name, Records: recs, Timestamp: ts, Done: func(_ uint64, err error) { done <- err }})
	if err == nil {
		err = <-done
	}
	if err != nil {
		e.t.Fatal(err)
	}
}

func (e *env) create(sql string) {
	e.t.Helper()
	if _, err := e.m.Create(context.Background(), sql); err != nil {
		e.t.Fatal(err)
	}
}

// output returns the payloads of a stream.
func (e *env) output(name string) []string {
	e.t.Helper()
	var out []string
	err := e.store.Scan(context.Background(), name, 0, 0, func(r streams.Record) (bool, error) {
		out = append(out, string(r.Payload))
		return true, nil
	})
	if err != nil && !errors.Is(err, streams.ErrStreamNotFound) {
		e.t.Fatal(err)
	}
	return out
}

// waitOutput waits until stream name holds want rows and checks them.
func (e *env) waitOutput(name string, want ...string) {
	e.t.Helper()
	testutil.Eventually(e.t, 5*time.Second, fmt.Sprintf("%d rows in %s", len(want), name), func() bool { return len(e.output(name)) >= len(want) })
	if got := e.output(name); strings.Join(got, "\n") != strings.Join(want, "\n") {
		e.t.Fatalf("stream %s:\n%s\nwant\n%s", name, strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func (e *env) info(id string) query.QueryInfo {
	for _, q := range e.m.List() {
		if q.ID == id {
			return q
		}
	}
	e.t.Fatalf("no query %s", id)
	return query.QueryInfo{}
}

const hotSQL = "CREATE STREAM hot AS SELECT sensor, count(*) AS n, avg(temp) AS mean, max(temp) AS hi FROM temps " +
	"WHERE temp IS NOT NULL GROUP BY sensor, TUMBLING(INTERVAL 10 SECOND)"

func row(from, to int, rest string) string {
	ts := func(s int) string { return base.Add(time.Duration(s) * time.Second).Format(time.RFC3339) }
	return fmt.Sprintf(`{"window_start":%q,"window_end":%q,%s}`, ts(from), ts(to), rest)
}

// TestTumblingQueryEndToEnd runs a query over a real store: windows close
// on the next record past their end, or on the idle timeout when input
// stops; a record for a window already closed is counted as late.
func TestTumblingQueryEndToEnd(t *testing.T) {
	e := newEnv(t)
	e.appendAt(time.Second, `{"sensor":"s1","temp":20}`, `{"sensor":"s2","temp":30}`, `not json`)
	e.create(hotSQL)
	e.appendAt(9*time.Second, `{"sensor":"s1","temp":23}`, `{"sensor":"s3"}`)
	e.appendAt(10*time.Second, `{"sensor":"s1","temp":5}`)
	e.waitOutput("hot",
		row(0, 10, `"sensor":"s1","n":2,"mean":21.5,"hi":23`),
		row(0, 10, `"sensor":"s2","n":1,"mean":30,"hi":30`))
	e.appendAt(15*time.Second, `{"sensor":"s2","temp":7}`)
	testutil.Eventually(t, 5*time.Second, "all read", func() bool { return e.info("hot").Offset == 7 })
	// Input stops: the window [10, 20) closes once now - idle reaches 20 s.
	e.clock.Advance(20*time.Second + idle - time.Millisecond)
	testutil.Eventually(t, 5*time.Second, "the idle watermark", func() bool {
		return e.info("hot").Watermark.Equal(base.Add(20*time.Second - time.Millisecond))
	})
	if got := len(e.output("hot")); got != 2 {
		t.Fatalf("%d rows before the idle timeout", got)
	}
	e.clock.Advance(time.Millisecond)
	e.waitOutput("hot",
		row(0, 10, `"sensor":"s1","n":2,"mean":21.5,"hi":23`),
		row(0, 10, `"sensor":"s2","n":1,"mean":30,"hi":30`),
		row(10, 20, `"sensor":"s1","n":1,"mean":5,"hi":5`),
		row(10, 20, `"sensor":"s2","n":1,"mean":7,"hi":7`))
	// The store stamps this record 15 s (timestamps never go back): its
	// window has closed.
	e.appendAt(12*time.Second, `{"sensor":"s1","temp":99}`)
	testutil.Eventually(t, 5*time.Second, "a late record counted", func() bool { return e.info("hot").Late == 1 })
	q := e.info("hot")
	if q.Status != "running" || q.Source != "temps" || q.Sink != "hot" || q.RowsOut != 4 || q.OpenWindows != 0 || q.Lag != 0 {
		t.Fatalf("query info %+v", q)
	}
	var props []streams.UserProperty
	_ = e.store.Scan(context.Background(), "hot", 0, 1, func(r streams.Record) (bool, error) {
		props = r.UserProperties
		if r.Topic != "hot" || r.ContentType != "application/json" {
			t.Errorf("record %+v", r)
		}
		return true, nil
	})
	if len(props) != 2 || props[0] != (streams.UserProperty{Key: propQuery, Value: "hot"}) {
		t.Fatalf("markers %+v", props)
	}
}

// TestCreateErrors: statements that cannot run give SQL errors with the
// position of the problem.
func TestCreateErrors(t *testing.T) {
	e := newEnv(t)
	e.create(hotSQL)
	for sql, want := range map[string]string{
		"CREATE STREAM x AS SELECT count(*) FROM tmps GROUP BY TUMBLING(INTERVAL 1 SECOND)":      `unknown stream "tmps": a continuous query reads an existing stream (SHOW STREAMS lists them) (line 1, column 41)`,
		"CREATE STREAM temps AS SELECT count(*) FROM temps GROUP BY TUMBLING(INTERVAL 1 SECOND)": "a query cannot read the stream it writes (line 1, column 45)",
		strings.Replace(hotSQL, "hot", "hot", 1):                                                 "stream hot already exists",
		"CREATE STREAM x AS SELECT count(*) FROM temps GROUP BY TUMBLING(INTERVAL 1 YEAR)":       `bad window size "1 year"`,
	} {
		_, err := e.m.Create(context.Background(), sql)
		var qe *query.Error
		if !errors.As(err, &qe) || qe.Code != query.CodeSQL || !strings.Contains(qe.Error(), want) {
			t.Errorf("%s: %v, want %s", sql, err, want)
		}
	}
	if n := len(e.m.List()); n != 1 {
		t.Fatalf("%d queries after failed creations", n)
	}
}

// TestTerminateAndRestore: queries are restored when the manager starts;
// a terminated one is not, and its output stream stays.
func TestTerminateAndRestore(t *testing.T) {
	e := newEnv(t)
	e.create(hotSQL)
	e.create("CREATE STREAM counts AS SELECT count(*) AS n FROM temps GROUP BY TUMBLING(INTERVAL 1 MINUTE)")
	e.appendAt(time.Second, `{"sensor":"s1","temp":1}`)
	e.appendAt(70*time.Second, `{"sensor":"s1","temp":2}`)
	e.waitOutput("counts", row(0, 60, `"n":1`))
	e.restart()
	if ids := fmt.Sprintf("%d %s %s", len(e.m.List()), e.info("counts").ID, e.info("hot").ID); ids != "2 counts hot" {
		t.Fatalf("restored %s", ids)
	}
	if err := e.m.Terminate(context.Background(), "counts"); err != nil {
		t.Fatal(err)
	}
	err := e.m.Terminate(context.Background(), "counts")
	if !errors.Is(err, ErrNotFound) {
		t.Fatalf("second terminate: %v", err)
	}
	e.restart()
	if n := len(e.m.List()); n != 1 {
		t.Fatalf("%d queries after terminate and restart", n)
	}
	e.waitOutput("counts", row(0, 60, `"n":1`))
}

// TestCrashBetweenOutputAndHint: the query stops right after its output
// is durable and before its progress hint is written, as a crash would;
// restarted, it neither repeats nor loses a row.
func TestCrashBetweenOutputAndHint(t *testing.T) {
	e := newEnv(t)
	e.create(hotSQL)
	e.crashNext.Store(true)
	e.appendAt(time.Second, `{"sensor":"s1","temp":1}`)
	e.appendAt(11*time.Second, `{"sensor":"s1","temp":2}`)
	e.waitOutput("hot", row(0, 10, `"sensor":"s1","n":1,"mean":1,"hi":1`))
	if _, ok, _ := e.store.KV("queries").Get(hintKey("hot")); ok {
		t.Fatal("the hint was written: the crash came too late")
	}
	e.appendAt(21*time.Second, `{"sensor":"s1","temp":3}`)
	e.restart()
	e.waitOutput("hot",
		row(0, 10, `"sensor":"s1","n":1,"mean":1,"hi":1`),
		row(10, 20, `"sensor":"s1","n":1,"mean":2,"hi":2`))
	testutil.Eventually(t, 5*time.Second, "the query caught up", func() bool {
		q := e.info("hot")
		return q.Offset == 3 && q.Watermark.Equal(base.Add(21*time.Second))
	})
	if n := len(e.output("hot")); n != 2 {
		t.Fatalf("%d rows", n)
	}
}

// TestRestartsGiveTheUninterruptedOutput appends random records while the
// manager is stopped and started again at random points (some with the
// hint lost, some right after an output, before its hint), then compares
// the output with that of the same query run once, uninterrupted, over the
// same input: byte for byte.
func TestRestartsGiveTheUninterruptedOutput(t *testing.T) {
	const sql = "CREATE STREAM %s AS SELECT sensor, count(*) AS n, sum(temp) AS total, min(temp) AS lo FROM temps " +
		"GROUP BY sensor, TUMBLE(_timestamp, INTERVAL 2 SECOND) HAVING n > 1"
	for seed := int64(1); seed <= 5; seed++ {
		t.Run(fmt.Sprint("seed", seed), func(t *testing.T) { testRestarts(t, sql, seed) })
	}
}

// TestHoppingRestartsGiveTheUninterruptedOutput is the same for hopping
// windows: a restart reads input again from the first window not output,
// which starts before the watermark.
func TestHoppingRestartsGiveTheUninterruptedOutput(t *testing.T) {
	const sql = "CREATE STREAM %s AS SELECT sensor, count(*) AS n, sum(temp) AS total, max(temp) AS hi FROM temps " +
		"GROUP BY sensor, HOP(_timestamp, INTERVAL 3 SECOND, INTERVAL 1 SECOND) HAVING n > 1"
	for seed := int64(1); seed <= 5; seed++ {
		t.Run(fmt.Sprint("seed", seed), func(t *testing.T) { testRestarts(t, sql, seed) })
	}
}

// TestSessionRestartsGiveTheUninterruptedOutput is the same for session
// windows: a restart reads input again from the start of the oldest
// session open at the watermark its output carries.
func TestSessionRestartsGiveTheUninterruptedOutput(t *testing.T) {
	const sql = "CREATE STREAM %s AS SELECT sensor, count(*) AS n, sum(temp) AS total, max(temp) AS hi FROM temps " +
		"GROUP BY sensor, SESSION(_timestamp, INTERVAL 1 SECOND, INTERVAL 3 SECOND) HAVING n > 1"
	for seed := int64(1); seed <= 5; seed++ {
		t.Run(fmt.Sprint("seed", seed), func(t *testing.T) { testRestarts(t, sql, seed) })
	}
}

// TestEventTimeRestartsGiveTheUninterruptedOutput is the same for
// windows and sessions on event time: the payload's "at", up to 1.5 s
// before the append time (so out of order, and some records late past
// the grace), an idle timeout of 1 s (that the node's clock, kept at the
// newest append time, reaches at the input's end) or 3 s.
func TestEventTimeRestartsGiveTheUninterruptedOutput(t *testing.T) {
	for _, win := range []string{
		"TUMBLE(at, INTERVAL 2 SECOND)",
		"HOP(at, INTERVAL 3 SECOND, INTERVAL 1 SECOND)",
		"SESSION(at, INTERVAL 1 SECOND, INTERVAL 3 SECOND)",
	} {
		for seed := int64(1); seed <= 4; seed++ {
			// The idle timeout rules the watermark with 1 s, the newest
			// event time with 3 s.
			idle := []string{"1s", "3s"}[seed%2]
			sql := "CREATE STREAM %s WITH (late = TRUE) AS SELECT /*+ GRACE('500ms') IDLE_TIMEOUT('" + idle + "') */ sensor, count(*) AS n, sum(temp) AS total, max(temp) AS hi FROM temps " +
				"GROUP BY sensor, " + win + " HAVING n > 1"
			t.Run(fmt.Sprint(strings.Fields(win)[0], seed), func(t *testing.T) {
				e := testRestarts(t, sql, seed)
				e.sameLate(strings.HasPrefix(win, "HOP"))
			})
		}
	}
}

// sameLate fails unless the late streams of queries live and reference
// hold the late records, each once, in input order, and there are some
// (unless hop: a record is late when all its windows have closed, and
// with 3 s hopping windows, jitter of 1.5 s never makes one).
func (e *env) sameLate(hop bool) {
	e.t.Helper()
	if e.info("reference").Late == 0 && !hop {
		e.t.Fatal("no late records: a weak test")
	}
	live, ref := e.output("live_late"), e.output("reference_late")
	if strings.Join(live, "\n") != strings.Join(ref, "\n") || int64(len(ref)) != e.info("reference").Late {
		e.t.Fatalf("late records: live %d, reference %d, counted %d", len(live), len(ref), e.info("reference").Late)
	}
}

func testRestarts(t *testing.T, sql string, seed int64) *env {
	return testRestartsIdle(t, sql, seed, 0)
}

// testRestartsIdle is testRestarts where, if idle is not 0 (the query's
// IDLE_TIMEOUT), the clock reaches each batch's time before it is
// appended and the test waits until the running query has seen it (its
// watermark now - idle): what the query does at the input's end happens
// between records, and restarts follow it.
func testRestartsIdle(t *testing.T, sql string, seed int64, idle time.Duration) *env {
	e := newEnv(t)
	e.create(fmt.Sprintf(sql, "live"))
	rng := rand.New(rand.NewSource(seed))
	jitter := rand.New(rand.NewSource(-seed)) // event time before append time
	at := time.Duration(0)
	paused := false
	for i := 0; i < 60; i++ {
		at += time.Duration(rng.Intn(700)) * time.Millisecond
		var batch []string
		for j := rng.Intn(5); j >= 0; j-- {
			event := base.Add(at - time.Duration(jitter.Intn(1500))*time.Millisecond).UnixMilli()
			batch = append(batch, fmt.Sprintf(`{"sensor":"s%d","temp":%d,"at":%d}`, rng.Intn(4), rng.Intn(100), event))
		}
		// The clock never runs ahead of the records appended next: they
		// are stamped when stored.
		if now := e.clock.Now(); now.Before(base.Add(at)) {
			e.clock.Advance(base.Add(at).Sub(now))
		}
		if idle > 0 && !paused {
			testutil.Eventually(t, 5*time.Second, "the query at the input's end", func() bool {
				q := e.info("live")
				return e.crashed.Load() || q.Status == "running" && !q.Watermark.Before(base.Add(at-idle))
			})
		}
		e.appendAt(at, batch...)
		switch c := rng.Intn(6); c {
		default:
			e.disturb(c, hintKey("live"), inputKey("live"), sessionKey("live"), eventKey("live"), flushKey("live"), eventChangesKey("live"))
		case 3, 4:
			// PAUSE or RESUME; a restart keeps a paused query paused.
			paused = !paused
			e.setPaused("live", paused)
		}
		if paused && e.info("live").Status != statusPaused {
			t.Fatalf("a paused query is %s", e.info("live").Status)
		}
		e.afterCrash(rng)
	}
	e.crashNext.Store(false)
	e.afterCrash(nil)
	if paused {
		e.setPaused("live", false)
	}
	e.clock.Advance(at + time.Hour)
	e.create(fmt.Sprintf(sql, "reference"))
	testutil.Eventually(t, 10*time.Second, "both queries caught up", func() bool {
		for _, id := range []string{"live", "reference"} {
			q := e.info(id)
			if q.Status != "running" || q.Lag != 0 || q.OpenWindows != 0 || q.RecordsIn == 0 && id == "reference" {
				return false
			}
		}
		return true
	})
	e.sameOutput("live", "reference")
	return e
}

// disturb restarts the manager (what 0), makes the next output crash
// (1), or restarts it without the progress hints at keys (2).
func (e *env) disturb(what int, keys ...[]byte) {
	e.t.Helper()
	switch what {
	case 0:
		e.restart()
	case 1:
		e.crashNext.Store(true)
	case 2:
		if err := e.m.Close(); err != nil {
			e.t.Fatal(err)
		}
		var ws []streams.KVWrite
		for _, k := range keys {
			ws = append(ws, streams.KVWrite{Key: k, Delete: true})
		}
		if err := e.store.KV("queries").Write(context.Background(), ws...); err != nil {
			e.t.Fatal(err)
		}
		e.start()
	}
}

// afterCrash restarts the manager if a query has crashed (it has
// stopped, as a crashed node does): one time in three with rng, always
// with nil.
func (e *env) afterCrash(rng *rand.Rand) {
	e.t.Helper()
	if e.crashed.Load() && (rng == nil || rng.Intn(3) == 0) {
		e.crashed.Store(false)
		e.restart()
	}
}

// sameOutput fails unless streams live and ref hold the same records, at
// least 20.
func (e *env) sameOutput(live, ref string) {
	e.t.Helper()
	got, want := e.output(live), e.output(ref)
	if len(want) < 20 {
		e.t.Fatalf("only %d reference rows: a weak test", len(want))
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		e.t.Fatalf("restarted output differs from the uninterrupted one:\nlive (%d)\n%s\nreference (%d)\n%s", len(got), strings.Join(got, "\n"), len(want), strings.Join(want, "\n"))
	}
}

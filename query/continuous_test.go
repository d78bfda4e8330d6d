package query

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/mqstream/mqstream/streams"
)

func TestCompileContinuous(t *testing.T) {
	c, err := CompileContinuous("CREATE STREAM hot WITH (topic = 'alerts/hot') AS\n" +
		"SELECT sensor, count(*) AS n, avg(temp) AS mean FROM temps WHERE temp > 20\n" +
		"GROUP BY sensor, TUMBLING(INTERVAL 10 SECOND) HAVING n > 1 EMIT FINAL;")
	if err != nil {
		t.Fatal(err)
	}
	if c.Name != "hot" || c.Topic != "alerts/hot" || c.Source != "temps" || c.Window != (Window{Size: 10 * time.Second}) {
		t.Fatalf("compiled %+v", c)
	}
	if got := strings.Join(c.Columns, ","); got != "window_start,window_end,sensor,n,mean" {
		t.Fatalf("columns %s", got)
	}
	for sql, want := range map[string]Window{
		"CREATE STREAM w AS SELECT count(*) FROM s GROUP BY TUMBLE(_timestamp, INTERVAL 1 MINUTE, INTERVAL 15 SECOND)": {Size: time.Minute, Offset: 15 * time.Second},
		"create stream w as select count(*) from s group by tumblingwindow(ss, 10)":                                    {Size: 10 * time.Second},
		"CREATE STREAM w AS SELECT count(*) FROM s GROUP BY TUMBLING('250ms')":                                         {Size: 250 * time.Millisecond},
		"CREATE STREAM w AS SELECT count(*) FROM s GROUP BY TUMBLING(INTERVAL 2 HOURS)":                                {Size: 2 * time.Hour},
		"CREATE STREAM w AS SELECT count(*) FROM s GROUP BY HOPPING(INTERVAL 10 SECOND, INTERVAL 5 SECOND)":            {Size: 10 * time.Second, Slide: 5 * time.Second},
		"CREATE STREAM w AS SELECT count(*) FROM s GROUP BY HOP(_timestamp, INTERVAL 1 HOUR, INTERVAL 10 SECOND)":      {Size: time.Hour, Slide: 10 * time.Second},
		"CREATE STREAM w AS SELECT count(*) FROM s GROUP BY HOPPINGWINDOW(ss, 10, 5)":                                  {Size: 10 * time.Second, Slide: 5 * time.Second},
		"CREATE STREAM w AS SELECT count(*) FROM s GROUP BY HOPPING('10s', '10s')":                                     {Size: 10 * time.Second},
	} {
		c, err := CompileContinuous(sql)
		if err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
		if c.Window != want {
			t.Errorf("%s: window %+v, want %+v", sql, c.Window, want)
		}
	}
}

// TestContinuousErrors: bad statements give SQL errors that point into
// the text as the user wrote it, including after the peeled parts.
func TestContinuousErrors(t *testing.T) {
	for _, tc := range []struct{ sql, code, at, msg string }{
		{"CREATE STREAM hot AS SELECT sensor,, count(*) FROM t GROUP BY sensor, TUMBLING(INTERVAL 10 SECOND)", CodeSyntax, "1:36", `syntax error at ","`},
		{"CREATE STREAM `héat` AS\n  SELECT sensor, count(*) FROM t\n  GROUP BY sensor, TUMBLING(INTERVAL 10 SECOND) HAVING count(*) >", CodeSyntax, "3:66", "unexpected end"},
		{"CREATE STREAM `héat` AS SELECT sensor, count(*) FRM t GROUP BY sensor, TUMBLING(INTERVAL 10 SECOND)", CodeSyntax, "1:53", `syntax error at "t"`},
		{"CREATE STREAM hot AS SELECT sensor FROM t GROUP BY sensor, TUMBLING(INTERVAL 10 FORTNIGHT)", CodeSQL, "1:69", `bad window size "10 fortnight"`},
		{"CREATE STREAM hot AS SELECT sensor FROM t GROUP BY sensor, TUMBLING(INTERVAL x SECOND)", CodeSQL, "1:69", "INTERVAL <whole number> <unit>"},
		{"CREATE STREAM hot AS SELECT sensor, count(*) FROM t GROUP BY sensor", CodeSQL, "1:53", "needs a window"},
		{"SELECT sensor FROM t GROUP BY sensor, SESSION(INTERVAL 10 SECOND, INTERVAL 5 SECOND) EMIT FINAL", CodeSQL, "1:67", "maximum length (5s) is shorter than its gap (10s)"},
		{"CREATE STREAM hot AS SELECT /*+ GRACE('5s') */ count(*) FROM t GROUP BY TUMBLE(_timestamp, INTERVAL 10 SECOND) EMIT CHANGES", CodeSQL, "1:33", "GRACE applies to windows with EMIT FINAL, or EMIT CHANGES on event time"},
		{"CREATE STREAM hot WITH (late = TRUE) AS SELECT count(*) FROM t GROUP BY TUMBLING(INTERVAL 10 SECOND) EMIT CHANGES", CodeSQL, "1:25", "late = TRUE applies to windows with EMIT FINAL, or EMIT CHANGES on event time"},
		{"CREATE STREAM hot AS SELECT count(*) FROM t GROUP BY TUMBLE(ts > 3, INTERVAL 10 SECOND)", CodeSQL, "1:61", "the window's time is a bool"},
		{"CREATE STREAM hot AS SELECT count(*) FROM t GROUP BY HOP(1 + 2, INTERVAL 10 SECOND, INTERVAL 5 SECOND)", CodeSQL, "1:58", "the window's time is a constant"},
		{"CREATE VIEW v AS SELECT count(*) FROM t GROUP BY TUMBLE(ts, INTERVAL 10 SECOND)", CodeSQL, "1:13", "a view's windows run on _timestamp"},
		{"CREATE STREAM hot AS SELECT /*+ GRACE('5 s') */ count(*) FROM t GROUP BY TUMBLE(ts, INTERVAL 10 SECOND)", CodeSQL, "1:33", "GRACE('5 s'): a duration such as '5s'"},
		{"CREATE STREAM hot AS SELECT /*+ GRACE('5s') GRACE('1s') */ count(*) FROM t GROUP BY TUMBLE(ts, INTERVAL 10 SECOND)", CodeSQL, "1:45", "hint GRACE is given twice"},
		{"CREATE STREAM hot AS SELECT /*+ WATERMARK('5s') */ count(*) FROM t GROUP BY TUMBLE(ts, INTERVAL 10 SECOND)", CodeSQL, "1:33", "unknown hint WATERMARK: the hints are GRACE, IDLE_TIMEOUT, START and EMIT_INTERVAL"},
		{"CREATE STREAM hot AS SELECT /*+ GRACE 5s */ count(*) FROM t GROUP BY TUMBLE(ts, INTERVAL 10 SECOND)", CodeSQL, "1:33", "a hint is written NAME('value')"},
		{"CREATE STREAM hot AS SELECT /*+ EMIT_INTERVAL('1s') */ count(*) FROM t GROUP BY TUMBLE(ts, INTERVAL 10 SECOND)", CodeSQL, "1:33", "EMIT_INTERVAL rate-limits the updates of each group"},
		{"SELECT /*+ EMIT_INTERVAL('1s') */ sensor FROM t EMIT CHANGES", CodeSQL, "1:12", "EMIT_INTERVAL rate-limits the updates of each group"},
		{"SELECT /*+ EMIT_INTERVAL('0s') */ count(*) FROM t EMIT CHANGES", CodeSQL, "1:12", "EMIT_INTERVAL must be longer than 0"},
		{"SELECT /*+ EMIT_INTERVAL('soon') */ count(*) FROM t EMIT CHANGES", CodeSQL, "1:12", "EMIT_INTERVAL('soon'): a duration"},
		{"SELECT /*+ EMIT_INTERVAL('1s') */ k, count(*) FROM t GROUP BY k, SESSION(INTERVAL 1 SECOND) EMIT CHANGES", CodeSQL, "1:12", "EMIT_INTERVAL rate-limits"},
		{"CREATE VIEW v AS SELECT /*+ EMIT_INTERVAL('1s') */ k, count(*) FROM t GROUP BY k", CodeSQL, "1:29", "EMIT_INTERVAL rate-limits"},
		{"CREATE STREAM hot AS SELECT /*+ START('middle') */ count(*) FROM t GROUP BY TUMBLE(ts, INTERVAL 10 SECOND)", CodeSQL, "1:33", "START('middle'): 'earliest'"},
		{"CREATE STREAM hot AS SELECT /*+ IDLE_TIMEOUT('0s') */ count(*) FROM t GROUP BY TUMBLE(ts, INTERVAL 10 SECOND)", CodeSQL, "1:33", "IDLE_TIMEOUT must be longer than 0"},
		{"CREATE STREAM hot AS SELECT /*+ GRACE('5s') */ sensor FROM t", CodeSQL, "1:33", "GRACE applies to windows"},
		{"SELECT /*+ START('latest') */ count(*) FROM t GROUP BY TUMBLING(INTERVAL 1 SECOND) EMIT FINAL", CodeSQL, "1:12", "START applies to persistent queries"},
		{"CREATE VIEW v AS SELECT /*+ GRACE('1s') */ count(*) FROM t GROUP BY TUMBLING(INTERVAL 1 SECOND)", CodeSQL, "1:29", "GRACE does not apply to views"},
		{"CREATE STREAM hot WITH (late = 3) AS SELECT count(*) FROM t GROUP BY TUMBLE(ts, INTERVAL 10 SECOND)", CodeSQL, "1:32", "late is TRUE"},
		{"CREATE STREAM hot WITH (late = TRUE) AS SELECT sensor FROM t", CodeSQL, "1:25", "late = TRUE applies to windows with EMIT FINAL"},
		{"SELECT sensor FROM t GROUP BY sensor, SESSION() EMIT FINAL", CodeSQL, "1:39", "SESSION takes the time, the gap"},
		{"SELECT sensor FROM t GROUP BY sensor, SLIDINGWINDOW(ss, 10) EMIT FINAL", CodeSQL, "1:39", "SLIDINGWINDOW windows are not supported"},
		{"CREATE STREAM hot AS SELECT sensor FROM t GROUP BY sensor, HOPPING(INTERVAL 5 SECOND, INTERVAL 10 SECOND)", CodeSQL, "1:87", "the slide (10s) is longer than the window (5s)"},
		{"CREATE STREAM hot AS SELECT sensor FROM t GROUP BY sensor, HOPPING(INTERVAL 1 DAY, INTERVAL 7 MILLISECOND)", CodeSQL, "1:84", "made of 86400000 panes of 1ms"},
		{"CREATE STREAM hot AS SELECT sensor FROM t GROUP BY sensor, HOPPING(INTERVAL 5 SECOND)", CodeSQL, "1:60", "HOPPING takes the window size and the slide"},
		{"CREATE STREAM hot AS SELECT sensor FROM t GROUP BY sensor, HOPPINGWINDOW(ss, 10)", CodeSQL, "1:60", "HOPPINGWINDOW takes a unit"},
		{"CREATE STREAM hot AS SELECT sensor FROM t GROUP BY sensor, HOPPINGWINDOW(yy, 10, 5)", CodeSQL, "1:74", "HOPPINGWINDOW takes a unit"},
		{"CREATE STREAM hot AS SELECT sensor FROM t WHERE window_end > 0 GROUP BY sensor, HOPPING('10s', '5s')", CodeSQL, "1:49", "window_end cannot be used in WHERE or GROUP BY with hopping or session windows"},
		{"CREATE STREAM hot AS SELECT * FROM t GROUP BY TUMBLING(INTERVAL 10 SECOND)", CodeSQL, "1:29", "SELECT *"},
		{"CREATE STREAM hot AS SELECT now() FROM t GROUP BY TUMBLING(INTERVAL 10 SECOND)", CodeSQL, "1:29", "now() is not allowed"},
		{"CREATE STREAM hot AS SELECT count(*) FROM t", CodeSQL, "1:29", "a continuous query that aggregates needs a window"},
		{"CREATE STREAM hot AS SELECT sensor FROM t EMIT FINAL", CodeSQL, "1:43", "EMIT FINAL needs a window"},
		{"CREATE STREAM hot AS SELECT sensor FROM t LIMIT 3", CodeSQL, "1:43", "LIMIT is not supported in continuous queries"},
		{"SELECT sensor, count(*) FROM t GROUP BY sensor EMIT FINAL", CodeSQL, "1:48", "EMIT FINAL needs a window"},
		{"SELECT sensor FROM t LIMIT 1, 2 EMIT CHANGES", CodeSQL, "1:28", "OFFSET is not supported in push queries"},
		{"SELECT sensor FROM t LIMIT -1 EMIT CHANGES", CodeSQL, "1:29", "LIMIT must be a non-negative integer"},
		{"SELECT *, count(*) FROM t GROUP BY TUMBLING('1s') EMIT CHANGES", CodeSQL, "1:8", "SELECT * is not supported with GROUP BY or a window"},
		{"SELECT window_start FROM t EMIT CHANGES", CodeSQL, "1:8", "unknown column"},
		{"CREATE STREAM hot AS SELECT count(*) FROM t GROUP BY TUMBLING(INTERVAL 10 SECOND) EMIT SOMETIMES", CodeSQL, "1:88", "EMIT must be followed by CHANGES or FINAL"},
		{"CREATE STREAM hot WITH (qos = 1) AS SELECT count(*) FROM t GROUP BY TUMBLING(INTERVAL 1 SECOND)", CodeSQL, "1:25", "give a topic too"},
		{"CREATE STREAM hot WITH (topic = 'a', qos = 3) AS SELECT count(*) FROM t GROUP BY TUMBLING(INTERVAL 1 SECOND)", CodeSQL, "1:44", "qos is 0, 1 or 2"},
		{"CREATE STREAM hot WITH (topic = 'a', retain = 1) AS SELECT count(*) FROM t GROUP BY TUMBLING(INTERVAL 1 SECOND)", CodeSQL, "1:47", "retain is TRUE or FALSE"},
		{"CREATE STREAM hot WITH (topic = 'a', topic = 'b') AS SELECT count(*) FROM t GROUP BY TUMBLING(INTERVAL 1 SECOND)", CodeSQL, "1:38", "given twice"},
		{"CREATE STREAM hot WITH (tpoic = 'a') AS SELECT count(*) FROM t GROUP BY TUMBLING(INTERVAL 1 SECOND)", CodeSQL, "1:25", "unknown option tpoic"},
		{"CREATE STREAM hot WITH (topic = 'a/+') AS SELECT count(*) FROM t GROUP BY TUMBLING(INTERVAL 1 SECOND)", CodeSQL, "1:33", "wildcard"},
		{"CREATE STREAM hot WITH (topic = 'a/{k}') AS SELECT count(*) AS n FROM t GROUP BY TUMBLING(INTERVAL 1 SECOND)", CodeSQL, "1:33", "{k} is not an output column (the columns are window_start, window_end, n)"},
		{"CREATE STREAM hot WITH (topic = 'a/{n') AS SELECT count(*) AS n FROM t GROUP BY TUMBLING(INTERVAL 1 SECOND)", CodeSQL, "1:33", "a { without }"},
		{"CREATE STREAM hot WITH (topic = '$SYS/{n}') AS SELECT count(*) AS n FROM t GROUP BY TUMBLING(INTERVAL 1 SECOND)", CodeSQL, "1:33", "reserved"},
		{"CREATE STREAM hot WITH (topic 'x') AS SELECT count(*) FROM t GROUP BY TUMBLING(INTERVAL 1 SECOND)", CodeSyntax, "1:25", "expected <option> = <value>"},
		{"CREATE STREAM hot SELECT count(*) FROM t", CodeSyntax, "1:19", "expected AS"},
		{"CREATE STREAM a/b AS SELECT count(*) FROM t GROUP BY TUMBLING(INTERVAL 1 SECOND)", CodeSyntax, "1:16", "expected AS"},
		{"CREATE STREAM hot AS SELECT count(*) FROM t ORDER BY 1", CodeSQL, "1:45", "ORDER BY is not supported"},
		{"CREATE STREAM hot AS SELECT sensor, count(*) FROM t GROUP BY sensor, TUMBLING(INTERVAL 1 SECOND) HAVING x.tmp > 1", CodeSQL, "1:105", `unknown table "x"`},
		{"SELECT count(*) FROM t GROUP BY TUMBLING(INTERVAL 1 SECOND)", CodeSQL, "1:1", "CREATE STREAM <name> AS SELECT"},
	} {
		compile := CompileContinuous
		if strings.HasPrefix(tc.sql, "SELECT") && strings.Contains(tc.sql, "EMIT") {
			compile = CompilePush
		}
		_, err := compile(tc.sql)
		var qe *Error
		if !errors.As(err, &qe) {
			t.Errorf("%s: error %v, want *Error", tc.sql, err)
			continue
		}
		if got := fmt.Sprintf("%d:%d", qe.Line, qe.Column); qe.Code != tc.code || got != tc.at || !strings.Contains(qe.Message, tc.msg) {
			t.Errorf("%s:\n got %s %s %s\nwant %s %s ...%s...", tc.sql, qe.Code, got, qe.Message, tc.code, tc.at, tc.msg)
		}
	}
}

// TestContinuousEval evaluates records one at a time as package cq does:
// WHERE, keys, aggregates, HAVING, and the output record's JSON.
func TestContinuousEval(t *testing.T) {
	c, err := CompileContinuous("CREATE STREAM hot AS SELECT sensor, count(*) AS n, max(temp) AS hi, sum(temp) FROM temps " +
		"WHERE _topic LIKE 'sensors/%' GROUP BY sensor, TUMBLING(INTERVAL 10 SECOND) HAVING n >= 2")
	if err != nil {
		t.Fatal(err)
	}
	base := time.Date(2026, 1, 2, 3, 4, 0, 0, time.UTC)
	groups := map[string]*Group{}
	var order []string
	for i, p := range []string{`{"sensor":"a","temp":1}`, `{"sensor":"b","temp":5}`, `{"sensor":"a","temp":2.5}`, `not json`, `{"sensor":"a","temp":null}`} {
		r := streams.Record{Offset: uint64(i), Timestamp: base.Add(time.Duration(i) * time.Second), Topic: "sensors/x", Payload: []byte(p)}
		start := c.Window.Start(r.Timestamp)
		if !start.Equal(base) {
			t.Fatalf("window start %s", start)
		}
		key, ok, err := c.Eval(&r)
		if err != nil || !ok {
			t.Fatalf("eval %s: %v %v", p, ok, err)
		}
		g := groups[string(key)]
		if g == nil {
			g = c.NewGroup()
			groups[string(key)] = g
			order = append(order, string(key))
		}
		if err := c.Add(g); err != nil {
			t.Fatal(err)
		}
	}
	r := streams.Record{Timestamp: base, Topic: "other", Payload: []byte(`{"sensor":"a"}`)}
	if _, ok, err := c.Eval(&r); ok || err != nil {
		t.Fatalf("WHERE let %v through (%v)", r, err)
	}
	var out []string
	for _, k := range order {
		o, ok, err := c.Result(groups[k], base)
		if err != nil {
			t.Fatal(err)
		}
		if ok {
			out = append(out, string(o.Payload))
		}
	}
	want := []string{
		`{"window_start":"2026-01-02T03:04:00Z","window_end":"2026-01-02T03:04:10Z","sensor":"a","n":3,"hi":2.5,"sum(temp)":3.5}`,
		`{"window_start":"2026-01-02T03:04:00Z","window_end":"2026-01-02T03:04:10Z","sensor":null,"n":1,"hi":null,"sum(temp)":null}`,
	}
	// b has one record (HAVING drops it); the non-JSON record has a NULL sensor.
	if strings.Join(out, "\n") != strings.Join(want[:1], "\n") {
		t.Fatalf("output\n%s\nwant\n%s", strings.Join(out, "\n"), want[0])
	}
}

// TestHoppingWindow: panes of gcd(size, slide), the first and last
// window holding an instant, and where input is needed again after a
// watermark.
func TestHoppingWindow(t *testing.T) {
	w := Window{Size: 10 * time.Second, Slide: 4 * time.Second}
	sec := func(s int64) int64 { return s * int64(time.Second) }
	if w.Pane() != 2*time.Second || !w.Hopping() || w.Hop() != 4*time.Second {
		t.Fatalf("pane %s hop %s", w.Pane(), w.Hop())
	}
	for _, tc := range []struct{ at, pane, first, last int64 }{{0, 0, -8, 0}, {3, 2, -4, 0}, {9, 8, 0, 8}, {-1, -2, -8, -4}} {
		if got := [3]int64{w.PaneStart(sec(tc.at)), w.FirstStart(sec(tc.at)), w.LastStart(sec(tc.at))}; got != [3]int64{sec(tc.pane), sec(tc.first), sec(tc.last)} {
			t.Errorf("at %d: pane, first, last %v, want %d %d %d (s)", tc.at, got, tc.pane, tc.first, tc.last)
		}
	}
	// Windows ending at or before 12 s are out: [4, 14) is the first open.
	if got := w.FirstOpen(time.Unix(12, 0)).Unix(); got != 4 {
		t.Fatalf("first open after 12 s: %d", got)
	}
	tumbling := Window{Size: 10 * time.Second}
	if got := tumbling.FirstOpen(time.Unix(14, 0)).Unix(); got != 10 || tumbling.Pane() != 10*time.Second {
		t.Fatalf("tumbling first open %d, pane %s", got, tumbling.Pane())
	}
}

func TestWindowStart(t *testing.T) {
	w := Window{Size: 10 * time.Second, Offset: 3 * time.Second}
	for _, tc := range []struct{ at, want int64 }{{0, -7}, {3, 3}, {12, 3}, {13, 13}, {-8, -17}, {-7, -7}} {
		got := w.Start(time.Unix(tc.at, 0)).Unix()
		if got != tc.want {
			t.Errorf("start of %d: %d, want %d", tc.at, got, tc.want)
		}
	}
}

// TestCompileChangesAndPush: queries without a window emit changes;
// push queries take EMIT CHANGES or FINAL, LIMIT (also after EMIT, as in
// ksqlDB), now() and SELECT * without state.
func TestCompileChangesAndPush(t *testing.T) {
	for _, tc := range []struct {
		sql, emit      string
		push, stateful bool
		limit          int64
		cols           string
	}{
		{"CREATE STREAM hot AS SELECT sensor, temp * 2 AS t2 FROM temps WHERE temp > 30", "changes", false, false, -1, "sensor:any,t2:any"},
		{"CREATE STREAM hot AS SELECT sensor, count(*) AS n FROM temps GROUP BY sensor, TUMBLING('10s') EMIT CHANGES", "changes", false, true, -1,
			"window_start:timestamp,window_end:timestamp,sensor:any,n:int"},
		{"SELECT sensor, count(*) AS n FROM temps GROUP BY sensor EMIT CHANGES", "changes", true, true, -1, "sensor:any,n:int"},
		{"SELECT * FROM temps EMIT CHANGES LIMIT 3", "changes", true, false, 3, "_offset:int,_timestamp:timestamp,_topic:text,_client_id:text,_qos:int,_retain:bool,_payload:text,_content_type:text,_user_properties:json"},
		{"SELECT now() AS at, temp FROM temps LIMIT 2 EMIT CHANGES", "changes", true, false, 2, "at:timestamp,temp:any"},
		{"SELECT count(*) AS n FROM temps GROUP BY HOPPING('10s', '5s') EMIT FINAL", "final", true, true, -1, "window_start:timestamp,window_end:timestamp,n:int"},
		{"SELECT sensor, count(*) AS n FROM temps GROUP BY sensor, SESSION(_timestamp, '30s', '1h') EMIT FINAL", "final", true, true, -1, "window_start:timestamp,window_end:timestamp,sensor:any,n:int"},
		{"SELECT sensor, count(*) AS n FROM temps GROUP BY sensor, SESSIONWINDOW(mi, 60, 5) EMIT CHANGES", "changes", true, true, -1, "window_start:timestamp,window_end:timestamp,sensor:any,n:int"},
		// EMIT CHANGES on event time, with GRACE, EMIT_INTERVAL and late = TRUE.
		{"CREATE STREAM hot WITH (late = TRUE) AS SELECT /*+ GRACE('5s') EMIT_INTERVAL('1s') */ sensor, count(*) AS n FROM temps GROUP BY sensor, TUMBLE(at, INTERVAL 10 SECOND) EMIT CHANGES",
			"changes", false, true, -1, "window_start:timestamp,window_end:timestamp,sensor:any,n:int"},
		{"INSERT INTO out WITH (late = TRUE) SELECT /*+ GRACE('5s') */ sensor, count(*) AS n FROM temps GROUP BY sensor, HOP(at, INTERVAL 10 SECOND, INTERVAL 5 SECOND) EMIT CHANGES",
			"changes", false, true, -1, "window_start:timestamp,window_end:timestamp,sensor:any,n:int"},
		{"SELECT /*+ GRACE('2s') */ sensor, count(*) AS n FROM temps GROUP BY sensor, TUMBLE(at, INTERVAL 10 SECOND) EMIT CHANGES", "changes", true, true, -1,
			"window_start:timestamp,window_end:timestamp,sensor:any,n:int"},
		{"SELECT /*+ GRACE('2s') */ sensor, count(*) AS n FROM temps GROUP BY sensor, SESSION(at, INTERVAL 10 SECOND) EMIT CHANGES", "changes", true, true, -1,
			"window_start:timestamp,window_end:timestamp,sensor:any,n:int"},
	} {
		compile := CompileContinuous
		if tc.push {
			compile = CompilePush
		}
		c, err := compile(tc.sql)
		if err != nil {
			t.Errorf("%s: %v", tc.sql, err)
			continue
		}
		var cols []string
		for _, col := range c.ColumnTypes() {
			cols = append(cols, col.Name+":"+col.Type)
		}
		if c.Emit != tc.emit || c.Push != tc.push || c.Stateful != tc.stateful || c.Limit != tc.limit || strings.Join(cols, ",") != tc.cols {
			t.Errorf("%s: emit %s push %v stateful %v limit %d columns %s", tc.sql, c.Emit, c.Push, c.Stateful, c.Limit, strings.Join(cols, ","))
		}
	}
}

// TestContinuousTopic: {column} templates are filled in with the output
// values, one topic level each.
func TestContinuousTopic(t *testing.T) {
	c, err := CompileContinuous("CREATE STREAM hot WITH (topic = 'alerts/{sensor}/{ n }/{hi}/{window_start}') AS " +
		"SELECT sensor, count(*) AS n, max(temp) AS hi FROM temps GROUP BY sensor, TUMBLING(INTERVAL 10 SECOND)")
	if err != nil {
		t.Fatal(err)
	}
	if !c.Publish || c.QoS != 1 || c.Retain {
		t.Fatalf("publish %v qos %d retain %v", c.Publish, c.QoS, c.Retain)
	}
	base := time.Date(2026, 1, 2, 3, 4, 0, 0, time.UTC)
	var got []string
	for _, p := range []string{`{"sensor":"a/b","temp":1.5}`, `{"temp":2}`} {
		r := streams.Record{Timestamp: base, Payload: []byte(p)}
		if _, ok, err := c.Eval(&r); !ok || err != nil {
			t.Fatal(ok, err)
		}
		g := c.NewGroup()
		if err := c.Add(g); err != nil {
			t.Fatal(err)
		}
		o, _, err := c.Result(g, base)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, o.Topic)
	}
	if want := "alerts/a_b/1/1.5/2026-01-02T03:04:00Z alerts/null/1/2/2026-01-02T03:04:00Z"; strings.Join(got, " ") != want {
		t.Fatalf("topics %v, want %s", got, want)
	}
	c, err = CompileContinuous("CREATE STREAM hot AS SELECT count(*) AS n FROM temps GROUP BY TUMBLING(INTERVAL 10 SECOND)")
	if err != nil || c.Publish || c.Topic != "hot" {
		t.Fatalf("without a topic: %v %v %q", err, c.Publish, c.Topic)
	}
}

// TestEventTimeAndHints: a window on a payload expression switches the
// query to event time, read per record from a timestamp, text holding
// one, or Unix milliseconds; a record without one is an error (the query
// skips and counts it). Hints in /*+ ... */ set its options.
func TestEventTimeAndHints(t *testing.T) {
	c, err := CompileContinuous("CREATE STREAM o AS SELECT /*+ GRACE('5s') IDLE_TIMEOUT('30s') START('latest') */ k, count(*) AS n FROM i " +
		"GROUP BY k, TUMBLE(at, INTERVAL 10 SECOND)")
	if err != nil {
		t.Fatal(err)
	}
	if !c.EventTime || c.Hints != (Hints{Grace: 5 * time.Second, IdleTimeout: 30 * time.Second, StartLatest: true}) {
		t.Fatalf("event time %v, hints %+v", c.EventTime, c.Hints)
	}
	want := time.Date(2026, 3, 1, 12, 0, 7, 0, time.UTC)
	for _, p := range []string{`{"k":"a","at":"2026-03-01T12:00:07Z"}`, `{"k":"a","at":1772366407000}`, `{"k":"a","at":"2026-03-01 12:00:07"}`} {
		if _, ok, err := c.Eval(&streams.Record{Timestamp: time.Unix(0, 0), Payload: []byte(p)}); err != nil || !ok {
			t.Fatalf("%s: %v", p, err)
		}
		if got := time.Unix(0, c.Time()).UTC(); !got.Equal(want) {
			t.Errorf("%s: time %s, want %s", p, got, want)
		}
	}
	for _, p := range []string{`{"k":"a"}`, `{"k":"a","at":"soon"}`, `not json`} {
		if _, _, err := c.Eval(&streams.Record{Payload: []byte(p)}); err == nil || !strings.Contains(err.Error(), "event time") {
			t.Errorf("%s: %v", p, err)
		}
	}
	c, err = CompileContinuous("CREATE STREAM o AS SELECT count(*) AS n FROM i GROUP BY SESSION(_timestamp, INTERVAL 10 SECOND)")
	if err != nil || c.EventTime {
		t.Fatalf("_timestamp is append time: %v %v", c.EventTime, err)
	}
}

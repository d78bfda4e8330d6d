package query

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	paho3 "github.com/eclipse/paho.mqtt.golang"
)

const hstreamQuery = `SELECT streams.name, sum(append_throughput.throughput_1min) AS total_throughput
FROM append_throughput
LEFT JOIN streams ON streams.name = append_throughput.stream_name
GROUP BY stream_name
ORDER BY total_throughput DESC
LIMIT 0, 5;`

// TestHStreamDBThroughputQuery runs HStreamDB's documented query verbatim
// against streams published to at different rates over MQTT. The sampler
// runs on an injected clock, so the rates are exact: records / seconds.
func TestHStreamDBThroughputQuery(t *testing.T) {
	n := startNode(t, nodeOptions{})
	payload := func(i int) string { return fmt.Sprintf(`{"i":%d}`, i) }
	// Minute 1: 300 records to fast, 120 to medium, 30 to slow.
	n.publishMany("p-fast", "fast/x", 300, payload)
	n.publishMany("p-medium", "medium/x", 120, payload)
	n.publishMany("p-slow", "slow/x", 30, payload)
	n.clock.Advance(time.Minute)

	res := n.query(hstreamQuery)
	want := []string{"fast | 5", "medium | 2", "slow | 0.5"}
	if got := rows(res); !slices.Equal(got, want) {
		t.Fatalf("minute 1:\n%s\nwant rows %q", render(res), want)
	}
	if res.Columns[0] != (Column{"name", "text"}) || res.Columns[1] != (Column{"total_throughput", "float"}) {
		t.Fatalf("columns %+v", res.Columns)
	}

	// Minute 2: only slow gets records; the 1-minute averages follow, the
	// 5-minute ones average both minutes.
	n.sampler.Sample()
	n.publishMany("p-slow", "slow/x", 90, payload)
	n.clock.Advance(time.Minute)
	res = n.query(hstreamQuery)
	want = []string{"slow | 1.5", "fast | 0", "medium | 0"}
	if got := rows(res); !slices.Equal(got, want) {
		t.Fatalf("minute 2:\n%s\nwant rows %q", render(res), want)
	}
	res = n.query("SELECT stream_name, throughput_5min, throughput_10min FROM append_throughput ORDER BY stream_name")
	want = []string{"fast | 2.5 | 2.5", "medium | 1 | 1", "slow | 1 | 1"}
	if got := rows(res); !slices.Equal(got, want) {
		t.Fatalf("5 and 10 minutes:\n%s\nwant rows %q", render(res), want)
	}
	// Bytes are the store's encoded bytes over the same span.
	res = n.query("SELECT abs(a.bytes_5min * 120 - s.bytes) < 0.001 FROM append_throughput a JOIN streams s ON s.name = a.stream_name")
	for _, r := range rows(res) {
		if r != "true" {
			t.Fatalf("bytes_5min * 120s != bytes kept:\n%s", render(res))
		}
	}

	// LIMIT 0, 5 keeps the top five of more streams.
	for _, s := range []string{"s4", "s5", "s6"} {
		n.publishMany("p-"+s, s+"/x", 6, payload)
	}
	res = n.query(hstreamQuery)
	if len(res.Rows) != 5 || rows(res)[0] != "slow | 1.5" {
		t.Fatalf("with six streams:\n%s", render(res))
	}
}

func TestReadThroughputCountsReads(t *testing.T) {
	n := startNode(t, nodeOptions{})
	n.publishMany("p", "r/x", 120, func(i int) string { return "x" })
	n.query("SELECT count(*) FROM r")
	n.query("SELECT _offset FROM r WHERE _offset >= 90")
	n.clock.Advance(time.Minute)
	res := n.query("SELECT throughput_1min, bytes_1min FROM read_throughput WHERE stream_name = 'r'")
	// 120 + 30 records of one payload byte read in one minute.
	if got := rows(res); !slices.Equal(got, []string{"2.5 | 2.5"}) {
		t.Fatalf("read throughput:\n%s", render(res))
	}
}

// TestJoinGroupOrderLimitByHand checks combined semantics against answers
// computed by hand from the fixture (see fillFixture).
func TestJoinGroupOrderLimitByHand(t *testing.T) {
	n := startNode(t, nodeOptions{rules: fixtureRules})
	fillFixture(n)
	cases := []struct {
		sql  string
		want []string
	}{
		// Per site: readings with a numeric temperature, their sum and mean.
		// north: s1 (21.5, 22.5, 30.5) + s3 (35.5) = 4 readings, 110;
		// south: s2 (31, 29) = 2, 60; east: s5 none -> 0, NULL.
		{`SELECT d.site, count(t.temp) AS n, sum(t.temp) AS total, avg(t.temp) AS mean
		  FROM devices d LEFT JOIN temperatures t ON t.sensor = d.id AND typeof(t.temp) <> 'text'
		  GROUP BY d.site ORDER BY n DESC, d.site`,
			[]string{"north | 4 | 110 | 27.5", "south | 2 | 60 | 30", "east | 0 | NULL | NULL"}},
		// Sensors with a reading above 30, hottest first, second page of one row.
		// Maxima above 30: s3 35.5, s2 31, s1 30.5 -> page 2 is s2.
		{`SELECT sensor, max(temp) AS hottest FROM temperatures WHERE temp > 30
		  GROUP BY sensor ORDER BY hottest DESC LIMIT 1, 1`,
			[]string{"s2 | 31"}},
		// Every temperature record with its device floor; NULL where none.
		{`SELECT t._offset, d.floor FROM temperatures t LEFT JOIN devices d ON d.id = t.sensor
		  WHERE t._offset >= 4 ORDER BY t._offset`,
			[]string{"4 | 2", "5 | NULL", "6 | 1", "7 | NULL"}},
		// Devices with no readings at all.
		{`SELECT d.id FROM devices d LEFT JOIN temperatures t ON t.sensor = d.id WHERE t._offset IS NULL`,
			[]string{"s5"}},
		// Readings per floor, floors without devices are absent; NULL floor (s5) groups apart.
		{`SELECT d.floor, count(t._offset) FROM devices d LEFT JOIN temperatures t ON t.sensor = d.id
		  GROUP BY d.floor ORDER BY d.floor`,
			[]string{"NULL | 0", "1 | 3", "2 | 2", "3 | 1"}},
		// HAVING on an alias, ORDER BY an expression over aggregates.
		{`SELECT _client_id AS who, count(*) AS n FROM temperatures GROUP BY who
		  HAVING n >= 2 ORDER BY n * -1, who`,
			[]string{"s1 | 3", "s2 | 2"}},
	}
	for _, c := range cases {
		res := n.query(c.sql)
		if got := rows(res); !slices.Equal(got, c.want) {
			t.Errorf("%s\ngot:\n%s\nwant rows %q", c.sql, render(res), c.want)
		}
	}
}

func TestShowStreams(t *testing.T) {
	n := startNode(t, nodeOptions{rules: fixtureRules})
	fillFixture(n)
	res := n.query("SHOW STREAMS")
	var names []string
	for _, r := range res.Rows {
		names = append(names, fmt.Sprintf("%s:%d", r[0], r[1]))
		if _, ok := r[5].(time.Time); !ok {
			t.Errorf("created_at %T %v", r[5], r[5])
		}
	}
	if !slices.Equal(names, []string{"devices:4", "jobs:3", "temperatures:8"}) {
		t.Fatalf("SHOW STREAMS:\n%s", render(res))
	}
}

func TestScansUseOffsetsAndTimestamps(t *testing.T) {
	n := startNode(t, nodeOptions{})
	n.publishMany("old", "big/x", 1000, func(i int) string { return fmt.Sprintf(`{"i":%d}`, i) })
	time.Sleep(5 * time.Millisecond) // the next records get a later timestamp
	cut := time.Now().UTC()
	n.publishMany("new", "big/x", 20, func(i int) string { return fmt.Sprintf(`{"i":%d}`, 1000+i) })

	cases := []struct {
		sql     string
		want    string
		scanned int64
	}{
		{"SELECT count(*) FROM big WHERE _offset >= 990", "30", 30},
		{"SELECT count(*) FROM big WHERE _offset > 100 AND _offset <= 110", "10", 10},
		{"SELECT count(*) FROM big WHERE _offset BETWEEN 5 AND 9 OR _offset = 3", "6", 1020},
		{"SELECT count(*) FROM big WHERE _offset = 7", "1", 1},
		{"SELECT count(*) FROM big WHERE _offset < 0", "0", 0},
		{fmt.Sprintf("SELECT count(*), min(i) FROM big WHERE _timestamp >= '%s'", cut.Format(time.RFC3339Nano)), "20 | 1000", 20},
		{fmt.Sprintf("SELECT count(*) FROM big WHERE _timestamp < '%s' AND _offset >= 500", cut.Format(time.RFC3339Nano)), "500", 500},
		{"SELECT count(*) FROM big WHERE _timestamp > now() + INTERVAL 1 SECOND", "0", 0},
		{"SELECT i FROM big LIMIT 3", "0\n1\n2", 3},
		{"SELECT i FROM big WHERE i > 10 LIMIT 1", "11", 12},
		{"SELECT _offset FROM big ORDER BY _offset DESC LIMIT 2", "1019\n1018", 64},
		{"SELECT _offset FROM big ORDER BY _timestamp LIMIT 2 OFFSET 3", "3\n4", 5},
		{"SELECT _offset FROM big WHERE i % 100 = 0 ORDER BY _offset DESC LIMIT 3", "1000\n900\n800", 64 + 128 + 256},
	}
	for _, c := range cases {
		res := n.query(c.sql)
		if got := strings.Join(rows(res), "\n"); got != c.want || res.RowsScanned != c.scanned {
			t.Errorf("%s\ngot %q scanning %d rows, want %q scanning %d", c.sql, got, res.RowsScanned, c.want, c.scanned)
		}
	}
}

func TestBudgets(t *testing.T) {
	n := startNode(t, nodeOptions{maxRows: 100})
	n.publishMany("p", "b/x", 150, func(i int) string { return fmt.Sprintf(`{"i":%d}`, i) })
	qe := n.queryErr("SELECT count(*) FROM b")
	if qe.Code != CodeBudget || !strings.Contains(qe.Message, "more than 100 rows") || !strings.Contains(qe.Message, "sql.max_rows_scanned") {
		t.Fatalf("row budget: %+v", qe)
	}
	// A narrower query fits.
	if got := rows(n.query("SELECT count(*) FROM b WHERE _offset >= 100")); got[0] != "50" {
		t.Fatalf("narrowed: %v", got)
	}

	slow, err := New(Options{Store: n.store, Timeout: time.Nanosecond})
	if err != nil {
		t.Fatal(err)
	}
	_, err = slow.Query(context.Background(), "SELECT count(*) FROM b")
	qe, ok := err.(*Error)
	if !ok || qe.Code != CodeBudget || !strings.Contains(qe.Message, "longer than 1ns") {
		t.Fatalf("time budget: %v", err)
	}
	// A caller that goes away is not a budget problem.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err = n.engine.Query(ctx, "SELECT count(*) FROM b WHERE _offset < 90")
	if qe, ok := err.(*Error); !ok || qe.Code != CodeInternal || !strings.Contains(qe.Message, "canceled") {
		t.Fatalf("canceled: %v", err)
	}
}

func TestStatisticsTablesNeedTheirSources(t *testing.T) {
	n := startNode(t, nodeOptions{})
	bare, err := New(Options{Store: n.store})
	if err != nil {
		t.Fatal(err)
	}
	for _, table := range []string{"append_throughput", "read_throughput", "append_latency", "groups", "consumers", "nodes", "shards"} {
		_, err := bare.Query(context.Background(), "SELECT * FROM "+table)
		if qe, ok := err.(*Error); !ok || qe.Code != CodeSQL || !strings.Contains(qe.Message, "not available") {
			t.Errorf("%s without a source: %v", table, err)
		}
	}
	if _, err := New(Options{}); err == nil || !strings.Contains(err.Error(), "store is nil") {
		t.Fatalf("no store: %v", err)
	}
}

func TestGroupsAndConsumersTables(t *testing.T) {
	n := startNode(t, nodeOptions{})
	n.publish("p", msg{"work/a", "first", 1}) // creates the stream the group reads
	c := n.connect("worker-1")
	defer c.Disconnect(0)
	got := make(chan string, 10)
	if tok := c.Subscribe("$share/workers/work/#", 1, func(_ paho3.Client, m paho3.Message) { got <- string(m.Payload()) }); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("subscribe: %v", tok.Error())
	}
	n.publish("p", msg{"work/a", "job", 1})
	select {
	case <-got:
	case <-time.After(10 * time.Second):
		t.Fatal("no delivery")
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		res := n.query("SELECT `group`, filter, members, delivered, redelivered, dead_lettered FROM groups")
		if r := rows(res); len(r) == 1 && r[0] == "workers | work/# | 1 | 1 | 0 | 0" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("groups:\n%s", render(res))
		}
		time.Sleep(10 * time.Millisecond)
	}
	res := n.query("SELECT c.`group`, c.client_id, c.qos, g.members FROM consumers c JOIN groups g ON g.`group` = c.`group`")
	if r := rows(res); !slices.Equal(r, []string{"workers | worker-1 | 1 | 1"}) {
		t.Fatalf("consumers:\n%s", render(res))
	}
	res = n.query("SELECT appends > 0, p50 <= p99, p99 <= p999 FROM append_latency")
	if r := rows(res); !slices.Equal(r, []string{"true | true | true"}) {
		t.Fatalf("append_latency:\n%s", render(res))
	}
}

func TestJoinOutputIsBudgeted(t *testing.T) {
	n := startNode(t, nodeOptions{maxRows: 1000})
	n.publishMany("p", "j/x", 20, func(i int) string { return fmt.Sprintf(`{"i":%d}`, i) })
	// 20^2 = 400 rows fit; 20^3 = 8000 do not.
	if got := rows(n.query("SELECT count(*) FROM j a, j b")); got[0] != "400" {
		t.Fatalf("two-way cross join: %v", got)
	}
	qe := n.queryErr("SELECT count(*) FROM j a, j b, j c")
	if qe.Code != CodeBudget || !strings.Contains(qe.Message, "joins formed more than 1000 rows") {
		t.Fatalf("three-way cross join: %+v", qe)
	}
}

func TestSessionsTable(t *testing.T) {
	n := startNode(t, nodeOptions{})
	// A persistent MQTT 3.1.1 session whose client is away, with a
	// subscription and two queued messages, and a connected clean one.
	away := paho3.NewClient(paho3.NewClientOptions().AddBroker("tcp://" + n.addr).SetClientID("away").
		SetCleanSession(false).SetAutoReconnect(false))
	if tok := away.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	if tok := away.Subscribe("s/#", 1, nil); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	away.Disconnect(100)
	here := n.connect("here")
	defer here.Disconnect(0)
	want := []string{"away | false | true | 4 | NULL | 1 | 2 | 0", "here | true | false | 4 | 0 | 0 | 0 | 0"}
	deadline := time.Now().Add(10 * time.Second)
	published := false
	for {
		res := n.query("SELECT client_id, connected, persistent, protocol_version, expiry, subscriptions, queued, in_flight FROM sessions WHERE client_id IN ('away', 'here') ORDER BY client_id")
		r := rows(res)
		if slices.Equal(r, want) {
			break
		}
		if !published && len(r) == 2 && r[0] == "away | false | true | 4 | NULL | 1 | 0 | 0" {
			n.publish("p", msg{topic: "s/1", payload: "a", qos: 1}, msg{topic: "s/2", payload: "b", qos: 1})
			published = true
		}
		if time.Now().After(deadline) {
			t.Fatalf("sessions:\n%s", render(res))
		}
		time.Sleep(10 * time.Millisecond)
	}
	res := n.query("SELECT client_id, queued, disconnected_at IS NOT NULL FROM sessions WHERE NOT connected ORDER BY queued DESC LIMIT 10")
	if r := rows(res); !slices.Equal(r, []string{"away | 2 | true"}) {
		t.Fatalf("absent sessions:\n%s", render(res))
	}
}

// fakeShards stands for a cluster node's shards.
type fakeShards []ShardRow

func (f fakeShards) Shards(context.Context) []ShardRow { return f }

// TestShardsTable: NULL leader while none is known, NULL term and applied
// where this node holds no replica, replicas as a JSON array; a node
// without shards (standalone) has an empty table.
func TestShardsTable(t *testing.T) {
	n := startNode(t, nodeOptions{})
	lag := uint64(5)
	e, err := New(Options{Store: n.store, Shards: fakeShards{
		{ID: 0, Leader: "n1", Term: 3, Replicas: []string{"n1", "n2", "n3"}, Applied: 42, Local: true, Lag: &lag},
		{ID: 1, Term: 4, Replicas: []string{"n2", "n3", "n1"}, Applied: 7, Local: true},
		{ID: 2, Replicas: []string{"n3", "n4", "n2"}},
		{ID: 3, Leader: "n4", Term: 9, Replicas: []string{"n4", "n2", "n3"}}, // held elsewhere: the leader's term
	}})
	if err != nil {
		t.Fatal(err)
	}
	res, err := e.Query(context.Background(), "SELECT * FROM shards ORDER BY id")
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		`0 | n1 | 3 | ["n1","n2","n3"] | 42 | true | 5`,
		`1 | NULL | 4 | ["n2","n3","n1"] | 7 | true | NULL`,
		`2 | NULL | NULL | ["n3","n4","n2"] | NULL | false | NULL`,
		`3 | n4 | 9 | ["n4","n2","n3"] | NULL | false | NULL`,
	}
	if got := rows(res); !slices.Equal(got, want) {
		t.Fatalf("shards:\n%s", render(res))
	}
	// The example of docs/sql.md: shards not led by their preferred leader.
	res, err = e.Query(context.Background(), "SELECT id, leader, replicas->>'$[0]' AS preferred FROM shards WHERE leader IS NULL OR leader <> replicas->>'$[0]'")
	if err != nil {
		t.Fatal(err)
	}
	if got := rows(res); !slices.Equal(got, []string{"1 | NULL | n2", "2 | NULL | n3"}) {
		t.Fatalf("shards away from their preferred leader:\n%s", render(res))
	}
	standalone, err := New(Options{Store: n.store, Shards: fakeShards(nil)})
	if err != nil {
		t.Fatal(err)
	}
	if res, err := standalone.Query(context.Background(), "SELECT * FROM shards"); err != nil || len(res.Rows) != 0 || len(res.Columns) != 7 {
		t.Fatalf("standalone shards: %v %v", res, err)
	}
}

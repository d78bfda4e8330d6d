package query

import (
	"strings"
	"testing"
	"time"

	"github.com/mqstream/mqstream/streams"
)

// TestIntervalBounds: the time bounds of an interval join, however ON
// writes them.
func TestIntervalBounds(t *testing.T) {
	for _, tc := range []struct {
		on     string
		lo, hi time.Duration
	}{
		{"b._timestamp BETWEEN a._timestamp - INTERVAL 5 SECOND AND a._timestamp + INTERVAL 5 SECOND", -5 * time.Second, 5 * time.Second},
		{"a._timestamp BETWEEN b._timestamp - INTERVAL 1 SECOND AND b._timestamp + INTERVAL 3 SECOND", -3 * time.Second, time.Second},
		{"a._timestamp >= b._timestamp - INTERVAL 1 MINUTE AND a._timestamp < b._timestamp", 0, time.Minute},
		{"b._timestamp - INTERVAL 2 SECOND <= a._timestamp AND b._timestamp <= a._timestamp + INTERVAL 500000 MICROSECOND", -1 << 63, 0},
		{"b._timestamp >= a._timestamp AND b._timestamp <= a._timestamp + INTERVAL 1 HOUR AND b._timestamp <= a._timestamp + INTERVAL 10 MINUTE", 0, 10 * time.Minute},
	} {
		c, err := CompileContinuous("CREATE STREAM o AS SELECT a.x, b.y FROM s1 a JOIN s2 b ON a.k = b.k AND " + tc.on)
		if tc.lo == -1<<63 {
			// b - 2s <= a: b - a <= 2s and b <= a + 0.5s: only upper bounds
			if err == nil || !strings.Contains(err.Error(), "needs time bounds") {
				t.Errorf("%s: %v", tc.on, err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", tc.on, err)
			continue
		}
		if j := c.Join; j.Kind != JoinInterval || j.Lo != tc.lo || j.Hi != tc.hi || j.Right != "s2" || c.Source != "s1" {
			t.Errorf("%s: %+v, want [%v, %v]", tc.on, j, tc.lo, tc.hi)
		}
	}
}

// TestJoinEvaluation: JoinInput and Pair on records of both inputs, and
// a LEFT lookup's NULL-extended row.
func TestJoinEvaluation(t *testing.T) {
	c, err := CompileContinuous("CREATE STREAM o AS SELECT a.k, a.x, b.y, b._offset AS bo FROM s1 a JOIN s2 b ON a.k = b.k AND b.y > 1 " +
		"AND b._timestamp BETWEEN a._timestamp AND a._timestamp + INTERVAL 1 SECOND WHERE a.x IS NOT NULL")
	if err != nil {
		t.Fatal(err)
	}
	now := time.Unix(100, 0)
	rec := func(off uint64, at time.Duration, p string) *streams.Record {
		return &streams.Record{Offset: off, Timestamp: now.Add(at), Payload: []byte(p)}
	}
	ka, a, ok, err := c.JoinInput(0, rec(0, 0, `{"k":"d1","x":1}`))
	if err != nil || !ok {
		t.Fatal(ok, err)
	}
	if _, _, ok, _ := c.JoinInput(0, rec(1, 0, `{"k":"d1"}`)); ok {
		t.Fatal("WHERE a.x IS NOT NULL let a record without x in")
	}
	if _, _, ok, _ := c.JoinInput(1, rec(0, 0, `{"k":"d1","y":1}`)); ok {
		t.Fatal("ON b.y > 1 let a record with y = 1 in")
	}
	kb, b, ok, err := c.JoinInput(1, rec(7, 500*time.Millisecond, `{"k":"d1","y":2}`))
	if err != nil || !ok || string(ka) != string(kb) {
		t.Fatal(ok, err, string(ka), string(kb))
	}
	out, _, ok, err := c.Pair(a, b)
	if err != nil || !ok || string(out.Payload) != `{"k":"d1","x":1,"y":2,"bo":7}` {
		t.Fatalf("%s %v %v", out.Payload, ok, err)
	}
	_, late, _, _ := c.JoinInput(1, rec(8, 2*time.Second, `{"k":"d1","y":3}`))
	if _, matched, ok, err := c.Pair(a, late); matched || ok || err != nil {
		t.Fatalf("a pair 2 s apart joined: %v %v %v", matched, ok, err)
	}

	view, err := CompileContinuous("CREATE VIEW v AS SELECT id AS dev, max(floor) AS floor FROM reg GROUP BY id")
	if err != nil {
		t.Fatal(err)
	}
	views := func(name string) (*Continuous, bool) {
		if name == "v" {
			return view, false
		}
		return nil, name == "s1"
	}
	c, err = CompileContinuousIn("CREATE STREAM o AS SELECT s1.k, v.floor FROM s1 LEFT JOIN v ON v.dev = s1.k", views)
	if err != nil {
		t.Fatal(err)
	}
	if c.Join.Kind != JoinLookup || !c.Join.Left {
		t.Fatalf("%+v", c.Join)
	}
	key, l, ok, err := c.JoinInput(0, rec(0, 0, `{"k":"d9"}`))
	if err != nil || !ok || string(key) != string(appendKey(nil, "d9")) {
		t.Fatal(string(key), ok, err)
	}
	out, _, ok, err = c.Pair(l, nil)
	if err != nil || !ok || string(out.Payload) != `{"k":"d9","floor":null}` {
		t.Fatalf("%s %v %v", out.Payload, ok, err)
	}
	if _, err := CompileContinuousIn("CREATE STREAM o AS SELECT s1.k FROM s1 JOIN v ON v.floor = s1.k", views); err == nil ||
		!strings.Contains(err.Error(), "missing v.dev") {
		t.Fatalf("a lookup not by the view's key: %v", err)
	}
}

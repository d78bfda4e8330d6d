package node

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/mqstream/mqstream/internal/testutil"
	"github.com/mqstream/mqstream/streams"
)

// TestQueryOutputPublishedOnMQTT: with WITH (topic = 'alerts/{sensor}'),
// each output row reaches an ordinary subscriber and a $share group (which
// reads the copy the mapping rules store in the stream alerts), on the
// topic its sensor names.
func TestQueryOutputPublishedOnMQTT(t *testing.T) {
	n := startNode(t, testConfig(t.TempDir()))
	ctx := context.Background()
	for _, s := range []string{"temps", "alerts"} {
		if _, err := n.Store().CreateStream(ctx, s, streams.Retention{}); err != nil {
			t.Fatal(err)
		}
	}
	plain := subscribe(t, n.MQTTAddr(), "plain", map[string]byte{"alerts/+": 1})
	group := subscribe(t, n.MQTTAddr(), "member", map[string]byte{"$share/g/alerts/#": 1})
	runSQL(t, n, "CREATE STREAM hot WITH (topic = 'alerts/{sensor}', qos = 1) AS SELECT sensor, max(temp) AS hi FROM temps "+
		"GROUP BY sensor, TUMBLING(INTERVAL 1 SECOND) HAVING hi > 30")
	t0 := time.Now().Truncate(time.Second).Add(time.Second)
	for i, p := range []string{`{"sensor":"a","temp":31}`, `{"sensor":"b","temp":40}`, `{"sensor":"c","temp":1}`} {
		appendAt(t, n.Store(), "temps", t0.Add(time.Duration(i)*time.Millisecond), p)
	}
	appendAt(t, n.Store(), "temps", t0.Add(time.Second), `{"sensor":"a","temp":1}`)
	w := func(s time.Time) string { return s.UTC().Format(time.RFC3339) }
	row := func(sensor string, hi int) string {
		return fmt.Sprintf(`{"window_start":%q,"window_end":%q,"sensor":%q,"hi":%d}`, w(t0), w(t0.Add(time.Second)), sensor, hi)
	}
	for name, s := range map[string]*subscriber{"subscriber": plain, "$share group": group} {
		testutil.Eventually(t, 10*time.Second, "two rows to the "+name, func() bool { return s.count() >= 2 })
		if a, b := s.payloads("alerts/a"), s.payloads("alerts/b"); s.count() != 2 || len(a) != 1 || a[0] != row("a", 31) || len(b) != 1 || b[0] != row("b", 40) {
			t.Fatalf("the %s received %v", name, s.got)
		}
	}
	if got := payloads(t, n.Store(), "alerts"); len(got) != 2 {
		t.Fatalf("copies in alerts: %v", got)
	}
	if q, _ := queryInfo(n, "hot"); q.Published != 2 || q.PublishError != "" {
		t.Fatalf("query info %+v", q)
	}
}

// TestQueryOutputPublishedAcrossCluster: a query created on one node of a
// cluster publishes its output to a subscriber of another node.
func TestQueryOutputPublishedAcrossCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a cluster")
	}
	nodes := startCluster(t)
	sub := subscribe(t, nodes[1].MQTTAddr(), "far", map[string]byte{"counts/#": 1})
	publishSeq(t, nodes[0].MQTTAddr(), "first", "input/x", "a", 1)
	sameRecords(t, nodes, "input", 1)
	runSQL(t, nodes[0], "CREATE STREAM counts WITH (topic = 'counts/{n}') AS SELECT count(*) AS n FROM input GROUP BY TUMBLING(INTERVAL 100 MILLISECOND)")
	// Windows close on the next record past their end: publish until a
	// row arrives.
	i := 0
	testutil.Eventually(t, 20*time.Second, "a row on the other node", func() bool {
		i++
		publishSeq(t, nodes[2].MQTTAddr(), fmt.Sprint("p", i), "input/x", fmt.Sprint("b", i), 1)
		return sub.count() > 0
	})
	sub.mu.Lock()
	defer sub.mu.Unlock()
	for topic, ps := range sub.got {
		if !strings.HasPrefix(topic, "counts/") || !strings.Contains(ps[0], `"n":`+strings.TrimPrefix(topic, "counts/")+"}") {
			t.Fatalf("received %s on %s", ps[0], topic)
		}
	}
}

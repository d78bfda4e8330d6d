package cq_test

import (
	"context"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/mqstream/mqstream/internal/testnode"
	"github.com/mqstream/mqstream/internal/testutil"
	"github.com/mqstream/mqstream/node"
	"github.com/mqstream/mqstream/query"
	"github.com/mqstream/mqstream/streams"
)

func TestMain(m *testing.M) {
	testnode.ServeIfChild()
	os.Exit(m.Run())
}

// publishBoth publishes to lhs/<p> and rhs/<p> from two clients (keys 0
// to 59 on lhs, 0 to 49 on rhs: some records of lhs join nothing), a few
// QoS 1 messages in flight each, until stop is closed (errors ignored:
// the server is killed under them).
func publishBoth(t *testing.T, addr, tag string, stop <-chan struct{}) {
	var wg sync.WaitGroup
	for p, side := range []string{"lhs", "rhs"} {
		c := paho.NewClient(paho.NewClientOptions().AddBroker("tcp://" + addr).SetClientID(side).SetAutoReconnect(false).
			SetOrderMatters(false).SetWriteTimeout(500 * time.Millisecond))
		if tok := c.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
			t.Fatalf("connect: %v", tok.Error())
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem := make(chan struct{}, 4)
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				case sem <- struct{}{}:
				}
				tok := c.Publish(fmt.Sprintf("%s/%d", side, p), 1, false, fmt.Sprintf(`{"k":%d,"n":"%s%d"}`, i%(60-10*p), tag, i))
				go func() {
					defer func() { <-sem }()
					tok.WaitTimeout(5 * time.Second)
				}()
			}
		}()
	}
	wg.Wait()
}

// TestIntervalJoinSurvivesSIGKILL kills a server process three times while
// both inputs of an interval join (JOIN and FULL JOIN) are published to
// over MQTT; each join's output must then equal, byte for byte, that of
// the same join run once over the same stored records.
func TestIntervalJoinSurvivesSIGKILL(t *testing.T) {
	if testing.Short() {
		t.Skip("starts server processes")
	}
	dir := t.TempDir()
	const sql = "CREATE STREAM %s AS SELECT /*+ IDLE_TIMEOUT('100ms') */ l.k AS k, l.n AS l, r.n AS r FROM lhs l JOIN rhs r " +
		"ON l.k = r.k AND r._timestamp BETWEEN l._timestamp - INTERVAL 20000 MICROSECOND AND l._timestamp + INTERVAL 10000 MICROSECOND"
	ctx := context.Background()
	run := func(n *node.Node, q string) {
		t.Helper()
		if _, err := n.Query().Query(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	n := testnode.Start(t, testnode.Config(dir))
	for _, s := range []string{"lhs", "rhs"} {
		if _, err := n.Store().CreateStream(ctx, s, streams.Retention{}); err != nil {
			t.Fatal(err)
		}
	}
	full := strings.Replace(sql, " JOIN ", " FULL JOIN ", 1) // LEFT and RIGHT at once
	run(n, fmt.Sprintf(sql, "live"))
	run(n, fmt.Sprintf(full, "live_full"))
	if err := n.Close(ctx); err != nil {
		t.Fatal(err)
	}
	testnode.KillRounds(t, dir, 3, 400*time.Millisecond, func(round int, addr string, stop <-chan struct{}) {
		publishBoth(t, addr, fmt.Sprintf("r%d-", round), stop)
	})
	n = testnode.Start(t, testnode.Config(dir))
	run(n, fmt.Sprintf(sql, "reference"))
	run(n, fmt.Sprintf(full, "reference_full"))
	info := func(id string) query.QueryInfo {
		for _, q := range n.Queries().List() {
			if q.ID == id {
				return q
			}
		}
		return query.QueryInfo{}
	}
	payloads := func(name string) []string {
		var out []string
		if err := n.Store().Scan(ctx, name, 0, 0, func(r streams.Record) (bool, error) {
			out = append(out, string(r.Payload))
			return true, nil
		}); err != nil {
			t.Fatal(err)
		}
		return out
	}
	for _, pair := range [][2]string{{"live", "reference"}, {"live_full", "reference_full"}} {
		var live, ref []string
		testutil.Eventually(t, 30*time.Second, "both joins caught up with the same output", func() bool {
			for _, id := range pair {
				if q := info(id); q.Status != "running" || q.Lag != 0 || q.RecordsIn == 0 || q.StateBytes != 0 {
					return false
				}
			}
			live, ref = payloads(pair[0]), payloads(pair[1])
			return len(live) == len(ref)
		})
		t.Logf("%s: %d rows from %d records", pair[0], len(ref), info(pair[1]).RecordsIn)
		if len(ref) < 10 {
			t.Fatalf("only %d reference rows: a weak test", len(ref))
		}
		if strings.Join(live, "\n") != strings.Join(ref, "\n") {
			t.Fatalf("%s after SIGKILLs differs from the uninterrupted one:\nlive (%d)\n%s\nreference (%d)\n%s",
				pair[0], len(live), strings.Join(live, "\n"), len(ref), strings.Join(ref, "\n"))
		}
	}
}

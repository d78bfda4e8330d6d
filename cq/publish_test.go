package cq

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mqstream/mqstream/internal/testutil"
	"github.com/mqstream/mqstream/streams"
)

// fakePublisher records what it is asked to deliver. Topics are stored
// in the stream named by their first level, as the default mapping rule
// does.
type fakePublisher struct {
	mu  sync.Mutex
	got []Message
	// failAt makes the delivery with this 1-based number fail once.
	failAt int
	calls  int
}

func (p *fakePublisher) Deliver(_ context.Context, m Message) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.calls++
	if p.calls == p.failAt {
		return errors.New("broker unavailable")
	}
	p.got = append(p.got, m)
	return nil
}

func (p *fakePublisher) StreamFor(topic string) (string, bool) {
	first, _, _ := strings.Cut(topic, "/")
	return first, true
}

// delivered returns "topic payload" per delivery, in order.
func (p *fakePublisher) delivered() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]string, len(p.got))
	for i, m := range p.got {
		out[i] = m.Topic + " " + string(m.Payload)
	}
	return out
}

func (e *env) waitDelivered(want ...string) {
	e.t.Helper()
	testutil.Eventually(e.t, 5*time.Second, fmt.Sprintf("%d deliveries", len(want)), func() bool { return len(e.pub.delivered()) >= len(want) })
	if got := e.pub.delivered(); strings.Join(got, "\n") != strings.Join(want, "\n") {
		e.t.Fatalf("delivered:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// topicsOf returns "topic payload" per record of a stream.
func (e *env) topicsOf(name string) []string {
	e.t.Helper()
	var out []string
	if err := e.store.Scan(context.Background(), name, 0, 0, func(r streams.Record) (bool, error) {
		out = append(out, r.Topic+" "+string(r.Payload))
		return true, nil
	}); err != nil {
		e.t.Fatal(err)
	}
	return out
}

const alertSQL = "CREATE STREAM hot WITH (topic = 'alerts/{sensor}', qos = 2, retain = true) AS " +
	"SELECT sensor, max(temp) AS hi FROM temps GROUP BY sensor, TUMBLING(INTERVAL 10 SECOND)"

// TestPublishOutput: each output record is published on its topic, its
// templates filled in, with the query's QoS and retain flag; a copy is
// stored in the stream the topic maps to; records of the output stream
// that the query did not write are not published.
func TestPublishOutput(t *testing.T) {
	e := newEnv(t)
	if _, err := e.store.CreateStream(context.Background(), "alerts", streams.Retention{}); err != nil {
		t.Fatal(err)
	}
	e.create(alertSQL)
	e.appendAt(time.Second, `{"sensor":"s1","temp":20}`, `{"sensor":"a/b+#","temp":30}`)
	e.appendAt(10*time.Second, `{"sensor":"s1","temp":5}`)
	r1, r2 := row(0, 10, `"sensor":"s1","hi":20`), row(0, 10, `"sensor":"a/b+#","hi":30`)
	e.waitDelivered("alerts/s1 "+r1, "alerts/a_b__ "+r2)
	want := []string{"alerts/s1 " + r1, "alerts/a_b__ " + r2}
	if got := e.topicsOf("hot"); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("output stream:\n%s", strings.Join(got, "\n"))
	}
	testutil.Eventually(t, 5*time.Second, "the copies", func() bool { return len(e.topicsOf("alerts")) == 2 })
	if got := e.topicsOf("alerts"); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("copies:\n%s", strings.Join(got, "\n"))
	}
	e.pub.mu.Lock()
	m := e.pub.got[0]
	e.pub.mu.Unlock()
	if m.QoS != 2 || !m.Retain || m.ContentType != "application/json" || len(m.UserProperties) != 2 || m.UserProperties[0].Value != "hot" {
		t.Fatalf("message %+v", m)
	}
	// Someone else's record in the output stream is not the query's to publish.
	done := make(chan error, 1)
	if err := e.store.Submit(streams.AppendRequest{Stream: "hot", Records: []streams.Record{{Topic: "alerts/x", Payload: []byte("other")}},
		Done: func(_ uint64, err error) { done <- err }}); err != nil || <-done != nil {
		t.Fatal("append")
	}
	e.appendAt(20*time.Second, `{"sensor":"s2","temp":1}`)
	e.waitDelivered("alerts/s1 "+r1, "alerts/a_b__ "+r2, "alerts/s1 "+row(10, 20, `"sensor":"s1","hi":5`))
	testutil.Eventually(t, 5*time.Second, "published counted", func() bool { return e.info("hot").Published == 3 })
}

// TestPublishNoCopyIntoOwnStreams: a topic that maps to the query's
// output or input stream is delivered, not stored again.
func TestPublishNoCopyIntoOwnStreams(t *testing.T) {
	e := newEnv(t)
	e.create("CREATE STREAM hot WITH (topic = 'hot/{sensor}') AS SELECT sensor, count(*) AS n FROM temps GROUP BY sensor, TUMBLING(INTERVAL 10 SECOND)")
	e.create("CREATE STREAM back WITH (topic = 'temps/back') AS SELECT count(*) AS n FROM temps GROUP BY TUMBLING(INTERVAL 10 SECOND)")
	e.appendAt(time.Second, `{"sensor":"s1"}`)
	e.appendAt(10*time.Second, `{"sensor":"s1"}`)
	testutil.Eventually(t, 5*time.Second, "two deliveries", func() bool { return len(e.pub.delivered()) == 2 })
	if n := len(e.topicsOf("hot")); n != 1 {
		t.Fatalf("%d records in hot", n)
	}
	if n := len(e.topicsOf("temps")); n != 2 {
		t.Fatalf("%d records in temps", n)
	}
}

// TestPublishAtLeastOnce: a failed delivery publishes its batch again (at
// least once); a restart resumes after what was published; a copy to a
// stream that does not exist is skipped with an error and still
// delivered.
func TestPublishAtLeastOnce(t *testing.T) {
	e := newEnv(t)
	e.pub.failAt = 2
	e.create(alertSQL)
	e.appendAt(time.Second, `{"sensor":"s1","temp":20}`, `{"sensor":"s2","temp":30}`)
	e.appendAt(10*time.Second, `{"sensor":"s1","temp":5}`)
	r1, r2 := row(0, 10, `"sensor":"s1","hi":20`), row(0, 10, `"sensor":"s2","hi":30`)
	e.waitDelivered("alerts/s1 "+r1, "alerts/s1 "+r1, "alerts/s2 "+r2)
	testutil.Eventually(t, 5*time.Second, "the publication progress", func() bool {
		v, ok, _ := e.store.KV("queries").Get(pubKey("hot"))
		return ok && string(v) == string(encodeHint(2))
	})
	if q := e.info("hot"); !strings.Contains(q.PublishError, "not found") {
		t.Fatalf("publish error %q", q.PublishError)
	}
	e.restart()
	e.appendAt(20*time.Second, `{"sensor":"s2","temp":1}`)
	e.waitDelivered("alerts/s1 "+r1, "alerts/s1 "+r1, "alerts/s2 "+r2, "alerts/s1 "+row(10, 20, `"sensor":"s1","hi":5`))
}

// TestPublishStartsAtEndWithoutProgress: a query restored without
// publication progress (created before publication existed) does not
// publish its past output.
func TestPublishStartsAtEndWithoutProgress(t *testing.T) {
	e := newEnv(t)
	e.create("CREATE STREAM hot WITH (topic = 'x/{sensor}') AS SELECT sensor FROM temps GROUP BY sensor, TUMBLING(INTERVAL 10 SECOND)")
	e.appendAt(time.Second, `{"sensor":"s1"}`)
	e.appendAt(10*time.Second, `{"sensor":"s2"}`)
	e.waitDelivered("x/s1 " + row(0, 10, `"sensor":"s1"`))
	if err := e.m.Close(); err != nil {
		t.Fatal(err)
	}
	if err := e.store.KV("queries").Write(context.Background(), streams.KVWrite{Key: pubKey("hot"), Delete: true}); err != nil {
		t.Fatal(err)
	}
	e.pub = &fakePublisher{}
	e.start()
	e.appendAt(20*time.Second, `{"sensor":"s3"}`)
	e.waitDelivered("x/s2 " + row(10, 20, `"sensor":"s2"`))
}

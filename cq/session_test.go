package cq

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/mqstream/mqstream/internal/testutil"
	"github.com/mqstream/mqstream/query"
	"github.com/mqstream/mqstream/streams"
)

// sessionRows feeds a sessioner (record at base+at, payload) and returns
// the rows it made, one per line.
func sessionRows(x *sessioner, at time.Duration, payloads ...string) string {
	var out []query.Output
	for _, p := range payloads {
		out = x.add(&streams.Record{Timestamp: base.Add(at), Payload: []byte(p)}, out)
	}
	return outputs(out)
}

func outputs(out []query.Output) string {
	var s []string
	for _, o := range out {
		s = append(s, string(o.Payload))
	}
	return strings.Join(s, "\n")
}

func span(from, to time.Duration, rest string) string {
	return fmt.Sprintf(`{"window_start":%q,"window_end":%q,%s}`, base.Add(from).Format(time.RFC3339Nano), base.Add(to).Format(time.RFC3339Nano), rest)
}

// TestSessions: a key's session lasts while its records come less than
// the gap apart, and at most its maximum length; a record after either
// closes it, and so does the watermark for keys gone quiet.
func TestSessions(t *testing.T) {
	c, err := query.CompilePush("SELECT k, count(*) AS n FROM i GROUP BY k, SESSION(_timestamp, INTERVAL 10 SECOND, INTERVAL 25 SECOND) EMIT FINAL")
	if err != nil {
		t.Fatal(err)
	}
	x := newSessioner(c)
	sessionRows(x, 0, `{"k":"a"}`)
	sessionRows(x, 2*time.Second, `{"k":"b"}`)
	sessionRows(x, 9*time.Second, `{"k":"a"}`)
	// 19 s is 10 s after a's last record: a new session.
	if got := sessionRows(x, 19*time.Second, `{"k":"a"}`); got != span(0, 19*time.Second, `"k":"a","n":2`) {
		t.Fatalf("a's first session: %s", got)
	}
	// b went quiet at 2 s: the watermark at 19 s closes it at 12 s.
	if got := outputs(x.advance(x.wm, nil)); got != span(2*time.Second, 12*time.Second, `"k":"b","n":1`) {
		t.Fatalf("b's session: %s", got)
	}
	// a's second session, records 8 s apart, reaches its maximum length
	// at 19 + 25 = 44 s: the record at 51 s starts the next.
	for _, at := range []time.Duration{27, 35, 43} {
		if got := sessionRows(x, at*time.Second, `{"k":"a"}`); got != "" {
			t.Fatalf("at %ds: %s", at, got)
		}
	}
	if got := sessionRows(x, 51*time.Second, `{"k":"a"}`); got != span(19*time.Second, 44*time.Second, `"k":"a","n":4`) {
		t.Fatalf("a's second session: %s", got)
	}
	if len(x.keys) != 1 {
		t.Fatalf("open sessions %d", len(x.keys))
	}
}

// TestSessionChanges: with EMIT CHANGES each record outputs its session's
// updated row, its end moving with it.
func TestSessionChanges(t *testing.T) {
	c, err := query.CompilePush("SELECT count(*) AS n FROM i GROUP BY SESSIONWINDOW(ss, 60, 5) EMIT CHANGES")
	if err != nil {
		t.Fatal(err)
	}
	x := newSessioner(c)
	got := sessionRows(x, 0, `{}`) + "\n" + sessionRows(x, 3*time.Second, `{}`) + "\n" + sessionRows(x, 9*time.Second, `{}`)
	want := span(0, 5*time.Second, `"n":1`) + "\n" + span(0, 8*time.Second, `"n":2`) + "\n" + span(9*time.Second, 14*time.Second, `"n":1`)
	if got != want {
		t.Fatalf("rows\n%s\nwant\n%s", got, want)
	}
	if out := x.advance(base.Add(time.Minute).UnixNano(), nil); len(out) != 0 || len(x.keys) != 0 {
		t.Fatalf("closing with changes: %d rows, %d sessions", len(out), len(x.keys))
	}
}

// TestSessionPushQuery: a push query's sessions close on the idle
// watermark when input stops.
func TestSessionPushQuery(t *testing.T) {
	e := newEnv(t)
	c, err := query.CompilePush("SELECT sensor, count(*) AS n FROM temps GROUP BY sensor, SESSION(INTERVAL 5 SECOND) EMIT FINAL")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	p := &pushed{}
	done := make(chan error, 1)
	go func() { done <- e.m.Push(ctx, c, p.emit) }()
	testutil.Eventually(t, 5*time.Second, "the push query running", func() bool { return e.m.Pushes() == 1 })
	e.appendAt(time.Second, `{"sensor":"a"}`, `{"sensor":"a"}`)
	e.clock.Advance(time.Second + 5*time.Second + idle)
	testutil.Eventually(t, 5*time.Second, "the session closed by the idle watermark", func() bool { return p.got() != "" })
	if got := p.got(); got != "2026-03-01 12:00:01 +0000 UTC 2026-03-01 12:00:06 +0000 UTC a 2" {
		t.Fatalf("pushed %q", got)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

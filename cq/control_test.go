package cq

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/mqstream/mqstream/internal/testutil"
	"github.com/mqstream/mqstream/query"
)

// setPaused pauses or resumes query id and checks the status it answers.
func (e *env) setPaused(id string, paused bool) {
	e.t.Helper()
	op, want := e.m.Resume, "running"
	if paused {
		op, want = e.m.Pause, statusPaused
	}
	q, err := op(context.Background(), id)
	if err != nil {
		e.t.Fatal(err)
	}
	if q.Status != want && !(want == "running" && q.Status == "starting") {
		e.t.Fatalf("status %s after pause=%v", q.Status, paused)
	}
}

// TestPauseResume: a paused query outputs nothing, stays paused across a
// restart, and once resumed outputs every row of the records appended
// meanwhile, once.
func TestPauseResume(t *testing.T) {
	e := newEnv(t)
	e.create(hotSQL)
	e.appendAt(time.Second, `{"sensor":"s1","temp":20}`)
	e.appendAt(11*time.Second, `{"sensor":"s1","temp":25}`)
	first := row(0, 10, `"sensor":"s1","n":1,"mean":20,"hi":20`)
	e.waitOutput("hot", first)
	e.setPaused("hot", true)
	e.setPaused("hot", true) // changes nothing
	// Records that close two windows: no runner reads them.
	e.appendAt(12*time.Second, `{"sensor":"s2","temp":30}`)
	e.appendAt(21*time.Second, `{"sensor":"s1","temp":1}`)
	e.appendAt(31*time.Second, `{"sensor":"s1","temp":2}`)
	e.clock.Advance(time.Hour)
	if got := e.output("hot"); len(got) != 1 {
		t.Fatalf("a paused query wrote %v", got)
	}
	e.restart()
	if q := e.info("hot"); q.Status != statusPaused || q.Source != "temps" || q.Sink != "hot" {
		t.Fatalf("after a restart: %+v", q)
	}
	if got := e.output("hot"); len(got) != 1 {
		t.Fatalf("a paused query wrote %v after a restart", got)
	}
	e.setPaused("hot", false)
	e.waitOutput("hot", first,
		row(10, 20, `"sensor":"s1","n":1,"mean":25,"hi":25`),
		row(10, 20, `"sensor":"s2","n":1,"mean":30,"hi":30`),
		row(20, 30, `"sensor":"s1","n":1,"mean":1,"hi":1`),
		row(30, 40, `"sensor":"s1","n":1,"mean":2,"hi":2`))
	testutil.Eventually(t, 5*time.Second, "running, caught up", func() bool {
		q := e.info("hot")
		return q.Status == "running" && q.Lag == 0 && q.OpenWindows == 0
	})
	if n := len(e.output("hot")); n != 5 {
		t.Fatalf("%d rows", n)
	}
	e.restart()
	if q := e.info("hot"); q.Status == statusPaused {
		t.Fatal("a resumed query is paused after a restart")
	}
	for _, op := range []func(context.Context, string) (query.QueryInfo, error){e.m.Pause, e.m.Resume} {
		if _, err := op(context.Background(), "nope"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("unknown query: %v", err)
		}
	}
}

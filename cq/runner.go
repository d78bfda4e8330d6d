package cq

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/mqstream/mqstream/query"
	"github.com/mqstream/mqstream/streams"
)

// runner runs one query on its own goroutine, which owns the windows.
type runner struct {
	m   *Manager
	def definition
	c   *query.Continuous // nil if the SQL no longer compiles

	ctx    context.Context
	cancel context.CancelFunc
	done   chan struct{} // closed when run returns (or at once if it never runs)

	// mu guards info, the figures SHOW QUERIES reports.
	mu struct {
		sync.Mutex
		info query.QueryInfo
	}
}

// readBatch is how many records a runner reads at a time.
const readBatch = 1000

// errCrash stops a runner as a crash would (Options.afterOutput).
var errCrash = errors.New("cq: simulated crash")

func newRunner(m *Manager, d definition, c *query.Continuous) *runner {
	r := &runner{m: m, def: d, c: c, done: make(chan struct{})}
	r.ctx, r.cancel = context.WithCancel(m.ctx)
	r.mu.info = query.QueryInfo{ID: d.ID, SQL: d.SQL, Created: d.Created, Status: "starting"}
	if c != nil {
		r.mu.info.Source, r.mu.info.Sink = c.Source, c.Name
	}
	return r
}

func (r *runner) info() query.QueryInfo {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.mu.info
}

// fail records a fatal error: the query stops (and, if it runs, retries).
func (r *runner) fail(err error) {
	r.mu.Lock()
	r.mu.info.Status, r.mu.info.Error = "error", err.Error()
	r.mu.Unlock()
}

// terminate stops the runner and waits for it.
func (r *runner) terminate() {
	r.cancel()
	<-r.done
}

// run runs the query until its context ends, and its publication on
// MQTT if it has one. After an error each starts again from its durable
// progress, after a growing pause: an output request that failed left
// nothing behind, and the windows are rebuilt from the input.
func (r *runner) run() {
	defer close(r.done)
	var wg sync.WaitGroup
	if r.c.Publish {
		if err := r.initPublished(); err != nil {
			r.setPublishError(err)
			r.m.log.Error("continuous query publication progress not initialised", "query", r.def.ID, "error", err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			r.retry("publish", r.publishOnce, r.setPublishError)
		}()
	}
	r.retry("query", r.runOnce, r.fail)
	wg.Wait()
}

// runOnce recovers the query's progress and runs it until an error.
func (r *runner) runOnce(ctx context.Context) error {
	m, c, id := r.m, r.c, r.def.ID
	if _, err := m.opts.Reader.DescribeStream(c.Name); errors.Is(err, streams.ErrStreamNotFound) {
		if _, err := m.opts.Writer.CreateStream(ctx, c.Name, streams.Retention{}); err != nil && !errors.Is(err, streams.ErrStreamExists) {
			return fmt.Errorf("create output stream %s: %w", c.Name, err)
		}
	}
	wm, resumed, err := recoverWatermark(m.opts.Reader, m.opts.KV, id, c.Name)
	if err != nil {
		return err
	}
	w := newWindower(c)
	var pos uint64
	if resumed {
		// Every window ending at or before wm has been output; the first
		// one that has not starts at FirstOpen(wm): read again from there.
		w.resume(wm)
		if pos, err = m.opts.Reader.OffsetAt(c.Source, c.Window.FirstOpen(time.Unix(0, wm))); err != nil {
			return fmt.Errorf("stream %s: %w", c.Source, err)
		}
	}
	hinted, hintedAt := wm, m.opts.Now()
	var out int64
	var lastEmit time.Time
	r.mu.Lock()
	r.mu.info.Status, r.mu.info.Error = "running", ""
	r.mu.Unlock()
	for {
		recs, err := m.opts.Reader.Read(c.Source, pos, streams.ReadOptions{MaxRecords: readBatch})
		if err != nil {
			return fmt.Errorf("read stream %s: %w", c.Source, err)
		}
		for i := range recs {
			w.add(&recs[i])
			pos = recs[i].Offset + 1
		}
		notify, next, err := m.opts.Reader.Notify(c.Source)
		if err != nil {
			return fmt.Errorf("stream %s: %w", c.Source, err)
		}
		now := m.opts.Now()
		atTail := pos >= next
		if atTail {
			// Input stopped: records appended from now on have timestamps
			// after now, so windows ending before now - IdleTimeout are
			// complete.
			w.advance(now.Add(-m.opts.IdleTimeout).UnixNano())
		}
		if rows, closed := w.closeDue(); closed > 0 {
			if len(rows) > 0 {
				if err := r.output(rows, w.wm); err != nil {
					return err
				}
				out += int64(len(rows))
				lastEmit = now
				if m.opts.afterOutput != nil && m.opts.afterOutput(id) {
					return errCrash
				}
			}
			r.hint(w.wm)
			hinted, hintedAt = w.wm, now
		} else if w.started && w.wm > hinted && now.Sub(hintedAt) >= m.opts.HintInterval {
			r.hint(w.wm)
			hinted, hintedAt = w.wm, now
		}
		r.report(w, pos, next, out, lastEmit)
		if !atTail {
			continue
		}
		t := time.NewTimer(m.opts.Tick)
		select {
		case <-notify:
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		}
		t.Stop()
	}
}

// output appends the rows of closed windows to the output stream as one
// request, each record carrying the watermark that closed them, and waits
// until they are durable. A request is stored whole or not at all.
func (r *runner) output(rows []query.Output, wm int64) error {
	recs := make([]streams.Record, len(rows))
	props := markers(r.def.ID, wm)
	for i, o := range rows {
		recs[i] = streams.Record{Topic: o.Topic, Payload: o.Payload, QoS: r.c.QoS, Retain: r.c.Retain, ContentType: "application/json", UserProperties: props}
	}
	done := make(chan error, 1)
	err := r.m.opts.Writer.Submit(streams.AppendRequest{Stream: r.c.Name, Records: recs, Done: func(_ uint64, err error) { done <- err }})
	if err == nil {
		// Even when stopping: the query's next start must find the
		// request's marker if the request is stored, so it may not stop
		// before knowing. The store always reports (it fails what is
		// queued when it closes).
		err = <-done
	}
	if err != nil {
		return fmt.Errorf("append to stream %s: %w", r.c.Name, err)
	}
	return nil
}

// hint records the watermark in the key/value namespace. It is written
// only once the output it covers is durable, and is a hint: losing it
// costs re-reading input, never a duplicate (the output carries it too).
func (r *runner) hint(wm int64) {
	id := r.def.ID
	err := r.m.opts.KV.Submit([]streams.KVWrite{{Key: hintKey(id), Value: encodeHint(wm)}}, true, func(err error) {
		if err != nil {
			r.m.log.Warn("continuous query progress hint not written", "query", id, "error", err)
		}
	})
	if err != nil {
		r.m.log.Warn("continuous query progress hint not written", "query", id, "error", err)
	}
}

func (r *runner) report(w *windower, pos, next uint64, out int64, lastEmit time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	in := &r.mu.info
	in.Offset, in.Lag = pos, int64(next)-int64(pos)
	if in.Lag < 0 {
		in.Lag = 0
	}
	if w.started {
		in.Watermark = time.Unix(0, w.wm).UTC()
	}
	in.OpenWindows, in.Groups = w.openWindows(), w.groups()
	in.RecordsIn, in.RowsOut, in.Late, in.Skipped, in.LastEmit = w.in, out, w.late, w.skipped, lastEmit
	if w.lastErr != nil {
		in.Error = "record skipped: " + w.lastErr.Error()
	}
}

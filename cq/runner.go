package cq

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strconv"
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
	// view is the state of a view (CREATE VIEW), nil for other queries.
	view *viewState
	// place is where its state and output go (homes.go).
	place place

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

func newRunner(m *Manager, d definition, c *query.Continuous, p place) *runner {
	r := &runner{m: m, def: d, c: c, place: p, done: make(chan struct{})}
	r.ctx, r.cancel = context.WithCancel(m.ctx)
	r.mu.info = query.QueryInfo{ID: d.ID, SQL: d.SQL, Created: d.Created, Status: "starting"}
	if c != nil && c.Kind == query.KindView {
		r.view = newViewState(c)
	}
	if c != nil {
		r.mu.info.Source, r.mu.info.Sink, r.mu.info.Kind = c.Source, c.Name, c.Kind
		if c.Kind == query.KindInsert && c.LateStream != "" {
			c.LateStream = d.ID + "_late" // named after the query: many write a stream
		}
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
	once := r.runOnce
	switch {
	case r.c.Kind == query.KindView:
		once = r.runView
	case r.c.Join != nil && r.c.Join.Kind == query.JoinInterval:
		once = r.runInterval
	case r.c.Emit == "changes" && r.c.Window.Sessions():
		once = r.runSessionChanges
	case r.c.Emit == "changes":
		once = r.runChanges
	}
	r.retry("query", once, r.fail)
	wg.Wait()
}

// runOnce recovers the query's progress and runs it until an error.
func (r *runner) runOnce(ctx context.Context) error {
	m, c, id := r.m, r.c, r.def.ID
	if err := r.ensureOutput(ctx); err != nil {
		return err
	}
	st, pos, err := r.recoverFinal()
	if err != nil {
		return err
	}
	hinted, _ := st.watermark()
	hintedAt := m.opts.Now()
	var out int64
	var lastEmit time.Time
	ahead := newReadAhead(m.opts.Reader, c.Source)
	for {
		recs, err := ahead.read(pos)
		if err != nil {
			return fmt.Errorf("read stream %s: %w", c.Source, err)
		}
		for i := range recs {
			st.feed(&recs[i])
			pos = recs[i].Offset + 1
		}
		// Late records before the output their batch allows: once output
		// is durable, so are they (a restart skips those written).
		notify, next, atTail, now, err := r.endOfBatch(st.takeLate(), pos)
		if err != nil {
			return err
		}
		if atTail {
			// Input stopped: records appended from now on have timestamps
			// after now, so windows ending before now - IdleTimeout are
			// complete.
			st.advance(now.Add(-m.idleOf(c.Hints.IdleTimeout)).UnixNano())
		}
		wm, started := st.watermark()
		if rows, closed := st.closeDue(); closed > 0 {
			if len(rows) > 0 {
				if err := r.output(rows, st.marks(id)); err != nil {
					return err
				}
				out += int64(len(rows))
				lastEmit = now
				if m.opts.afterOutput != nil && m.opts.afterOutput(id) {
					return errCrash
				}
			}
			st.hint(r)
			hinted, hintedAt = wm, now
		} else if started && wm > hinted && now.Sub(hintedAt) >= m.opts.HintInterval {
			st.hint(r)
			hinted, hintedAt = wm, now
		}
		windows, keys, cs := st.figures()
		size, nkeys := st.size()
		r.report(view{running: true, wm: wm, started: started, windows: windows, keys: keys, counts: cs, out: out, lastEmit: lastEmit, pos: pos, next: next,
			stateBytes: size, stateKeys: nkeys})
		// Over the limit once the windows due are output and freed: stop
		// here, the output durable up to the progress it carries.
		if err := r.checkState(size, nkeys); err != nil {
			return err
		}
		if !atTail {
			continue
		}
		if err := r.wait(ctx, notify); err != nil {
			return err
		}
	}
}

// finalState is the state of a query outputting final rows: its windows
// (windower) or its sessions (sessioner), and the progress its output
// carries.
type finalState interface {
	feed(r *streams.Record)
	advance(wm int64)
	closeDue() (out []query.Output, closed int)
	watermark() (wm int64, started bool)
	// marks are the user properties of an output request: the query's
	// progress once it is durable.
	marks(id string) []streams.UserProperty
	// hint writes the same progress in the key/value namespace.
	hint(r *runner)
	// figures are the open windows, the groups held and the counters.
	figures() (windows, groups int, c *counts)
	// size is the estimated memory of the groups held (state.go) and
	// the number of keys they belong to.
	size() (bytes int64, keys int)
	// takeLate returns the late records to write (WITH (late = TRUE)).
	takeLate() []streams.Record
}

// recoverFinal rebuilds nothing yet: it returns the state of a query
// restarting from its durable progress, and the input offset to read
// again from: where the first window (session) not output yet starts, on
// _timestamp a bisection away; on event time, the offset its progress
// names.
func (r *runner) recoverFinal() (finalState, uint64, error) {
	m, c, id := r.m, r.c, r.def.ID
	idle := int64(m.idleOf(c.Hints.IdleTimeout))
	var w *windower
	var x *sessioner
	var st finalState
	var in *intake
	if c.Window.Sessions() {
		x = newSessioner(c)
		st, in = sessionState{x}, &x.intake
	} else {
		w = newWindower(c)
		st, in = windowState{w}, &w.intake
	}
	in.idle = idle
	if err := r.recoverLate(in); err != nil {
		return nil, 0, err
	}
	var resumed bool
	var from time.Time
	switch {
	case c.EventTime:
		p, ok, err := recoverEvent(m.opts.Reader, r.place.kv, id, r.sink())
		if err != nil || !ok {
			return st, r.def.Start, err
		}
		if x != nil {
			x.resumeEvent(p)
		} else {
			w.resumeEvent(p)
		}
		return st, p.from, nil
	case x != nil:
		wm, start, ok, err := recoverSessions(m.opts.Reader, r.place.kv, id, r.sink())
		if err != nil {
			return nil, 0, err
		}
		if ok {
			x.resume(wm)
		}
		resumed, from = ok, time.Unix(0, start)
	default:
		wm, ok, err := recoverWatermark(m.opts.Reader, r.place.kv, id, r.sink())
		if err != nil {
			return nil, 0, err
		}
		if ok {
			// Every window ending at or before wm has been output; the
			// first one that has not starts at FirstOpen(wm).
			w.resume(wm)
		}
		resumed, from = ok, c.Window.FirstOpen(time.Unix(0, wm))
	}
	if !resumed {
		return st, r.def.Start, nil
	}
	pos, err := m.opts.Reader.OffsetAt(c.Source, from)
	if err != nil {
		return nil, 0, fmt.Errorf("stream %s: %w", c.Source, err)
	}
	return st, pos, nil
}

type windowState struct{ *windower }

func (w windowState) feed(r *streams.Record)   { w.add(r) }
func (w windowState) watermark() (int64, bool) { return max(w.wm, w.closedTo), w.started }
func (w windowState) marks(id string) []streams.UserProperty {
	if w.c.EventTime {
		return w.progress().marks(id)
	}
	return markers(id, propWatermark, w.wm)
}
func (w windowState) hint(r *runner) {
	if w.c.EventTime {
		r.hintAt(eventKey(r.def.ID), w.progress().encode())
		return
	}
	r.hint(w.wm)
}
func (w windowState) figures() (int, int, *counts) { return w.openWindows(), w.groups(), &w.counts }
func (w windowState) size() (int64, int)           { return w.bytes, len(w.keys) }

type sessionState struct{ *sessioner }

func (x sessionState) feed(r *streams.Record)   { x.add(r, nil) }
func (x sessionState) watermark() (int64, bool) { return max(x.wm, x.quietTo), x.started }
func (x sessionState) marks(id string) []streams.UserProperty {
	if x.c.EventTime {
		return x.progress().marks(id)
	}
	// Never below the watermark the query resumed at (a replay runs
	// below it): what was output up to there stays output.
	return append(markers(id, propWatermark, max(x.wm, x.quietTo)), streams.UserProperty{Key: propResume, Value: strconv.FormatInt(x.resumeFrom(), 10)})
}
func (x sessionState) hint(r *runner) {
	if x.c.EventTime {
		r.hintAt(eventKey(r.def.ID), x.progress().encode())
		return
	}
	r.hintAt(sessionKey(r.def.ID), binary.BigEndian.AppendUint64(encodeHint(max(x.wm, x.quietTo)), uint64(x.resumeFrom())))
}
func (x sessionState) figures() (int, int, *counts) { return x.open, x.open, &x.counts }
func (x sessionState) size() (int64, int)           { return x.bytes, len(x.keys) }

// endOfBatch ends a batch of input read up to pos: it writes the late
// records kept (before any later progress covers them), then returns
// what the query waits on at the input's end (a channel closed when the
// source grows past end), whether pos is there, and the time.
func (r *runner) endOfBatch(late []streams.Record, pos uint64) (notify <-chan struct{}, end uint64, atTail bool, now time.Time, err error) {
	if err = r.writeLate(late); err != nil {
		return nil, 0, false, time.Time{}, err
	}
	if notify, end, err = r.m.opts.Reader.Notify(r.c.Source); err != nil {
		return nil, 0, false, time.Time{}, fmt.Errorf("stream %s: %w", r.c.Source, err)
	}
	return notify, end, pos >= end, r.m.opts.Now(), nil
}

// writeLate appends late records to the query's late stream, each
// carrying its input offset, and waits until they are durable.
func (r *runner) writeLate(recs []streams.Record) error {
	if len(recs) == 0 {
		return nil
	}
	out := make([]streams.Record, len(recs))
	for i, rec := range recs {
		props := append(slices.Clip(rec.UserProperties), markers(r.def.ID, propInput, int64(rec.Offset))...)
		out[i] = streams.Record{Topic: rec.Topic, Payload: rec.Payload, QoS: rec.QoS, ContentType: rec.ContentType, UserProperties: props}
	}
	return r.appendWait(r.c.LateStream, out)
}

// sink is the output stream, where the search for progress stops.
func (r *runner) sink() streamFrom { return streamFrom{name: r.c.Name, from: r.def.From} }

// ensureOutput creates the output stream of a CREATE STREAM query if it
// is missing (a crash between a query's definition and its stream, or a
// stream deleted). INSERT INTO fails instead: it writes an existing
// stream.
func (r *runner) ensureOutput(ctx context.Context) error {
	name := r.c.Name
	if _, err := r.m.opts.Reader.DescribeStream(name); errors.Is(err, streams.ErrStreamNotFound) {
		if r.c.Kind == query.KindInsert {
			return fmt.Errorf("stream %s does not exist: INSERT INTO writes an existing stream (create it again, or TERMINATE QUERY %s)", name, r.def.ID)
		}
		if _, err := r.place.w.CreateStream(ctx, name, streams.Retention{}); err != nil && !errors.Is(err, streams.ErrStreamExists) {
			return fmt.Errorf("create output stream %s: %w", name, err)
		}
	}
	if late := r.c.LateStream; late != "" {
		if _, err := r.m.opts.Reader.DescribeStream(late); errors.Is(err, streams.ErrStreamNotFound) {
			if _, err := r.m.opts.Writer.CreateStream(ctx, late, streams.Retention{}); err != nil && !errors.Is(err, streams.ErrStreamExists) {
				return fmt.Errorf("create late stream %s: %w", late, err)
			}
		}
	}
	return nil
}

func (r *runner) setRunning() {
	r.mu.Lock()
	r.mu.info.Status, r.mu.info.Error = "running", ""
	r.mu.Unlock()
}

func (r *runner) wait(ctx context.Context, notify <-chan struct{}) error {
	return waitInput(ctx, notify, r.m.opts.Tick)
}

// waitInput waits for input (notify), the next tick or the end of ctx.
func waitInput(ctx context.Context, notify <-chan struct{}, tick time.Duration) error {
	t := time.NewTimer(tick)
	defer t.Stop()
	select {
	case <-notify:
	case <-t.C:
	case <-ctx.Done():
		return ctx.Err()
	}
	return nil
}

// output appends rows to the output stream as one request, each record
// carrying the query's progress (props), and waits until they are
// durable. A request is stored whole or not at all.
func (r *runner) output(rows []query.Output, props []streams.UserProperty) error {
	recs := make([]streams.Record, len(rows))
	for i, o := range rows {
		recs[i] = streams.Record{Topic: o.Topic, Payload: o.Payload, QoS: r.c.QoS, Retain: r.c.Retain, ContentType: "application/json", UserProperties: props}
	}
	return r.appendWait(r.c.Name, recs)
}

// writerOf is the writer of stream: the runner's place's (fenced by its
// term in a cluster) for its output stream; the manager's for others (a
// late stream, on a shard this node may not lead).
func (r *runner) writerOf(stream string) Writer {
	if stream == r.c.Name {
		return r.place.w
	}
	return r.m.opts.Writer
}

// appendWait appends recs to stream as one request and waits until it is
// durable (or failed).
func (r *runner) appendWait(stream string, recs []streams.Record) error {
	done := make(chan error, 1)
	err := r.writerOf(stream).Submit(streams.AppendRequest{Stream: stream, Records: recs, Done: func(_ uint64, err error) { done <- err }})
	if err == nil {
		// Even when stopping: the query's next start must find the
		// request's marker if the request is stored, so it may not stop
		// before knowing. The store always reports (it fails what is
		// queued when it closes).
		err = <-done
	}
	if err != nil {
		return fmt.Errorf("append to stream %s: %w", stream, err)
	}
	return nil
}

// hint records the watermark in the key/value namespace. It is written
// only once the output it covers is durable, and is a hint: losing it
// costs re-reading input, never a duplicate (the output carries it too).
// With it goes the output stream's end (when known): the query's later
// output comes after it, so the search for the newest output record stops
// there (recoverProgress), however much others wrote before it (INSERT
// INTO).
func (r *runner) hint(wm int64) { r.hintAt(hintKey(r.def.ID), encodeHint(wm)) }

// hintAt writes hint val at key, followed by the output stream's end.
func (r *runner) hintAt(key []byte, val []byte) {
	id := r.def.ID
	if info, err := r.m.opts.Reader.DescribeStream(r.c.Name); err == nil {
		val = binary.BigEndian.AppendUint64(val, info.NextOffset)
	}
	err := r.place.kv.Submit([]streams.KVWrite{{Key: key, Value: val}}, true, func(err error) {
		if err != nil {
			r.m.log.Warn("continuous query progress hint not written", "query", id, "error", err)
		}
	})
	if err != nil {
		r.m.log.Warn("continuous query progress hint not written", "query", id, "error", err)
	}
}

// view is what SHOW QUERIES shows of a query's state. running makes the
// status running (with the figures, at once: never running with the
// figures of a runner that has not reported yet).
type view struct {
	running       bool
	wm            int64
	started       bool
	windows, keys int
	counts        *counts
	out           int64
	lastEmit      time.Time
	pos, next     uint64
	stateBytes    int64
	stateKeys     int
}

func (r *runner) report(v view) {
	r.mu.Lock()
	defer r.mu.Unlock()
	in := &r.mu.info
	if v.running {
		in.Status, in.Error = "running", ""
	}
	in.Offset, in.Lag, in.LagSeconds = v.pos, int64(v.next)-int64(v.pos), 0
	if in.Lag < 0 {
		in.Lag = 0
	}
	if in.Lag > 0 && v.counts.lastTS != 0 {
		// Records wait: how old is the last one read.
		in.LagSeconds = max(0, r.m.opts.Now().Sub(time.Unix(0, v.counts.lastTS)).Seconds())
	}
	if v.started {
		in.Watermark = time.Unix(0, v.wm).UTC()
	}
	in.OpenWindows, in.Groups = v.windows, v.keys
	in.StateBytes, in.StateKeys = v.stateBytes, v.stateKeys
	in.RecordsIn, in.RowsOut, in.Late, in.Skipped, in.LastEmit = v.counts.in, v.out, v.counts.late, v.counts.skipped, v.lastEmit
	if v.counts.lastErr != nil {
		in.Error = "record skipped: " + v.counts.lastErr.Error()
	}
}

package cq

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/mqstream/mqstream/query"
	"github.com/mqstream/mqstream/streams"
)

// A view (CREATE VIEW v AS SELECT k, count(*) ... GROUP BY k[, window])
// is a query that writes nothing: its runner keeps a group per key (and
// window) in memory, updated with each input record, and SELECT ... FROM
// v reads the groups' current rows. Windows are never closed by the
// watermark: a view holds every window of the records its source keeps.
//
// Its state is rebuilt from the source stream at start-up (and after an
// error): the rows are a function of the records kept, so the rebuilt
// view equals the one that ran. Reads wait until the rebuild has reached
// the end the source had when it began. Retention: windows starting
// before the source's oldest record kept are dropped (live and rebuilt
// views drop the same ones); a view without a window counts every record
// it has read, which after a restart are the records still kept.

// viewState is a view's groups, read by SQL while the runner updates
// them.
type viewState struct {
	c *query.Continuous
	// mu guards ch, ready and err, and the Continuous's evaluation
	// buffers (which updates and reads share).
	mu    sync.Mutex
	ch    *changer
	ready chan struct{} // closed once the state covers the source as it was when the (re)build began
	err   error         // why the last (re)build failed, until one is ready
}

func newViewState(c *query.Continuous) *viewState {
	v := &viewState{c: c}
	v.reset()
	return v
}

// reset empties the state for a (re)build; readers wait until it is
// done (those waiting already keep waiting).
func (v *viewState) reset() {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.ch = newChanger(v.c)
	v.ch.keep = true
	if v.ready != nil {
		select {
		case <-v.ready:
		default:
			return
		}
	}
	v.ready = make(chan struct{})
}

var _ query.ViewReader = (*viewState)(nil)

// Plan returns the view's compiled query.
func (v *viewState) Plan() *query.Continuous { return v.c }

// Rows returns the view's rows: by window, then by key (in the order of
// their encoding). It waits while the view (re)builds its state.
func (v *viewState) Rows(ctx context.Context) ([][]any, error) {
	if err := v.waitReady(ctx); err != nil {
		return nil, err
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	var rows [][]any
	for _, s := range v.ch.openWindows() {
		w := v.ch.windows[s]
		keys := make([]string, 0, len(w))
		for k := range w {
			keys = append(keys, k)
		}
		slices.SortFunc(keys, func(a, b string) int { return bytes.Compare([]byte(a), []byte(b)) })
		for _, k := range keys {
			o, ok, err := v.c.Result(w[k], time.Unix(0, s).UTC())
			if err != nil {
				return nil, err
			}
			if ok {
				rows = append(rows, o.Values)
			}
		}
	}
	return rows, nil
}

// Lookup returns the view's rows for group key key (as
// query.Continuous.JoinInput makes it): one per window holding the key,
// in window order. It waits while the view (re)builds its state.
func (v *viewState) Lookup(ctx context.Context, key []byte) ([][]any, error) {
	if err := v.waitReady(ctx); err != nil {
		return nil, err
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	var rows [][]any
	if !v.c.Windowed() {
		if g := v.ch.windows[0][string(key)]; g != nil {
			o, ok, err := v.c.Result(g, time.Time{})
			if err != nil || !ok {
				return nil, err
			}
			rows = append(rows, o.Values)
		}
		return rows, nil
	}
	// The windows holding the key, in order: a pass over the windows,
	// then a sort of those few.
	var starts []int64
	for s, w := range v.ch.windows {
		if w[string(key)] != nil {
			starts = append(starts, s)
		}
	}
	slices.Sort(starts)
	for _, s := range starts {
		g := v.ch.windows[s][string(key)]
		o, ok, err := v.c.Result(g, time.Unix(0, s).UTC())
		if err != nil {
			return nil, err
		}
		if ok {
			rows = append(rows, o.Values)
		}
	}
	return rows, nil
}

// waitReady waits while the view (re)builds its state; it fails at once
// if the last (re)build failed.
func (v *viewState) waitReady(ctx context.Context) error {
	v.mu.Lock()
	ready, failed := v.ready, v.err
	v.mu.Unlock()
	select {
	case <-ready:
		return nil
	default:
		if failed != nil {
			return fmt.Errorf("view %s cannot be read: %w", v.c.Name, failed)
		}
	}
	select {
	case <-ready:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("view %s is rebuilding its state from stream %s: %w", v.c.Name, v.c.Source, ctx.Err())
	}
}

// View returns the view named name.
func (m *Manager) View(name string) (query.ViewReader, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for id, r := range m.mu.queries {
		if r.view != nil && strings.EqualFold(id, name) {
			return r.view, true
		}
	}
	return nil, false
}

// DropView terminates view name; it is an error if name is another kind
// of query.
func (m *Manager) DropView(ctx context.Context, name string) error {
	m.mu.Lock()
	r := m.mu.queries[name]
	m.mu.Unlock()
	if r != nil && r.view == nil {
		return sqlError(query.Pos{}, "%s is not a view: TERMINATE QUERY %s stops it", name, name)
	}
	if r == nil {
		return &query.Error{Code: query.CodeSQL, Message: fmt.Sprintf("unknown view %q (SHOW VIEWS lists them)", name), Err: ErrNotFound}
	}
	if users := m.lookups(name); len(users) > 0 {
		return &query.Error{Code: query.CodeSQL, Message: fmt.Sprintf("view %s is looked up by %s: terminate them first", name, strings.Join(users, ", ")), Err: query.ErrStreamInUse}
	}
	return m.Terminate(ctx, name)
}

// runView (re)builds a view's state from its source's first record kept
// and keeps it up to date until an error, which reads of a view not
// rebuilt yet then answer at once.
func (r *runner) runView(ctx context.Context) error {
	err := r.keepView(ctx)
	if err != nil && ctx.Err() == nil {
		r.view.mu.Lock()
		r.view.err = err
		r.view.mu.Unlock()
	}
	return err
}

func (r *runner) keepView(ctx context.Context) error {
	m, c, v := r.m, r.c, r.view
	v.reset()
	info, err := m.opts.Reader.DescribeStream(c.Source)
	if err != nil {
		return fmt.Errorf("stream %s: %w", c.Source, err)
	}
	pos, target := info.FirstOffset, info.NextOffset
	var trimmedTo uint64
	if c.Windowed() {
		if trimmedTo, err = r.dropTrimmed(0, true); err != nil {
			return err
		}
	}
	ahead := newReadAhead(m.opts.Reader, c.Source)
	for {
		recs, err := ahead.read(pos)
		if err != nil {
			return fmt.Errorf("read stream %s: %w", c.Source, err)
		}
		v.mu.Lock()
		for i := range recs {
			v.ch.add(&recs[i], nil, true)
			pos = recs[i].Offset + 1
		}
		v.mu.Unlock()
		notify, next, err := m.opts.Reader.Notify(c.Source)
		if err != nil {
			return fmt.Errorf("stream %s: %w", c.Source, err)
		}
		atTail := pos >= next
		if atTail && c.Windowed() {
			if trimmedTo, err = r.dropTrimmed(trimmedTo, false); err != nil {
				return err
			}
		}
		if pos >= target {
			select {
			case <-v.ready:
			default:
				v.mu.Lock()
				close(v.ready)
				v.err = nil
				v.mu.Unlock()
				r.setRunning()
			}
		}
		ch := v.ch
		windows := len(ch.windows)
		if !c.Windowed() {
			windows = 0 // one map of groups, no window
		}
		v.mu.Lock()
		size, nkeys := ch.stateSize()
		v.mu.Unlock()
		r.report(view{wm: ch.wm, started: ch.started, windows: windows, keys: ch.groups, counts: &ch.counts, pos: pos, next: next, stateBytes: size, stateKeys: nkeys})
		if err := r.checkState(size, nkeys); err != nil {
			v.reset() // frees the groups; reads answer err
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

// dropTrimmed drops the windows starting before the source's oldest
// record kept, and keeps such windows from being made again, once
// retention has deleted records: when the oldest offset kept is past
// checked (or force is set, at a (re)build). It returns the oldest offset
// kept. Without deletions (oldest offset 0) nothing is dropped.
func (r *runner) dropTrimmed(checked uint64, force bool) (uint64, error) {
	m, c, v := r.m, r.c, r.view
	info, err := m.opts.Reader.DescribeStream(c.Source)
	if err != nil {
		return 0, fmt.Errorf("stream %s: %w", c.Source, err)
	}
	if info.FirstOffset == 0 || !force && info.FirstOffset == checked {
		return info.FirstOffset, nil
	}
	recs, err := m.opts.Reader.Read(c.Source, info.FirstOffset, streams.ReadOptions{MaxRecords: 1})
	if err != nil && !errors.Is(err, streams.ErrStreamNotFound) {
		return 0, fmt.Errorf("read stream %s: %w", c.Source, err)
	}
	if len(recs) == 0 {
		return info.FirstOffset, nil
	}
	first := recs[0].Timestamp.UnixNano()
	v.mu.Lock()
	defer v.mu.Unlock()
	v.ch.floor = max(v.ch.floor, first)
	for s := range v.ch.windows {
		if s < v.ch.floor {
			v.ch.drop(s)
		}
	}
	return info.FirstOffset, nil
}

// lookups returns the queries that look view name up, sorted.
func (m *Manager) lookups(name string) []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []string
	for id, r := range m.mu.queries {
		if r.c != nil && r.c.Join != nil && r.c.Join.Kind == query.JoinLookup && strings.EqualFold(r.c.Join.Right, name) {
			out = append(out, id)
		}
	}
	slices.Sort(out)
	return out
}

// lookedUp returns the view a lookup join reads, once it has built its
// state.
func (r *runner) lookedUp(ctx context.Context) (*viewState, error) {
	return r.m.lookedUp(ctx, r.c.Join.Right, fmt.Sprintf("the query looks it up (create it again, or TERMINATE QUERY %s)", r.def.ID))
}

// lookedUp returns view name once it has built its state; who says who
// looks it up, for the error if it does not exist.
func (m *Manager) lookedUp(ctx context.Context, name, who string) (*viewState, error) {
	vr, ok := m.View(name)
	if !ok {
		return nil, fmt.Errorf("view %s does not exist: %s", name, who)
	}
	v := vr.(*viewState)
	if err := v.waitReady(ctx); err != nil {
		return nil, err
	}
	return v, nil
}

// lookup joins record rec with the view's rows for its key and appends
// the output rows to out, unless quiet.
func (ch *changer) lookup(rec *streams.Record, out []query.Output, quiet bool) []query.Output {
	key, vals, ok, err := ch.c.JoinInput(0, rec)
	if err != nil || !ok {
		if err != nil {
			ch.skip(err)
		}
		return out
	}
	var rows [][]any
	if key != nil {
		if rows, err = ch.look.Lookup(ch.ctx, key); err != nil {
			ch.skip(err)
			return out
		}
	}
	matched := false
	for _, row := range rows {
		o, on, ok, err := ch.c.Pair(vals, row)
		matched = matched || on
		if err != nil {
			ch.skip(err)
			continue
		}
		if ok && !quiet {
			out = append(out, o)
		}
	}
	if !matched && ch.c.Join.Left {
		o, _, ok, err := ch.c.Pair(vals, nil)
		if err != nil {
			ch.skip(err)
		} else if ok && !quiet {
			out = append(out, o)
		}
	}
	return out
}

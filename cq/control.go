package cq

import (
	"context"
	"fmt"

	"github.com/mqstream/mqstream/query"
	"github.com/mqstream/mqstream/streams"
)

// Pausing a query stops its runner the way a node's shutdown does, and
// resuming it starts a new runner the way a node's start does: from the
// progress its output carries (doc.go), rebuilding its windows from the
// input. Nothing is lost nor repeated, whatever was appended meanwhile,
// and the paused state is kept in the query's definition, so a paused
// query stays paused across restarts.

// prepare makes the runner of a kept definition: paused, failed (its SQL
// no longer compiles) or ready to launch (runnable).
func (m *Manager) prepare(d definition) *runner {
	return m.prepareAt(d, place{kv: m.opts.KV, w: m.opts.Writer})
}

// prepareAt is prepare for a runner at p.
func (m *Manager) prepareAt(d definition, p place) *runner {
	c, err := query.CompileContinuousIn(d.SQL, m.resolve)
	r := newRunner(m, d, c, p)
	switch {
	case err != nil:
		r.fail(fmt.Errorf("the query no longer compiles: %w", err))
		r.park()
		m.log.Error("continuous query not restored", "query", d.ID, "error", err)
	case d.Paused:
		r.mu.Lock()
		r.mu.info.Status, r.mu.info.Error = statusPaused, d.PauseError
		r.mu.Unlock()
		r.park()
	}
	return r
}

// restartAs puts a runner of d in the place of query id's stopped runner
// r, keeping r's figures, and launches it if it runs.
func (m *Manager) restartAs(id string, r *runner, d definition) *runner {
	nr := m.prepareAt(d, r.place)
	nr.carry(r)
	m.mu.Lock()
	defer m.mu.Unlock()
	m.mu.queries[id] = nr
	switch {
	case !nr.runnable():
	case m.mu.closed:
		nr.park()
	default:
		m.launch(nr) // under the lock: Close waits for what was launched before it
	}
	return nr
}

// statusPaused is the status of a paused query.
const statusPaused = "paused"

// park marks a runner that will not run: terminate returns at once.
func (r *runner) park() {
	r.cancel()
	close(r.done)
}

// runnable reports whether the runner is to be launched.
func (r *runner) runnable() bool { return r.c != nil && !r.def.Paused }

// claim returns query id's runner and marks the id busy until release, so
// that two changes of one query (TERMINATE, PAUSE, RESUME) do not
// interleave. Errors are *query.Error.
func (m *Manager) claim(id string) (*runner, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	r := m.mu.queries[id]
	switch {
	case r == nil:
		return nil, &query.Error{Code: query.CodeSQL, Message: fmt.Sprintf("unknown query %q (SHOW QUERIES lists them)", id), Err: ErrNotFound}
	case m.mu.busy[id]:
		return nil, &query.Error{Code: query.CodeSQL, Message: fmt.Sprintf("query %s is being changed by another request; try again", id)}
	}
	m.mu.busy[id] = true
	return r, nil
}

func (m *Manager) release(id string) {
	m.mu.Lock()
	delete(m.mu.busy, id)
	m.mu.Unlock()
}

// Pause stops query id, keeping its progress, until Resume; the paused
// state survives restarts. Pausing a paused query changes nothing.
func (m *Manager) Pause(ctx context.Context, id string) (query.QueryInfo, error) {
	return m.setPaused(ctx, id, true)
}

// Resume runs paused query id again from where it stopped. Resuming a
// query that is not paused changes nothing.
func (m *Manager) Resume(ctx context.Context, id string) (query.QueryInfo, error) {
	return m.setPaused(ctx, id, false)
}

func (m *Manager) setPaused(ctx context.Context, id string, paused bool) (query.QueryInfo, error) {
	r, err := m.claim(id)
	if err != nil {
		return query.QueryInfo{}, err
	}
	defer m.release(id)
	if err := m.elsewhere(r); err != nil {
		return query.QueryInfo{}, err
	}
	if r.view != nil {
		return query.QueryInfo{}, sqlError(query.Pos{}, "%s is a view: a view cannot be paused (DROP VIEW %s, and CREATE VIEW again later: it is rebuilt from its source)", id, id)
	}
	if r.def.Paused == paused {
		return r.info(), nil
	}
	d := r.def
	d.Paused, d.PauseError = paused, ""
	v, err := encodeDefinition(d)
	if err != nil {
		return query.QueryInfo{}, err
	}
	// The definition first: once PAUSE has answered, a restart finds the
	// query paused.
	if err := r.place.kv.Write(ctx, streams.KVWrite{Key: defKey(id), Value: v}); err != nil {
		return query.QueryInfo{}, fmt.Errorf("cq: keep query %s: %w", id, err)
	}
	r.terminate() // its output requests are durable or not made: see runner.output
	nr := m.restartAs(id, r, d)
	m.log.Info("continuous query paused or resumed", "query", id, "paused", paused)
	return nr.info(), nil
}

package cq

import (
	"errors"
	"fmt"
	"time"

	"github.com/mqstream/mqstream/streams"
)

// A query's state is its groups: one per key and pane (windows, with the
// combinations of panes a hopping window caches), per open session, or
// per key and window (views). Each runner keeps a
// running estimate of their memory, updated as groups are created and
// freed (query.Continuous.GroupBytes plus the fixed costs below), never
// by walking them. After each batch of input, once the windows it closed
// are output and freed, a query whose estimate passes
// Options.MaxStateBytes (queries.max_state_bytes) stops as a PAUSE QUERY
// would: its output is durable up to its progress, and the pause is kept
// in its definition with the error, so that SHOW QUERIES shows it across
// restarts. The node's memory then holds at most the limit plus one batch
// of input per query. After the limit is raised (and the node
// restarted), RESUME QUERY runs it again from its progress, as any
// resume: nothing lost or repeated.

// Estimated fixed costs, beyond the groups themselves: a key's map entry
// and its list of panes, a pane in that list, an open session.
const (
	keyOverhead     = 96
	paneOverhead    = 48
	sessionOverhead = 120
)

// stateLimitError stops a query whose state passed the limit.
type stateLimitError struct {
	bytes, limit int64
	keys         int
	view         bool // a view: it stops
	push         bool // a push query: it ends
}

func (e *stateLimitError) Error() string {
	what, then := "query", "it is paused: raise the limit (fewer keys or shorter windows need less), restart the node and RESUME QUERY"
	switch {
	case e.view:
		what, then = "view", "it stopped: raise the limit (fewer keys or shorter windows need less) and restart the node, which rebuilds it"
	case e.push:
		what, then = "push query", "it ended: narrow it (fewer keys, shorter windows or a shorter join interval need less) or raise the limit"
	}
	return fmt.Sprintf("state limit: the %s's state (about %s over %d keys) passed queries.max_state_bytes (%s); %s",
		what, formatBytes(e.bytes), e.keys, formatBytes(e.limit), then)
}

// ErrStateLimit matches the error of a query paused for its state.
var ErrStateLimit = errors.New("cq: query state over queries.max_state_bytes")

func (e *stateLimitError) Is(target error) bool { return target == ErrStateLimit }

// formatBytes writes n with a binary unit, one decimal.
func formatBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	f, u := float64(n), 0
	for f >= unit && u < 3 {
		f /= unit
		u++
	}
	return fmt.Sprintf("%.1f %s", f, [...]string{"B", "KiB", "MiB", "GiB"}[u])
}

// checkPushState is checkState for a push query, which ends.
func (m *Manager) checkPushState(bytes int64, keys int) error {
	if limit := m.opts.MaxStateBytes; limit > 0 && bytes > limit {
		return &stateLimitError{bytes: bytes, limit: limit, keys: keys, push: true}
	}
	return nil
}

// checkState returns a *stateLimitError if bytes passes the manager's
// limit.
func (r *runner) checkState(bytes int64, keys int) error {
	if limit := r.m.opts.MaxStateBytes; limit > 0 && bytes > limit {
		return &stateLimitError{bytes: bytes, limit: limit, keys: keys, view: r.view != nil}
	}
	return nil
}

// stateLimited records that r stopped for its state, and keeps the pause
// in its definition (from another goroutine: the pause waits for r to
// end).
//
// A view cannot be paused: it stops with status error instead (reads of
// it answer the error) until the node restarts, when it is rebuilt.
func (r *runner) stateLimited(err error) {
	status := statusPaused
	if r.view != nil {
		status = "error"
	}
	r.mu.Lock()
	r.mu.info.Status, r.mu.info.Error = status, err.Error()
	r.mu.info.StateLimitPauses++
	r.mu.Unlock()
	if r.view != nil {
		r.m.log.Error("view stopped: its state passed queries.max_state_bytes; it is rebuilt at the next start", "query", r.def.ID, "error", err)
		return
	}
	r.m.log.Error("continuous query paused: its state passed queries.max_state_bytes", "query", r.def.ID, "error", err)
	r.m.wg.Add(1)
	go func() {
		defer r.m.wg.Done()
		r.m.pauseForState(r, err.Error())
	}()
}

// pauseForState keeps r's query paused, with reason, once r has ended,
// unless the query was changed meanwhile (terminated, paused).
func (m *Manager) pauseForState(r *runner, reason string) {
	id := r.def.ID
	<-r.done
	for {
		cur, err := m.claim(id)
		if errors.Is(err, ErrNotFound) {
			return
		}
		if err == nil {
			defer m.release(id)
			if cur != r {
				return // changed meanwhile
			}
			break
		}
		select { // another change of the query is under way: let it end
		case <-m.ctx.Done():
			return
		case <-time.After(m.opts.Tick):
		}
	}
	d := r.def
	d.Paused, d.PauseError = true, reason
	v, err := encodeDefinition(d)
	if err == nil {
		err = r.place.kv.Write(m.ctx, streams.KVWrite{Key: defKey(id), Value: v})
	}
	if err != nil {
		// Not kept: the runner stays stopped (paused) until a restart.
		m.log.Error("continuous query pause not kept", "query", id, "error", err)
		return
	}
	m.restartAs(id, r, d) // paused: not launched
}

// carry keeps the figures of the runner nr replaces, but its status and
// error, in what nr reports.
func (nr *runner) carry(old *runner) {
	in := old.info()
	nr.mu.Lock()
	defer nr.mu.Unlock()
	in.Status, in.Error = nr.mu.info.Status, nr.mu.info.Error
	nr.mu.info = in
}

package cq

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/mqstream/mqstream/query"
	"github.com/mqstream/mqstream/streams"
)

// Push runs push query c (SELECT ... EMIT CHANGES|FINAL) from the end of
// its input: records appended from now on. It calls emit with each row
// until ctx ends or the manager closes (it then returns nil), emit fails,
// or c's LIMIT is reached. Nothing of it is kept: a push query is gone
// with its caller. It implements query.Queries.
func (m *Manager) Push(ctx context.Context, c *query.Continuous, emit func(query.Output) error) error {
	pos, err := m.pushStart(c.Source, c.SourceAt)
	if err != nil {
		return err
	}
	var rightPos uint64
	if j := c.Join; j != nil && j.Kind == query.JoinInterval {
		if rightPos, err = m.pushStart(j.Right, j.RightAt); err != nil {
			return err
		}
	}
	m.mu.Lock()
	if m.mu.closed || m.pushCtx.Err() != nil {
		m.mu.Unlock()
		return errors.New("cq: the node is shutting down")
	}
	m.wg.Add(1)
	m.mu.pushes++
	m.mu.Unlock()
	defer func() {
		m.mu.Lock()
		m.mu.pushes--
		m.mu.Unlock()
		m.wg.Done()
	}()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer context.AfterFunc(m.pushCtx, cancel)()
	p := &pusher{m: m, c: c, emit: emit, pos: pos, rightPos: rightPos}
	m.log.Debug("push query started", "source", c.Source, "emit", c.Emit)
	if c.Join != nil && c.Join.Kind == query.JoinInterval {
		err = p.runInterval(ctx)
	} else {
		err = p.run(ctx)
	}
	if ctx.Err() != nil || errors.Is(err, errLimit) {
		err = nil // the caller, or the node, stopped it; or its LIMIT
	}
	m.log.Debug("push query ended", "source", c.Source, "rows", p.rows, "error", err)
	return err
}

// pushStart returns where a push query starts reading stream name (named
// at pos in its SQL): its end.
func (m *Manager) pushStart(name string, at query.Pos) (uint64, error) {
	info, err := m.opts.Reader.DescribeStream(name)
	if errors.Is(err, streams.ErrStreamNotFound) {
		return 0, &query.Error{Code: query.CodeSQL, Message: fmt.Sprintf("unknown stream %q: a push query reads an existing stream (SHOW STREAMS lists them)", name),
			Line: at.Line, Column: at.Column}
	}
	if err != nil {
		return 0, err
	}
	return info.NextOffset, nil
}

// EndPushes ends the push queries running now, and refuses new ones (a
// node shutting down).
func (m *Manager) EndPushes() { m.endPushes() }

// Pushes returns how many push queries run now.
func (m *Manager) Pushes() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.mu.pushes
}

// pusher runs one push query; its goroutine owns it.
type pusher struct {
	m    *Manager
	c    *query.Continuous
	emit func(query.Output) error
	pos  uint64 // next input offset
	// rightPos is the next offset of an interval join's second input.
	rightPos uint64
	rows     int64
}

// errLimit ends a push query that has emitted its LIMIT of rows.
var errLimit = errors.New("limit reached")

func (p *pusher) run(ctx context.Context) error {
	m, c := p.m, p.c
	if c.Limit == 0 {
		return nil
	}
	var w *windower
	var ch *changer
	var ss *sessioner
	idle := m.idleOf(c.Hints.IdleTimeout)
	switch {
	case c.Window.Sessions():
		ss = newSessioner(c)
		ss.idle = int64(idle)
	case c.Emit == "final":
		w = newWindower(c)
		w.idle = int64(idle)
	default:
		ch = newChanger(c)
		ch.ctx = ctx
		if c.EventTime {
			ch.idle = int64(idle) // EMIT CHANGES on event time (eventchanges.go)
		}
	}
	var rows []query.Output
	for {
		if ch != nil && c.Join != nil {
			// A lookup: the view, each batch (see runChanges).
			var err error
			if ch.look, err = p.lookedUp(ctx); err != nil {
				return err
			}
		}
		recs, err := m.opts.Reader.Read(c.Source, p.pos, streams.ReadOptions{MaxRecords: readBatch})
		if err != nil {
			return fmt.Errorf("read stream %s: %w", c.Source, err)
		}
		for i := range recs {
			p.pos = recs[i].Offset + 1
			switch {
			case ch != nil:
				rows = ch.add(&recs[i], rows[:0], false)
			case ss != nil:
				rows = ss.add(&recs[i], rows[:0])
			default:
				w.add(&recs[i])
				continue
			}
			if err := p.send(rows); err != nil {
				return err
			}
		}
		notify, end, err := m.opts.Reader.Notify(c.Source)
		if err != nil {
			return fmt.Errorf("stream %s: %w", c.Source, err)
		}
		atTail := p.pos >= end
		idleWM := m.opts.Now().Add(-idle).UnixNano()
		switch {
		case w != nil:
			if atTail {
				w.advance(idleWM)
			}
			out, _ := w.closeDue()
			if err := p.send(out); err != nil {
				return err
			}
		case ss != nil:
			if atTail {
				ss.advance(idleWM)
			}
			out, _ := ss.closeDue()
			if err := p.send(out); err != nil {
				return err
			}
		case atTail:
			// Held updates (EMIT_INTERVAL) due by now: a record appended
			// later is stamped later.
			if err := p.send(ch.flushTo(m.opts.Now().UnixNano(), rows[:0], false)); err != nil {
				return err
			}
			ch.advance(idleWM)
		}
		// Over queries.max_state_bytes: the push query ends with the
		// reason (it keeps nothing, so there is nothing to pause).
		if err := m.checkPushState(p.stateSize(w, ss, ch)); err != nil {
			return err
		}
		if atTail {
			if err := waitInput(ctx, notify, m.opts.Tick); err != nil {
				return err
			}
		}
	}
}

// stateSize is the estimated memory of the push query's state and its
// keys, whichever of the operators it runs.
func (p *pusher) stateSize(w *windower, ss *sessioner, ch *changer) (int64, int) {
	switch {
	case w != nil:
		return w.bytes, len(w.keys)
	case ss != nil:
		return ss.bytes, len(ss.keys)
	}
	return ch.stateSize()
}

// send emits rows, up to the query's limit.
func (p *pusher) send(rows []query.Output) error {
	for _, o := range rows {
		if err := p.emit(o); err != nil {
			return err
		}
		p.rows++
		if p.c.Limit >= 0 && p.rows >= p.c.Limit {
			return errLimit
		}
	}
	return nil
}

// lookedUp returns the view a push query looks up, once it has built its
// state.
func (p *pusher) lookedUp(ctx context.Context) (*viewState, error) {
	return p.m.lookedUp(ctx, p.c.Join.Right, "the push query")
}

// runInterval runs a push query joining two streams within an interval,
// from their ends.
func (p *pusher) runInterval(ctx context.Context) error {
	m, c := p.m, p.c
	if c.Limit == 0 {
		return nil
	}
	in := [2]*joinInput{{name: c.Source, pos: p.pos}, {name: c.Join.Right, pos: p.rightPos}}
	j := newJoiner(c)
	return m.joinLoop(ctx, c, in, j, p.send, func(time.Time) error { return m.checkPushState(j.size()) })
}

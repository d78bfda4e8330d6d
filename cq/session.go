package cq

import (
	"cmp"
	"slices"
	"time"

	"github.com/mqstream/mqstream/query"
	"github.com/mqstream/mqstream/streams"
)

// sessioner is the state of a push query with session windows: each key's
// open session, [start, last record + gap), never longer than MaxSession
// if set. A record of the key at or after its session's end (or its
// maximum length) closes it and starts the next; the watermark closes the
// sessions of keys that went quiet. With EMIT FINAL a session outputs one
// row when it closes; with EMIT CHANGES, its updated row with each record.
// Timestamps never decrease within a stream, so sessions never merge. One
// goroutine owns it.
type sessioner struct {
	c        *query.Continuous
	gap, max int64
	final    bool
	keys     map[string]*session
	seq      int64 // numbers sessions in order of creation
	wm       int64
	counts
}

// session is one key's open session.
type session struct {
	start, last, seq int64
	g                *query.Group
}

func newSessioner(c *query.Continuous) *sessioner {
	return &sessioner{c: c, gap: int64(c.Window.Gap), max: int64(c.Window.MaxSession), final: c.Emit == "final", keys: map[string]*session{}}
}

// end is when s closes if no record of its key comes.
func (x *sessioner) end(s *session) int64 {
	e := s.last + x.gap
	if x.max > 0 {
		e = min(e, s.start+x.max)
	}
	return e
}

// add feeds one record and appends the rows it makes to out.
func (x *sessioner) add(r *streams.Record, out []query.Output) []query.Output {
	x.in++
	ts := r.Timestamp.UnixNano()
	x.lastTS = ts
	key, ok, err := x.c.Eval(r)
	if err != nil {
		x.skip(err)
		return out
	}
	if !ok {
		return out
	}
	s := x.keys[string(key)]
	if s != nil && ts >= x.end(s) {
		out = x.close(out, s)
		s = nil
	}
	if s == nil {
		x.seq++
		s = &session{start: ts, seq: x.seq, g: x.c.NewGroup()}
		x.keys[string(key)] = s
	}
	s.last = max(s.last, ts)
	if err := x.c.Add(s.g); err != nil {
		x.skip(err)
		return out
	}
	if !x.final {
		out = x.result(out, s)
	}
	x.wm = max(x.wm, ts)
	return out
}

// close outputs s's final row (EMIT FINAL).
func (x *sessioner) close(out []query.Output, s *session) []query.Output {
	if x.final {
		out = x.result(out, s)
	}
	return out
}

func (x *sessioner) result(out []query.Output, s *session) []query.Output {
	o, ok, err := x.c.ResultSpan(s.g, time.Unix(0, s.start).UTC(), time.Unix(0, x.end(s)).UTC())
	if err != nil {
		x.skip(err)
		return out
	}
	if ok {
		out = append(out, o)
	}
	return out
}

func (x *sessioner) skip(err error) {
	x.skipped++
	x.lastErr = err
}

// advance raises the watermark to wm and closes the sessions ending at or
// before it, in order of their ends (then of their starts).
func (x *sessioner) advance(wm int64, out []query.Output) []query.Output {
	x.wm = max(x.wm, wm)
	var done []*session
	for k, s := range x.keys {
		if x.end(s) <= x.wm {
			done = append(done, s)
			delete(x.keys, k)
		}
	}
	slices.SortFunc(done, func(a, b *session) int {
		if c := cmp.Compare(x.end(a), x.end(b)); c != 0 {
			return c
		}
		return cmp.Compare(a.seq, b.seq)
	})
	for _, s := range done {
		out = x.close(out, s)
	}
	return out
}

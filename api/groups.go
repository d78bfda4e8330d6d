package api

import (
	"fmt"
	"math"
	"net/http"
	"strings"
	"time"

	"github.com/mqstream/mqstream/query"
	"github.com/mqstream/mqstream/shared"
	"github.com/mqstream/mqstream/streams"
)

// groupJSON shows a group with its durations as strings, each member
// with its node.
type groupJSON struct {
	shared.GroupStats
	OldestUnackedAge string `json:"oldest_unacked_age"`
	// LagSeconds is the age of the oldest record not yet done (0 at no lag).
	LagSeconds float64 `json:"lag_seconds"`
	// Trend says where the lag is going (history.Trend*); absent until the
	// node sampled the group.
	Trend string `json:"trend,omitempty"`
}

func (s *Server) toGroupJSON(g shared.GroupStats) groupJSON {
	out := groupJSON{GroupStats: g, OldestUnackedAge: g.OldestUnackedAge.String(), LagSeconds: s.lagSeconds(g)}
	if s.history != nil {
		out.Trend = s.history.Trend(g.Name, g.Filter)
	}
	// Every member says its node: one connected to another node than the
	// group's says so already; the others are on the group's node.
	here := g.Node
	if here == "" && s.opts.Node != nil {
		here = s.opts.Node.ID() // standalone
	}
	out.Members = make([]shared.MemberStats, len(g.Members))
	for i, m := range g.Members {
		if m.Node == "" {
			m.Node = here
		}
		out.Members[i] = m
	}
	if out.Streams == nil {
		out.Streams = []shared.CursorStats{}
	}
	return out
}

// lagSeconds is the age of the oldest record the group has not done: the
// record at the lowest ack floor of its streams that lag. Reading it
// counts as a read in the stream's counters.
func (s *Server) lagSeconds(g shared.GroupStats) float64 {
	var oldest time.Time
	for _, c := range g.Streams {
		if c.Lag <= 0 || c.AckFloor >= c.Next || s.opts.Store == nil {
			continue
		}
		recs, err := s.opts.Store.Read(c.Stream, c.AckFloor, streams.ReadOptions{MaxRecords: 1, MaxBytes: 1})
		if err != nil || len(recs) == 0 {
			continue
		}
		if t := recs[0].Timestamp; oldest.IsZero() || t.Before(oldest) {
			oldest = t
		}
	}
	if oldest.IsZero() {
		return 0
	}
	return math.Round(max(0, time.Since(oldest).Seconds())*1000) / 1000
}

func (s *Server) listGroups(w http.ResponseWriter, r *http.Request) (int, any, error) {
	ctx, warnings := query.CollectWarnings(r.Context())
	list := []groupJSON{}
	for _, g := range s.opts.Groups.Groups(ctx) {
		list = append(list, s.toGroupJSON(g))
	}
	out := map[string]any{"groups": list}
	if w, _ := warnings(); len(w) > 0 {
		out["warnings"] = w // in a cluster: nodes that did not answer, shards electing a leader
	}
	return http.StatusOK, out, nil
}

// findGroup resolves /v1/groups/{name}[?filter=...]: the filter may be left
// out when only one group has that name.
func (s *Server) findGroup(r *http.Request) (shared.GroupStats, error) {
	name, filter := r.PathValue("name"), r.URL.Query().Get("filter")
	if filter != "" {
		return s.opts.Groups.Group(r.Context(), name, filter)
	}
	ctx, warnings := query.CollectWarnings(r.Context())
	var found []shared.GroupStats
	for _, g := range s.opts.Groups.Groups(ctx) {
		if g.Name == name {
			found = append(found, g)
		}
	}
	switch len(found) {
	case 0:
		if w, partial := warnings(); partial {
			// It may be among what was left out: not known not to exist.
			return shared.GroupStats{}, fmt.Errorf("%w: group %q is not among the groups listed: %s", streams.ErrUnavailable, name, strings.Join(w, "; "))
		}
		return shared.GroupStats{}, fmt.Errorf("%w: group %q", shared.ErrGroupNotFound, name)
	case 1:
		return found[0], nil
	}
	return shared.GroupStats{}, fmt.Errorf("%w: %d groups are named %q; add ?filter=<topic filter>", errBadRequest, len(found), name)
}

func (s *Server) getGroup(w http.ResponseWriter, r *http.Request) (int, any, error) {
	g, err := s.findGroup(r)
	if err != nil {
		return 0, nil, err
	}
	return http.StatusOK, s.toGroupJSON(g), nil
}

// groupIn declares a group.
type groupIn struct {
	Name          string `json:"name"`
	Filter        string `json:"filter"`
	Start         string `json:"start"`
	Strategy      string `json:"strategy"`
	AckTimeout    string `json:"ack_timeout"`
	MaxDeliveries *int   `json:"max_deliveries"`
	DeadLetter    string `json:"dead_letter"`
	Window        *int   `json:"window"`
}

func (s *Server) createGroup(w http.ResponseWriter, r *http.Request) (int, any, error) {
	var in groupIn
	if err := s.decodeBody(w, r, &in); err != nil {
		return 0, nil, err
	}
	start, err := shared.ParsePosition(in.Start)
	if err != nil {
		return 0, nil, fmt.Errorf("%w: start: %v", errBadRequest, err)
	}
	o := s.opts.Groups.Defaults()
	if in.Strategy != "" {
		if o.Strategy, err = shared.ParseStrategy(in.Strategy); err != nil {
			return 0, nil, fmt.Errorf("%w: strategy: %v", errBadRequest, err)
		}
	}
	if in.AckTimeout != "" {
		if o.AckTimeout, err = time.ParseDuration(in.AckTimeout); err != nil {
			return 0, nil, fmt.Errorf("%w: ack_timeout %q is not a duration like 30s", errBadRequest, in.AckTimeout)
		}
	}
	if in.MaxDeliveries != nil {
		o.MaxDeliveries = *in.MaxDeliveries
	}
	if in.DeadLetter != "" {
		o.DeadLetter = in.DeadLetter
	}
	if in.Window != nil {
		o.Window = *in.Window
		o.MaxWindow = max(o.MaxWindow, o.Window)
	}
	if err := o.Validate(); err != nil {
		return 0, nil, fmt.Errorf("%w: %v", errBadRequest, err)
	}
	err = s.opts.Groups.Declare(r.Context(), shared.Declaration{Name: in.Name, Filter: in.Filter, Start: start, Options: o})
	if err != nil {
		return 0, nil, err
	}
	g, err := s.opts.Groups.Group(r.Context(), in.Name, in.Filter)
	if err != nil {
		return 0, nil, err
	}
	return http.StatusCreated, s.toGroupJSON(g), nil
}

func (s *Server) deleteGroup(w http.ResponseWriter, r *http.Request) (int, any, error) {
	g, err := s.findGroup(r)
	if err != nil {
		return 0, nil, err
	}
	if err := s.opts.Groups.Delete(r.Context(), g.Name, g.Filter); err != nil {
		return 0, nil, err
	}
	return http.StatusNoContent, nil, nil
}

func (s *Server) seekGroup(w http.ResponseWriter, r *http.Request) (int, any, error) {
	var in struct {
		Filter   string `json:"filter"`
		Stream   string `json:"stream"`
		Position string `json:"position"`
	}
	if err := s.decodeBody(w, r, &in); err != nil {
		return 0, nil, err
	}
	if in.Position == "" {
		return 0, nil, fmt.Errorf("%w: position is required (earliest, latest, offset:N or time:RFC3339)", errBadRequest)
	}
	pos, err := shared.ParsePosition(in.Position)
	if err != nil {
		return 0, nil, fmt.Errorf("%w: position: %v", errBadRequest, err)
	}
	if in.Filter != "" {
		q := r.URL.Query()
		q.Set("filter", in.Filter)
		r.URL.RawQuery = q.Encode()
	}
	g, err := s.findGroup(r)
	if err != nil {
		return 0, nil, err
	}
	if err := s.opts.Groups.Seek(r.Context(), g.Name, g.Filter, in.Stream, pos); err != nil {
		return 0, nil, err
	}
	g, err = s.opts.Groups.Group(r.Context(), g.Name, g.Filter)
	if err != nil {
		return 0, nil, err
	}
	return http.StatusOK, s.toGroupJSON(g), nil
}

// groupHistoryJSON is a group's lag over a range (null marks a gap).
type groupHistoryJSON struct {
	Name       string   `json:"name"`
	Filter     string   `json:"filter"`
	IntervalMS int64    `json:"interval_ms"`
	Time       []int64  `json:"time"`
	Lag        []*int64 `json:"lag"`
	Members    []*int64 `json:"members"`
}

// groupHistory is GET /v1/groups/{name}/history: the group's lag over
// ?range= (default 15m).
func (s *Server) groupHistory(w http.ResponseWriter, r *http.Request) (int, any, error) {
	span, err := historyRange(r)
	if err != nil {
		return 0, nil, err
	}
	g, err := s.findGroup(r)
	if err != nil {
		return 0, nil, err
	}
	out := groupHistoryJSON{Name: g.Name, Filter: g.Filter, Time: []int64{}, Lag: []*int64{}, Members: []*int64{}}
	if s.history != nil {
		if h, ok := s.history.GroupSeries(g.Name, g.Filter, span); ok {
			out.IntervalMS, out.Time, out.Lag, out.Members = h.Interval.Milliseconds(), h.Time, h.Lag, h.Members
		}
	}
	return http.StatusOK, out, nil
}

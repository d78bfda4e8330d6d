package api

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"time"

	"github.com/mqstream/mqstream/history"
)

// What the dashboard reads: the overview figures (GET /v1/overview, and
// once a second as Server-Sent Events from GET /v1/events) and the node's
// figures over time (GET /v1/history), recorded by a history.Recorder the
// Server owns.

// overviewJSON is every figure of the dashboard's overview. Nodes,
// connections and subscriptions cover the cluster (ClientNodes says how
// many nodes answered for the client figures); the rest are this node's.
type overviewJSON struct {
	Node          string `json:"node"`
	Time          string `json:"time"`
	UptimeSeconds int64  `json:"uptime_seconds"`
	Nodes         int    `json:"nodes"`
	NodesAlive    int    `json:"nodes_alive"`
	Connections   int64  `json:"connections"`
	Subscriptions int64  `json:"subscriptions"`
	ClientNodes   int    `json:"client_nodes"`
	Streams       int    `json:"streams"`
	Records       int64  `json:"records"`
	Bytes         int64  `json:"bytes"`
	Groups        int    `json:"groups"`
	GroupLag      int64  `json:"group_lag"`
	// Queries counts this node's continuous queries and views.
	Queries       int     `json:"queries"`
	InPerSec      float64 `json:"in_per_sec"`
	OutPerSec     float64 `json:"out_per_sec"`
	DroppedPerSec float64 `json:"dropped_per_sec"`
	StoredPerSec  float64 `json:"stored_per_sec"`
	RefusedPerSec float64 `json:"refused_per_sec"`
	AppendP99MS   float64 `json:"append_p99_ms"`
}

// reading is the history recorder's source: the node's cumulative
// counters and gauges now.
func (s *Server) reading() history.Reading {
	t := s.opts.Broker.Traffic()
	sc := s.opts.Broker.SessionCounters()
	st := s.opts.Broker.Stats()
	r := history.Reading{
		MessagesIn: t.MessagesReceived, MessagesOut: t.MessagesSent, Dropped: t.InflightDropped + sc.QueueDropped,
		Stored: st.Stored, Refused: st.Refused, AppendLatency: s.opts.Store.StoreCounters().AppendLatency,
		Connections: t.ClientsConnected,
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	for _, g := range s.opts.Groups.Groups(ctx) {
		r.Groups = append(r.Groups, history.GroupReading{Name: g.Name, Filter: g.Filter, Lag: g.Lag, Acked: g.Acked, Members: len(g.Members)})
	}
	return r
}

// overview gathers the figures now; the rates and the p99 are those of the
// newest history point (the last second).
func (s *Server) overview(ctx context.Context) overviewJSON {
	out := overviewJSON{Time: time.Now().UTC().Format(time.RFC3339Nano)}
	if n := s.opts.Node; n != nil {
		out.Node = n.ID()
		out.UptimeSeconds = int64(time.Since(n.StartedAt()).Seconds())
		for _, m := range n.Members() {
			out.Nodes++
			if m.Status == "alive" {
				out.NodesAlive++
			}
		}
	}
	if s.opts.Clients != nil {
		tot := s.opts.Clients.Totals(ctx)
		out.Connections, out.Subscriptions, out.ClientNodes = tot.Connections, tot.Subscriptions, tot.Nodes
	} else {
		t := s.opts.Broker.Traffic()
		out.Connections, out.Subscriptions, out.ClientNodes = t.ClientsConnected, t.Subscriptions, 1
	}
	for _, info := range s.opts.Store.ListStreams() {
		out.Streams++
		out.Records += info.Records
		out.Bytes += info.Bytes
	}
	for _, g := range s.opts.Groups.Groups(ctx) {
		out.Groups++
		out.GroupLag += g.Lag
	}
	if s.opts.Queries != nil {
		out.Queries = len(s.opts.Queries.List())
	}
	if s.history != nil {
		if p, ok := s.history.Latest(); ok {
			out.InPerSec, out.OutPerSec, out.DroppedPerSec = p.In, p.Out, p.Dropped
			out.StoredPerSec, out.RefusedPerSec = p.Stored, p.Refused
			out.AppendP99MS = float64(p.AppendP99) / float64(time.Millisecond)
		}
	}
	return out
}

func (s *Server) getOverview(w http.ResponseWriter, r *http.Request) (int, any, error) {
	if s.history == nil {
		return 0, nil, fmt.Errorf("%w: no figures on this node", errNotReady)
	}
	return http.StatusOK, s.overview(r.Context()), nil
}

// events sends the overview as Server-Sent Events (event "overview") once
// a second, when the history recorder takes its sample, until the client
// goes away or the server closes.
func (s *Server) events(w http.ResponseWriter, r *http.Request) (int, any, error) {
	if s.history == nil {
		return 0, nil, fmt.Errorf("%w: no figures on this node", errNotReady)
	}
	fl, ok := w.(http.Flusher)
	if !ok {
		return 0, nil, fmt.Errorf("%w: streaming is not supported by this connection", errBadRequest)
	}
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	w.Header().Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	ctx := r.Context()
	for {
		changed := s.history.Changed()
		b, _ := json.Marshal(s.overview(ctx))
		if _, err := fmt.Fprintf(w, "event: overview\ndata: %s\n\n", b); err != nil {
			return 0, nil, nil // the client went away
		}
		fl.Flush()
		select {
		case <-ctx.Done():
			return 0, nil, nil
		case <-s.history.Done():
			return 0, nil, nil
		case <-changed:
		}
	}
}

// historyRange reads ?range= (a duration up to 24h; default 15m).
func historyRange(r *http.Request) (time.Duration, error) {
	v := r.URL.Query().Get("range")
	if v == "" {
		return 15 * time.Minute, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 || d > 24*time.Hour {
		return 0, fmt.Errorf("%w: range %q is not a duration in (0, 24h] like 15m or 6h", errBadRequest, v)
	}
	return d, nil
}

// historyJSON is the node's figures over a range, one array per figure
// (null marks a gap), times in Unix seconds.
type historyJSON struct {
	Node        string     `json:"node"`
	IntervalMS  int64      `json:"interval_ms"`
	Time        []int64    `json:"time"`
	In          []*float64 `json:"in_per_sec"`
	Out         []*float64 `json:"out_per_sec"`
	Dropped     []*float64 `json:"dropped_per_sec"`
	Stored      []*float64 `json:"stored_per_sec"`
	Refused     []*float64 `json:"refused_per_sec"`
	AppendP99MS []*float64 `json:"append_p99_ms"`
	GroupLag    []*int64   `json:"group_lag"`
	Connections []*int64   `json:"connections"`
}

func (s *Server) getHistory(w http.ResponseWriter, r *http.Request) (int, any, error) {
	if s.history == nil {
		return 0, nil, fmt.Errorf("%w: no figures on this node", errNotReady)
	}
	span, err := historyRange(r)
	if err != nil {
		return 0, nil, err
	}
	if done, err := s.askPeer(w, r); done || err != nil {
		return 0, nil, err
	}
	h := s.history.Series(span)
	out := historyJSON{IntervalMS: h.Interval.Milliseconds(), Time: h.Time, In: h.In, Out: h.Out, Dropped: h.Dropped,
		Stored: h.Stored, Refused: h.Refused, AppendP99MS: h.AppendP99MS, GroupLag: h.GroupLag, Connections: h.Connections}
	if s.opts.Node != nil {
		out.Node = s.opts.Node.ID()
	}
	return http.StatusOK, out, nil
}

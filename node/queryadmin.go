package node

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/mqstream/mqstream/cluster/shards"
	"github.com/mqstream/mqstream/cq"
	"github.com/mqstream/mqstream/query"
	"github.com/mqstream/mqstream/streams"
)

// Query administration in cluster mode: a query runs on the leader of its
// home shard (queryhomes.go), so CREATE, TERMINATE, PAUSE, RESUME and
// DROP VIEW reaching another node are carried there, and the answer
// comes back with the SQL error's position and kind.

// queryAdminService runs query administration here.
const queryAdminService = "queries.admin"

// queryAdminRequest is a query administration call: Op is create (SQL),
// terminate, pause, resume or dropview (ID).
type queryAdminRequest struct {
	Op  string `json:"op"`
	SQL string `json:"sql,omitempty"`
	ID  string `json:"id,omitempty"`
}

// queryAdminAnswer carries a query's figures or an error.
type queryAdminAnswer struct {
	Info  *query.QueryInfo `json:"info,omitempty"`
	Error *wireQueryError  `json:"error,omitempty"`
}

// wireQueryError is an error of a query request on the wire: a
// *query.Error's fields, and which sentinel it wraps (Kind).
type wireQueryError struct {
	Code    string `json:"code,omitempty"`
	Message string `json:"message"`
	Line    int    `json:"line,omitempty"`
	Column  int    `json:"column,omitempty"`
	// Kind: not_found (query.ErrQueryNotFound), in_use
	// (query.ErrStreamInUse), unavailable (streams.ErrUnavailable: the
	// node's store, or the home shard, refuses writes), elsewhere (the
	// query is not, or no longer, that node's: ask again), or empty.
	Kind      string `json:"kind,omitempty"`
	Elsewhere string `json:"elsewhere,omitempty"` // the home stream, with kind elsewhere
}

func toWire(err error) *wireQueryError {
	w := &wireQueryError{Message: err.Error()}
	var qe *query.Error
	if errors.As(err, &qe) {
		w.Code, w.Message, w.Line, w.Column = qe.Code, qe.Message, qe.Line, qe.Column
	}
	var ee *cq.ElsewhereError
	switch {
	case errors.As(err, &ee):
		w.Kind, w.Elsewhere = "elsewhere", ee.Stream
	case errors.Is(err, query.ErrQueryNotFound):
		w.Kind = "not_found"
	case errors.Is(err, query.ErrStreamInUse):
		w.Kind = "in_use"
	case errors.Is(err, streams.ErrUnavailable):
		w.Kind = "unavailable"
	}
	return w
}

func (w *wireQueryError) err(node string) error {
	var sentinel error
	switch w.Kind {
	case "elsewhere":
		return &cq.ElsewhereError{Stream: w.Elsewhere}
	case "not_found":
		sentinel = query.ErrQueryNotFound
	case "in_use":
		sentinel = query.ErrStreamInUse
	case "unavailable":
		sentinel = streams.ErrUnavailable
	}
	if w.Code != "" {
		return &query.Error{Code: w.Code, Message: w.Message, Line: w.Line, Column: w.Column, Err: sentinel}
	}
	if sentinel != nil {
		return fmt.Errorf("%w: %s (on %s)", sentinel, w.Message, node)
	}
	return fmt.Errorf("%s (on %s)", w.Message, node)
}

// serveQueryAdmin runs the query administration other nodes carry here,
// on this node's manager only (never carried further).
func (n *Node) serveQueryAdmin() {
	n.repl.mux.Handle(queryAdminService, func(ctx context.Context, _ string, body []byte) ([]byte, error) {
		var req queryAdminRequest
		if err := json.Unmarshal(body, &req); err != nil {
			return nil, fmt.Errorf("query administration request: %w", err)
		}
		info, err := runQueryAdmin(ctx, n.queries, req)
		var ans queryAdminAnswer
		if err != nil {
			ans.Error = toWire(err)
		} else {
			ans.Info = &info
		}
		return json.Marshal(ans)
	})
}

// runQueryAdmin runs req on m.
func runQueryAdmin(ctx context.Context, m *cq.Manager, req queryAdminRequest) (query.QueryInfo, error) {
	switch req.Op {
	case "create":
		return m.Create(ctx, req.SQL)
	case "terminate":
		return query.QueryInfo{}, m.Terminate(ctx, req.ID)
	case "pause":
		return m.Pause(ctx, req.ID)
	case "resume":
		return m.Resume(ctx, req.ID)
	case "dropview":
		return query.QueryInfo{}, m.DropView(ctx, req.ID)
	}
	return query.QueryInfo{}, fmt.Errorf("unknown query administration op %q", req.Op)
}

// homeWait bounds how long a query request waits for a node to lead the
// query's home shard: while the shard elects a leader (as an append
// waits for one).
const homeWait = 5 * time.Second

// admin runs req here, or where the query's home is led, or (a query
// this node does not know) on the node that knows it.
func (q clusterQueries) admin(ctx context.Context, req queryAdminRequest) (query.QueryInfo, error) {
	deadline := time.Now().Add(homeWait)
	for wait := 50 * time.Millisecond; ; wait = min(2*wait, 500*time.Millisecond) {
		info, err := runQueryAdmin(ctx, q.Manager, req)
		var ee *cq.ElsewhereError
		switch {
		case errors.As(err, &ee):
			info, err = q.carry(ctx, ee.Stream, req)
		case errors.Is(err, query.ErrQueryNotFound) && req.Op != "create":
			if info, err = q.ask(ctx, req, err); errors.As(err, &ee) {
				info, err = q.carry(ctx, ee.Stream, req) // a view's replica knew it
			}
		}
		if !errors.As(err, &ee) {
			return info, err
		}
		if time.Now().Add(wait).After(deadline) {
			return info, fmt.Errorf("continuous queries: no node leads the shard of stream %s (an election, or no majority): %w", ee.Stream, shards.ErrNoLeader)
		}
		select {
		case <-ctx.Done():
			return info, err
		case <-time.After(wait):
		}
	}
}

// carry sends req to the leader of stream's shard (as its replicas see
// it: this node may hold none).
func (q clusterQueries) carry(ctx context.Context, stream string, req queryAdminRequest) (query.QueryInfo, error) {
	st := q.n.ClusterShards(ctx)
	if len(st) == 0 {
		return query.QueryInfo{}, errQueriesNotFormed
	}
	node := st[shards.ShardOf(stream, len(st))].Leader
	if node == "" || node == q.n.id {
		return query.QueryInfo{}, &cq.ElsewhereError{Stream: stream} // an election: try again
	}
	return q.call(ctx, node, req)
}

// ask sends req to every other node until one knows the query; notFound
// is the answer when none does.
func (q clusterQueries) ask(ctx context.Context, req queryAdminRequest, notFound error) (query.QueryInfo, error) {
	if q.n.members == nil {
		return query.QueryInfo{}, notFound
	}
	for _, m := range q.n.members.Members() {
		if m.ID == q.n.id || m.RPC == "" || !m.Up() {
			continue
		}
		info, err := q.call(ctx, m.ID, req)
		if !errors.Is(err, query.ErrQueryNotFound) {
			return info, err
		}
	}
	return query.QueryInfo{}, notFound
}

// queryAdminWait bounds one call of query administration on another
// node (a creation may have to create its output stream through the
// shard's leader, within the write timeout).
const queryAdminWait = 15 * time.Second

// call runs req on node.
func (q clusterQueries) call(ctx context.Context, node string, req queryAdminRequest) (query.QueryInfo, error) {
	body, err := json.Marshal(req)
	if err != nil {
		return query.QueryInfo{}, err
	}
	// Bounded: a peer that takes a request and never answers must not
	// hold the client (nor the walk over the members) for good.
	ctx, cancel := context.WithTimeout(ctx, queryAdminWait)
	defer cancel()
	resp, err := relayTransport{q.n}.Call(ctx, node, queryAdminService, body)
	if err != nil {
		return query.QueryInfo{}, fmt.Errorf("%w: continuous queries: %s did not answer: %w", streams.ErrUnavailable, node, err)
	}
	var ans queryAdminAnswer
	if err := json.Unmarshal(resp, &ans); err != nil {
		return query.QueryInfo{}, fmt.Errorf("continuous queries: answer from %s: %w", node, err)
	}
	if ans.Error != nil {
		return query.QueryInfo{}, ans.Error.err(node)
	}
	if ans.Info == nil {
		return query.QueryInfo{}, nil
	}
	return *ans.Info, nil
}

// List returns every node's queries (SHOW QUERIES, GET /v1/queries):
// each runs on one node; a node that does not answer within 2 s is left
// out (logged).
func (q clusterQueries) List() []query.QueryInfo { return q.ListContext(context.Background()) }

// ListContext is List, warning (query.Warn) of the nodes left out and of
// the shards without a leader, whose queries run nowhere meanwhile.
func (q clusterQueries) ListContext(ctx context.Context) []query.QueryInfo {
	warnLeaderless(ctx, q.n, "continuous queries")
	var out []query.QueryInfo
	for _, list := range fromPeers[[]query.QueryInfo](ctx, q.n, queriesService, nil) {
		out = append(out, list...)
	}
	out = append(out, q.Manager.List()...)
	slices.SortFunc(out, func(a, b query.QueryInfo) int { return strings.Compare(a.ID, b.ID) })
	return out
}

// LocalList returns the queries this node runs (their metrics come from
// here).
func (q clusterQueries) LocalList() []query.QueryInfo { return q.Manager.List() }

func (q clusterQueries) Create(ctx context.Context, sql string) (query.QueryInfo, error) {
	return q.admin(ctx, queryAdminRequest{Op: "create", SQL: sql})
}

func (q clusterQueries) Terminate(ctx context.Context, id string) error {
	_, err := q.admin(ctx, queryAdminRequest{Op: "terminate", ID: id})
	return err
}

func (q clusterQueries) Pause(ctx context.Context, id string) (query.QueryInfo, error) {
	return q.admin(ctx, queryAdminRequest{Op: "pause", ID: id})
}

func (q clusterQueries) Resume(ctx context.Context, id string) (query.QueryInfo, error) {
	return q.admin(ctx, queryAdminRequest{Op: "resume", ID: id})
}

func (q clusterQueries) DropView(ctx context.Context, name string) error {
	_, err := q.admin(ctx, queryAdminRequest{Op: "dropview", ID: name})
	return err
}

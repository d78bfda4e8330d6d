package api

import (
	"context"
	"fmt"
	"net/http"
	"strings"

	"github.com/mqstream/mqstream/query"
	"github.com/mqstream/mqstream/streams"
)

// Queries are the node's continuous queries (created with CREATE STREAM
// ... AS SELECT through POST /v1/query).
type Queries interface {
	List() []query.QueryInfo
	Terminate(ctx context.Context, id string) error
	Pause(ctx context.Context, id string) (query.QueryInfo, error)
	Resume(ctx context.Context, id string) (query.QueryInfo, error)
	// DropStream deletes a stream unless queries read or write it
	// (query.ErrStreamInUse).
	DropStream(ctx context.Context, name string) error
}

func (s *Server) queries() (Queries, error) {
	if s.opts.Queries == nil {
		return nil, fmt.Errorf("%w: this node runs no continuous queries", errNotReady)
	}
	return s.opts.Queries, nil
}

// contextLister is what Queries spanning the cluster also offer: the
// list, warning (query.Warn) of what it left out.
type contextLister interface {
	ListContext(ctx context.Context) []query.QueryInfo
}

// listAll lists the queries, with the warnings of what was left out, and
// whether a query asked for may be among it (partial).
func listAll(ctx context.Context, qs Queries) ([]query.QueryInfo, []string, bool) {
	l, ok := qs.(contextLister)
	if !ok {
		return qs.List(), nil, false
	}
	ctx, warnings := query.CollectWarnings(ctx)
	list := l.ListContext(ctx)
	w, partial := warnings()
	return list, w, partial
}

func (s *Server) listQueries(w http.ResponseWriter, r *http.Request) (int, any, error) {
	qs, err := s.queries()
	if err != nil {
		return 0, nil, err
	}
	list, warnings, _ := listAll(r.Context(), qs)
	if list == nil {
		list = []query.QueryInfo{}
	}
	out := map[string]any{"queries": list}
	if len(warnings) > 0 {
		out["warnings"] = warnings
	}
	return http.StatusOK, out, nil
}

// pathQuery returns the queries and the one /v1/queries/{id} names, or
// errNotFound.
func (s *Server) pathQuery(r *http.Request) (Queries, query.QueryInfo, error) {
	qs, err := s.queries()
	if err != nil {
		return nil, query.QueryInfo{}, err
	}
	id := r.PathValue("id")
	list, warnings, partial := listAll(r.Context(), qs)
	for _, q := range list {
		if q.ID == id {
			return qs, q, nil
		}
	}
	if partial {
		// It may be among what was left out: not known not to exist.
		return nil, query.QueryInfo{}, fmt.Errorf("%w: query %q is not among the queries listed: %s", streams.ErrUnavailable, id, strings.Join(warnings, "; "))
	}
	return nil, query.QueryInfo{}, fmt.Errorf("%w: query %q", errNotFound, id)
}

func (s *Server) getQuery(w http.ResponseWriter, r *http.Request) (int, any, error) {
	_, q, err := s.pathQuery(r)
	if err != nil {
		return 0, nil, err
	}
	return http.StatusOK, q, nil
}

func (s *Server) deleteQuery(w http.ResponseWriter, r *http.Request) (int, any, error) {
	qs, q, err := s.pathQuery(r)
	if err != nil {
		return 0, nil, err
	}
	if err := qs.Terminate(r.Context(), q.ID); err != nil {
		return 0, nil, err
	}
	return http.StatusNoContent, nil, nil
}

// pauseQuery and resumeQuery answer the query as it is afterwards
// (status paused, or starting/running).
func (s *Server) pauseQuery(w http.ResponseWriter, r *http.Request) (int, any, error) {
	return s.setPaused(r, Queries.Pause)
}

func (s *Server) resumeQuery(w http.ResponseWriter, r *http.Request) (int, any, error) {
	return s.setPaused(r, Queries.Resume)
}

func (s *Server) setPaused(r *http.Request, op func(Queries, context.Context, string) (query.QueryInfo, error)) (int, any, error) {
	qs, q, err := s.pathQuery(r)
	if err != nil {
		return 0, nil, err
	}
	q, err = op(qs, r.Context(), q.ID)
	if err != nil {
		return 0, nil, err
	}
	return http.StatusOK, q, nil
}

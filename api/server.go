// Package api is mqstream's HTTP interface: the JSON REST API under /v1
// (streams, records, consumer groups, publish, query, node), Server-Sent
// Events for following a stream, Prometheus metrics at /metrics and the
// health endpoints. Handlers return (value, error); one wrapper writes the
// JSON and maps errors to status codes and the single error shape
// {"error": {"code": "...", "message": "..."}}.
package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/mqstream/mqstream/cluster"
	"github.com/mqstream/mqstream/cluster/routes"
	"github.com/mqstream/mqstream/cluster/shards"
	"github.com/mqstream/mqstream/history"
	"github.com/mqstream/mqstream/query"
	"github.com/mqstream/mqstream/shared"
	"github.com/mqstream/mqstream/streams"
	"github.com/mqstream/mqstream/topic"
)

// Node is what the API reports about the node it runs in.
type Node interface {
	ID() string
	// Readiness says whether the node serves, and if not, why.
	Readiness() (ready bool, reason string)
	StartedAt() time.Time
	Listeners() map[string]string
	// ClusterName is the cluster's name ("" when standalone).
	ClusterName() string
	// Members are the cluster's members (this node alone when standalone).
	Members() []cluster.Member
	// Shards are the cluster's shards as this node sees them (none when
	// standalone or before the cluster formed).
	Shards() []shards.ShardStatus
	// StreamPlacement says where stream name lives: its shard, the
	// shard's leader ("" while none is known) and the nodes holding its
	// replicas; ok is false when the node runs no shards.
	StreamPlacement(ctx context.Context, name string) (shard int, leader string, replicas []string, ok bool)
	// ForwardCounters count the writes this node forwarded to other
	// nodes and served for them.
	ForwardCounters() shards.ForwardCounters
	// LeaderHandoffs counts the shard leaderships this node handed to
	// their preferred leaders.
	LeaderHandoffs() uint64
	// CommitNotices counts the commit notices this node's shard
	// leaders sent.
	CommitNotices() uint64
	// Routes is this node's share of the cluster's MQTT route table and
	// its forwarding counters (zero when standalone).
	Routes() routes.Stats
}

// Options configure the API.
type Options struct {
	Store  Streams
	Broker Broker
	Groups Groups
	Node   Node
	// Query serves POST /v1/query (nil: the endpoint answers 503).
	Query http.Handler
	// Queries serves /v1/queries (nil: 503).
	Queries Queries
	// Version is reported by GET /v1/node.
	Version string
	// MaxBodyBytes bounds request bodies (413 beyond); 0 = 8 MiB.
	MaxBodyBytes int64
	// MaxBatch bounds the records of one write (413 beyond); 0 = 10,000.
	MaxBatch int
	// MaxPayload bounds one record's payload (413 beyond); 0 = no limit.
	MaxPayload int
	// Pprof mounts Go's profiler under /debug/pprof/.
	Pprof bool
	// Tokens, if any, are required as bearer tokens (see Role); without
	// tokens the API is open.
	Tokens []Token
	// UI, if set, is the dashboard: served at / and under /ui/ without a
	// token (the files hold no data; the page sends the token to /v1).
	UI http.Handler
	// Clients lists and disconnects MQTT clients (nil: /v1/clients answers
	// 503).
	Clients Clients
	// Figures are the nodes' figures in GET /v1/cluster's members (disk
	// space, uptime); nil leaves them out.
	Figures NodesFigures
	// Engines gives the storage engines' figures for /metrics; nil
	// leaves them out.
	Engines Engines
	Logger  *slog.Logger
}

// Server holds the handlers.
type Server struct {
	opts     Options
	log      *slog.Logger
	mux      *http.ServeMux
	registry *prometheus.Registry
	routes   []route
	// history records the overview figures over time (nil without a
	// store, broker and groups); peers asks other nodes for theirs.
	history *history.Recorder
	peers   *http.Client
}

// route is one registered API route; the OpenAPI test compares them with
// the document.
type route struct {
	method, pattern string
}

// New builds the API and starts recording the overview figures; Close
// stops it.
func New(opts Options) *Server {
	if opts.MaxBodyBytes <= 0 {
		opts.MaxBodyBytes = 8 << 20
	}
	if opts.MaxBatch <= 0 {
		opts.MaxBatch = 10_000
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	s := &Server{opts: opts, log: opts.Logger, mux: http.NewServeMux(), registry: prometheus.NewRegistry(),
		peers: &http.Client{Timeout: peerTimeout}}
	if opts.Store != nil && opts.Broker != nil && opts.Groups != nil {
		// The options are fixed and valid: New cannot fail. Should it, the
		// node serves without figures over time (those routes answer 503).
		rec, err := history.New(history.Options{Source: history.SourceFunc(s.reading), Logger: opts.Logger})
		if err != nil {
			s.log.Error("api: not recording the overview figures", "error", err)
		}
		s.history = rec
	}
	s.registerMetrics()
	s.routesTable()
	return s
}

// Close stops recording the overview figures and ends the event streams
// (GET /v1/events); it is idempotent.
func (s *Server) Close() error {
	if s.history != nil {
		return s.history.Close()
	}
	return nil
}

// Handler returns the HTTP handler of every route.
func (s *Server) Handler() http.Handler { return s.authenticate(s.mux) }

// Registry is the Prometheus registry served at /metrics.
func (s *Server) Registry() *prometheus.Registry { return s.registry }

// handlerFunc is an API handler: it returns the value to encode (with the
// status) or an error.
type handlerFunc func(w http.ResponseWriter, r *http.Request) (int, any, error)

func (s *Server) handle(method, pattern string, h handlerFunc) {
	s.routes = append(s.routes, route{method, pattern})
	s.mux.HandleFunc(method+" "+pattern, func(w http.ResponseWriter, r *http.Request) {
		status, v, err := h(w, r)
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		if status == 0 {
			return // the handler wrote the response itself (SSE)
		}
		if v == nil {
			w.WriteHeader(status)
			return
		}
		writeJSON(w, status, v)
	})
}

func (s *Server) routesTable() {
	s.handle("GET", "/healthz", s.healthz)
	s.handle("GET", "/readyz", s.readyz)
	s.handle("GET", "/v1/cluster", s.getCluster)
	s.handle("GET", "/v1/cluster/raft", s.getRaftStats)
	s.handle("GET", "/v1/node", s.getNode)
	s.handle("DELETE", "/v1/cluster/nodes/{id}", s.removeNode)
	s.handle("GET", "/v1/streams", s.listStreams)
	s.handle("POST", "/v1/streams", s.createStream)
	s.handle("GET", "/v1/streams/{name}", s.getStream)
	s.handle("DELETE", "/v1/streams/{name}", s.deleteStream)
	s.handle("POST", "/v1/streams/{name}/records", s.appendRecords)
	s.handle("GET", "/v1/streams/{name}/records", s.readRecords)
	s.handle("POST", "/v1/publish", s.publish)
	s.handle("GET", "/v1/groups", s.listGroups)
	s.handle("POST", "/v1/groups", s.createGroup)
	s.handle("GET", "/v1/groups/{name}", s.getGroup)
	s.handle("DELETE", "/v1/groups/{name}", s.deleteGroup)
	s.handle("POST", "/v1/groups/{name}/seek", s.seekGroup)
	s.handle("POST", "/v1/query", s.query)
	s.handle("GET", "/v1/queries", s.listQueries)
	s.handle("GET", "/v1/queries/{id}", s.getQuery)
	s.handle("DELETE", "/v1/queries/{id}", s.deleteQuery)
	s.handle("POST", "/v1/queries/{id}/pause", s.pauseQuery)
	s.handle("POST", "/v1/queries/{id}/resume", s.resumeQuery)
	s.handle("GET", "/v1/openapi.json", s.openAPI)
	s.handle("GET", "/v1/overview", s.getOverview)
	s.handle("GET", "/v1/events", s.events)
	s.handle("GET", "/v1/history", s.getHistory)
	s.handle("GET", "/v1/groups/{name}/history", s.groupHistory)
	s.handle("GET", "/v1/clients", s.listClients)
	s.handle("DELETE", "/v1/clients/{id}", s.disconnectClient)
	if s.opts.UI != nil {
		s.mux.Handle("GET /{$}", s.opts.UI)
		s.mux.Handle("GET /ui/", s.opts.UI)
		s.mux.Handle("GET /favicon.ico", s.opts.UI)
	}
	s.routes = append(s.routes, route{"GET", "/metrics"})
	s.mux.Handle("GET /metrics", promhttp.HandlerFor(s.registry, promhttp.HandlerOpts{ErrorLog: slogAdapter{s.log}}))
	if s.opts.Pprof {
		mountPprof(s.mux)
	}
	s.methodNotAllowed()
	s.mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		s.writeError(w, r, fmt.Errorf("%w: no route %s %s (see GET /v1/openapi.json)", errNotFound, r.Method, r.URL.Path))
	})
}

// methodNotAllowed answers, in the API's error shape, requests whose path
// matches a route but whose method does not.
func (s *Server) methodNotAllowed() {
	allowed := map[string][]string{}
	var order []string
	for _, rt := range s.routes {
		if _, ok := allowed[rt.pattern]; !ok {
			order = append(order, rt.pattern)
		}
		allowed[rt.pattern] = append(allowed[rt.pattern], rt.method)
	}
	for _, pattern := range order {
		methods := strings.Join(allowed[pattern], ", ")
		s.mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Allow", methods)
			writeJSON(w, http.StatusMethodNotAllowed, map[string]apiError{"error": {Code: "method_not_allowed",
				Message: fmt.Sprintf("%s %s: allowed methods are %s", r.Method, r.URL.Path, methods)}})
		})
	}
}

// Errors of the API itself; errors of the store and groups are mapped too.
var (
	errBadRequest = errors.New("bad request")
	errNotFound   = errors.New("not found")
	errTooLarge   = errors.New("too large")
	errNotReady   = errors.New("not ready")
)

// apiError is the body of every error response.
type apiError struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// classify maps an error to a status and a code.
func classify(err error) (int, string) {
	switch {
	case errors.Is(err, errTooLarge), errors.Is(err, streams.ErrRecordTooLarge):
		return http.StatusRequestEntityTooLarge, "too_large"
	case errors.Is(err, errBadRequest), errors.Is(err, streams.ErrInvalidName), errors.Is(err, shared.ErrInvalidGroup),
		errors.Is(err, shared.ErrNotStorable), errors.Is(err, topic.ErrInvalidTopic):
		return http.StatusBadRequest, "bad_request"
	case errors.Is(err, errNotFound), errors.Is(err, streams.ErrStreamNotFound), errors.Is(err, shared.ErrGroupNotFound):
		return http.StatusNotFound, "not_found"
	case errors.Is(err, cluster.ErrUnknownNode):
		return http.StatusNotFound, "not_found"
	case errors.Is(err, streams.ErrStreamExists), errors.Is(err, shared.ErrGroupExists), errors.Is(err, cluster.ErrNodeAlive),
		errors.Is(err, cluster.ErrRemoveSelf), errors.Is(err, cluster.ErrStandalone), errors.Is(err, query.ErrStreamInUse),
		errors.Is(err, cluster.ErrNeededForMajority):
		return http.StatusConflict, "conflict"
	case errors.Is(err, errNotReady), errors.Is(err, streams.ErrClosed), errors.Is(err, streams.ErrWrite),
		errors.Is(err, streams.ErrUnavailable), errors.Is(err, shared.ErrNotOwner):
		return http.StatusServiceUnavailable, "unavailable"
	case errors.Is(err, context.DeadlineExceeded):
		return http.StatusGatewayTimeout, "timeout"
	}
	return http.StatusInternalServerError, "internal"
}

func (s *Server) writeError(w http.ResponseWriter, r *http.Request, err error) {
	status, code := classify(err)
	if status >= 500 {
		s.log.Error("api request failed", "method", r.Method, "path", r.URL.Path, "status", status, "error", err)
	}
	writeJSON(w, status, map[string]apiError{"error": {Code: code, Message: err.Error()}})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v)
}

// decodeBody decodes a JSON body strictly: bounded size, no unknown fields,
// nothing after the value. Errors say what was wrong and where.
func (s *Server) decodeBody(w http.ResponseWriter, r *http.Request, v any) error {
	r.Body = http.MaxBytesReader(w, r.Body, s.opts.MaxBodyBytes)
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var maxErr *http.MaxBytesError
		var syn *json.SyntaxError
		var typ *json.UnmarshalTypeError
		switch {
		case errors.As(err, &maxErr):
			return fmt.Errorf("%w: request body over %d bytes", errTooLarge, maxErr.Limit)
		case errors.As(err, &syn):
			return fmt.Errorf("%w: invalid JSON at byte %d: %v", errBadRequest, syn.Offset, err)
		case errors.As(err, &typ):
			return fmt.Errorf("%w: %s: expected %s, got JSON %s (byte %d)", errBadRequest, fieldPath(typ), typ.Type, typ.Value, typ.Offset)
		case errors.Is(err, io.EOF):
			return fmt.Errorf("%w: empty request body", errBadRequest)
		}
		return fmt.Errorf("%w: %v", errBadRequest, err)
	}
	if dec.More() {
		return fmt.Errorf("%w: unexpected data after the JSON value", errBadRequest)
	}
	return nil
}

func fieldPath(e *json.UnmarshalTypeError) string {
	if e.Field != "" {
		return e.Field
	}
	return "body"
}

func (s *Server) healthz(w http.ResponseWriter, r *http.Request) (int, any, error) {
	return http.StatusOK, map[string]string{"status": "ok"}, nil
}

func (s *Server) readyz(w http.ResponseWriter, r *http.Request) (int, any, error) {
	if s.opts.Node != nil {
		if ok, reason := s.opts.Node.Readiness(); !ok {
			writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "not ready", "reason": reason})
			return 0, nil, nil
		}
	}
	return http.StatusOK, map[string]string{"status": "ready"}, nil
}

func (s *Server) query(w http.ResponseWriter, r *http.Request) (int, any, error) {
	if s.opts.Query == nil {
		return 0, nil, fmt.Errorf("%w: SQL is not available on this node", errNotReady)
	}
	s.opts.Query.ServeHTTP(w, r)
	return 0, nil, nil
}

type slogAdapter struct{ l *slog.Logger }

func (a slogAdapter) Println(v ...any) { a.l.Error(fmt.Sprint(v...), "component", "metrics") }

package query

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"time"

	"github.com/mqstream/mqstream/shared"
	"github.com/mqstream/mqstream/stats"
	"github.com/mqstream/mqstream/streams"
)

// Store is what the engine reads from the stream store. *streams.Store
// implements it.
type Store interface {
	ListStreams() []streams.StreamInfo
	DescribeStream(name string) (streams.StreamInfo, error)
	// Scan calls fn for the records in [from, to) in offset order, lazily.
	Scan(ctx context.Context, name string, from, to uint64, fn func(streams.Record) (bool, error)) error
	// OffsetAt returns the first offset whose timestamp is at or after t.
	OffsetAt(name string, t time.Time) (uint64, error)
}

// ContextLister is what a Store may add: the streams listed under the
// query's context, for the streams table (a cluster node warns there of
// the streams it could not list: Warn).
type ContextLister interface {
	ListStreamsContext(ctx context.Context) []streams.StreamInfo
}

// Groups is what the engine reads about consumer groups. *shared.Manager
// implements it.
type Groups interface {
	Groups(ctx context.Context) []shared.GroupStats
}

// Sessions is what the engine reads of the broker's sessions (node adapts
// the broker to it).
type Sessions interface {
	Sessions(ctx context.Context) []Session
}

// Nodes is what the engine reads of the cluster's members (node adapts
// its membership, or itself when standalone). Figures left out of a row
// (a member that did not answer) are reported with Warn(ctx, ...).
type Nodes interface {
	Nodes(ctx context.Context) []NodeRow
}

// NodeRow is one member of the cluster: a row of the nodes table.
type NodeRow struct {
	ID      string
	Status  string
	Gossip  string
	RPC     string
	MQTT    string
	HTTP    string
	Version string
	// DiskFreeBytes and DiskTotalBytes: the space of the filesystem holding
	// the node's data directory (nil when unknown: the node did not answer
	// or its filesystem reports none).
	DiskFreeBytes, DiskTotalBytes *int64
	// ShardsLed and ShardsHeld: the shards the member leads and holds a
	// replica of (nil when standalone or before the cluster formed).
	ShardsLed, ShardsHeld *int64
}

// Shards is what the engine reads of the cluster's shards (node adapts
// its shards: none when standalone or before the cluster formed).
type Shards interface {
	Shards(ctx context.Context) []ShardRow
}

// ShardRow is one shard as this node sees it: a row of the shards table.
type ShardRow struct {
	ID       int
	Leader   string // "" while none is known
	Term     uint64
	Replicas []string // node ids, the preferred leader first
	Applied  uint64   // last entry this node's replica applied
	Local    bool     // this node holds a replica (Term and Applied are known)
	// Lag: how many entries the shard's slowest replica has applied fewer
	// than its most advanced one (nil when not known).
	Lag *uint64
}

// Session is one MQTT session, connected or kept for an absent client: a
// row of the sessions table.
type Session struct {
	ClientID        string
	Connected       bool
	Persistent      bool
	ProtocolVersion byte
	// Expiry is the session expiry interval in seconds; NeverExpires is
	// set for MQTT 3.1.1 persistent sessions.
	Expiry       uint32
	NeverExpires bool
	// DisconnectedAt is when an absent client left (zero while connected).
	DisconnectedAt time.Time
	Subscriptions  int
	Queued         int    // deliveries waiting to be sent
	InFlight       int    // deliveries sent and not acknowledged
	Node           string // the node holding the session
}

// Stats is what the engine reads of the statistics samplers: the node's
// own, and in a cluster every node's (node adapts them).
type Stats interface {
	// StreamRates returns one entry per stream, each record counted once
	// (in a cluster: appends as one replica counted them, reads summed
	// over the nodes that served them), sorted by stream name.
	StreamRates(ctx context.Context) []stats.StreamRates
	// AppendLatencies returns one entry per node that answered, sorted by
	// node.
	AppendLatencies(ctx context.Context) []NodeLatency
}

// NodeLatency is one node's append latency: a row of the append_latency
// table.
type NodeLatency struct {
	Node string
	stats.Latency
}

// Options configure an Engine.
type Options struct {
	// Store is the stream store (required).
	Store Store
	// Groups serves the groups and consumers tables; nil makes them an error.
	Groups Groups
	// Stats serves append_throughput, read_throughput and append_latency;
	// nil makes them an error.
	Stats Stats
	// Sessions serves the sessions table; nil makes it an error.
	Sessions Sessions
	// Nodes serves the nodes table; nil makes it an error.
	Nodes Nodes
	// Shards serves the shards table; nil makes it an error.
	Shards Shards
	// MaxRowsScanned stops a query that reads more rows (records and
	// statistics rows, before filtering); 0 means 1,000,000.
	MaxRowsScanned int64
	// Timeout stops a query that runs longer; 0 means 30 s.
	Timeout time.Duration
	// Queries runs continuous queries (CREATE STREAM ... AS SELECT, SHOW
	// QUERIES, TERMINATE QUERY); nil makes them an error.
	Queries Queries
	// QueryTable serves the queries table; nil makes it an error.
	QueryTable QueryTable
	// Now returns the current time (now() in SQL); nil means time.Now.
	Now func() time.Time
	// Logger receives the engine's logs; nil means slog.Default().
	Logger *slog.Logger
}

// EnsureDefaults fills zero fields with their defaults.
func (o *Options) EnsureDefaults() {
	if o.MaxRowsScanned == 0 {
		o.MaxRowsScanned = 1_000_000 // about a second of scanning; bounds the memory of sorts and groups
	}
	if o.Timeout == 0 {
		o.Timeout = 30 * time.Second // well under HTTP clients' usual timeouts
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
}

// Validate reports every problem with the options at once.
func (o *Options) Validate() error {
	var errs []error
	if o.Store == nil {
		errs = append(errs, errors.New("store is nil"))
	}
	if o.MaxRowsScanned < 0 {
		errs = append(errs, fmt.Errorf("max rows scanned %d is negative", o.MaxRowsScanned))
	}
	if o.Timeout < 0 {
		errs = append(errs, fmt.Errorf("timeout %s is negative", o.Timeout))
	}
	return errors.Join(errs...)
}

// Engine runs SQL statements. It is safe for concurrent use; it keeps no
// state between queries.
type Engine struct {
	opts       Options
	log        *slog.Logger
	parser     *parser
	funcs      map[string]funcDef // read-only after New
	statTables []statTableDef     // read-only after New
}

// New creates an engine.
func New(opts Options) (*Engine, error) {
	opts.EnsureDefaults()
	if err := opts.Validate(); err != nil {
		return nil, fmt.Errorf("query: invalid options: %w", err)
	}
	p, err := newParser()
	if err != nil {
		return nil, err
	}
	return &Engine{opts: opts, log: opts.Logger, parser: p, funcs: builtinFuncs(), statTables: statTableDefs()}, nil
}

// Column describes one result column. Type is one of int, float, text,
// bool, timestamp, json, null, or any (values of several types).
type Column struct {
	Name string `json:"name"`
	Type string `json:"type"`
}

// Result is the complete answer to a statement.
type Result struct {
	Columns []Column
	// Rows hold nil (NULL), bool, int64, float64, string, time.Time, or
	// map[string]any / []any (JSON).
	Rows [][]any
	// RowsScanned counts the rows the query read from its tables (records
	// of streams, rows of statistics tables) before filtering.
	RowsScanned int64
	Elapsed     time.Duration
	// Warnings say what the rows may lack: in a cluster, the rows of a
	// node that did not answer (Warn).
	Warnings []string
	// Push, set for a push query (SELECT ... EMIT ...) instead of Rows,
	// runs it: it calls emit with each row as it comes, until ctx ends
	// (it then returns nil), emit fails, or the query's LIMIT is reached.
	Push func(ctx context.Context, emit func(row []any) error) error
}

// Query runs one SQL statement. Errors are *Error.
func (e *Engine) Query(ctx context.Context, sql string) (res *Result, err error) {
	start := time.Now()
	defer func() {
		// A bug must not take the node down with it: report it as an
		// internal error (logged with its stack) and keep serving.
		if r := recover(); r != nil {
			e.log.Error("query panicked", "sql", sql, "panic", r, "stack", string(debug.Stack()))
			res, err = nil, &Error{Code: CodeInternal, Message: fmt.Sprintf("internal error while running the query: %v", r)}
		}
	}()
	qctx, warned := withWarnings(ctx)
	res, err = e.query(qctx, sql)
	if err != nil {
		return nil, e.classify(ctx, err)
	}
	res.Warnings = warned.take()
	res.Elapsed = time.Since(start)
	return res, nil
}

// classify turns any error into an *Error, telling a hit time budget
// apart from a caller that went away.
func (e *Engine) classify(parent context.Context, err error) *Error {
	if errors.Is(err, context.DeadlineExceeded) && parent.Err() == nil {
		return &Error{Code: CodeBudget, Err: err, Message: fmt.Sprintf(
			"query stopped: it ran longer than %s, the time budget; narrow it with WHERE _timestamp > now() - INTERVAL ... or _offset ranges, add LIMIT, or raise the budget (sql.timeout in the node configuration)", e.opts.Timeout)}
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return &Error{Code: CodeInternal, Message: "query canceled: " + err.Error(), Err: err}
	}
	qe := asError(err)
	if qe.Code == CodeInternal {
		e.log.Error("query failed", "error", err)
	}
	return qe
}

func (e *Engine) query(parent context.Context, sql string) (*Result, error) {
	ctx, cancel := context.WithTimeout(parent, e.opts.Timeout)
	defer cancel()
	stmt, src, err := e.parser.parse(sql)
	if err != nil {
		return nil, err
	}
	now := e.opts.Now()
	switch s := stmt.(type) {
	case *createStreamStmt:
		// Compiled here too, so that a bad statement gets its positioned
		// error even on a node without continuous queries.
		if _, err := planContinuous(s, src, sql, e.viewPlan); err != nil {
			return nil, err
		}
		return e.continuous(ctx, s, sql)
	case *terminateStmt:
		return e.continuous(ctx, s, sql)
	case *pushStmt:
		c, err := planPush(s, src, sql, e.viewPlan)
		if err != nil {
			return nil, err
		}
		return e.push(c)
	case *showStmt:
		if s.what == "queries" || s.what == "views" {
			return e.continuous(ctx, s, sql)
		}
		if s.what == "tables" {
			return e.showTables(), nil
		}
		return e.runSelect(ctx, e.showStreamsStmt(), src, now)
	case *describeStmt:
		return e.describe(ctx, &s.table)
	case *explainStmt:
		return e.explain(ctx, s, now)
	case *selectStmt:
		return e.runSelect(ctx, s, src, now)
	}
	return nil, errorf(Pos{}, "unsupported statement")
}

func (e *Engine) runSelect(ctx context.Context, s *selectStmt, src *source, now time.Time) (*Result, error) {
	p, err := e.planSelect(ctx, s, src, now)
	if err != nil {
		return nil, err
	}
	x := &executor{ctx: ctx, e: e, p: p, maxRows: e.opts.MaxRowsScanned}
	rows, err := x.run()
	if err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		// Never present a partial answer as complete.
		return nil, err
	}
	for _, r := range rows {
		for i, v := range r {
			if t, ok := v.(time.Time); ok {
				r[i] = t.UTC()
			}
		}
	}
	res := &Result{Rows: rows, RowsScanned: x.scanned}
	for i, name := range p.names {
		res.Columns = append(res.Columns, Column{Name: name, Type: columnType(p.items[i].typ, rows, i)})
	}
	return res, nil
}

// columnType is the static type, or for values known only at run time the
// type they all share ("any" if they differ).
func columnType(static Type, rows [][]any, i int) string {
	if static != TAny {
		return static.String()
	}
	t := TNull
	for _, r := range rows {
		vt := typeOf(r[i])
		switch {
		case vt == TNull || vt == t:
		case t == TNull:
			t = vt
		case t.numeric() && vt.numeric():
			t = TFloat
		default:
			return TAny.String()
		}
	}
	if t == TNull {
		return TAny.String()
	}
	return t.String()
}

// showStreamsStmt is SHOW STREAMS: a SELECT over stats.streams.
func (e *Engine) showStreamsStmt() *selectStmt {
	s := &selectStmt{from: &tableRef{schema: schemaStats, name: "streams"}}
	for _, c := range []string{"name", "records", "bytes", "first_offset", "last_offset", "created_at", "last_append", "retention"} {
		s.items = append(s.items, selectItem{e: &columnRef{name: c}, text: c})
	}
	s.orderBy = []orderItem{{e: &columnRef{name: "name"}}}
	return s
}

func (e *Engine) showTables() *Result {
	res := &Result{Columns: []Column{{"name", "text"}, {"kind", "text"}, {"description", "text"}}}
	for _, t := range e.statTables {
		res.Rows = append(res.Rows, []any{t.name, "statistics", t.desc})
	}
	if e.opts.Queries != nil {
		for _, q := range e.opts.Queries.List() {
			if q.Kind == KindView {
				res.Rows = append(res.Rows, []any{q.ID, "view", "view over stream " + q.Source + ": " + q.SQL})
			}
		}
	}
	for _, s := range e.opts.Store.ListStreams() {
		res.Rows = append(res.Rows, []any{s.Name, "stream", fmt.Sprintf("stream: %d records, offsets %d..%d", s.Records, s.FirstOffset, s.NextOffset)})
	}
	res.RowsScanned = int64(len(res.Rows))
	return res
}

// describe lists a table's columns with their types and meaning; for a
// stream, the payload fields seen in a sample of its records.
func (e *Engine) describe(ctx context.Context, ref *tableRef) (*Result, error) {
	t, err := e.resolveTable(ref)
	if err != nil {
		return nil, err
	}
	res := &Result{Columns: []Column{{"column", "text"}, {"type", "text"}, {"description", "text"}}}
	for _, c := range t.cols {
		res.Rows = append(res.Rows, []any{c.name, c.typ.String(), c.desc})
	}
	if t.stream != nil {
		if err := e.discoverFields(ctx, t); err != nil {
			return nil, err
		}
		for _, f := range t.fields {
			res.Rows = append(res.Rows, []any{f.name, f.describeTypes(),
				fmt.Sprintf("payload field, in %d of %d sampled records", f.seen, t.sampled)})
		}
		res.RowsScanned = int64(t.sampled)
	}
	return res, nil
}

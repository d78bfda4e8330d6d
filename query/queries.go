package query

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/mqstream/mqstream/streams"
)

// ErrQueryNotFound: no continuous query (or view) has the id; Queries
// implementations wrap it.
var ErrQueryNotFound = errors.New("query not found")

// ErrStreamInUse: a stream cannot be dropped while continuous queries or
// views read it or write into it; Queries.DropStream wraps it.
var ErrStreamInUse = errors.New("stream in use by continuous queries")

// Queries runs continuous queries (package cq implements it): the engine
// hands it CREATE STREAM ... AS SELECT, SHOW QUERIES and TERMINATE QUERY.
type Queries interface {
	// Create starts the continuous query sql (a CREATE STREAM statement)
	// and keeps it across restarts. Errors are *Error where the SQL is at
	// fault.
	Create(ctx context.Context, sql string) (QueryInfo, error)
	// List returns every query, sorted by id.
	List() []QueryInfo
	// Terminate stops a query for good; its output stream stays.
	Terminate(ctx context.Context, id string) error
	// Pause stops a query, keeping its progress, until Resume runs it
	// again from there; the paused state survives restarts. Both change
	// nothing for a query already in the state asked for.
	Pause(ctx context.Context, id string) (QueryInfo, error)
	Resume(ctx context.Context, id string) (QueryInfo, error)
	// Push runs push query c from the end of its input: it calls emit
	// with each output row (Output.Values set) until ctx ends (then it
	// returns nil), emit fails, or c's LIMIT is reached. Errors are
	// *Error where the SQL is at fault.
	Push(ctx context.Context, c *Continuous, emit func(Output) error) error
	// View returns the view (CREATE VIEW) named name, if there is one.
	View(name string) (ViewReader, bool)
	// DropView terminates a view; it is an error if name is another kind
	// of query.
	DropView(ctx context.Context, name string) error
	// DropStream deletes a stream and its records. It refuses, with an
	// error wrapping ErrStreamInUse that names them, while queries or
	// views read the stream or write into it; a stream that does not
	// exist is an error wrapping streams.ErrStreamNotFound.
	DropStream(ctx context.Context, name string) error
}

// QueryTable serves the queries table: the continuous queries of every
// node of the cluster, each with its node (node adapts them).
type QueryTable interface {
	QueryRows(ctx context.Context) []NodeQuery
}

// NodeQuery is one continuous query and the node running it: a row of the
// queries table.
type NodeQuery struct {
	Node string
	QueryInfo
}

// ViewReader reads a view: a table kept up to date by a persistent query.
type ViewReader interface {
	// Plan is the view's compiled query.
	Plan() *Continuous
	// Rows returns the view's current rows (the columns of Plan), waiting
	// while it rebuilds its state after a start; ctx bounds the wait.
	Rows(ctx context.Context) ([][]any, error)
}

// view returns the view named name, if the node has one.
func (e *Engine) view(name string) (ViewReader, bool) {
	if e.opts.Queries == nil {
		return nil, false
	}
	return e.opts.Queries.View(name)
}

// viewPlan tells whether name is a view or a stream (ViewPlans).
func (e *Engine) viewPlan(name string) (*Continuous, bool) {
	if v, ok := e.view(name); ok {
		return v.Plan(), false
	}
	_, err := e.opts.Store.DescribeStream(name)
	return nil, err == nil
}

// QueryInfo describes one continuous query: a row of SHOW QUERIES.
type QueryInfo struct {
	ID     string `json:"id"`
	SQL    string `json:"sql"`
	Source string `json:"source"`
	Sink   string `json:"sink"`
	Status string `json:"status"` // starting, running, paused, error
	// Kind is stream (CREATE STREAM), insert (INSERT INTO) or view
	// (CREATE VIEW); empty for a query whose SQL no longer compiles.
	Kind    string    `json:"kind"`
	Error   string    `json:"error,omitempty"`
	Created time.Time `json:"created_at"`
	// Offset is the next input offset to read; Lag the records after it;
	// LagSeconds, while records wait, the age of the last one read.
	Offset     uint64  `json:"input_offset"`
	Lag        int64   `json:"lag"`
	LagSeconds float64 `json:"lag_seconds"`
	// Watermark: every window ending at or before it is closed.
	Watermark   time.Time `json:"watermark"`
	OpenWindows int       `json:"open_windows"`
	Groups      int       `json:"groups"`
	// StateBytes estimates the memory the groups hold; StateKeys counts
	// the keys they belong to. A query whose StateBytes passes
	// queries.max_state_bytes is paused with an error.
	StateBytes int64 `json:"state_bytes"`
	StateKeys  int   `json:"state_keys"`
	// StateLimitPauses counts the times the query was paused for its
	// state since the node started.
	StateLimitPauses int64 `json:"state_limit_pauses"`
	// Counters since the query started on this node.
	RecordsIn int64     `json:"records_in"`
	RowsOut   int64     `json:"rows_out"`
	Late      int64     `json:"late"`
	Skipped   int64     `json:"skipped"` // records whose evaluation failed
	LastEmit  time.Time `json:"last_emit"`
	// Published counts the output records published on MQTT (WITH (topic
	// = ...)); PublishError is the last error publishing them.
	Published    int64  `json:"published"`
	PublishError string `json:"publish_error,omitempty"`
}

// queryCols are the columns of SHOW QUERIES and of the table queries.
func queryCols() []colDef {
	return []colDef{
		{"id", TText, "query id: the name of its output stream or view (INSERT INTO: <stream>_insert_<n>)"},
		{"status", TText, "starting, running, paused (PAUSE QUERY, or its state passed queries.max_state_bytes: see error) or error (a failed query restarts from its progress after a pause)"},
		{"source", TText, "input stream"},
		{"sink", TText, "output stream"},
		{"input_offset", TInt, "next input offset to read"},
		{"lag", TInt, "input records not read yet (a reserved word: write `lag`)"},
		{"lag_seconds", TFloat, "while input records wait, the age of the last one read, in seconds (0 when caught up)"},
		{"watermark", TTime, "every window ending at or before it is closed"},
		{"open_windows", TInt, "windows holding state"},
		{"groups", TInt, "groups held: keys times panes (a reserved word: write `groups`)"},
		{"state_bytes", TInt, "estimated memory of the groups held (queries.max_state_bytes pauses a query past it)"},
		{"state_keys", TInt, "keys the groups held belong to"},
		{"records_in", TInt, "input records read since the query started on this node"},
		{"rows_out", TInt, "rows output since then"},
		{"late", TInt, "records for windows already closed, counted, not added"},
		{"skipped", TInt, "records whose evaluation failed"},
		{"last_emit", TTime, "when rows were last output (NULL if never)"},
		{"published", TInt, "output records published on MQTT since then (WITH (topic = ...))"},
		{"error", TText, "the query's error, else its publication's (NULL if none)"},
		{"created_at", TTime, "when the query was created"},
		{"sql", TText, "the CREATE STREAM, INSERT INTO or CREATE VIEW statement"},
		{"kind", TText, "stream (CREATE STREAM ... AS), insert (INSERT INTO) or view (CREATE VIEW)"},
		// Last, the queries table's only: SHOW QUERIES lists this node's.
		{"node", TText, "node running the query: the node it was created on (every node's queries are listed)"},
	}
}

func queryRow(q QueryInfo) []any {
	opt := func(t time.Time) any {
		if t.IsZero() {
			return nil
		}
		return t.UTC()
	}
	var errText any
	switch {
	case q.Error != "":
		errText = q.Error
	case q.PublishError != "":
		errText = "publishing: " + q.PublishError
	}
	return []any{q.ID, q.Status, q.Source, q.Sink, int64(q.Offset), q.Lag, q.LagSeconds, opt(q.Watermark), int64(q.OpenWindows), int64(q.Groups), q.StateBytes, int64(q.StateKeys),
		q.RecordsIn, q.RowsOut, q.Late, q.Skipped, opt(q.LastEmit), q.Published, errText, opt(q.Created), q.SQL, q.Kind}
}

type readOnlyKey struct{}

// ReadOnly marks ctx so that the engine refuses statements that change
// the node (CREATE STREAM ... AS, TERMINATE QUERY) with CodeForbidden:
// for callers allowed to read only.
func ReadOnly(ctx context.Context) context.Context {
	return context.WithValue(ctx, readOnlyKey{}, true)
}

// continuous runs the statements about continuous queries.
func (e *Engine) continuous(ctx context.Context, st statement, sql string) (*Result, error) {
	if e.opts.Queries == nil {
		return nil, errorf(Pos{}, "continuous queries are not available on this node")
	}
	if _, isShow := st.(*showStmt); !isShow && ctx.Value(readOnlyKey{}) != nil {
		return nil, &Error{Code: CodeForbidden, Message: "creating, terminating, pausing and resuming continuous queries, and dropping streams and views, needs the admin role"}
	}
	switch s := st.(type) {
	case *showStmt:
		if s.what == "views" {
			return e.showViews(), nil
		}
		res := &Result{Rows: [][]any{}}
		cols := queryCols()
		for _, c := range cols[:len(cols)-1] { // all but node
			res.Columns = append(res.Columns, Column{Name: c.name, Type: c.typ.String()})
		}
		for _, q := range e.opts.Queries.List() {
			res.Rows = append(res.Rows, queryRow(q))
		}
		return res, nil
	case *terminateStmt:
		return e.control(ctx, s)
	case *createStreamStmt:
		q, err := e.opts.Queries.Create(ctx, sql)
		if err != nil {
			return nil, withPos(err, s.create.namePos)
		}
		if s.create.kind == KindView {
			return message(fmt.Sprintf("view %s created: it reads stream %s; SELECT ... FROM %s reads it", q.ID, q.Source, q.ID)), nil
		}
		return message(fmt.Sprintf("query %s created: it reads stream %s and writes stream %s", q.ID, q.Source, q.Sink)), nil
	}
	return nil, errorf(Pos{}, "unsupported statement")
}

// control runs TERMINATE, PAUSE and RESUME QUERY.
func (e *Engine) control(ctx context.Context, s *terminateStmt) (*Result, error) {
	qs := e.opts.Queries
	var q QueryInfo
	var err error
	switch s.verb {
	case "pause":
		q, err = qs.Pause(ctx, s.id)
	case "resume":
		q, err = qs.Resume(ctx, s.id)
	case "drop view":
		err = qs.DropView(ctx, s.id)
		if s.ifExists && errors.Is(err, ErrQueryNotFound) {
			return message("view " + s.id + " does not exist"), nil
		}
	case "drop stream":
		err = qs.DropStream(ctx, s.id)
		if errors.Is(err, streams.ErrStreamNotFound) {
			if s.ifExists {
				return message("stream " + s.id + " does not exist"), nil
			}
			err = errorf(s.pos, "unknown stream %q (SHOW STREAMS lists them)", s.id)
		}
	default:
		err = qs.Terminate(ctx, s.id)
	}
	if err != nil {
		return nil, withPos(err, s.pos)
	}
	switch s.verb {
	case "pause":
		return message("query " + s.id + " paused: it keeps its progress; RESUME QUERY " + s.id + " runs it again from there"), nil
	case "resume":
		return message("query " + s.id + " resumed: status " + q.Status), nil
	case "drop view":
		return message("view " + s.id + " dropped"), nil
	case "drop stream":
		return message("stream " + s.id + " dropped, with its records"), nil
	}
	return message("query " + s.id + " terminated"), nil
}

// push answers a push query: its columns, and a Push that runs it.
func (e *Engine) push(c *Continuous) (*Result, error) {
	if e.opts.Queries == nil {
		return nil, errorf(Pos{}, "push queries are not available on this node")
	}
	qs := e.opts.Queries
	return &Result{Columns: c.ColumnTypes(), Push: func(ctx context.Context, emit func([]any) error) error {
		return qs.Push(ctx, c, func(o Output) error { return emit(o.Values) })
	}}, nil
}

func message(text string) *Result {
	return &Result{Columns: []Column{{"result", "text"}}, Rows: [][]any{{text}}}
}

// showViews answers SHOW VIEWS: the views among the queries.
func (e *Engine) showViews() *Result {
	res := &Result{Columns: []Column{{"name", "text"}, {"status", "text"}, {"source", "text"}, {"groups", "int"},
		{"records_in", "int"}, {"error", "text"}, {"sql", "text"}}, Rows: [][]any{}}
	for _, q := range e.opts.Queries.List() {
		if q.Kind != KindView {
			continue
		}
		var errText any
		if q.Error != "" {
			errText = q.Error
		}
		res.Rows = append(res.Rows, []any{q.ID, q.Status, q.Source, int64(q.Groups), q.RecordsIn, errText, q.SQL})
	}
	return res
}

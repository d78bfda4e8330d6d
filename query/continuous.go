package query

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/mqstream/mqstream/streams"
)

// Continuous is a compiled continuous query, CREATE STREAM name AS SELECT
// ... FROM source [WHERE ...] GROUP BY k, ..., TUMBLING(size): the plan of
// its SELECT bound to one input stream, evaluated one record at a time.
// Package cq runs it; this type only evaluates (it reads no store).
//
// The evaluation methods share one row buffer: a Continuous is used by one
// goroutine at a time.
type Continuous struct {
	// Kind is KindStream (CREATE STREAM name AS SELECT: Name is a new
	// stream and the query's id), KindInsert (INSERT INTO name SELECT:
	// Name is an existing stream) or KindView (CREATE VIEW name AS
	// SELECT: Name is the view and the query's id; nothing is written).
	Kind string
	// Name is the output stream, or the view, named at NameAt in SQL.
	Name   string
	NameAt Pos
	// Topic is the MQTT topic of the output records as written in WITH
	// (topic = ...), {column} templates included; by default the stream's
	// name. Output.Topic is the filled-in topic of each record.
	Topic string
	// Publish is set when WITH (topic = ...) was given: the output
	// records are also published on MQTT, each on its topic.
	Publish bool
	// QoS and Retain are the output records' QoS and retain flag, and
	// those of their MQTT publication (WITH (qos = ..., retain = ...)).
	QoS    byte
	Retain bool
	// Source is the input stream, named at SourceAt in SQL.
	Source   string
	SourceAt Pos
	// Window is the query's window; its Size is 0 for a query without
	// one (a filter or transform, or a push query aggregating over all
	// time).
	Window Window
	// Emit is "final" (a row per key when its window closes: the default
	// with a window) or "changes" (a row per input record, updated).
	Emit string
	// EventTime is set when the window's time is an expression over the
	// record (TUMBLE(ts, ...) with ts not _timestamp): Time then returns
	// it for each record, which may come out of order.
	EventTime bool
	// Hints are the query's options (GRACE, IDLE_TIMEOUT, START).
	Hints Hints
	// LateStream, with WITH (late = TRUE), is the stream the records
	// found late are written to: <Name>_late, or for INSERT INTO
	// <query>_late, the query's id being given when it is created (package
	// cq sets it).
	LateStream string
	lateAt     Pos
	// Stateful is set for a query that aggregates (aggregates or GROUP BY
	// keys): its rows depend on earlier records.
	Stateful bool
	// Push is set for a push query (SELECT ... EMIT ..., never kept);
	// Limit, if not negative, ends it after that many rows.
	Push  bool
	Limit int64
	// Join is the query's join (FROM a JOIN b ...), nil without one.
	Join *Join
	// SQL is the statement as written.
	SQL string
	// Columns are the keys of the output records' JSON objects, in order:
	// window_start and window_end (unless the select list names them),
	// then the select list.
	Columns []string

	p     *selectPlan
	jp    *joinPlan // the join (Join)
	views ViewPlans // resolves a join's view while planning
	// keyCols are the output column of each GROUP BY key (-1 for a key
	// that is not a plain column of the select list): a view is looked
	// up by them.
	keyCols []int
	timeFn  *compiled // the event time (EventTime)
	ts      int64     // the time of the record Eval read last (unix ns)
	t       *tableInst
	ws, we  int // row slots of window_start and window_end
	lead    int // window columns prepended to the output: 0 or 2
	row     []any
	key     []byte
	post    []any
	names   [][]byte    // Columns, JSON-encoded
	topic   []topicPart // the topic template, nil without templates
	vals    []any       // every output column of the last Result
}

// Group is the state of one key in one window: its first row (for the
// columns that are neither grouped nor aggregated) and its aggregates'
// accumulators. It never holds more than one row.
type Group struct {
	first  []any
	states []aggState
}

// CompileContinuous parses and binds a persistent query: CREATE STREAM
// ... AS SELECT, INSERT INTO ... SELECT or CREATE VIEW ... AS SELECT.
// Errors are *Error with positions in sql.
func CompileContinuous(sql string) (*Continuous, error) {
	return CompileContinuousIn(sql, nil)
}

// CompileContinuousIn is CompileContinuous where views names the views a
// query may join (a nil views knows none).
func CompileContinuousIn(sql string, views ViewPlans) (*Continuous, error) {
	st, src, err := parseOne(sql)
	if err != nil {
		return nil, err
	}
	cs, ok := st.(*createStreamStmt)
	if !ok {
		return nil, errorf(firstPos(src), "a continuous query is written CREATE STREAM <name> AS SELECT ..., INSERT INTO <stream> SELECT ... or CREATE VIEW <name> AS SELECT ...")
	}
	return planContinuous(cs, src, sql, views)
}

// CompilePush parses and binds a push query: SELECT ... EMIT CHANGES or
// EMIT FINAL. Errors are *Error with positions in sql.
func CompilePush(sql string) (*Continuous, error) {
	return CompilePushIn(sql, nil)
}

// CompilePushIn is CompilePush where views names the views a query may
// join.
func CompilePushIn(sql string, views ViewPlans) (*Continuous, error) {
	st, src, err := parseOne(sql)
	if err != nil {
		return nil, err
	}
	ps, ok := st.(*pushStmt)
	if !ok {
		return nil, errorf(firstPos(src), "a push query is written SELECT ... EMIT CHANGES")
	}
	return planPush(ps, src, sql, views)
}

func parseOne(sql string) (statement, *source, error) {
	ps, err := newParser()
	if err != nil {
		return nil, nil, err
	}
	return ps.parse(sql)
}

func firstPos(src *source) Pos {
	if len(src.toks) > 0 {
		return src.pos(src.toks[0].start)
	}
	return Pos{}
}

// windowColumns are the columns a windowed query adds to its input.
const (
	colWindowStart = "window_start"
	colWindowEnd   = "window_end"
)

func planContinuous(cs *createStreamStmt, src *source, sql string, views ViewPlans) (*Continuous, error) {
	c := &Continuous{Kind: cs.create.kind, Name: cs.create.name, NameAt: cs.create.namePos, Topic: cs.create.name, QoS: 1, SQL: sql, Limit: -1, views: views}
	what := "a stream"
	if c.Kind == KindView {
		what = "a view"
	}
	if err := streams.ValidateName(c.Name); err != nil || streams.IsReserved(c.Name) {
		return nil, errorf(cs.create.namePos, "%q cannot name %s: 1 to 255 characters without spaces, '/', '+', '#', not starting with '$'", c.Name, what)
	}
	if c.Kind == KindView {
		for _, d := range statTableDefs() {
			if strings.EqualFold(d.name, c.Name) {
				return nil, errorf(cs.create.namePos, "%s is a statistics table: choose another name for the view", d.name)
			}
		}
		if cs.emit != "" {
			return nil, errorf(cs.emitAt, "a view is kept up to date with every record: leave out EMIT")
		}
	}
	topicOpt, err := c.options(cs.create.with)
	if err != nil {
		return nil, err
	}
	if err := c.plan(cs.sel, src, cs.emit, cs.emitAt); err != nil {
		return nil, err
	}
	if c.LateStream != "" {
		if err := streams.ValidateName(c.LateStream); err != nil {
			return nil, errorf(c.lateAt, "late = TRUE writes the stream %q, not a valid name: %v", c.LateStream, err)
		}
		if !c.Windowed() || c.Emit != "final" && !c.EventTime {
			return nil, errorf(c.lateAt, "late = TRUE applies to windows with EMIT FINAL, or EMIT CHANGES on event time: a record is late when its windows have closed")
		}
	}
	if c.EventTime && c.Kind == KindView {
		return nil, errorf(cs.create.namePos, "a view's windows run on _timestamp: event time (a window on another expression) is for CREATE STREAM ... AS and INSERT INTO")
	}
	if topicOpt != nil {
		if err := c.compileTopic(topicOpt); err != nil {
			return nil, err
		}
	}
	return c, nil
}

func planPush(ps *pushStmt, src *source, sql string, views ViewPlans) (*Continuous, error) {
	c := &Continuous{SQL: sql, Push: true, Limit: -1, views: views}
	if err := c.plan(ps.sel, src, ps.emit, ps.emitAt); err != nil {
		return nil, err
	}
	return c, nil
}

// plan binds the SELECT of a continuous or push query.
func (c *Continuous) plan(s *selectStmt, src *source, emit string, emitAt Pos) (rerr error) {
	if err := checkContinuous(s, src, c.Push); err != nil {
		return err
	}
	hints, given, err := readHints(src)
	if err != nil {
		return err
	}
	c.Hints = hints
	defer func() {
		if rerr == nil {
			rerr = c.checkHints(given, src)
		}
	}()
	if j, isJoin := s.from.(*joinExpr); isJoin {
		return c.planJoin(s, src, j, emit, emitAt)
	}
	ref := s.from.(*tableRef)
	c.Source, c.SourceAt = ref.name, ref.pos

	// The window: at most one window call in GROUP BY.
	var keys []expr
	var win *call
	var tsExpr expr
	for _, g := range s.groupBy {
		if w, ok := g.(*call); ok && windowFuncs[w.name] {
			if win != nil {
				return errorf(w.pos, "a query has one window")
			}
			win = w
			continue
		}
		keys = append(keys, g)
	}
	if win != nil {
		if c.Window, tsExpr, err = windowOf(win); err != nil {
			return err
		}
		c.EventTime = tsExpr != nil
		if c.Window.Hopping() || c.Window.Sessions() {
			if err := noWindowColumns(append([]expr{s.where}, keys...)); err != nil {
				return err
			}
		}
		if c.Window.Sessions() && !c.Push {
			switch {
			case c.Kind == KindView:
				return errorf(win.pos, "a view cannot use SESSION windows: it keeps tumbling or hopping windows (or none); CREATE STREAM ... AS SELECT ... GROUP BY ..., SESSION(...) outputs each session once it closes")
			}
		}
	}
	for _, it := range s.items {
		if it.star && (win != nil || len(keys) > 0) {
			return errorf(it.starPos, "SELECT * is not supported with GROUP BY or a window: name the columns")
		}
	}
	c.Emit = emit
	switch {
	case emit == "":
		c.Emit = "changes"
		if win != nil {
			c.Emit = "final"
		}
	case emit == "final" && win == nil:
		return errorf(emitAt, "EMIT FINAL needs a window: a final row per key comes when its window closes (GROUP BY <keys>, TUMBLING(INTERVAL 10 SECOND))")
	}

	// The input: the stream's metadata columns, every other name the query
	// uses as a payload field (streams have no schema, and the stream may
	// still be empty), and the window's bounds.
	t := &tableInst{ref: ref, label: ref.label(), stream: &streams.StreamInfo{Name: ref.name}, cols: metaColumns(), rng: fullRange()}
	for _, name := range payloadNames(s, ref) {
		t.fields = append(t.fields, fieldInfo{name: name})
		t.cols = append(t.cols, colDef{name: name, typ: TAny, desc: "payload field"})
	}
	c.ws, c.we = -1, -1
	if win != nil {
		c.ws, c.we = len(t.cols), len(t.cols)+1
		t.cols = append(t.cols, colDef{colWindowStart, TTime, "start of the window"}, colDef{colWindowEnd, TTime, "end of the window (excluded)"})
	}
	c.t = t
	c.p = &selectPlan{aggs: &aggSet{}, limit: -1, outs: new([]any), tables: []*tableInst{t}, agg: true}
	bound := *s
	bound.groupBy = keys
	if tsExpr != nil {
		// Bound as a last GROUP BY expression (the same names), then
		// taken off.
		bound.groupBy = append(slices.Clip(keys), tsExpr)
	}
	b := &binder{src: src, funcs: builtinFuncs()}
	if err := c.p.bind(b, &bound); err != nil {
		return err
	}
	if tsExpr != nil {
		n := len(c.p.groupBy) - 1
		c.timeFn, c.p.groupBy = c.p.groupBy[n], c.p.groupBy[:n]
		switch c.timeFn.typ {
		case TAny, TTime, TInt, TFloat, TText:
		default:
			return errorf(tsExpr.position(), "the window's time is a %s: it must be a timestamp, text holding one, or a number of Unix milliseconds", c.timeFn.typ)
		}
		if c.timeFn.konst {
			return errorf(tsExpr.position(), "the window's time is a constant: name a payload field (TUMBLE(ts, ...)) or _timestamp")
		}
	}
	c.Stateful = len(keys) > 0 || len(c.p.aggs.specs) > 0
	if c.Kind == KindView && !c.Stateful {
		return errorf(firstPos(src), "a view aggregates: CREATE VIEW <name> AS SELECT <keys>, count(*) ... GROUP BY <keys>[, <window>] (a filter writes a stream: CREATE STREAM <name> AS SELECT ...)")
	}
	if c.Stateful && win == nil && !c.Push && c.Kind != KindView {
		at := src.findKeyword("group")
		if at.Line == 0 {
			at = c.p.aggs.specs[0].pos
		}
		return errorf(at, "a continuous query that aggregates needs a window: GROUP BY <keys>, TUMBLING(INTERVAL 10 SECOND) (a push query, SELECT ... EMIT CHANGES, aggregates without one)")
	}
	if s.offset != nil {
		return errorf(s.offset.position(), "OFFSET is not supported in push queries")
	}
	c.Limit = c.p.limit
	named := map[string]bool{}
	for _, n := range c.p.names {
		named[strings.ToLower(n)] = true
	}
	if win != nil && !named[colWindowStart] && !named[colWindowEnd] {
		c.lead = 2
		c.Columns = append(c.Columns, colWindowStart, colWindowEnd)
	}
	c.finishColumns()
	c.keyCols = keyColumns(keys, s.items, c.lead)
	return nil
}

// finishColumns appends the select list's names to Columns (numbered
// when repeated) and makes the evaluation buffers.
func (c *Continuous) finishColumns() {
	seen := map[string]int{}
	for _, n := range c.p.names {
		seen[n]++
		if seen[n] > 1 {
			n = fmt.Sprintf("%s_%d", n, seen[n])
		}
		c.Columns = append(c.Columns, n)
	}
	for _, n := range c.Columns {
		k, _ := json.Marshal(n)
		c.names = append(c.names, k)
	}
	c.row = make([]any, c.p.width)
	c.post = make([]any, c.p.width+len(c.p.aggs.specs))
	c.vals = make([]any, len(c.Columns))
}

// keyColumns returns the output column of each GROUP BY key: a select
// item that is the same column, or whose alias the key names (-1 if
// none).
func keyColumns(keys []expr, items []selectItem, lead int) []int {
	out := make([]int, len(keys))
	for i, k := range keys {
		out[i] = -1
		ref, ok := k.(*columnRef)
		if !ok {
			continue
		}
		for j, it := range items {
			if it.star {
				continue
			}
			col, isCol := it.e.(*columnRef)
			if isCol && strings.EqualFold(col.name, ref.name) && strings.EqualFold(col.table, ref.table) || ref.table == "" && strings.EqualFold(it.alias, ref.name) {
				out[i] = j + lead
				break
			}
		}
	}
	return out
}

// Windowed reports whether the query has a window.
func (c *Continuous) Windowed() bool { return c.Window.Size > 0 || c.Window.Sessions() }

// ColumnTypes returns the type of each of Columns, as SQL results name
// them ("any" for payload fields, known only at run time).
func (c *Continuous) ColumnTypes() []Column {
	out := make([]Column, 0, len(c.Columns))
	for _, d := range c.viewColumns() {
		out = append(out, Column{Name: d.name, Type: d.typ.String()})
	}
	return out
}

// viewColumns are the columns of a view read as a table: ColumnTypes,
// with descriptions.
func (c *Continuous) viewColumns() []colDef {
	out := make([]colDef, 0, len(c.Columns))
	for i, n := range c.Columns {
		typ, desc := TTime, "window bound"
		if i >= c.lead {
			typ, desc = c.p.items[i-c.lead].typ, "view column"
		}
		out = append(out, colDef{name: n, typ: typ, desc: desc})
	}
	return out
}

// checkContinuous refuses what a continuous query cannot do (yet), with
// the position of the construct.
func checkContinuous(s *selectStmt, src *source, push bool) error {
	ref, single := s.from.(*tableRef)
	switch {
	case s.from == nil:
		return errorf(Pos{}, "a continuous query reads a stream: CREATE STREAM <name> AS SELECT ... FROM <stream> ...")
	case single && strings.EqualFold(ref.schema, schemaStats):
		return errorf(ref.pos, "a continuous query reads a stream, not a statistics table")
	case single && ref.schema != "" && !strings.EqualFold(ref.schema, schemaStream):
		return errorf(ref.pos, "unknown schema %q: a continuous query reads a stream", ref.schema)
	case s.distinct:
		return errorf(src.findKeyword("distinct"), "SELECT DISTINCT is not supported in continuous queries")
	case len(s.orderBy) > 0:
		return errorf(src.findKeyword("order"), "ORDER BY is not supported in continuous queries: rows come in input order")
	case s.limit != nil && !push:
		return errorf(src.findKeyword("limit"), "LIMIT is not supported in continuous queries (push queries take it)")
	case push:
		return nil // now() is fine in rows nobody replays
	}
	var bad *call
	check := func(e expr) {
		walk(e, func(x expr) bool {
			if c, ok := x.(*call); ok && c.name == "now" && bad == nil {
				bad = c
			}
			return bad == nil
		})
	}
	for _, it := range s.items {
		check(it.e)
	}
	for _, e := range append([]expr{s.where, s.having}, s.groupBy...) {
		check(e)
	}
	if bad != nil {
		return errorf(bad.pos, "now() is not allowed in a continuous query: its rows must not depend on when they are computed (use _timestamp or window_start)")
	}
	return nil
}

// noWindowColumns refuses window_start and window_end in es: the WHERE
// and GROUP BY keys of a query with hopping windows (evaluated once per
// record when the record is in several windows) or sessions (whose bounds
// move).
func noWindowColumns(es []expr) error {
	var bad *columnRef
	for _, e := range es {
		walk(e, func(x expr) bool {
			if c, ok := x.(*columnRef); ok && bad == nil && (strings.EqualFold(c.name, colWindowStart) || strings.EqualFold(c.name, colWindowEnd)) {
				bad = c
			}
			return bad == nil
		})
	}
	if bad != nil {
		return errorf(bad.pos, "%s cannot be used in WHERE or GROUP BY with hopping or session windows: a record is in several windows, or its session's bounds are not known yet (use it in the select list or HAVING)", strings.ToLower(bad.name))
	}
	return nil
}

// payloadNames returns the names the query uses that are not metadata or
// window columns, in order of first use: they are read from the payload.
// A name that is only a select alias (in HAVING or GROUP BY) is not one.
func payloadNames(s *selectStmt, ref *tableRef) []string {
	aliases := map[string]bool{}
	for _, it := range s.items {
		if it.alias != "" {
			aliases[strings.ToLower(it.alias)] = true
		}
	}
	var out []string
	seen := map[string]bool{}
	collect := func(e expr, aliasesToo bool) {
		walk(e, func(x expr) bool {
			c, ok := x.(*columnRef)
			if !ok || c.table != "" && !strings.EqualFold(c.table, ref.label()) {
				return true
			}
			low := strings.ToLower(c.name)
			switch {
			case isMetaName(c.name), low == colWindowStart, low == colWindowEnd, seen[c.name]:
			case !aliasesToo && aliases[low]:
			default:
				seen[c.name] = true
				out = append(out, c.name)
			}
			return true
		})
	}
	collect(s.where, true)
	for _, it := range s.items {
		collect(it.e, true)
	}
	for _, g := range s.groupBy {
		collect(g, false)
	}
	collect(s.having, false)
	return out
}

// Eval reads one input record into the row buffer and checks WHERE: ok
// is false for a record the query skips. key identifies the record's
// group within a window (or pane); it is valid until the next call. With
// tumbling windows, window_start and window_end are those of the
// record's window; with hopping windows, whose records are in several,
// the query may not use them before grouping (planContinuous). Errors
// are *Error (a bad value met while evaluating).
func (c *Continuous) Eval(r *streams.Record) (key []byte, ok bool, err error) {
	recordRow(c.row, r, c.t)
	at := r.Timestamp
	if c.timeFn != nil {
		if at, err = c.eventTime(); err != nil {
			return nil, false, c.decorate(err, r)
		}
	}
	c.ts = at.UnixNano()
	switch {
	case !c.Windowed():
	case c.Window.Hopping() || c.Window.Sessions():
		c.row[c.ws], c.row[c.we] = nil, nil
	default:
		start := c.Window.Start(at)
		c.row[c.ws], c.row[c.we] = start, start.Add(c.Window.Size)
	}
	for _, cc := range c.p.pre {
		if ok, err := cond(cc, c.row); err != nil || !ok {
			return nil, false, c.decorate(err, r)
		}
	}
	for _, cc := range c.p.post {
		if ok, err := cond(cc, c.row); err != nil || !ok {
			return nil, false, c.decorate(err, r)
		}
	}
	c.key = c.key[:0]
	for _, g := range c.p.groupBy {
		v, err := g.eval(c.row)
		if err != nil {
			return nil, false, c.decorate(err, r)
		}
		c.key = appendKey(c.key, v)
	}
	return c.key, true, nil
}

// Time returns the time of the record Eval read last (unix ns): its
// event time (EventTime), else its _timestamp. Valid once Eval returned
// without an error, even when it skipped the record.
func (c *Continuous) Time() int64 { return c.ts }

// eventTime evaluates the window's time expression on the row: a
// timestamp, text holding one, or a number of Unix milliseconds.
func (c *Continuous) eventTime() (time.Time, error) {
	v, err := c.timeFn.eval(c.row)
	if err != nil {
		return time.Time{}, err
	}
	switch x := v.(type) {
	case nil:
		return time.Time{}, errorf(c.timeFn.pos, "the record has no event time (NULL)")
	case int64:
		return time.UnixMilli(x).UTC(), nil
	case float64:
		return time.Unix(0, int64(x*1e6)).UTC(), nil
	}
	t, err := asTime(v)
	if err != nil {
		return time.Time{}, errorf(c.timeFn.pos, "the record's event time is not a time: %v", err)
	}
	return t, nil
}

func (c *Continuous) decorate(err error, r *streams.Record) error {
	if err == nil {
		return nil
	}
	qe := asError(err)
	cp := *qe
	cp.Message = fmt.Sprintf("%s (stream %s, offset %d)", qe.Message, c.Source, r.Offset)
	return &cp
}

// NewGroup starts a group with the record Eval read last.
func (c *Continuous) NewGroup() *Group {
	return &Group{first: append([]any(nil), c.row...), states: c.p.aggs.newStates()}
}

// Estimated costs of a group in memory (GroupBytes): the Group with its
// two slice headers, each value of its first row (an interface), each
// accumulator (a pointer to a small struct).
const (
	groupOverhead = 64
	valueBytes    = 16
	aggStateBytes = 48
)

// GroupBytes estimates the memory g holds, cheaply (no walk of the
// accumulators): a fixed cost per group, value and aggregate, plus the
// strings of its first row. Package cq sums it over the groups a query
// holds (queries.max_state_bytes).
func (c *Continuous) GroupBytes(g *Group) int64 {
	n := int64(groupOverhead + len(g.first)*valueBytes + len(g.states)*aggStateBytes)
	for _, v := range g.first {
		switch x := v.(type) {
		case string:
			n += int64(len(x))
		case []byte:
			n += int64(len(x))
		}
	}
	return n
}

// Add adds the record Eval read last to g's aggregates.
func (c *Continuous) Add(g *Group) error {
	return c.p.aggs.accumulate(g.states, c.row)
}

// Combine returns a new group holding what a and b hold: a's first row
// (a is the older) and both's aggregates. a and b are not changed.
func (c *Continuous) Combine(a, b *Group) (*Group, error) {
	out := &Group{first: a.first, states: c.p.aggs.newStates()}
	for _, g := range [2]*Group{a, b} {
		for i, st := range g.states {
			if err := out.states[i].merge(st); err != nil {
				return nil, wrapErr(err, c.p.aggs.specs[i].pos)
			}
		}
	}
	return out, nil
}

// Result computes g's output record in the window starting at start, or
// ok=false if HAVING drops it. The payload is a JSON object with the keys
// Columns; the topic is Topic with its templates filled in.
func (c *Continuous) Result(g *Group, start time.Time) (out Output, ok bool, err error) {
	return c.ResultSpan(g, start, start.Add(c.Window.Size))
}

// ResultSpan is Result for the window [start, end): a session.
func (c *Continuous) ResultSpan(g *Group, start, end time.Time) (out Output, ok bool, err error) {
	copy(c.post, g.first)
	if c.Windowed() {
		c.post[c.ws], c.post[c.we] = start, end
	}
	for i, st := range g.states {
		c.post[c.p.width+i] = st.result()
	}
	vals := c.vals[c.lead:]
	for i, it := range c.p.items {
		if vals[i], err = it.eval(c.post); err != nil {
			return Output{}, false, err
		}
	}
	*c.p.outs = vals
	if c.p.having != nil {
		if ok, err := cond(c.p.having, c.post); err != nil || !ok {
			return Output{}, false, err
		}
	}
	if c.lead == 2 {
		c.vals[0], c.vals[1] = c.post[c.ws], c.post[c.we]
	}
	out, err = c.encode()
	return out, err == nil, err
}

// encode makes the output record of the values of Columns in c.vals.
func (c *Continuous) encode() (Output, error) {
	p := append(make([]byte, 0, 128), '{')
	for i, v := range c.vals {
		if i > 0 {
			p = append(p, ',')
		}
		p = append(p, c.names[i]...)
		p = append(p, ':')
		var err error
		if p, err = appendJSONValue(p, v); err != nil {
			return Output{}, fmt.Errorf("column %s: %w", c.Columns[i], err)
		}
	}
	t, err := c.renderTopic(c.vals)
	if err != nil {
		return Output{}, err
	}
	out := Output{Payload: append(p, '}'), Topic: t}
	if c.Push || c.Kind == KindView {
		out.Values = slices.Clone(c.vals)
	}
	return out, nil
}

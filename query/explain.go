package query

import (
	"context"
	"fmt"
	"math"
	"strings"
	"time"
)

// EXPLAIN <statement> answers the plan of a query as rows of (step,
// detail), without running it: the statement is parsed and bound as it
// would be to run, so its errors (with their positions) are those running
// it would give. It explains ad-hoc SELECTs, push queries and persistent
// queries (CREATE STREAM, INSERT INTO, CREATE VIEW).

// explainCols are the columns of EXPLAIN's answer.
func explainCols() []Column { return []Column{{"step", "text"}, {"detail", "text"}} }

// plan accumulates EXPLAIN's rows.
type plan struct{ rows [][]any }

func (p *plan) add(step, format string, args ...any) {
	p.rows = append(p.rows, []any{step, fmt.Sprintf(format, args...)})
}

func (e *Engine) explain(ctx context.Context, s *explainStmt, now time.Time) (*Result, error) {
	var p plan
	switch st := s.stmt.(type) {
	case *selectStmt:
		sp, err := e.planSelect(ctx, st, s.src, now)
		if err != nil {
			return nil, err
		}
		if err := e.explainSelect(&p, sp, st); err != nil {
			return nil, err
		}
	case *createStreamStmt, *pushStmt:
		c, sel, err := planQuery(st, s.src, s.sql, e.viewPlan)
		if err != nil {
			return nil, err
		}
		if err := e.checkStreams(c); err != nil {
			return nil, err
		}
		explainContinuous(&p, c, sel)
	default:
		return nil, errorf(firstPos(s.src), "EXPLAIN explains queries: SELECT ..., CREATE STREAM ... AS SELECT ..., INSERT INTO ... SELECT ... or CREATE VIEW ... AS SELECT ...")
	}
	return &Result{Columns: explainCols(), Rows: p.rows}, nil
}

// planQuery compiles a persistent or push query's statement.
func planQuery(st statement, src *source, sql string, views ViewPlans) (*Continuous, *selectStmt, error) {
	if ps, ok := st.(*pushStmt); ok {
		c, err := planPush(ps, src, sql, views)
		return c, ps.sel, err
	}
	cs := st.(*createStreamStmt)
	c, err := planContinuous(cs, src, sql, views)
	return c, cs.sel, err
}

// checkStreams checks that the streams a continuous query names exist
// (as creating it would), with positions.
func (e *Engine) checkStreams(c *Continuous) error {
	if _, err := e.opts.Store.DescribeStream(c.Source); err != nil {
		return errorf(c.SourceAt, "unknown stream %q: a continuous query reads an existing stream (SHOW STREAMS lists them)", c.Source)
	}
	if j := c.Join; j != nil && j.Kind == JoinInterval {
		if _, err := e.opts.Store.DescribeStream(j.Right); err != nil {
			return errorf(j.RightAt, "unknown stream or view %q: a join reads an existing stream (SHOW STREAMS lists them) or view (SHOW VIEWS)", j.Right)
		}
	}
	if c.Kind == KindInsert {
		if _, err := e.opts.Store.DescribeStream(c.Name); err != nil {
			return errorf(c.NameAt, "unknown stream %q: INSERT INTO writes an existing stream (CREATE STREAM %s AS SELECT ... creates one)", c.Name, c.Name)
		}
	}
	return nil
}

// explainJoin describes the join of a persistent query.
func explainJoin(p *plan, c *Continuous, j *Join) {
	on := fmt.Sprintf(" on %d key(s)", len(c.jp.right.keyL))
	if j.Kind == JoinLookup {
		kind := "inner: a record without a row is dropped"
		if j.Left {
			kind = "left: a record without a row gets NULL columns"
		}
		p.add("join", "lookup of view %s%s: each record with the view's current row(s) for its key, as the view is when the record is processed (%s)", j.Right, on, kind)
		return
	}
	left := ""
	switch {
	case j.Left && j.RightOuter:
		left = fmt.Sprintf("; full: a record of %s or %s that nothing joined is output alone (NULL columns) once the interval has passed", c.Source, j.Right)
	case j.Left:
		left = fmt.Sprintf("; left: a record of %s that nothing joined is output alone (NULL columns) once the interval has passed", c.Source)
	case j.RightOuter:
		left = fmt.Sprintf("; right: a record of %s that nothing joined is output alone (NULL columns) once the interval has passed", j.Right)
	}
	p.add("join", "interval join with stream %s%s: pairs with %s._timestamp - %s._timestamp within [%s, %s], output when the later record of the pair is processed; both streams are read in _timestamp order%s", j.Right, on, c.jp.right.label, c.t.label, j.Lo, j.Hi, left)
}

// explainSelect describes an ad-hoc SELECT's plan.
func (e *Engine) explainSelect(p *plan, sp *selectPlan, s *selectStmt) error {
	p.add("statement", "ad-hoc query: reads what the tables hold now and answers once")
	for i, t := range sp.tables {
		step := "source"
		if i > 0 {
			step = "join"
		}
		var detail string
		switch {
		case t.view != nil:
			detail = "view " + t.stat.name + ": its current rows, kept in memory by its query"
		case t.stat != nil:
			detail = "statistics table " + t.stat.name + ": computed when read"
		default:
			from, to, err := e.offsets(t)
			if err != nil {
				return storeErr(t, err)
			}
			detail = fmt.Sprintf("stream %s: scans offsets [%d, %d), %d records of %d kept%s", t.stream.Name, from, to, to-from,
				t.stream.NextOffset-t.stream.FirstOffset, rangeWords(t.rng))
			if sp.natural < 0 && i == 0 {
				detail += ", newest first"
			}
		}
		if t.label != t.ref.name {
			detail += " (as " + t.label + ")"
		}
		if i > 0 {
			kind := "inner join"
			switch {
			case t.kind == joinLeft:
				kind = "left join"
			case t.onExpr == nil:
				kind = "cross join"
			}
			detail = kind + " of " + detail
			if len(t.keyL) > 0 {
				detail += fmt.Sprintf(", hashed on %d equality key(s)", len(t.keyL))
			} else if t.on != nil {
				detail += ", nested loop"
			}
		}
		p.add(step, "%s", detail)
	}
	if len(sp.tables) == 0 {
		p.add("source", "none: the select list is evaluated once")
	}
	if sp.agg && len(s.texts.groupBy) == 0 {
		explainClauses(p, s.texts.where, []string{"one group: every row"}, s.texts.having)
	} else {
		explainClauses(p, s.texts.where, s.texts.groupBy, s.texts.having)
	}
	p.add("projection", "%s", itemWords(s))
	if s.distinct {
		p.add("distinct", "duplicate rows removed")
	}
	if len(s.texts.orderBy) > 0 {
		how := "sorted in memory"
		if sp.natural != 0 {
			how = "in scan order: no sort"
		}
		p.add("order", "%s (%s)", strings.Join(s.texts.orderBy, ", "), how)
	}
	if sp.limit >= 0 {
		p.add("limit", "%d (offset %d)", sp.limit, sp.offset)
	}
	p.add("output", "rows to the caller, at once")
	return nil
}

// itemWords prints the select list.
func itemWords(s *selectStmt) string {
	var w []string
	for _, it := range s.items {
		switch {
		case it.star && it.starTable != "":
			w = append(w, it.starTable+".*")
		case it.star:
			w = append(w, "*")
		case it.alias != "":
			w = append(w, it.text+" AS "+it.alias)
		default:
			w = append(w, it.text)
		}
	}
	return strings.Join(w, ", ")
}

// rangeWords describes the bounds WHERE puts on a stream's scan.
func rangeWords(r scanRange) string {
	var w []string
	if r.lo > 0 || r.hi != math.MaxUint64 {
		w = append(w, "_offset bounded by WHERE")
	}
	if !r.tsLo.IsZero() || !r.tsHi.IsZero() {
		w = append(w, "_timestamp bounded by WHERE (time index)")
	}
	if len(w) == 0 {
		return ""
	}
	return " (" + strings.Join(w, "; ") + ")"
}

// explainClauses adds the filter, grouping and HAVING rows; groupBy nil
// leaves grouping to the caller.
func explainClauses(p *plan, where string, groupBy []string, having string) {
	if where != "" {
		p.add("filter", "%s", where)
	}
	if len(groupBy) > 0 {
		p.add("grouping", "%s", strings.Join(groupBy, ", "))
	}
	if having != "" {
		p.add("having", "%s", having)
	}
}

// explainContinuous describes a continuous query's plan.
func explainContinuous(p *plan, c *Continuous, s *selectStmt) {
	switch {
	case c.Push:
		p.add("statement", "push query: streams its rows to the caller until cancelled or its LIMIT; never kept")
	case c.Kind == KindInsert:
		p.add("statement", "persistent query (INSERT INTO %s): runs across restarts until TERMINATE QUERY", c.Name)
	case c.Kind == KindView:
		p.add("statement", "view %s: a table kept up to date by a persistent query, until DROP VIEW %s", c.Name, c.Name)
	default:
		p.add("statement", "persistent query %s (CREATE STREAM): runs across restarts until TERMINATE QUERY %s", c.Name, c.Name)
	}
	from := "from its first record kept"
	switch {
	case c.Push:
		from = "from its end: records appended after the query starts"
	case c.Kind == KindView:
		from = "from its first record kept (again at every start: the view is rebuilt)"
	case c.Hints.StartLatest:
		from = "from its end when the query is created (START('latest'))"
	}
	p.add("source", "stream %s, %s, one record at a time", c.Source, from)
	if j := c.Join; j != nil {
		explainJoin(p, c, j)
	}
	var keys []string
	for i, g := range s.groupBy {
		if w, ok := g.(*call); ok && windowFuncs[w.name] {
			continue
		}
		if i < len(s.texts.groupBy) {
			keys = append(keys, s.texts.groupBy[i])
		}
	}
	if c.Stateful && len(keys) == 0 {
		keys = []string{"one group (per window)"}
	}
	explainClauses(p, s.texts.where, keys, s.texts.having)
	p.add("window", "%s", windowWords(c.Window))
	switch {
	case c.EventTime:
		idle := "the node's idle timeout"
		if c.Hints.IdleTimeout > 0 {
			idle = fmt.Sprintf("IDLE_TIMEOUT (%s)", c.Hints.IdleTimeout)
		}
		p.add("time", "event time, the window's first argument, per record: the watermark is the newest event time less GRACE (%s), or the newest record's append time less %s; records for closed windows are late (counted, not added)", c.Hints.Grace, idle)
	case c.Windowed():
		p.add("time", "_timestamp, the append time: never decreases within a stream, so no record is late and a replay gives the same windows")
	}
	switch {
	case c.Stateful && c.Window.Hopping() && c.Emit == "final":
		p.add("state", "one accumulator set per key and pane of %s (never the records)", c.Window.Pane())
	case c.Stateful && c.Window.Sessions() && !c.Push:
		p.add("state", "one accumulator set per key and open session (never the records); a restart reads the input again from the start of the oldest open session")
	case c.Stateful && c.Window.Sessions():
		p.add("state", "one accumulator set per key and open session (never the records)")
	case c.Stateful && c.Windowed():
		p.add("state", "one accumulator set per key and open window (never the records)")
	case c.Stateful:
		p.add("state", "one accumulator set per key (never the records)")
	case c.Join != nil && c.Join.Kind == JoinInterval:
		p.add("state", "the records of both streams within the interval, by key: a record of %s is kept until the records processed are %s past it, one of %s until they are %s past it", c.Source, c.Join.Hi, c.Join.Right, -c.Join.Lo)
	case c.Join != nil:
		p.add("state", "none: the view keeps its rows")
	default:
		p.add("state", "none: each record makes its own row")
	}
	p.add("projection", "%s", itemWords(s))
	p.add("columns", "%s", strings.Join(c.Columns, ", "))
	switch {
	case c.Kind == KindView:
		p.add("emit", "none: the view's rows are updated with each record and read with SELECT ... FROM %s", c.Name)
	case c.Join != nil:
		p.add("emit", "changes: one row per joined pair that passes the filter")
	case !c.Stateful && !c.Windowed():
		p.add("emit", "changes: one row per record that passes the filter")
	case c.Emit == "final" && c.Window.Sessions():
		p.add("emit", "final: one row per session when it closes (the watermark passes its end, or the idle timeout when input stops)")
	case c.Emit == "final":
		p.add("emit", "final: one row per key when its window closes (the watermark passes its end, or the idle timeout when input stops)")
	case c.EventTime && c.Hints.EmitInterval > 0:
		p.add("emit", "changes: the updated row of each open window holding a record not late (a record within the grace of an older window corrects it), each group (key, window) at most once per %v of append time (EMIT_INTERVAL), the latest held back output when due or when its window closes", c.Hints.EmitInterval)
	case c.EventTime:
		p.add("emit", "changes: the updated row of each open window holding a record not late; a record within the grace of an older window corrects it")
	case c.Hints.EmitInterval > 0:
		p.add("emit", "changes: the updated row of each group (key, window) at most once per %v of record time (EMIT_INTERVAL), the latest held back output when due or when its window ends", c.Hints.EmitInterval)
	default:
		p.add("emit", "changes: the updated row of each window holding a record, for each record")
	}
	switch {
	case c.Push:
		p.add("output", "rows to the caller as they come (NDJSON or Server-Sent Events over HTTP)")
	case c.Kind == KindView:
		p.add("output", "view %s, in memory", c.Name)
	case c.Kind == KindInsert:
		p.add("output", "existing stream %s, exactly once (topic %s, QoS %d)", c.Name, c.Topic, c.QoS)
	case c.Publish:
		p.add("output", "new stream %s, exactly once; published on MQTT topic %s (QoS %d, retain %v), at least once", c.Name, c.Topic, c.QoS, c.Retain)
	default:
		p.add("output", "new stream %s, exactly once (topic %s)", c.Name, c.Topic)
	}
	if c.Limit >= 0 {
		p.add("limit", "%d rows, then the push query ends", c.Limit)
	}
}

// windowWords describes a window.
func windowWords(w Window) string {
	switch {
	case w.Sessions():
		s := fmt.Sprintf("session: a key's records less than %s apart; [first record, last record + %s)", w.Gap, w.Gap)
		if w.MaxSession > 0 {
			s += fmt.Sprintf(", cut at every multiple of %s on the epoch's grid (at most that long)", w.MaxSession)
		}
		return s
	case w.Size == 0:
		return "none"
	case w.Hopping():
		return fmt.Sprintf("hopping: %s long, starting every %s, half-open [start, end), aligned to the epoch%s", w.Size, w.Hop(), offsetWords(w))
	}
	return fmt.Sprintf("tumbling: %s long, half-open [start, end), aligned to the epoch%s", w.Size, offsetWords(w))
}

func offsetWords(w Window) string {
	if w.Offset == 0 {
		return ""
	}
	return fmt.Sprintf(" plus %s", w.Offset)
}

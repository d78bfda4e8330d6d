package query

import (
	"fmt"
	"strings"
	"time"

	"github.com/mqstream/mqstream/streams"
)

// Joins in continuous queries (CREATE STREAM ... AS SELECT ... FROM a JOIN
// b ON ..., and push queries: SELECT ... FROM a JOIN b ON ... EMIT
// CHANGES) come in two kinds, told apart by what b is:
//
//   - b is a stream: an interval join. ON equates keys of the two
//     streams and bounds b's _timestamp by a's (b._timestamp BETWEEN
//     a._timestamp - INTERVAL 5 SECOND AND a._timestamp + INTERVAL 5
//     SECOND, or the same with >= and <=), the way Flink SQL writes its
//     interval joins; the bounds say how long a record waits for its
//     partners, so they bound the state. JOIN, or LEFT JOIN: a record of
//     a that nothing joined within the interval is output alone; RIGHT
//     JOIN the same for b, FULL JOIN for both.
//   - b is a view (CREATE VIEW): a lookup. Each record of a is joined
//     with the view's current row(s) for its key; ON equates every GROUP
//     BY key of the view with an expression of a. JOIN drops a record
//     without a row, LEFT JOIN keeps it with NULL columns.
//
// A join query outputs one row per joined pair (no GROUP BY, aggregates
// or window: aggregate its output stream with another query). Package
// cq runs it: it keeps the records, calls JoinInput for each and Pair for
// each candidate pair.

// Join kinds (Join.Kind).
const (
	JoinInterval = "interval"
	JoinLookup   = "lookup"
)

// Join describes the join of a continuous query; Continuous.Source is
// its left input.
type Join struct {
	// Kind is JoinInterval (Right is a stream) or JoinLookup (a view).
	Kind string
	// Right is the second input, named at RightAt in SQL.
	Right   string
	RightAt Pos
	// Left is set for LEFT and FULL JOIN: a record of Source that
	// nothing joins is output alone, the right side's columns NULL.
	Left bool
	// RightOuter is set for RIGHT and FULL JOIN (interval joins): a
	// record of Right that nothing joins is output alone, the left
	// side's columns NULL.
	RightOuter bool
	// Lo and Hi bound an interval join: a pair joins only if the right
	// record's _timestamp minus the left one's is within [Lo, Hi].
	Lo, Hi time.Duration
}

// ViewPlans tells what a name in FROM is: a view (its compiled query),
// a stream, or neither; CompileContinuousIn resolves the inputs of a join
// with it.
type ViewPlans func(name string) (view *Continuous, stream bool)

// joinPlan is the bound join of a Continuous.
type joinPlan struct {
	right *tableInst
	// lookup are the expressions of the left input whose values, in
	// order, make the view's group key (lookups).
	lookup []*compiled
}

// joinOf checks the shape of a join's FROM: two inputs, ON given.
func joinOf(j *joinExpr) (left, right *tableRef, err error) {
	refs, _, err := flattenFrom(j)
	if err != nil {
		return nil, nil, err
	}
	if len(refs) > 2 {
		return nil, nil, errorf(refs[2].pos, "a continuous query joins two inputs, not %d: join two of them into a stream with one query, then join that stream with the next", len(refs))
	}
	if j.on == nil {
		at := j.pos
		if at.Line == 0 {
			at = refs[1].pos // FROM a, b
		}
		return nil, nil, errorf(at, "a join in a continuous query needs ON with a key equality: FROM a JOIN b ON a.k = b.k ...")
	}
	left, right = refs[0], refs[1]
	for _, ref := range refs {
		if strings.EqualFold(ref.schema, schemaStats) || ref.schema != "" && !strings.EqualFold(ref.schema, schemaStream) {
			return nil, nil, errorf(ref.pos, "a continuous query joins a stream with a stream or a view, not %s.%s", ref.schema, ref.name)
		}
	}
	if strings.EqualFold(left.label(), right.label()) {
		return nil, nil, errorf(right.pos, "table %s appears twice in FROM: give each an alias (FROM %s a JOIN %s b ...)", left.label(), left.name, right.name)
	}
	return left, right, nil
}

// planJoin binds the SELECT of a persistent or push query joining two
// inputs.
func (c *Continuous) planJoin(s *selectStmt, src *source, j *joinExpr, emit string, emitAt Pos) error {
	if c.Kind == KindView {
		return errorf(j.pos, "a view reads one stream: join in a CREATE STREAM ... AS query, then make a view of its output")
	}
	left, right, err := joinOf(j)
	if err != nil {
		return err
	}
	if at := src.findKeyword("group"); len(s.groupBy) > 0 || s.having != nil {
		return errorf(at, "a join query outputs one row per joined pair: no GROUP BY, HAVING or window (aggregate its output stream with another query)")
	}
	for _, it := range s.items {
		if !it.star && hasAggregate(it.e) {
			return errorf(it.e.position(), "a join query outputs one row per joined pair: no aggregates (aggregate its output stream with another query)")
		}
	}
	if emit == "final" {
		return errorf(emitAt, "EMIT FINAL needs a window; a join query emits each joined pair (EMIT CHANGES, the default)")
	}
	c.Source, c.SourceAt, c.Emit = left.name, left.pos, "changes"
	c.Join = &Join{Right: right.name, RightAt: right.pos, Kind: JoinInterval, Left: j.kind == joinLeft || j.kind == joinFull,
		RightOuter: j.kind == joinRight || j.kind == joinFull}
	var vc *Continuous
	if c.views != nil {
		if v, _ := c.views(left.name); v != nil && !strings.EqualFold(left.schema, schemaStream) {
			return errorf(left.pos, "%s is a view: a join reads a stream first, then looks the view up (FROM <stream> JOIN %s ON ...)", left.name, left.name)
		}
		v, isStream := c.views(right.name)
		switch {
		case v != nil && !strings.EqualFold(right.schema, schemaStream):
			vc, c.Join.Kind = v, JoinLookup
			if c.Join.RightOuter {
				return errorf(j.kindAt, "a lookup joins each record of the stream with the view's rows: JOIN or LEFT JOIN, not RIGHT or FULL JOIN")
			}
		case !isStream:
			return errorf(right.pos, "unknown stream or view %q: a join reads an existing stream (SHOW STREAMS lists them) or view (SHOW VIEWS)", right.name)
		}
	}
	if c.Join.Kind == JoinInterval && c.Hints.StartLatest {
		return errorf(j.pos, "START('latest') is not supported in joins of two streams yet: they read their inputs from the first record kept")
	}

	// The inputs: the left stream's payload fields, and the right
	// stream's or view's columns.
	tl := &tableInst{ref: left, label: left.label(), stream: &streams.StreamInfo{Name: left.name}, cols: metaColumns(), rng: fullRange()}
	tr := &tableInst{ref: right, label: right.label(), rng: fullRange(), kind: j.kind, onExpr: j.on}
	if vc != nil {
		tr.stat = &statTableDef{name: vc.Name, desc: "view: " + vc.SQL, cols: vc.viewColumns()}
		tr.cols = tr.stat.cols
	} else {
		tr.stream = &streams.StreamInfo{Name: right.name}
		tr.cols = metaColumns()
	}
	lf, rf, err := joinFields(s, tl, tr)
	if err != nil {
		return err
	}
	for _, name := range lf {
		tl.fields = append(tl.fields, fieldInfo{name: name})
		tl.cols = append(tl.cols, colDef{name: name, typ: TAny, desc: "payload field"})
	}
	for _, name := range rf {
		tr.fields = append(tr.fields, fieldInfo{name: name})
		tr.cols = append(tr.cols, colDef{name: name, typ: TAny, desc: "payload field"})
	}
	c.t, c.ws, c.we = tl, -1, -1
	c.p = &selectPlan{aggs: &aggSet{}, limit: -1, outs: new([]any), tables: []*tableInst{tl, tr}}
	b := &binder{src: src, funcs: builtinFuncs()}
	if err := c.p.bind(b, s); err != nil {
		return err
	}
	if len(tr.keyL) == 0 {
		return errorf(j.on.position(), "a join needs a key equality in ON, between an expression of %s and one of %s: ON %s.k = %s.k", tl.label, tr.label, tl.label, tr.label)
	}
	c.jp = &joinPlan{right: tr}
	if vc != nil {
		if err := c.bindLookup(b, vc, j.on); err != nil {
			return err
		}
	} else if c.Join.Lo, c.Join.Hi, err = intervalOf(j, tl, tr); err != nil {
		return err
	}
	if s.offset != nil {
		return errorf(s.offset.position(), "OFFSET is not supported in push queries")
	}
	c.Limit = c.p.limit
	c.finishColumns()
	return nil
}

// joinFields returns the payload fields the query reads from each
// stream: names qualified with its label, and, for the left stream of a
// lookup, unqualified names that are not view columns (in a join of two
// streams, an unqualified payload field would be ambiguous).
func joinFields(s *selectStmt, tl, tr *tableInst) (left, right []string, err error) {
	viewCol := map[string]bool{}
	if tr.stream == nil {
		for _, c := range tr.cols {
			viewCol[strings.ToLower(c.name)] = true
		}
	}
	aliases := map[string]bool{}
	for _, it := range s.items {
		if it.alias != "" {
			aliases[strings.ToLower(it.alias)] = true
		}
	}
	seen := [2]map[string]bool{{}, {}}
	var bad *columnRef
	collect := func(e expr) {
		walk(e, func(x expr) bool {
			c, ok := x.(*columnRef)
			if !ok || bad != nil || isMetaName(c.name) {
				return bad == nil
			}
			side := -1
			switch {
			case strings.EqualFold(c.table, tl.label):
				side = 0
			case strings.EqualFold(c.table, tr.label):
				if tr.stream != nil {
					side = 1
				}
			case c.table != "":
				// an unknown table: the binder says so
			case viewCol[strings.ToLower(c.name)], aliases[strings.ToLower(c.name)]:
			case tr.stream != nil:
				bad = c
			default:
				side = 0
			}
			if side >= 0 && !seen[side][c.name] {
				seen[side][c.name] = true
				if side == 0 {
					left = append(left, c.name)
				} else {
					right = append(right, c.name)
				}
			}
			return bad == nil
		})
	}
	collect(s.where)
	for _, it := range s.items {
		collect(it.e)
	}
	if on, ok := s.from.(*joinExpr); ok {
		collect(on.on)
	}
	if bad != nil {
		return nil, nil, errorf(bad.pos, "qualify %s in a join of two streams: %s.%s or %s.%s (streams have no schema, so an unqualified payload field could be in either)", bad.name, tl.label, bad.name, tr.label, bad.name)
	}
	return left, right, nil
}

// bindLookup binds the view's group key: ON must equate each GROUP BY
// key of the view (a column of its select list) with an expression of
// the left stream.
func (c *Continuous) bindLookup(b *binder, vc *Continuous, on expr) error {
	tl, tr := c.t, c.jp.right
	sc := &scope{cols: c.p.scopeCols(), where: "in ON"}
	exprs := make([]*compiled, len(vc.keyCols))
	for _, cj := range conjuncts(on) {
		eq, ok := cj.(*binary)
		if !ok || eq.op != "=" {
			continue
		}
		for _, pair := range [2][2]expr{{eq.l, eq.r}, {eq.r, eq.l}} {
			ref, isCol := pair[0].(*columnRef)
			if !isCol {
				continue
			}
			at, err := b.resolve(ref, sc)
			if err != nil || sc.cols[at].tab != 1 {
				continue
			}
			tabs, ok := b.tablesOf(pair[1], sc)
			if !ok || len(tabs) != 1 || !tabs[0] {
				continue
			}
			col := at - tr.base
			for i, kc := range vc.keyCols {
				if kc == col && exprs[i] == nil {
					e, err := b.compile(pair[1], sc)
					if err != nil {
						return err
					}
					exprs[i] = e
				}
			}
		}
	}
	var missing []string
	for i, e := range exprs {
		switch {
		case vc.keyCols[i] < 0:
			return errorf(c.Join.RightAt, "view %s cannot be looked up: its GROUP BY key %d is not a column of its select list", vc.Name, i+1)
		case e == nil:
			missing = append(missing, tr.label+"."+vc.Columns[vc.keyCols[i]])
		}
	}
	if len(missing) > 0 {
		return errorf(on.position(), "a lookup of view %s equates each of its GROUP BY keys with an expression of %s in ON: missing %s", vc.Name, tl.label, strings.Join(missing, ", "))
	}
	c.jp.lookup = exprs
	return nil
}

// intervalOf reads the time bounds of an interval join from the
// conjuncts of ON: the right stream's _timestamp compared with the left
// one's plus or minus a constant interval (BETWEEN, or >=/> and <=/<).
func intervalOf(j *joinExpr, tl, tr *tableInst) (lo, hi time.Duration, err error) {
	var hasLo, hasHi bool
	set := func(op string, d time.Duration) {
		// right._timestamp op left._timestamp + d
		switch op {
		case ">=", ">":
			if !hasLo || d > lo {
				lo, hasLo = d, true
			}
		case "<=", "<":
			if !hasHi || d < hi {
				hi, hasHi = d, true
			}
		}
	}
	for _, cj := range conjuncts(j.on) {
		switch x := cj.(type) {
		case *between:
			if x.not {
				continue
			}
			if isTimestampOf(x.x, tr) {
				if d, ok := offsetOf(x.lo, tl); ok {
					set(">=", d)
				}
				if d, ok := offsetOf(x.hi, tl); ok {
					set("<=", d)
				}
			}
			if isTimestampOf(x.x, tl) {
				// left between right + a and right + b: right - left in [-b, -a]
				if d, ok := offsetOf(x.lo, tr); ok {
					set("<=", -d)
				}
				if d, ok := offsetOf(x.hi, tr); ok {
					set(">=", -d)
				}
			}
		case *binary:
			op := x.op
			l, r := x.l, x.r
			if isTimestampOf(r, tr) {
				l, r, op = r, l, flipOp(op)
			}
			if isTimestampOf(l, tr) {
				if d, ok := offsetOf(r, tl); ok {
					set(op, d)
				}
				continue
			}
			if isTimestampOf(r, tl) {
				l, r, op = r, l, flipOp(op)
			}
			if isTimestampOf(l, tl) {
				if d, ok := offsetOf(r, tr); ok {
					// left op right + d: right op' left - d
					set(flipOp(op), -d)
				}
			}
		}
	}
	if !hasLo || !hasHi {
		return 0, 0, errorf(j.on.position(), "a join of two streams needs time bounds in ON, which bound its state: AND %s._timestamp BETWEEN %s._timestamp - INTERVAL 5 SECOND AND %s._timestamp + INTERVAL 5 SECOND (to look rows up instead, join a view)", tr.label, tl.label, tl.label)
	}
	if lo > hi {
		return 0, 0, errorf(j.on.position(), "the time bounds of the join are empty: %s._timestamp - %s._timestamp between %v and %v", tr.label, tl.label, lo, hi)
	}
	return lo, hi, nil
}

// isTimestampOf reports whether e is t's _timestamp column.
func isTimestampOf(e expr, t *tableInst) bool {
	c, ok := e.(*columnRef)
	return ok && strings.EqualFold(c.name, "_timestamp") && strings.EqualFold(c.table, t.label)
}

// offsetOf reads e as t's _timestamp plus or minus a constant interval.
func offsetOf(e expr, t *tableInst) (time.Duration, bool) {
	if isTimestampOf(e, t) {
		return 0, true
	}
	d, ok := e.(*dateArith)
	if !ok || !isTimestampOf(d.date, t) {
		return 0, false
	}
	n, ok := d.n.(*literal)
	if !ok {
		return 0, false
	}
	var v float64
	switch x := n.val.(type) {
	case int64:
		v = float64(x)
	case float64:
		v = x
	default:
		return 0, false
	}
	unit := map[string]time.Duration{"microsecond": time.Microsecond, "second": time.Second, "minute": time.Minute,
		"hour": time.Hour, "day": 24 * time.Hour, "week": 7 * 24 * time.Hour}[d.unit]
	dur := time.Duration(v * float64(unit))
	if d.sub {
		dur = -dur
	}
	return dur, true
}

// scopeCols are the columns of the plan's tables side by side, as bind
// lays them out.
func (p *selectPlan) scopeCols() []scopeCol {
	var cols []scopeCol
	for ti, t := range p.tables {
		for _, c := range t.cols {
			cols = append(cols, scopeCol{table: t.label, name: c.name, typ: c.typ, tab: ti})
		}
		if t.stream != nil {
			cols = append(cols, scopeCol{table: t.label, name: "", tab: ti, hidden: true})
		}
	}
	return cols
}

// JoinInput reads a record of input side (0: Source, 1: Join.Right)
// and checks the conditions on it alone (WHERE, and ON for the right
// side): ok is false for a record the join skips. key is its join key
// (the view's group key for a lookup's left side), vals its columns, to
// keep and hand to Pair; both are fresh copies. A NULL key joins nothing:
// key is then nil for a record of Source in a LEFT or FULL JOIN, or of
// Right in a RIGHT or FULL JOIN (still output, alone), and the record is
// skipped otherwise; so is key for a record of Right that fails ON's
// conditions on it alone in a RIGHT or FULL JOIN.
func (c *Continuous) JoinInput(side int, r *streams.Record) (key []byte, vals []any, ok bool, err error) {
	t := c.t
	conds, keys := c.p.pre, c.jp.right.keyL
	if side == 1 {
		t = c.jp.right
		conds, keys = t.preConds, t.keyR
	} else if c.jp.lookup != nil {
		keys = c.jp.lookup
	}
	outer := side == 0 && c.Join.Left || side == 1 && c.Join.RightOuter
	seg := c.row[t.base : t.base+t.width()]
	recordRow(seg, r, t)
	for _, cc := range conds {
		if ok, err := cond(cc, c.row); err != nil || !ok {
			if err == nil && side == 1 && outer {
				// ON false for every pair: output alone.
				return nil, append([]any(nil), seg...), true, nil
			}
			return nil, nil, false, c.decorateSide(err, side, r)
		}
	}
	for _, k := range keys {
		v, err := k.eval(c.row)
		if err != nil {
			return nil, nil, false, c.decorateSide(err, side, r)
		}
		if v == nil {
			key = nil
			break
		}
		key = appendKey(key, v)
	}
	if key == nil && !outer {
		return nil, nil, false, nil
	}
	return key, append([]any(nil), seg...), true, nil
}

func (c *Continuous) decorateSide(err error, side int, r *streams.Record) error {
	if err == nil || side == 0 {
		return c.decorate(err, r)
	}
	qe := asError(err)
	cp := *qe
	cp.Message = fmt.Sprintf("%s (stream %s, offset %d)", qe.Message, c.Join.Right, r.Offset)
	return &cp
}

// Pair returns the output row of a left and a right input, as JoinInput
// returned their columns (right: a view row, for a lookup), or ok=false
// if ON or WHERE drops it; matched is false if ON does (an outer join
// then outputs the input alone if nothing matched). A nil right (left)
// makes the NULL-extended row of a LEFT (RIGHT) JOIN: ON is not checked.
func (c *Continuous) Pair(left, right []any) (out Output, matched, ok bool, err error) {
	tr := c.jp.right
	if left == nil {
		clear(c.row[c.t.base : c.t.base+c.t.width()])
	} else {
		copy(c.row[c.t.base:], left)
	}
	seg := c.row[tr.base : tr.base+tr.width()]
	if right == nil {
		clear(seg)
	} else if left == nil {
		copy(seg, right)
	} else {
		copy(seg, right)
		if ok, err := cond(tr.on, c.row); err != nil || !ok {
			return Output{}, false, false, err
		}
		if tr.stream == nil {
			// A view's row: the WHERE conditions on it alone (a stream's
			// are checked by JoinInput).
			for _, cc := range tr.preConds {
				if ok, err := cond(cc, c.row); err != nil || !ok {
					return Output{}, false, false, err
				}
			}
		}
	}
	for _, cc := range c.p.post {
		if ok, err := cond(cc, c.row); err != nil || !ok {
			return Output{}, true, false, err
		}
	}
	for i, it := range c.p.items {
		if c.vals[i], err = it.eval(c.row); err != nil {
			return Output{}, true, false, err
		}
	}
	out, err = c.encode()
	return out, true, err == nil, err
}

// RowBytes estimates the memory of a row of input columns a join keeps,
// with its key: as GroupBytes.
func (c *Continuous) RowBytes(key []byte, vals []any) int64 {
	n := int64(groupOverhead + len(key) + len(vals)*valueBytes)
	for _, v := range vals {
		switch x := v.(type) {
		case string:
			n += int64(len(x))
		case []byte:
			n += int64(len(x))
		case map[string]any:
			n += 256 // a decoded payload: a rough guess
		}
	}
	return n
}

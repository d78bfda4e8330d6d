package query

import (
	"context"
	"errors"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/mqstream/mqstream/streams"
)

// tableInst is one table of a query's FROM clause.
type tableInst struct {
	ref   *tableRef
	label string
	// Exactly one of stat and stream is set; view too for a view (whose
	// stat describes its columns).
	stat       *statTableDef
	view       ViewReader
	stream     *streams.StreamInfo
	fields     []fieldInfo  // payload fields (streams)
	sampled    int          // records read to discover them
	cols       []colDef     // visible columns
	base       int          // index of the first column in the query's row
	used       []bool       // columns the query reads (plus the doc slot)
	needFields bool         // some payload field column is used
	needDoc    bool         // the whole payload is decoded (for _payload->...)
	fields2    *fieldReader // extracts the used fields (set when the scan starts)

	// Join with the tables before it (not for the first table).
	kind     joinKind
	on       *compiled
	onExpr   expr
	preConds []*compiled // ON conjuncts on this table only: filter its rows before joining
	keyL     []*compiled // equi-join keys: left side (earlier tables) ...
	keyR     []*compiled // ... and this table's side

	// Scan bounds (streams) from predicates on _offset and _timestamp.
	rng scanRange
}

// width is the number of row slots of the table (a stream has a hidden slot
// for its decoded payload).
func (t *tableInst) width() int {
	if t.stream != nil {
		return len(t.cols) + 1
	}
	return len(t.cols)
}

// docSlot is the index of the decoded-payload slot within the table, -1
// for statistics tables.
func (t *tableInst) docSlot() int {
	if t.stream == nil {
		return -1
	}
	return len(t.cols)
}

func (t *tableInst) use(i int) {
	if i >= 0 && i < len(t.used) {
		t.used[i] = true
		if t.stream != nil && i >= numMeta && i < len(t.cols) {
			t.needFields = true
		}
	}
}

func (t *tableInst) colNames() []string {
	out := make([]string, len(t.cols))
	for i, c := range t.cols {
		out[i] = c.name
	}
	return out
}

func (t *tableInst) fieldNames() []string {
	out := make([]string, len(t.fields))
	for i, f := range t.fields {
		out[i] = f.name
	}
	return out
}

// scanRange bounds a stream scan. Offsets are [lo, hi); timestamps
// [tsLo, tsHi). Zero times mean no bound.
type scanRange struct {
	lo, hi     uint64
	tsLo, tsHi time.Time
}

func fullRange() scanRange { return scanRange{hi: math.MaxUint64} }

// resolveTable finds the statistics table or stream a FROM entry names.
func (e *Engine) resolveTable(ref *tableRef) (*tableInst, error) {
	t := &tableInst{ref: ref, label: ref.label(), rng: fullRange()}
	schema := strings.ToLower(ref.schema)
	switch schema {
	case "", schemaStats, schemaStream:
	default:
		return nil, errorf(ref.pos, "unknown schema %q in %s.%s: use stats.<table> or stream.<name>", ref.schema, ref.schema, ref.name)
	}
	if schema != schemaStream {
		for _, def := range e.statTables {
			if def.name == strings.ToLower(ref.name) {
				t.stat = &def
				t.cols = def.cols
				t.used = make([]bool, t.width())
				return t, nil
			}
		}
		if schema == schemaStats {
			return nil, errorf(ref.pos, "unknown statistics table %q: SHOW TABLES lists them", ref.name)
		}
		if v, ok := e.view(ref.name); ok {
			c := v.Plan()
			t.view = v
			t.stat = &statTableDef{name: c.Name, desc: "view: " + c.SQL, cols: c.viewColumns()}
			t.cols = t.stat.cols
			t.used = make([]bool, t.width())
			return t, nil
		}
	}
	info, err := e.opts.Store.DescribeStream(ref.name)
	if err != nil {
		if !errors.Is(err, streams.ErrStreamNotFound) {
			return nil, err
		}
		var names []string
		for _, d := range e.statTables {
			names = append(names, d.name)
		}
		for _, s := range e.opts.Store.ListStreams() {
			names = append(names, s.Name)
		}
		msg := "unknown table " + strconv.Quote(ref.name) + ": no statistics table or stream has this name"
		if s := closest(ref.name, names); s != "" {
			msg += " (did you mean " + s + "?)"
		}
		return nil, errorf(ref.pos, "%s; SHOW TABLES lists them", msg)
	}
	t.stream = &info
	t.cols = metaColumns()
	return t, nil
}

// discoverFields samples a stream's payload fields and adds them as
// columns. Payload fields named like a metadata column are reachable only
// through _payload->>'$.name'.
func (e *Engine) discoverFields(ctx context.Context, t *tableInst) error {
	fields, n, err := sampleFields(ctx, e.opts.Store, *t.stream)
	if err != nil {
		return err
	}
	t.sampled = n
	for _, f := range fields {
		if strings.HasPrefix(f.name, "_") && isMetaName(f.name) {
			continue
		}
		t.fields = append(t.fields, f)
		t.cols = append(t.cols, colDef{name: f.name, typ: TAny, desc: "payload field"})
	}
	return nil
}

func isMetaName(name string) bool {
	for _, c := range metaColumns() {
		if strings.EqualFold(c.name, name) {
			return true
		}
	}
	return false
}

// needsFields reports whether a query may read payload fields of a stream:
// it has a star, or names a column that is not a metadata column.
func needsFields(s *selectStmt) bool {
	need := false
	check := func(e expr) {
		walk(e, func(x expr) bool {
			if c, ok := x.(*columnRef); ok && !isMetaName(c.name) {
				need = true
			}
			return !need
		})
	}
	for _, it := range s.items {
		if it.star {
			return true
		}
		check(it.e)
	}
	var fromExprs func(f fromExpr)
	fromExprs = func(f fromExpr) {
		if j, ok := f.(*joinExpr); ok {
			fromExprs(j.left)
			fromExprs(j.right)
			if j.on != nil {
				check(j.on)
			}
		}
	}
	fromExprs(s.from)
	for _, e := range []expr{s.where, s.having} {
		if e != nil {
			check(e)
		}
	}
	for _, g := range s.groupBy {
		check(g)
	}
	for _, o := range s.orderBy {
		check(o.e)
	}
	return need
}

// flattenFrom turns the FROM tree into a left-deep list of tables.
func flattenFrom(f fromExpr) ([]*tableRef, []*joinExpr, error) {
	switch x := f.(type) {
	case *tableRef:
		return []*tableRef{x}, []*joinExpr{nil}, nil
	case *joinExpr:
		refs, joins, err := flattenFrom(x.left)
		if err != nil {
			return nil, nil, err
		}
		right, ok := x.right.(*tableRef)
		if !ok {
			return nil, nil, errorf(x.pos, "a join on the right side of a join is not supported: write the joins one after another")
		}
		return append(refs, right), append(joins, x), nil
	}
	return nil, nil, nil
}

// conjuncts splits e at top-level ANDs.
func conjuncts(e expr) []expr {
	if b, ok := e.(*binary); ok && b.op == "and" {
		return append(conjuncts(b.l), conjuncts(b.r)...)
	}
	if e == nil {
		return nil
	}
	return []expr{e}
}

// tablesOf returns the set of table indexes the column references of e
// resolve to (nil if it has none); ok is false if a name does not resolve.
func (b *binder) tablesOf(e expr, sc *scope) (map[int]bool, bool) {
	out := map[int]bool{}
	ok := true
	walk(e, func(x expr) bool {
		if c, isCol := x.(*columnRef); isCol {
			idx, err := b.resolve(c, sc)
			if err != nil {
				ok = false
				return false
			}
			out[sc.cols[idx].tab] = true
		}
		if c, isCall := x.(*call); isCall && isAggregate(c.name) {
			ok = false
			return false
		}
		return true
	})
	return out, ok
}

// narrow tightens a stream table's scan range with a conjunct of the form
// <col> op <constant> or <col> BETWEEN <c1> AND <c2>, where col is the
// table's _offset or _timestamp. Anything else leaves the range as it is
// (the predicate is still evaluated on every row).
func (b *binder) narrow(t *tableInst, tab int, e expr, sc *scope) {
	if t.stream == nil {
		return
	}
	switch x := e.(type) {
	case *between:
		if !x.not {
			b.narrow(t, tab, &binary{op: ">=", l: x.x, r: x.lo}, sc)
			b.narrow(t, tab, &binary{op: "<=", l: x.x, r: x.hi}, sc)
		}
		return
	case *binary:
		col, other, op := x.l, x.r, x.op
		if _, isCol := col.(*columnRef); !isCol {
			col, other = other, col
			op = flipOp(op)
		}
		ref, isCol := col.(*columnRef)
		if !isCol || op == "" {
			return
		}
		idx, err := b.resolve(ref, sc)
		if err != nil || sc.cols[idx].tab != tab {
			return
		}
		which := idx - t.base
		if which != colOffset && which != colTimestamp {
			return
		}
		c, err := b.compile(other, &scope{})
		if err != nil || !c.konst {
			return
		}
		v, err := c.eval(nil)
		if err != nil || v == nil {
			return
		}
		if which == colOffset {
			t.rng.narrowOffset(op, v)
		} else if tv, err := asTime(v); err == nil {
			t.rng.narrowTime(op, tv)
		}
	}
}

func flipOp(op string) string {
	switch op {
	case "<":
		return ">"
	case "<=":
		return ">="
	case ">":
		return "<"
	case ">=":
		return "<="
	case "=":
		return "="
	}
	return ""
}

func (r *scanRange) narrowOffset(op string, v any) {
	f, ok := toFloat(v)
	if !ok {
		return
	}
	// lo/hi as [lo, hi) over integers, for x op f.
	var lo, hi float64 = 0, math.Inf(1)
	switch op {
	case ">":
		lo = math.Floor(f) + 1
	case ">=":
		lo = math.Ceil(f)
	case "<":
		hi = math.Ceil(f)
	case "<=":
		hi = math.Floor(f) + 1
	case "=":
		if f != math.Trunc(f) {
			lo, hi = 1, 1 // no integer is equal: empty
		} else {
			lo, hi = f, f+1
		}
	default:
		return
	}
	if lo > 0 {
		if lo >= math.MaxUint64 {
			r.lo = math.MaxUint64
		} else {
			r.lo = max(r.lo, uint64(lo))
		}
	}
	if !math.IsInf(hi, 1) {
		if hi <= 0 {
			r.hi = 0
		} else if hi < math.MaxUint64 {
			r.hi = min(r.hi, uint64(hi))
		}
	}
}

func (r *scanRange) narrowTime(op string, t time.Time) {
	setLo := func(x time.Time) {
		if r.tsLo.IsZero() || x.After(r.tsLo) {
			r.tsLo = x
		}
	}
	setHi := func(x time.Time) {
		if r.tsHi.IsZero() || x.Before(r.tsHi) {
			r.tsHi = x
		}
	}
	switch op {
	case ">":
		setLo(t.Add(time.Nanosecond))
	case ">=":
		setLo(t)
	case "<":
		setHi(t)
	case "<=":
		setHi(t.Add(time.Nanosecond))
	case "=":
		setLo(t)
		setHi(t.Add(time.Nanosecond))
	}
}

// offsets resolves a stream's scan range to offsets [from, to) within the
// records kept, using the store's time index (bisection) for timestamps.
func (e *Engine) offsets(t *tableInst) (from, to uint64, err error) {
	info, err := e.opts.Store.DescribeStream(t.stream.Name)
	if err != nil {
		return 0, 0, err
	}
	from, to = max(t.rng.lo, info.FirstOffset), min(t.rng.hi, info.NextOffset)
	if !t.rng.tsLo.IsZero() && from < to {
		o, err := e.opts.Store.OffsetAt(info.Name, t.rng.tsLo)
		if err != nil {
			return 0, 0, err
		}
		from = max(from, o)
	}
	if !t.rng.tsHi.IsZero() && from < to {
		o, err := e.opts.Store.OffsetAt(info.Name, t.rng.tsHi)
		if err != nil {
			return 0, 0, err
		}
		to = min(to, o)
	}
	if from > to {
		from = to
	}
	return from, to, nil
}

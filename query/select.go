package query

import (
	"context"
	"strings"
	"time"
)

// selectPlan is a bound SELECT, ready to run.
type selectPlan struct {
	tables []*tableInst
	width  int // slots of an input row (all tables side by side)

	pre  []*compiled // WHERE conjuncts on the first table only: checked before joining
	post []*compiled // the other WHERE conjuncts: checked on joined rows

	agg     bool
	aggs    *aggSet
	groupBy []*compiled

	items  []*compiled
	names  []string
	having *compiled
	order  []*compiled
	desc   []bool
	// outs holds the current row's select-list values while HAVING and
	// ORDER BY are evaluated (they may name select aliases).
	outs *[]any

	distinct      bool
	limit, offset int64 // limit < 0: none
	// direction the first table's natural order satisfies ORDER BY: +1
	// forward, -1 backward (scan from the newest), 0: rows must be sorted.
	natural int
}

// planSelect binds a SELECT against the catalog.
func (e *Engine) planSelect(ctx context.Context, s *selectStmt, src *source, now time.Time) (*selectPlan, error) {
	p := &selectPlan{aggs: &aggSet{}, limit: -1, distinct: s.distinct, outs: new([]any)}
	b := &binder{now: now, src: src, funcs: e.funcs}
	if s.from != nil {
		refs, joins, err := flattenFrom(s.from)
		if err != nil {
			return nil, err
		}
		seen := map[string]bool{}
		for i, ref := range refs {
			t, err := e.resolveTable(ref)
			if err != nil {
				return nil, err
			}
			if seen[strings.ToLower(t.label)] {
				return nil, errorf(ref.pos, "table %s appears twice in FROM: give each an alias (FROM %s a JOIN %s b ...)", t.label, ref.name, ref.name)
			}
			seen[strings.ToLower(t.label)] = true
			if j := joins[i]; j != nil {
				switch j.kind {
				case joinRight:
					return nil, errorf(j.kindAt, "RIGHT JOIN is not supported: swap the tables and use LEFT JOIN")
				case joinFull:
					return nil, errorf(j.kindAt, "FULL JOIN is not supported in ad-hoc queries (interval joins of continuous queries take it)")
				}
				t.kind, t.onExpr = j.kind, j.on
			}
			p.tables = append(p.tables, t)
		}
	}
	if needsFields(s) {
		for _, t := range p.tables {
			if t.stream != nil {
				if err := e.discoverFields(ctx, t); err != nil {
					return nil, err
				}
			}
		}
	}
	if err := p.bind(b, s); err != nil {
		return nil, err
	}
	return p, nil
}

// bind binds the statement to the plan's tables (resolved, with their
// payload fields): the joins, WHERE, GROUP BY, the select list, HAVING,
// ORDER BY and LIMIT.
func (p *selectPlan) bind(b *binder, s *selectStmt) error {
	var cols []scopeCol
	for ti, t := range p.tables {
		t.base = len(cols)
		for _, c := range t.cols {
			cols = append(cols, scopeCol{table: t.label, name: c.name, typ: c.typ, tab: ti})
		}
		if t.stream != nil {
			cols = append(cols, scopeCol{table: t.label, name: "", tab: ti, hidden: true})
		}
		t.used = make([]bool, t.width())
	}
	p.width = len(cols)
	b.tables = p.tables
	plain := &scope{cols: cols}

	if err := p.bindJoins(b, plain); err != nil {
		return err
	}
	if err := p.bindWhere(b, s.where, plain); err != nil {
		return err
	}

	p.agg = p.agg || len(s.groupBy) > 0 || s.having != nil && hasAggregate(s.having)
	for _, it := range s.items {
		p.agg = p.agg || !it.star && hasAggregate(it.e)
	}
	for _, o := range s.orderBy {
		p.agg = p.agg || hasAggregate(o.e)
	}
	if err := p.bindGroupBy(b, s, plain); err != nil {
		return err
	}

	// The select list.
	itemScope := &scope{cols: cols, where: "in the select list without GROUP BY"}
	if p.agg {
		itemScope = &scope{cols: cols, aggs: p.aggs, aggBase: p.width}
	}
	var aliases []aliasCol
	for _, it := range s.items {
		if it.star {
			n := 0
			for _, t := range p.tables {
				if it.starTable != "" && !strings.EqualFold(t.label, it.starTable) {
					continue
				}
				for ci, c := range t.cols {
					idx := t.base + ci
					t.use(ci)
					p.items = append(p.items, &compiled{eval: func(row []any) (any, error) { return row[idx], nil }, typ: c.typ})
					p.names = append(p.names, c.name)
					n++
				}
			}
			if len(p.tables) == 0 {
				return errorf(it.starPos, "SELECT * needs a FROM clause")
			}
			if n == 0 {
				return errorf(it.starPos, "unknown table %q in %s.*: the tables of this query are %s", it.starTable, it.starTable, b.tableList())
			}
			continue
		}
		c, err := b.compile(it.e, itemScope)
		if err != nil {
			return err
		}
		name := it.alias
		if name == "" {
			name = it.text
		} else {
			aliases = append(aliases, aliasCol{name: it.alias, typ: c.typ, out: len(p.items)})
		}
		p.items = append(p.items, c)
		p.names = append(p.names, name)
	}

	// HAVING and ORDER BY see the select aliases.
	late := &scope{cols: cols, aliases: aliases, outs: p.outs, where: "in WHERE"}
	if p.agg {
		late.aggs, late.aggBase = p.aggs, p.width
	}
	if s.having != nil {
		h, err := b.compile(s.having, late)
		if err != nil {
			return err
		}
		p.having = h
	}
	for _, o := range s.orderBy {
		c, err := p.bindOrderItem(b, o.e, late)
		if err != nil {
			return err
		}
		p.order = append(p.order, c)
		p.desc = append(p.desc, o.desc)
	}
	if err := p.bindLimit(b, s); err != nil {
		return err
	}
	p.natural = p.naturalOrder(b, s, plain)
	return nil
}

// bindJoins binds each join's ON condition and derives, per joined table,
// the conjuncts that filter its rows alone, the equi-join keys (for a hash
// join) and its scan range.
func (p *selectPlan) bindJoins(b *binder, plain *scope) error {
	onScope := &scope{cols: plain.cols, where: "in ON"}
	for i, t := range p.tables {
		if i == 0 || t.onExpr == nil {
			continue
		}
		on, err := b.compile(t.onExpr, onScope)
		if err != nil {
			return err
		}
		t.on = on
		for _, c := range conjuncts(t.onExpr) {
			tabs, ok := b.tablesOf(c, onScope)
			if !ok {
				continue
			}
			if len(tabs) == 1 && tabs[i] {
				cc, err := b.compile(c, onScope)
				if err != nil {
					return err
				}
				t.preConds = append(t.preConds, cc)
				b.narrow(t, i, c, onScope)
				continue
			}
			if eq, isBin := c.(*binary); isBin && eq.op == "=" {
				if err := p.equiKey(b, i, eq, onScope); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// equiKey records l = r as a hash-join key of table i when one side reads
// only table i and the other only earlier tables.
func (p *selectPlan) equiKey(b *binder, i int, eq *binary, sc *scope) error {
	lt, ok1 := b.tablesOf(eq.l, sc)
	rt, ok2 := b.tablesOf(eq.r, sc)
	if !ok1 || !ok2 || len(lt) == 0 || len(rt) == 0 {
		return nil
	}
	before := func(tabs map[int]bool) bool {
		for t := range tabs {
			if t >= i {
				return false
			}
		}
		return true
	}
	left, right := eq.l, eq.r
	switch {
	case before(lt) && len(rt) == 1 && rt[i]:
	case before(rt) && len(lt) == 1 && lt[i]:
		left, right = right, left
	default:
		return nil
	}
	kl, err := b.compile(left, sc)
	if err != nil {
		return err
	}
	kr, err := b.compile(right, sc)
	if err != nil {
		return err
	}
	t := p.tables[i]
	t.keyL = append(t.keyL, kl)
	t.keyR = append(t.keyR, kr)
	return nil
}

// bindWhere splits WHERE into conjuncts checked on the first table's rows
// before joining, conjuncts that filter an inner-joined table's rows, and
// the rest, checked on joined rows; it narrows stream scans.
func (p *selectPlan) bindWhere(b *binder, where expr, plain *scope) error {
	if where == nil {
		return nil
	}
	ws := &scope{cols: plain.cols, where: "in WHERE (filter groups with HAVING)"}
	if _, err := b.compile(where, ws); err != nil {
		return err // reports the first problem of the whole condition
	}
	for _, c := range conjuncts(where) {
		cc, err := b.compile(c, ws)
		if err != nil {
			return err
		}
		tabs, ok := b.tablesOf(c, ws)
		single := -1
		if ok && len(tabs) == 1 {
			for t := range tabs {
				single = t
			}
		}
		switch {
		case single == 0 && !p.firstOuter():
			p.pre = append(p.pre, cc)
			b.narrow(p.tables[0], 0, c, ws)
		case single > 0 && p.tables[single].kind == joinInner:
			// An inner-joined table is never NULL-extended: filter its rows
			// before the join.
			p.tables[single].preConds = append(p.tables[single].preConds, cc)
			b.narrow(p.tables[single], single, c, ws)
		default:
			p.post = append(p.post, cc)
		}
	}
	return nil
}

// firstOuter reports whether the first table's side may be NULL (RIGHT
// or FULL JOIN): WHERE on it alone is then checked on joined rows.
func (p *selectPlan) firstOuter() bool {
	return len(p.tables) > 1 && (p.tables[1].kind == joinRight || p.tables[1].kind == joinFull)
}

// bindGroupBy binds GROUP BY: a number names a select item, a name that is
// not a column may name a select alias.
func (p *selectPlan) bindGroupBy(b *binder, s *selectStmt, plain *scope) error {
	gs := &scope{cols: plain.cols, where: "in GROUP BY"}
	for _, g := range s.groupBy {
		e := g
		if l, ok := g.(*literal); ok {
			n, isInt := l.val.(int64)
			if !isInt || n < 1 || int(n) > len(s.items) || s.items[n-1].star {
				return errorf(l.pos, "GROUP BY %v: a number must name a select-list expression (1 to %d)", quoteValue(l.val), len(s.items))
			}
			e = s.items[n-1].e
		} else if ref, ok := g.(*columnRef); ok && ref.table == "" {
			if _, err := b.resolve(ref, gs); err != nil {
				for _, it := range s.items {
					if !it.star && strings.EqualFold(it.alias, ref.name) {
						e = it.e
						break
					}
				}
			}
		}
		if hasAggregate(e) {
			return errorf(e.position(), "GROUP BY cannot use an aggregate function")
		}
		c, err := b.compile(e, gs)
		if err != nil {
			return err
		}
		p.groupBy = append(p.groupBy, c)
	}
	return nil
}

// bindOrderItem binds one ORDER BY expression: a number names a select
// item; names may be select aliases.
func (p *selectPlan) bindOrderItem(b *binder, e expr, late *scope) (*compiled, error) {
	if l, ok := e.(*literal); ok {
		n, isInt := l.val.(int64)
		if !isInt || n < 1 || int(n) > len(p.items) {
			return nil, errorf(l.pos, "ORDER BY %v: a number must name a select-list column (1 to %d)", quoteValue(l.val), len(p.items))
		}
		outs, k := p.outs, int(n-1)
		return &compiled{eval: func([]any) (any, error) { return (*outs)[k], nil }, typ: p.items[k].typ, pos: l.pos}, nil
	}
	return b.compile(e, late)
}

// bindLimit evaluates LIMIT and OFFSET, which must be constant
// non-negative integers.
func (p *selectPlan) bindLimit(b *binder, s *selectStmt) error {
	eval := func(e expr, what string) (int64, error) {
		constant := true
		walk(e, func(x expr) bool {
			_, isCol := x.(*columnRef)
			constant = constant && !isCol
			return constant
		})
		if !constant {
			return 0, errorf(e.position(), "%s must be a constant number", what)
		}
		c, err := b.compile(e, &scope{where: "in " + what})
		if err != nil {
			return 0, err
		}
		if !c.konst {
			return 0, errorf(e.position(), "%s must be a constant", what)
		}
		v, err := c.eval(nil)
		if err != nil {
			return 0, err
		}
		n, ok := v.(int64)
		if !ok || n < 0 {
			return 0, errorf(e.position(), "%s must be a non-negative integer, not %s", what, quoteValue(v))
		}
		return n, nil
	}
	var err error
	if s.limit != nil {
		if p.limit, err = eval(s.limit, "LIMIT"); err != nil {
			return err
		}
	}
	if s.offset != nil {
		if p.offset, err = eval(s.offset, "OFFSET"); err != nil {
			return err
		}
	}
	return nil
}

// naturalOrder reports whether the first table's scan order already gives
// the ORDER BY order: streams are in offset order, and timestamps never
// decrease with offsets.
func (p *selectPlan) naturalOrder(b *binder, s *selectStmt, plain *scope) int {
	if p.agg || p.distinct || len(p.tables) == 0 {
		return 0
	}
	if len(s.orderBy) == 0 {
		return 1
	}
	t := p.tables[0]
	if len(s.orderBy) != 1 || t.stream == nil {
		return 0
	}
	e := s.orderBy[0].e
	if ref, ok := e.(*columnRef); ok && ref.table == "" {
		for _, it := range s.items {
			if !it.star && strings.EqualFold(it.alias, ref.name) {
				e = it.e
			}
		}
	}
	ref, ok := e.(*columnRef)
	if !ok {
		return 0
	}
	idx, err := b.resolve(ref, plain)
	if err != nil || plain.cols[idx].tab != 0 {
		return 0
	}
	if c := idx - t.base; c != colOffset && c != colTimestamp {
		return 0
	}
	if s.orderBy[0].desc {
		return -1
	}
	return 1
}

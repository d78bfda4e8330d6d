package query

import (
	"errors"
	"fmt"
	"math"
	"regexp"
	"strings"
	"time"
)

// compiled is an expression bound to a row layout: eval reads the columns
// it needs from the row by index.
type compiled struct {
	eval func(row []any) (any, error)
	typ  Type // static type (TAny: known per value)
	pos  Pos
	// konst: no column or aggregate reference (now() is constant within a
	// query), so it can be evaluated once.
	konst bool
}

// scopeCol is one column of a row layout.
type scopeCol struct {
	table  string // the table's label (alias or name)
	name   string
	typ    Type
	tab    int  // index of its table in the plan
	hidden bool // internal (decoded payload): not resolvable, not in *
}

// scope says what names mean while compiling expressions.
type scope struct {
	cols []scopeCol
	// aliases are select-list outputs visible to HAVING and ORDER BY; they
	// are read from (*outs)[alias.out], the current row's select-list values.
	aliases []aliasCol
	outs    *[]any
	// aggs collects aggregate calls; nil means they are not allowed here.
	aggs    *aggSet
	aggBase int // aggregate i is read from row[aggBase+i]
	where   string
}

type aliasCol struct {
	name string
	typ  Type
	out  int // index in the select list's values
}

// binder compiles expressions for one query.
type binder struct {
	now    time.Time
	tables []*tableInst
	src    *source
	funcs  map[string]funcDef
}

// compile binds e in sc. Errors are positioned *Error.
func (b *binder) compile(e expr, sc *scope) (*compiled, error) {
	c, err := b.compileNode(e, sc)
	if err != nil {
		return nil, withPos(err, e.position())
	}
	switch e.(type) {
	case *literal, *columnRef:
		return c, nil // cannot fail
	}
	if !c.konst {
		// A value of the row that does not fit the operation makes it NULL.
		inner := c.eval
		c.eval = func(row []any) (any, error) {
			v, err := inner(row)
			if err != nil && isTypeError(err) {
				return nil, nil
			}
			return v, err
		}
	}
	return c, nil
}

// wrapErr gives run-time errors of an expression its position (type
// errors stay typeError, to be turned into NULL or reported by compile).
func wrapErr(err error, pos Pos) error {
	var qe *Error
	if errors.As(err, &qe) || isTypeError(err) {
		return err
	}
	return &Error{Code: CodeSQL, Message: err.Error(), Line: pos.Line, Column: pos.Column}
}

func konstOf(cs ...*compiled) bool {
	for _, c := range cs {
		if !c.konst {
			return false
		}
	}
	return true
}

// fold evaluates a constant expression once.
func fold(c *compiled) (*compiled, error) {
	if !c.konst {
		return c, nil
	}
	v, err := c.eval(nil)
	if err != nil {
		return nil, err
	}
	typ := c.typ
	if typ == TAny {
		typ = typeOf(v)
	}
	return &compiled{eval: func([]any) (any, error) { return v, nil }, typ: typ, pos: c.pos, konst: true}, nil
}

func (b *binder) compileNode(e expr, sc *scope) (*compiled, error) {
	switch x := e.(type) {
	case *literal:
		v := x.val
		return &compiled{eval: func([]any) (any, error) { return v, nil }, typ: typeOf(v), pos: x.pos, konst: true}, nil
	case *columnRef:
		return b.compileColumn(x, sc)
	case *unary:
		return b.compileUnary(x, sc)
	case *binary:
		return b.compileBinary(x, sc)
	case *isExpr:
		return b.compileIs(x, sc)
	case *inList:
		return b.compileIn(x, sc)
	case *between:
		lo := &binary{op: ">=", l: x.x, r: x.lo, pos: x.pos}
		hi := &binary{op: "<=", l: x.x, r: x.hi, pos: x.pos}
		var both expr = &binary{op: "and", l: lo, r: hi, pos: x.pos}
		if x.not {
			both = &unary{op: "not", x: both, pos: x.pos}
		}
		return b.compile(both, sc)
	case *caseExpr:
		return b.compileCase(x, sc)
	case *call:
		if isAggregate(x.name) {
			return b.compileAggregate(x, sc)
		}
		return b.compileCall(x, sc)
	case *dateArith:
		return b.compileDateArith(x, sc)
	case *cast:
		inner, err := b.compile(x.x, sc)
		if err != nil {
			return nil, err
		}
		to, pos := x.to, x.pos
		return fold(&compiled{typ: to, pos: pos, konst: inner.konst, eval: func(row []any) (any, error) {
			v, err := inner.eval(row)
			if err != nil || v == nil {
				return nil, err
			}
			out, err := castValue(v, to)
			if err != nil {
				return nil, wrapErr(err, pos)
			}
			return out, nil
		}})
	}
	return nil, errorf(e.position(), "unsupported expression")
}

func (b *binder) compileColumn(x *columnRef, sc *scope) (*compiled, error) {
	if x.table == "" {
		for _, a := range sc.aliases {
			if strings.EqualFold(a.name, x.name) {
				outs, k := sc.outs, a.out
				return &compiled{eval: func([]any) (any, error) { return (*outs)[k], nil }, typ: a.typ, pos: x.pos}, nil
			}
		}
	}
	idx, err := b.resolve(x, sc)
	if err != nil {
		return nil, err
	}
	col := sc.cols[idx]
	b.tables[col.tab].use(idx - b.tables[col.tab].base)
	return &compiled{eval: func(row []any) (any, error) { return row[idx], nil }, typ: col.typ, pos: x.pos}, nil
}

// resolve finds the column a reference names: exact name match first, then
// without regard to case; an unqualified name must be unique across tables.
func (b *binder) resolve(x *columnRef, sc *scope) (int, error) {
	if x.table != "" {
		found := false
		for _, t := range b.tables {
			if t.label == x.table || strings.EqualFold(t.label, x.table) {
				found = true
				break
			}
		}
		if !found {
			return 0, errorf(x.pos, "unknown table %q in %s.%s: the tables of this query are %s", x.table, x.table, x.name, b.tableList())
		}
	}
	for _, fold := range []bool{false, true} {
		match := -1
		for i, c := range sc.cols {
			if c.hidden {
				continue
			}
			if x.table != "" && !(c.table == x.table || strings.EqualFold(c.table, x.table)) {
				continue
			}
			if c.name == x.name || fold && strings.EqualFold(c.name, x.name) {
				if match >= 0 && sc.cols[match].tab != c.tab {
					return 0, errorf(x.pos, "column %q is ambiguous: it is in %s and %s; qualify it, e.g. %s.%s",
						x.name, sc.cols[match].table, c.table, c.table, x.name)
				}
				if match < 0 {
					match = i
				}
			}
		}
		if match >= 0 {
			return match, nil
		}
	}
	return 0, b.unknownColumn(x, sc)
}

func (b *binder) tableList() string {
	var names []string
	for _, t := range b.tables {
		names = append(names, t.label)
	}
	if len(names) == 0 {
		return "none (no FROM)"
	}
	return strings.Join(names, ", ")
}

// unknownColumn builds the error for a name that matches no column, with
// the columns that exist and the closest one.
func (b *binder) unknownColumn(x *columnRef, sc *scope) error {
	name := x.name
	if x.table != "" {
		name = x.table + "." + x.name
	}
	if len(b.tables) == 0 {
		return errorf(x.pos, "unknown column %q: the query has no FROM clause", name)
	}
	var msg strings.Builder
	fmt.Fprintf(&msg, "unknown column %q", name)
	var candidates []string
	for _, c := range sc.cols {
		if !c.hidden && (x.table == "" || strings.EqualFold(c.table, x.table)) {
			candidates = append(candidates, c.name)
		}
	}
	for _, a := range sc.aliases {
		candidates = append(candidates, a.name)
	}
	if s := closest(x.name, candidates); s != "" {
		fmt.Fprintf(&msg, " (did you mean %s?)", s)
	}
	for _, t := range b.tables {
		if x.table != "" && !strings.EqualFold(t.label, x.table) {
			continue
		}
		if t.stream != nil {
			fmt.Fprintf(&msg, "; stream %s has the columns %s", t.label, strings.Join(t.colNames(), ", "))
			if t.sampled > 0 {
				fmt.Fprintf(&msg, " (payload fields as seen in %d sampled records)", t.sampled)
			}
			fmt.Fprintf(&msg, "; to read a payload field not seen there, use _payload->>'$.%s'", x.name)
		} else {
			fmt.Fprintf(&msg, "; table %s has the columns %s", t.label, strings.Join(t.colNames(), ", "))
		}
	}
	return errorf(x.pos, "%s", msg.String())
}

// closest returns the candidate within edit distance 2 of name, if any.
func closest(name string, candidates []string) string {
	best, bestD := "", 3
	for _, c := range candidates {
		if d := editDistance(strings.ToLower(name), strings.ToLower(c)); d < bestD {
			best, bestD = c, d
		}
	}
	return best
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

func (b *binder) compileUnary(x *unary, sc *scope) (*compiled, error) {
	inner, err := b.compile(x.x, sc)
	if err != nil {
		return nil, err
	}
	pos := x.pos
	switch x.op {
	case "not":
		if t := inner.typ; t != TAny && t != TNull && t != TBool && !t.numeric() {
			return nil, errorf(pos, "type mismatch: NOT needs a condition, not %s", t)
		}
		return fold(&compiled{typ: TBool, pos: pos, konst: inner.konst, eval: func(row []any) (any, error) {
			v, err := inner.eval(row)
			if err != nil || v == nil {
				return nil, err
			}
			t, err := truth(v)
			if err != nil {
				return nil, wrapErr(err, pos)
			}
			return !t, nil
		}})
	case "-":
		if t := inner.typ; t != TAny && t != TNull && !t.numeric() {
			return nil, errorf(pos, "type mismatch: cannot negate %s", t)
		}
		return fold(&compiled{typ: inner.typ, pos: pos, konst: inner.konst, eval: func(row []any) (any, error) {
			v, err := inner.eval(row)
			if err != nil || v == nil {
				return nil, err
			}
			switch n := v.(type) {
			case int64:
				if n == math.MinInt64 {
					return -float64(n), nil
				}
				return -n, nil
			case float64:
				return -n, nil
			}
			return nil, wrapErr(mismatchf("cannot negate %s %s", typeName(v), quoteValue(v)), pos)
		}})
	case "~":
		return fold(&compiled{typ: TInt, pos: pos, konst: inner.konst, eval: func(row []any) (any, error) {
			v, err := inner.eval(row)
			if err != nil || v == nil {
				return nil, err
			}
			n, ok := v.(int64)
			if !ok {
				return nil, wrapErr(mismatchf("~ needs an integer, not %s %s", typeName(v), quoteValue(v)), pos)
			}
			return ^n, nil
		}})
	}
	return nil, errorf(pos, "operator %s is not supported", x.op)
}

// comparable reports whether values of static types a and b may be compared.
func comparable(a, b Type) bool {
	switch {
	case a == TAny || b == TAny || a == TNull || b == TNull:
		return true
	case a.numeric() && b.numeric():
		return true
	case a == b:
		return true
	case a == TText && b == TTime || a == TTime && b == TText:
		return true
	}
	return false
}

// coerceTimeLiteral turns a constant text operand compared with a
// timestamp into a timestamp once, so a bad literal is reported before any
// row is read.
func coerceTimeLiteral(c, other *compiled) (*compiled, error) {
	if other.typ != TTime || c.typ != TText || !c.konst {
		return c, nil
	}
	v, err := c.eval(nil)
	if err != nil {
		return nil, err
	}
	s, _ := v.(string)
	t, ok := parseTime(s)
	if !ok {
		return nil, errorf(c.pos, "%q is not a timestamp (use RFC 3339, e.g. '2026-01-02T15:04:05Z', or '2026-01-02 15:04:05')", s)
	}
	return &compiled{eval: func([]any) (any, error) { return t, nil }, typ: TTime, pos: c.pos, konst: true}, nil
}

func (b *binder) compileBinary(x *binary, sc *scope) (*compiled, error) {
	l, err := b.compile(x.l, sc)
	if err != nil {
		return nil, err
	}
	r, err := b.compile(x.r, sc)
	if err != nil {
		return nil, err
	}
	switch x.op {
	case "and", "or", "xor":
		return b.compileLogic(x, l, r)
	case "=", "<>", "<", "<=", ">", ">=", "<=>":
		if l, err = coerceTimeLiteral(l, r); err != nil {
			return nil, err
		}
		if r, err = coerceTimeLiteral(r, l); err != nil {
			return nil, err
		}
		if !comparable(l.typ, r.typ) {
			return nil, errorf(x.pos, "type mismatch: cannot compare %s with %s (%s %s %s)", l.typ, r.typ, exprString(x.l), x.op, exprString(x.r))
		}
		return fold(compileComparison(x.op, l, r, x.pos))
	case "like", "not like", "regexp", "not regexp":
		return b.compileMatch(x, l, r)
	}
	return compileArith(x, l, r)
}

func (b *binder) compileLogic(x *binary, l, r *compiled) (*compiled, error) {
	for _, c := range []*compiled{l, r} {
		if t := c.typ; t != TAny && t != TNull && t != TBool && !t.numeric() {
			return nil, errorf(c.pos, "type mismatch: %s needs conditions on both sides, not %s", strings.ToUpper(x.op), t)
		}
	}
	cond := func(c *compiled, row []any) (v any, null bool, err error) {
		v, err = c.eval(row)
		if err != nil || v == nil {
			return nil, v == nil, err
		}
		t, err := truth(v)
		if err != nil {
			return nil, false, wrapErr(err, c.pos)
		}
		return t, false, nil
	}
	op := x.op
	return fold(&compiled{typ: TBool, pos: x.pos, konst: konstOf(l, r), eval: func(row []any) (any, error) {
		lv, lnull, err := cond(l, row)
		if err != nil {
			return nil, err
		}
		// Short-circuit left to right, so "typeof(x) = 'int' AND x > 3" is safe.
		if op == "and" && !lnull && !lv.(bool) {
			return false, nil
		}
		if op == "or" && !lnull && lv.(bool) {
			return true, nil
		}
		rv, rnull, err := cond(r, row)
		if err != nil {
			return nil, err
		}
		switch op {
		case "and":
			if !rnull && !rv.(bool) {
				return false, nil
			}
			if lnull || rnull {
				return nil, nil
			}
			return true, nil
		case "or":
			if !rnull && rv.(bool) {
				return true, nil
			}
			if lnull || rnull {
				return nil, nil
			}
			return false, nil
		}
		if lnull || rnull {
			return nil, nil
		}
		return lv.(bool) != rv.(bool), nil
	}})
}

// compileComparison compares with SQL's NULL rules: '=' and '<>' between
// values of different types are false and true; ordering them is an error.
func compileComparison(op string, l, r *compiled, pos Pos) *compiled {
	return &compiled{typ: TBool, pos: pos, konst: konstOf(l, r), eval: func(row []any) (any, error) {
		a, err := l.eval(row)
		if err != nil {
			return nil, err
		}
		bv, err := r.eval(row)
		if err != nil {
			return nil, err
		}
		if a == nil || bv == nil {
			if op == "<=>" {
				return a == nil && bv == nil, nil
			}
			return nil, nil
		}
		c, ok := compareValues(a, bv)
		switch op {
		case "=", "<=>":
			return ok && c == 0, nil
		case "<>":
			return !ok || c != 0, nil
		}
		if !ok {
			return nil, wrapErr(mismatch("compare", a, bv), pos)
		}
		switch op {
		case "<":
			return c < 0, nil
		case "<=":
			return c <= 0, nil
		case ">":
			return c > 0, nil
		}
		return c >= 0, nil
	}}
}

func (b *binder) compileMatch(x *binary, l, r *compiled) (*compiled, error) {
	for _, c := range []*compiled{l, r} {
		if t := c.typ; t != TAny && t != TNull && t != TText {
			return nil, errorf(c.pos, "type mismatch: %s works on text, not %s", strings.ToUpper(x.op), t)
		}
	}
	neg := strings.HasPrefix(x.op, "not ")
	isRegexp := strings.HasSuffix(x.op, "regexp")
	var match func(s, pattern string) (bool, error)
	if isRegexp {
		var fixed *regexp.Regexp
		if r.konst {
			pv, err := r.eval(nil)
			if err != nil {
				return nil, err
			}
			if ps, ok := pv.(string); ok {
				if fixed, err = regexp.Compile(ps); err != nil {
					return nil, errorf(r.pos, "bad regular expression %q: %v", ps, err)
				}
			}
		}
		match = func(s, pattern string) (bool, error) {
			re := fixed
			if re == nil {
				var err error
				if re, err = regexp.Compile(pattern); err != nil {
					return false, fmt.Errorf("bad regular expression %q: %w", pattern, err)
				}
			}
			return re.MatchString(s), nil
		}
	} else {
		match = func(s, pattern string) (bool, error) { return likeMatch(s, pattern), nil }
	}
	pos := x.pos
	return fold(&compiled{typ: TBool, pos: pos, konst: konstOf(l, r), eval: func(row []any) (any, error) {
		a, err := l.eval(row)
		if err != nil {
			return nil, err
		}
		p, err := r.eval(row)
		if err != nil || a == nil || p == nil {
			return nil, err
		}
		s, ok1 := a.(string)
		ps, ok2 := p.(string)
		if !ok1 || !ok2 {
			return nil, wrapErr(mismatch("match", a, p), pos)
		}
		m, err := match(s, ps)
		if err != nil {
			return nil, wrapErr(err, pos)
		}
		return m != neg, nil
	}})
}

// likeMatch matches s against a LIKE pattern: % any run, _ one character,
// \ escapes the next character. Case-sensitive.
func likeMatch(s, pattern string) bool {
	sr, pr := []rune(s), []rune(pattern)
	si, pi := 0, 0
	starP, starS := -1, 0
	for si < len(sr) {
		if pi < len(pr) {
			switch c := pr[pi]; {
			case c == '%':
				starP, starS = pi, si
				pi++
				continue
			case c == '_':
				si++
				pi++
				continue
			case c == '\\' && pi+1 < len(pr):
				if pr[pi+1] == sr[si] {
					si++
					pi += 2
					continue
				}
			case c == sr[si]:
				si++
				pi++
				continue
			}
		}
		if starP < 0 {
			return false
		}
		starS++
		si, pi = starS, starP+1
	}
	for pi < len(pr) && pr[pi] == '%' {
		pi++
	}
	return pi == len(pr)
}

func (b *binder) compileIs(x *isExpr, sc *scope) (*compiled, error) {
	inner, err := b.compile(x.x, sc)
	if err != nil {
		return nil, err
	}
	what, not, pos := x.what, x.not, x.pos
	return fold(&compiled{typ: TBool, pos: pos, konst: inner.konst, eval: func(row []any) (any, error) {
		v, err := inner.eval(row)
		if err != nil {
			return nil, err
		}
		var res bool
		switch what {
		case "null":
			res = v == nil
		default:
			if v != nil {
				t, err := truth(v)
				if err != nil {
					return nil, wrapErr(err, pos)
				}
				res = t == (what == "true")
			}
		}
		return res != not, nil
	}})
}

func (b *binder) compileIn(x *inList, sc *scope) (*compiled, error) {
	v, err := b.compile(x.x, sc)
	if err != nil {
		return nil, err
	}
	list := make([]*compiled, len(x.list))
	for i, e := range x.list {
		c, err := b.compile(e, sc)
		if err != nil {
			return nil, err
		}
		if c, err = coerceTimeLiteral(c, v); err != nil {
			return nil, err
		}
		if !comparable(v.typ, c.typ) {
			return nil, errorf(c.pos, "type mismatch: cannot compare %s with %s in IN (...)", v.typ, c.typ)
		}
		list[i] = c
	}
	not := x.not
	return fold(&compiled{typ: TBool, pos: x.pos, konst: v.konst && konstOf(list...), eval: func(row []any) (any, error) {
		a, err := v.eval(row)
		if err != nil || a == nil {
			return nil, err
		}
		sawNull := false
		for _, c := range list {
			bv, err := c.eval(row)
			if err != nil {
				return nil, err
			}
			if bv == nil {
				sawNull = true
				continue
			}
			if cmp, ok := compareValues(a, bv); ok && cmp == 0 {
				return !not, nil
			}
		}
		if sawNull {
			return nil, nil
		}
		return not, nil
	}})
}

func (b *binder) compileCase(x *caseExpr, sc *scope) (*compiled, error) {
	var operand *compiled
	var err error
	if x.operand != nil {
		if operand, err = b.compile(x.operand, sc); err != nil {
			return nil, err
		}
	}
	conds := make([]*compiled, len(x.whens))
	vals := make([]*compiled, len(x.whens))
	all := []*compiled{}
	for i, w := range x.whens {
		if conds[i], err = b.compile(w.cond, sc); err != nil {
			return nil, err
		}
		if operand != nil && !comparable(operand.typ, conds[i].typ) {
			return nil, errorf(conds[i].pos, "type mismatch: CASE compares %s with %s", operand.typ, conds[i].typ)
		}
		if vals[i], err = b.compile(w.val, sc); err != nil {
			return nil, err
		}
		all = append(all, conds[i], vals[i])
	}
	var elseC *compiled
	if x.elseE != nil {
		if elseC, err = b.compile(x.elseE, sc); err != nil {
			return nil, err
		}
		all = append(all, elseC)
	}
	if operand != nil {
		all = append(all, operand)
	}
	typ := TNull
	for _, v := range append(vals, elseC) {
		if v != nil {
			typ = unify(typ, v.typ)
		}
	}
	pos := x.pos
	return fold(&compiled{typ: typ, pos: pos, konst: konstOf(all...), eval: func(row []any) (any, error) {
		var ov any
		if operand != nil {
			var err error
			if ov, err = operand.eval(row); err != nil {
				return nil, err
			}
		}
		for i, c := range conds {
			cv, err := c.eval(row)
			if err != nil {
				return nil, err
			}
			var hit bool
			if operand != nil {
				if ov != nil && cv != nil {
					cmp, ok := compareValues(ov, cv)
					hit = ok && cmp == 0
				}
			} else if cv != nil {
				if hit, err = truth(cv); err != nil {
					return nil, wrapErr(err, c.pos)
				}
			}
			if hit {
				return vals[i].eval(row)
			}
		}
		if elseC != nil {
			return elseC.eval(row)
		}
		return nil, nil
	}})
}

// unify is the static type of an expression that yields values of a or b.
func unify(a, b Type) Type {
	switch {
	case a == b:
		return a
	case a == TNull:
		return b
	case b == TNull:
		return a
	case a.numeric() && b.numeric():
		return TAny // int or float
	}
	return TAny
}

func (b *binder) compileAggregate(x *call, sc *scope) (*compiled, error) {
	if sc.aggs == nil {
		where := sc.where
		if where == "" {
			where = "here"
		}
		return nil, errorf(x.pos, "aggregate function %s() is not allowed %s", x.name, where)
	}
	spec := aggSpec{fn: x.name, distinct: x.distinct, star: x.star, pos: x.pos}
	if !x.star {
		if len(x.args) != 1 {
			return nil, errorf(x.pos, "%s() takes one argument", x.name)
		}
		// The argument is evaluated on input rows: no aggregates, no aliases.
		inner := &scope{cols: sc.cols, where: "inside another aggregate"}
		arg, err := b.compile(x.args[0], inner)
		if err != nil {
			return nil, err
		}
		spec.arg = arg
		switch x.name {
		case "sum", "avg":
			if t := arg.typ; t != TAny && t != TNull && !t.numeric() {
				return nil, errorf(x.pos, "type mismatch: %s() needs numbers, not %s", x.name, t)
			}
		}
	}
	slot := sc.aggs.add(spec)
	idx := sc.aggBase + slot
	return &compiled{typ: spec.resultType(), pos: x.pos, eval: func(row []any) (any, error) { return row[idx], nil }}, nil
}

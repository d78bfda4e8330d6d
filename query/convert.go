package query

import (
	"fmt"
	"strconv"
	"strings"

	"vitess.io/vitess/go/vt/sqlparser"
)

// convertStatement converts a parsed statement into the engine's AST,
// rejecting what the engine does not run with a clear, positioned error.
func convertStatement(src *source, stmt sqlparser.Statement) (statement, error) {
	switch s := stmt.(type) {
	case *sqlparser.Select:
		return convertSelect(src, s)
	case *sqlparser.Show:
		if b, ok := s.Internal.(*sqlparser.ShowBasic); ok && b.Command == sqlparser.Table && b.Filter == nil && b.DbName.IsEmpty() {
			return &showStmt{what: "tables"}, nil
		}
		return nil, errorf(src.findKeyword("show"), "only SHOW TABLES and SHOW STREAMS are supported")
	case *sqlparser.ExplainTab:
		if s.Wild != "" {
			return nil, errorf(Pos{}, "DESCRIBE takes a table name only")
		}
		ref := tableRef{schema: s.Table.Qualifier.String(), name: s.Table.Name.String()}
		ref.pos = findTablePos(src, ref)
		return &describeStmt{table: ref}, nil
	case *sqlparser.Union:
		return nil, errorf(src.findKeyword("union"), "UNION is not supported: run the queries one at a time")
	case *sqlparser.CommentOnly:
		return nil, &Error{Code: CodeSyntax, Message: "empty statement: nothing to run (only comments)"}
	case *sqlparser.ExplainStmt:
		return nil, errorf(src.findKeyword("explain"), "EXPLAIN takes a statement: EXPLAIN SELECT ..., EXPLAIN CREATE STREAM ..., EXPLAIN INSERT INTO ... or EXPLAIN CREATE VIEW ...")
	}
	first := Pos{}
	if len(src.toks) > 0 {
		first = src.pos(src.toks[0].start)
	}
	return nil, errorf(first, "only SELECT, SHOW STREAMS, SHOW TABLES and DESCRIBE <table> are supported: SQL here is read-only")
}

func findTablePos(src *source, t tableRef) Pos {
	if t.schema != "" {
		return src.findName(t.schema, t.name)
	}
	return src.findName(t.name)
}

func convertSelect(src *source, s *sqlparser.Select) (*selectStmt, error) {
	switch {
	case s.With != nil:
		return nil, errorf(src.findKeyword("with"), "WITH (common table expressions) is not supported")
	case s.Into != nil:
		return nil, errorf(src.findKeyword("into"), "SELECT ... INTO is not supported")
	case s.Lock != sqlparser.NoLock:
		return nil, errorf(src.findKeyword("for"), "locking reads are not supported")
	case len(s.Windows) > 0:
		return nil, errorf(src.findKeyword("window"), "window functions are not supported")
	}
	out := &selectStmt{distinct: s.Distinct}
	if s.Where != nil {
		out.texts.where = sqlparser.String(s.Where.Expr)
	}
	if s.Having != nil {
		out.texts.having = sqlparser.String(s.Having.Expr)
	}
	if s.GroupBy != nil {
		for _, g := range s.GroupBy.Exprs {
			out.texts.groupBy = append(out.texts.groupBy, sqlparser.String(g))
		}
	}
	for _, o := range s.OrderBy {
		out.texts.orderBy = append(out.texts.orderBy, sqlparser.String(o))
	}
	// Convert in text order (select list, FROM, WHERE, ...) so that names
	// are found at the right place when they repeat.
	if s.SelectExprs != nil {
		for _, se := range s.SelectExprs.Exprs {
			switch x := se.(type) {
			case *sqlparser.StarExpr:
				it := selectItem{star: true, starTable: x.TableName.Name.String()}
				if it.starTable != "" {
					it.starPos = src.findName(it.starTable)
				} else {
					it.starPos = src.findToken('*', "")
				}
				out.items = append(out.items, it)
			case *sqlparser.AliasedExpr:
				e, err := convertExpr(src, x.Expr)
				if err != nil {
					return nil, err
				}
				it := selectItem{e: e, alias: x.As.String(), text: sqlparser.String(x.Expr)}
				if c, ok := x.Expr.(*sqlparser.ColName); ok {
					it.text = c.Name.String()
				}
				if it.alias != "" {
					src.findName(it.alias) // move the cursor past the alias
				}
				out.items = append(out.items, it)
			default:
				return nil, errorf(Pos{}, "%s is not supported in a select list", sqlparser.String(se))
			}
		}
	}
	from, err := convertFrom(src, s.From)
	if err != nil {
		return nil, err
	}
	out.from = from
	if s.Where != nil {
		if out.where, err = convertExpr(src, s.Where.Expr); err != nil {
			return nil, err
		}
	}
	if s.GroupBy != nil {
		if s.GroupBy.WithRollup {
			return nil, errorf(src.findKeyword("rollup"), "WITH ROLLUP is not supported")
		}
		for _, g := range s.GroupBy.Exprs {
			e, err := convertExpr(src, g)
			if err != nil {
				return nil, err
			}
			out.groupBy = append(out.groupBy, e)
		}
	}
	if s.Having != nil {
		if out.having, err = convertExpr(src, s.Having.Expr); err != nil {
			return nil, err
		}
	}
	for _, o := range s.OrderBy {
		e, err := convertExpr(src, o.Expr)
		if err != nil {
			return nil, err
		}
		out.orderBy = append(out.orderBy, orderItem{e: e, desc: o.Direction == sqlparser.DescOrder})
	}
	if s.Limit != nil {
		if s.Limit.Rowcount != nil {
			if out.limit, err = convertExpr(src, s.Limit.Rowcount); err != nil {
				return nil, err
			}
		}
		if s.Limit.Offset != nil {
			if out.offset, err = convertExpr(src, s.Limit.Offset); err != nil {
				return nil, err
			}
		}
	}
	return out, nil
}

// convertFrom converts the FROM list; several entries are cross joins.
func convertFrom(src *source, list []sqlparser.TableExpr) (fromExpr, error) {
	var out fromExpr
	for _, te := range list {
		f, err := convertTableExpr(src, te)
		if err != nil {
			return nil, err
		}
		if t, ok := f.(*tableRef); ok && t.schema == "" && strings.EqualFold(t.name, "dual") && len(list) == 1 {
			return nil, nil
		}
		if out == nil {
			out = f
		} else {
			out = &joinExpr{kind: joinInner, left: out, right: f}
		}
	}
	return out, nil
}

func convertTableExpr(src *source, te sqlparser.TableExpr) (fromExpr, error) {
	switch t := te.(type) {
	case *sqlparser.AliasedTableExpr:
		tn, ok := t.Expr.(sqlparser.TableName)
		if !ok {
			return nil, errorf(src.findToken('(', ""), "subqueries are not supported")
		}
		ref := &tableRef{schema: tn.Qualifier.String(), name: tn.Name.String(), alias: t.As.String()}
		ref.pos = findTablePos(src, *ref)
		if ref.alias != "" {
			src.findName(ref.alias)
		}
		return ref, nil
	case *sqlparser.JoinTableExpr:
		left, err := convertTableExpr(src, t.LeftExpr)
		if err != nil {
			return nil, err
		}
		j := &joinExpr{left: left}
		switch t.Join {
		case sqlparser.NormalJoinType, sqlparser.StraightJoinType:
			j.kind = joinInner
		case sqlparser.LeftJoinType:
			j.kind, j.kindAt = joinLeft, src.findKeyword("left")
			if len(src.fullAt) > 0 {
				// FULL JOIN, rewritten by peel (a continuous query has
				// one join).
				j.kind, j.kindAt = joinFull, src.fullAt[0]
			}
		case sqlparser.RightJoinType:
			j.kind, j.kindAt = joinRight, src.findKeyword("right")
		default:
			return nil, errorf(src.findKeyword("natural"), "NATURAL JOIN is not supported: use JOIN ... ON")
		}
		j.pos = src.findKeyword("join")
		if j.right, err = convertTableExpr(src, t.RightExpr); err != nil {
			return nil, err
		}
		if t.Condition != nil {
			if len(t.Condition.Using) > 0 {
				return nil, errorf(src.findKeyword("using"), "JOIN ... USING is not supported: write ON a.column = b.column")
			}
			if t.Condition.On != nil {
				if j.on, err = convertExpr(src, t.Condition.On); err != nil {
					return nil, err
				}
			}
		}
		return j, nil
	case *sqlparser.ParenTableExpr:
		return convertFrom(src, t.Exprs)
	}
	return nil, errorf(Pos{}, "%s is not supported in FROM", sqlparser.String(te))
}

// convertExpr converts one expression.
func convertExpr(src *source, e sqlparser.Expr) (expr, error) {
	switch x := e.(type) {
	case *sqlparser.Literal:
		return convertLiteral(src, x)
	case sqlparser.BoolVal:
		return &literal{val: bool(x), pos: src.findKeyword(strconv.FormatBool(bool(x)))}, nil
	case *sqlparser.NullVal:
		return &literal{val: nil, pos: src.findKeyword("null")}, nil
	case *sqlparser.ColName:
		ref := &columnRef{table: x.Qualifier.Name.String(), name: x.Name.String()}
		if ref.table != "" {
			ref.pos = src.findName(ref.table, ref.name)
		} else {
			ref.pos = src.findName(ref.name)
		}
		return ref, nil
	case *sqlparser.AndExpr:
		return convertBinary(src, "and", x.Left, x.Right)
	case *sqlparser.OrExpr:
		return convertBinary(src, "or", x.Left, x.Right)
	case *sqlparser.XorExpr:
		return convertBinary(src, "xor", x.Left, x.Right)
	case *sqlparser.NotExpr:
		pos := src.findKeyword("not")
		inner, err := convertExpr(src, x.Expr)
		if err != nil {
			return nil, err
		}
		return &unary{op: "not", x: inner, pos: orPos(pos, inner.position())}, nil
	case *sqlparser.ComparisonExpr:
		return convertComparison(src, x)
	case *sqlparser.BetweenExpr:
		v, err := convertExpr(src, x.Left)
		if err != nil {
			return nil, err
		}
		lo, err := convertExpr(src, x.From)
		if err != nil {
			return nil, err
		}
		hi, err := convertExpr(src, x.To)
		if err != nil {
			return nil, err
		}
		return &between{x: v, lo: lo, hi: hi, not: !x.IsBetween, pos: v.position()}, nil
	case *sqlparser.IsExpr:
		v, err := convertExpr(src, x.Left)
		if err != nil {
			return nil, err
		}
		ie := &isExpr{x: v, pos: v.position()}
		switch x.Right {
		case sqlparser.IsNullOp, sqlparser.IsNotNullOp:
			ie.what, ie.not = "null", x.Right == sqlparser.IsNotNullOp
		case sqlparser.IsTrueOp, sqlparser.IsNotTrueOp:
			ie.what, ie.not = "true", x.Right == sqlparser.IsNotTrueOp
		default:
			ie.what, ie.not = "false", x.Right == sqlparser.IsNotFalseOp
		}
		return ie, nil
	case *sqlparser.BinaryExpr:
		ops := map[sqlparser.BinaryExprOperator]string{
			sqlparser.PlusOp: "+", sqlparser.MinusOp: "-", sqlparser.MultOp: "*", sqlparser.DivOp: "/",
			sqlparser.IntDivOp: "div", sqlparser.ModOp: "%", sqlparser.BitAndOp: "&", sqlparser.BitOrOp: "|",
			sqlparser.BitXorOp: "^", sqlparser.ShiftLeftOp: "<<", sqlparser.ShiftRightOp: ">>",
		}
		return convertBinary(src, ops[x.Operator], x.Left, x.Right)
	case *sqlparser.UnaryExpr:
		inner, err := convertExpr(src, x.Expr)
		if err != nil {
			return nil, err
		}
		switch x.Operator {
		case sqlparser.UPlusOp:
			return inner, nil
		case sqlparser.UMinusOp:
			if l, ok := inner.(*literal); ok {
				switch v := l.val.(type) {
				case int64:
					return &literal{val: -v, pos: l.pos}, nil
				case float64:
					return &literal{val: -v, pos: l.pos}, nil
				}
			}
			return &unary{op: "-", x: inner, pos: inner.position()}, nil
		case sqlparser.BangOp:
			return &unary{op: "not", x: inner, pos: inner.position()}, nil
		case sqlparser.TildaOp:
			return &unary{op: "~", x: inner, pos: inner.position()}, nil
		}
	case *sqlparser.IntroducerExpr:
		return convertExpr(src, x.Expr)
	case *sqlparser.CaseExpr:
		return convertCase(src, x)
	case *sqlparser.CastExpr:
		if x.Array {
			return nil, errorf(src.findKeyword("array"), "CAST ... ARRAY is not supported")
		}
		return convertCast(src, x.Expr, x.Type)
	case *sqlparser.ConvertExpr:
		return convertCast(src, x.Expr, x.Type)
	case *sqlparser.IntervalDateExpr:
		return convertDateArith(src, x)
	case *sqlparser.FuncExpr:
		if !x.Qualifier.IsEmpty() {
			return nil, errorf(src.findName(x.Qualifier.String()), "qualified function names are not supported")
		}
		return convertCall(src, x.Name.Lowered(), x.Exprs, false)
	case *sqlparser.CurTimeFuncExpr:
		name := x.Name.Lowered()
		switch name {
		case "now", "current_timestamp", "utc_timestamp", "localtime", "localtimestamp", "sysdate":
			return &call{name: "now", pos: src.findName(name)}, nil
		}
		return nil, errorf(src.findName(name), "%s() is not supported: use now()", name)
	case *sqlparser.CountStar:
		if x.OverClause != nil {
			return nil, errorf(src.findKeyword("over"), "window functions (OVER) are not supported")
		}
		return &call{name: "count", star: true, pos: src.findName("count")}, nil
	case *sqlparser.Count:
		if x.OverClause != nil {
			return nil, errorf(src.findKeyword("over"), "window functions (OVER) are not supported")
		}
		if len(x.Args) != 1 {
			return nil, errorf(src.findName("count"), "count() takes one argument (or *)")
		}
		return convertAggregate(src, "count", x.Args[0], x.Distinct)
	case *sqlparser.Sum:
		return convertWindowless(src, "sum", x.Arg, x.Distinct, x.OverClause)
	case *sqlparser.Avg:
		return convertWindowless(src, "avg", x.Arg, x.Distinct, x.OverClause)
	case *sqlparser.Min:
		return convertWindowless(src, "min", x.Arg, x.Distinct, x.OverClause)
	case *sqlparser.Max:
		return convertWindowless(src, "max", x.Arg, x.Distinct, x.OverClause)
	case *sqlparser.SubstrExpr:
		args := []sqlparser.Expr{x.Name, x.From}
		if x.To != nil {
			args = append(args, x.To)
		}
		return convertCall(src, "substring", args, false)
	case *sqlparser.TrimFuncExpr:
		if x.TrimArg != nil || x.Type != sqlparser.NoTrimType {
			return nil, errorf(src.findName("trim"), "only trim(x), ltrim(x) and rtrim(x) are supported")
		}
		name := map[sqlparser.TrimFuncType]string{sqlparser.NormalTrimType: "trim", sqlparser.LTrimType: "ltrim", sqlparser.RTrimType: "rtrim"}[x.TrimFuncType]
		return convertCall(src, name, []sqlparser.Expr{x.StringArg}, false)
	case *sqlparser.JSONExtractExpr:
		if len(x.PathList) != 1 {
			return nil, errorf(src.findName("json_extract"), "json_extract takes one document and one path")
		}
		pos := src.findName("json_extract")
		c, err := convertCall(src, "json_extract", []sqlparser.Expr{x.JSONDoc, x.PathList[0]}, false)
		if err == nil && pos.Line > 0 {
			c.(*call).pos = pos
		}
		return c, err
	case *sqlparser.JSONAttributesExpr:
		args := []sqlparser.Expr{x.JSONDoc}
		if x.Path != nil {
			args = append(args, x.Path)
		}
		return convertCall(src, strings.ToLower(x.Type.ToString()), args, false)
	case *sqlparser.JSONUnquoteExpr:
		return convertCall(src, "json_unquote", []sqlparser.Expr{x.JSONValue}, false)
	case *sqlparser.ExtractFuncExpr:
		unit := strings.ToLower(x.IntervalType.ToString())
		pos := src.findName("extract")
		arg, err := convertExpr(src, x.Expr)
		if err != nil {
			return nil, err
		}
		return &call{name: "extract", args: []expr{&literal{val: unit, pos: pos}, arg}, pos: pos}, nil
	case *sqlparser.TimestampDiffExpr:
		unit := strings.ToLower(x.Unit.ToString())
		pos := src.findName("timestampdiff")
		a, err := convertExpr(src, x.Expr1)
		if err != nil {
			return nil, err
		}
		b, err := convertExpr(src, x.Expr2)
		if err != nil {
			return nil, err
		}
		return &call{name: "timestampdiff", args: []expr{&literal{val: unit, pos: pos}, a, b}, pos: pos}, nil
	case *sqlparser.Subquery, *sqlparser.ExistsExpr:
		return nil, errorf(src.findSubquery(), "subqueries are not supported")
	case *sqlparser.Argument, *sqlparser.Variable:
		return nil, errorf(Pos{}, "variables and placeholders are not supported: %s", sqlparser.String(e))
	}
	text := sqlparser.String(e)
	pos := Pos{}
	if f := strings.FieldsFunc(text, func(r rune) bool { return r == '(' || r == ' ' }); len(f) > 0 {
		pos = src.findName(f[0])
	}
	return nil, errorf(pos, "%s is not supported", shorten(text))
}

func orPos(a, b Pos) Pos {
	if a.Line > 0 {
		return a
	}
	return b
}

func convertBinary(src *source, op string, l, r sqlparser.Expr) (expr, error) {
	if op == "" {
		return nil, errorf(Pos{}, "operator in %s is not supported", sqlparser.String(l))
	}
	le, err := convertExpr(src, l)
	if err != nil {
		return nil, err
	}
	re, err := convertExpr(src, r)
	if err != nil {
		return nil, err
	}
	return &binary{op: op, l: le, r: re, pos: le.position()}, nil
}

func convertComparison(src *source, x *sqlparser.ComparisonExpr) (expr, error) {
	if x.Modifier != sqlparser.Missing {
		return nil, errorf(src.findKeyword("any"), "ANY/ALL comparisons are not supported")
	}
	l, err := convertExpr(src, x.Left)
	if err != nil {
		return nil, err
	}
	switch x.Operator {
	case sqlparser.InOp, sqlparser.NotInOp:
		tuple, ok := x.Right.(sqlparser.ValTuple)
		if !ok {
			return nil, errorf(src.findKeyword("in"), "IN takes a list of values (subqueries are not supported)")
		}
		in := &inList{x: l, not: x.Operator == sqlparser.NotInOp, pos: l.position()}
		for _, v := range tuple {
			e, err := convertExpr(src, v)
			if err != nil {
				return nil, err
			}
			in.list = append(in.list, e)
		}
		return in, nil
	}
	if _, ok := x.Right.(*sqlparser.Subquery); ok {
		return nil, errorf(src.findSubquery(), "subqueries are not supported")
	}
	r, err := convertExpr(src, x.Right)
	if err != nil {
		return nil, err
	}
	ops := map[sqlparser.ComparisonExprOperator]string{
		sqlparser.EqualOp: "=", sqlparser.LessThanOp: "<", sqlparser.GreaterThanOp: ">", sqlparser.LessEqualOp: "<=",
		sqlparser.GreaterEqualOp: ">=", sqlparser.NotEqualOp: "<>", sqlparser.NullSafeEqualOp: "<=>",
		sqlparser.LikeOp: "like", sqlparser.NotLikeOp: "not like", sqlparser.RegexpOp: "regexp", sqlparser.NotRegexpOp: "not regexp",
	}
	op := ops[x.Operator]
	if x.Escape != nil {
		return nil, errorf(src.findKeyword("escape"), "LIKE ... ESCAPE is not supported (the escape character is \\)")
	}
	return &binary{op: op, l: l, r: r, pos: l.position()}, nil
}

func convertLiteral(src *source, x *sqlparser.Literal) (expr, error) {
	switch x.Type {
	case sqlparser.StrVal:
		return &literal{val: x.Val, pos: src.findToken(sqlparser.STRING, x.Val)}, nil
	case sqlparser.IntVal:
		pos := src.findToken(sqlparser.INTEGRAL, x.Val)
		if i, err := strconv.ParseInt(x.Val, 10, 64); err == nil {
			return &literal{val: i, pos: pos}, nil
		}
		f, err := strconv.ParseFloat(x.Val, 64)
		if err != nil {
			return nil, errorf(pos, "number %s is out of range", x.Val)
		}
		return &literal{val: f, pos: pos}, nil
	case sqlparser.FloatVal, sqlparser.DecimalVal:
		pos := src.findToken(sqlparser.FLOAT, x.Val)
		if pos.Line == 0 {
			pos = src.findToken(sqlparser.DECIMAL, x.Val)
		}
		f, err := strconv.ParseFloat(x.Val, 64)
		if err != nil {
			return nil, errorf(pos, "number %s is out of range", x.Val)
		}
		return &literal{val: f, pos: pos}, nil
	case sqlparser.HexNum:
		i, err := strconv.ParseInt(strings.TrimPrefix(strings.ToLower(x.Val), "0x"), 16, 64)
		if err != nil {
			return nil, errorf(Pos{}, "hexadecimal number %s is out of range", x.Val)
		}
		return &literal{val: i}, nil
	case sqlparser.DateVal, sqlparser.TimestampVal:
		pos := src.findToken(sqlparser.STRING, x.Val)
		t, ok := parseTime(x.Val)
		if !ok {
			return nil, errorf(pos, "%q is not a timestamp (use RFC 3339 or 'YYYY-MM-DD HH:MM:SS')", x.Val)
		}
		return &literal{val: t, pos: pos}, nil
	}
	return nil, errorf(Pos{}, "literal %s is not supported", sqlparser.String(x))
}

func convertCase(src *source, x *sqlparser.CaseExpr) (expr, error) {
	c := &caseExpr{pos: src.findKeyword("case")}
	var err error
	if x.Expr != nil {
		if c.operand, err = convertExpr(src, x.Expr); err != nil {
			return nil, err
		}
	}
	for _, w := range x.Whens {
		cond, err := convertExpr(src, w.Cond)
		if err != nil {
			return nil, err
		}
		val, err := convertExpr(src, w.Val)
		if err != nil {
			return nil, err
		}
		c.whens = append(c.whens, caseWhen{cond: cond, val: val})
	}
	if x.Else != nil {
		if c.elseE, err = convertExpr(src, x.Else); err != nil {
			return nil, err
		}
	}
	return c, nil
}

func convertCast(src *source, e sqlparser.Expr, ct *sqlparser.ConvertType) (expr, error) {
	pos := src.findName("cast")
	if pos.Line == 0 {
		pos = src.findName("convert")
	}
	inner, err := convertExpr(src, e)
	if err != nil {
		return nil, err
	}
	if ct == nil {
		return nil, errorf(pos, "CAST needs a type")
	}
	var to Type
	switch strings.ToLower(ct.Type) {
	case "signed", "unsigned", "signed integer", "unsigned integer", "integer", "int", "bigint":
		to = TInt
	case "double", "float", "real", "decimal":
		to = TFloat
	case "char", "nchar", "varchar", "text", "binary":
		to = TText
	case "datetime", "timestamp", "date":
		to = TTime
	case "json":
		to = TJSON
	default:
		return nil, errorf(pos, "CAST to %s is not supported (use signed, double, char, datetime or json)", ct.Type)
	}
	return &cast{x: inner, to: to, pos: orPos(pos, inner.position())}, nil
}

func convertDateArith(src *source, x *sqlparser.IntervalDateExpr) (expr, error) {
	d := &dateArith{}
	switch x.Syntax {
	case sqlparser.IntervalDateExprDateSub, sqlparser.IntervalDateExprSubdate, sqlparser.IntervalDateExprBinarySub:
		d.sub = true
	}
	date, err := convertExpr(src, x.Date)
	if err != nil {
		return nil, err
	}
	n, err := convertExpr(src, x.Interval)
	if err != nil {
		return nil, err
	}
	d.date, d.n, d.pos = date, n, orPos(date.position(), n.position())
	unit := x.Unit
	if unit == sqlparser.IntervalNone {
		unit = sqlparser.IntervalDay // ADDDATE(d, n) counts days
	}
	d.unit = strings.ToLower(unit.ToString())
	switch d.unit {
	case "microsecond", "second", "minute", "hour", "day", "week":
	default:
		return nil, errorf(src.findKeyword("interval"), "INTERVAL unit %s is not supported (use microsecond, second, minute, hour, day or week)", strings.ToUpper(d.unit))
	}
	return d, nil
}

func convertWindowless(src *source, name string, arg sqlparser.Expr, distinct bool, over *sqlparser.OverClause) (expr, error) {
	if over != nil {
		return nil, errorf(src.findKeyword("over"), "window functions (OVER) are not supported")
	}
	return convertAggregate(src, name, arg, distinct)
}

func convertAggregate(src *source, name string, arg sqlparser.Expr, distinct bool) (expr, error) {
	pos := src.findName(name)
	a, err := convertExpr(src, arg)
	if err != nil {
		return nil, err
	}
	return &call{name: name, args: []expr{a}, distinct: distinct, pos: pos}, nil
}

func convertCall(src *source, name string, args []sqlparser.Expr, distinct bool) (expr, error) {
	c := &call{name: name, distinct: distinct, pos: src.findName(name)}
	for _, a := range args {
		e, err := convertExpr(src, a)
		if err != nil {
			return nil, err
		}
		c.args = append(c.args, e)
	}
	if c.pos.Line == 0 && len(c.args) > 0 {
		c.pos = c.args[0].position()
	}
	if name == sessionAlias {
		c.name = "session" // renamed by peel
	}
	return c, nil
}

// exprString renders an expression of ours for messages.
func exprString(e expr) string {
	switch x := e.(type) {
	case *columnRef:
		if x.table != "" {
			return x.table + "." + x.name
		}
		return x.name
	case *literal:
		return quoteValue(x.val)
	case *call:
		return x.name + "(...)"
	}
	return fmt.Sprintf("expression at line %d, column %d", e.position().Line, e.position().Column)
}

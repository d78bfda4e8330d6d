package query

// The engine's own small AST. parse.go converts the parser's tree into it, so
// nothing outside parse.go and convert*.go knows the parser's types. Every
// node that can be the subject of an error carries its position.

// statement is one parsed statement: *selectStmt, *showStmt,
// *describeStmt, *createStreamStmt or *terminateStmt.
type statement interface{ isStatement() }

type selectStmt struct {
	distinct bool
	items    []selectItem
	from     fromExpr // nil: no FROM
	where    expr
	groupBy  []expr
	having   expr
	orderBy  []orderItem
	limit    expr // nil: no LIMIT
	offset   expr // nil: no OFFSET
	texts    selectTexts
}

// selectTexts are clauses of a SELECT as the parser prints them back
// (EXPLAIN shows them).
type selectTexts struct {
	where, having    string
	groupBy, orderBy []string
}

// explainStmt is EXPLAIN <statement>: the plan of stmt, as rows.
type explainStmt struct {
	stmt statement
	src  *source
	sql  string // the statement explained, EXPLAIN blanked out
}

// selectItem is one entry of the select list: an expression with an
// optional alias, or a star (all columns, or all of one table).
type selectItem struct {
	star      bool
	starTable string
	starPos   Pos
	e         expr
	alias     string
	text      string // the expression as written (canonical form), for the column name
}

type orderItem struct {
	e    expr
	desc bool
}

// showStmt is SHOW STREAMS, SHOW TABLES, SHOW QUERIES or SHOW VIEWS.
type showStmt struct {
	what string // "streams", "tables", "queries" or "views"
}

// createStreamStmt is CREATE STREAM name [WITH (...)] AS SELECT ...
// [EMIT ...]: a continuous query (continuous.go).
type createStreamStmt struct {
	create *createClause
	sel    *selectStmt
	emit   string // "", "changes" or "final"
	emitAt Pos
}

// pushStmt is SELECT ... EMIT CHANGES|FINAL: a push query, whose rows
// stream to the caller until it stops (continuous.go).
type pushStmt struct {
	sel    *selectStmt
	emit   string // "changes" or "final"
	emitAt Pos
}

// terminateStmt is TERMINATE, PAUSE or RESUME [QUERY] id, or DROP VIEW
// or DROP STREAM [IF EXISTS] id.
type terminateStmt struct {
	verb     string // "terminate", "pause", "resume", "drop view" or "drop stream"
	id       string
	pos      Pos
	ifExists bool
}

// describeStmt is DESCRIBE <table>.
type describeStmt struct {
	table tableRef
}

func (*selectStmt) isStatement()       {}
func (*showStmt) isStatement()         {}
func (*describeStmt) isStatement()     {}
func (*createStreamStmt) isStatement() {}
func (*terminateStmt) isStatement()    {}
func (*pushStmt) isStatement()         {}
func (*explainStmt) isStatement()      {}

// fromExpr is a table reference or a join.
type fromExpr interface{ isFrom() }

type tableRef struct {
	schema string // "", "stream" or "stats"
	name   string
	alias  string // "" means the name
	pos    Pos
}

type joinKind uint8

const (
	joinInner joinKind = iota // INNER JOIN ... ON, or JOIN without ON / comma (cross)
	joinLeft
	joinRight // continuous interval joins only
	joinFull  // FULL [OUTER] JOIN (peel.go): continuous interval joins only
)

type joinExpr struct {
	kind        joinKind
	kindAt      Pos // of LEFT, RIGHT or FULL
	left, right fromExpr
	on          expr // nil: cross join
	pos         Pos
}

func (*tableRef) isFrom() {}
func (*joinExpr) isFrom() {}
func (t *tableRef) label() string {
	if t.alias != "" {
		return t.alias
	}
	return t.name
}

// expr is an expression node.
type expr interface{ position() Pos }

type literal struct {
	val any
	pos Pos
}

type columnRef struct {
	table string // "" when unqualified
	name  string
	pos   Pos
}

// unary: "-" (negation), "not", "~"? (only "-" and "not" are supported).
type unary struct {
	op  string
	x   expr
	pos Pos
}

// binary: arithmetic (+ - * / div %), comparison (= <> < <= > >= <=>),
// logic (and or xor), like / not like.
type binary struct {
	op   string
	l, r expr
	pos  Pos
}

// isExpr is X IS [NOT] NULL|TRUE|FALSE.
type isExpr struct {
	x    expr
	what string // "null", "true", "false"
	not  bool
	pos  Pos
}

type inList struct {
	x    expr
	list []expr
	not  bool
	pos  Pos
}

type between struct {
	x, lo, hi expr
	not       bool
	pos       Pos
}

type caseExpr struct {
	operand expr // nil for searched CASE
	whens   []caseWhen
	elseE   expr
	pos     Pos
}

type caseWhen struct {
	cond, val expr
}

// call is a function call, including aggregates (count, sum, avg, min,
// max) and the parser's special forms mapped to functions.
type call struct {
	name     string // lower case
	args     []expr
	distinct bool
	star     bool // COUNT(*)
	pos      Pos
}

// dateArith is DATE_ADD/DATE_SUB and "t +/- INTERVAL n unit".
type dateArith struct {
	date, n expr
	unit    string // microsecond, second, minute, hour, day, week
	sub     bool
	pos     Pos
}

// cast is CAST(x AS type) / CONVERT(x, type).
type cast struct {
	x   expr
	to  Type
	pos Pos
}

func (e *literal) position() Pos   { return e.pos }
func (e *columnRef) position() Pos { return e.pos }
func (e *unary) position() Pos     { return e.pos }
func (e *binary) position() Pos    { return e.pos }
func (e *isExpr) position() Pos    { return e.pos }
func (e *inList) position() Pos    { return e.pos }
func (e *between) position() Pos   { return e.pos }
func (e *caseExpr) position() Pos  { return e.pos }
func (e *call) position() Pos      { return e.pos }
func (e *dateArith) position() Pos { return e.pos }
func (e *cast) position() Pos      { return e.pos }

// walk calls fn for e and every expression below it, depth first, until fn
// returns false for a node (its children are then skipped).
func walk(e expr, fn func(expr) bool) {
	if e == nil || !fn(e) {
		return
	}
	switch x := e.(type) {
	case *unary:
		walk(x.x, fn)
	case *binary:
		walk(x.l, fn)
		walk(x.r, fn)
	case *isExpr:
		walk(x.x, fn)
	case *inList:
		walk(x.x, fn)
		for _, a := range x.list {
			walk(a, fn)
		}
	case *between:
		walk(x.x, fn)
		walk(x.lo, fn)
		walk(x.hi, fn)
	case *caseExpr:
		walk(x.operand, fn)
		for _, w := range x.whens {
			walk(w.cond, fn)
			walk(w.val, fn)
		}
		walk(x.elseE, fn)
	case *call:
		for _, a := range x.args {
			walk(a, fn)
		}
	case *dateArith:
		walk(x.date, fn)
		walk(x.n, fn)
	case *cast:
		walk(x.x, fn)
	}
}

// aggregateNames are the aggregate functions.
func isAggregate(name string) bool {
	switch name {
	case "count", "sum", "avg", "min", "max":
		return true
	}
	return false
}

// hasAggregate reports whether e contains an aggregate call.
func hasAggregate(e expr) bool {
	found := false
	walk(e, func(x expr) bool {
		if c, ok := x.(*call); ok && isAggregate(c.name) {
			found = true
		}
		return !found
	})
	return found
}

package query

import (
	"errors"
	"fmt"
	"strings"

	"vitess.io/vitess/go/vt/sqlparser"
)

// parser wraps Vitess's MySQL-dialect parser. It is safe for concurrent
// use (the Vitess parser keeps no per-parse state outside its tokenizer).
type parser struct {
	p *sqlparser.Parser
}

func newParser() (*parser, error) {
	p, err := sqlparser.New(sqlparser.Options{})
	if err != nil {
		return nil, fmt.Errorf("query: sql parser: %w", err)
	}
	return &parser{p: p}, nil
}

// parse parses one statement into the engine's AST. Errors are *Error with
// CodeSyntax (with the position of the offending token) or CodeSQL (for
// constructs that parse but that the engine does not run).
func (ps *parser) parse(sql string) (statement, *source, error) {
	src := newSource(ps.p, sql)
	sig := make([]token, 0, len(src.toks))
	for _, t := range src.toks {
		if t.typ != sqlparser.COMMENT {
			sig = append(sig, t)
		}
	}
	// Drop trailing semicolons; more than one statement is an error.
	for len(sig) > 0 && sig[len(sig)-1].typ == ';' {
		sig = sig[:len(sig)-1]
	}
	if len(sig) == 0 {
		return nil, src, &Error{Code: CodeSyntax, Message: "empty statement: nothing to run"}
	}
	for i, t := range sig {
		if t.typ == ';' && i+1 < len(sig) && sig[i+1].typ != ';' {
			p := src.pos(sig[i+1].start)
			return nil, src, &Error{Code: CodeSyntax, Message: "only one statement can be run at a time",
				Line: p.Line, Column: p.Column}
		}
	}
	if strings.EqualFold(sig[0].text, "explain") {
		return ps.parseExplain(src, sig)
	}
	// SHOW STREAMS is ours, not MySQL's: recognise it from its tokens.
	if len(sig) == 2 && sig[0].typ == sqlparser.SHOW && strings.EqualFold(sig[1].text, "streams") {
		return &showStmt{what: "streams"}, src, nil
	}
	// SHOW QUERIES and TERMINATE [QUERY] id are ours too.
	if len(sig) == 2 && sig[0].typ == sqlparser.SHOW && strings.EqualFold(sig[1].text, "queries") {
		return &showStmt{what: "queries"}, src, nil
	}
	if len(sig) == 2 && sig[0].typ == sqlparser.SHOW && strings.EqualFold(sig[1].text, "views") {
		return &showStmt{what: "views"}, src, nil
	}
	if st, ok, err := parseControl(src, sig); ok {
		return st, src, err
	}
	pl, err := peel(src, sig)
	if err != nil {
		return nil, src, err
	}
	if pl.sql != sql {
		user := sql
		src = newSource(ps.p, pl.sql)
		src.user = user
		src.fullAt = pl.fullAt
	}
	stmt, err := ps.p.ParseStrictDDL(pl.sql)
	if err != nil {
		return nil, src, syntaxError(src, err)
	}
	st, err := convertStatement(src, stmt)
	if err != nil {
		return nil, src, err
	}
	sel, isSelect := st.(*selectStmt)
	switch {
	case pl.create != nil && !isSelect:
		return nil, src, errorf(pl.create.namePos, "%s needs a SELECT", map[string]string{KindStream: "CREATE STREAM " + pl.create.name + " AS",
			KindView: "CREATE VIEW " + pl.create.name + " AS", KindInsert: "INSERT INTO " + pl.create.name}[pl.create.kind])
	case pl.create != nil:
		return &createStreamStmt{create: pl.create, sel: sel, emit: pl.emit, emitAt: pl.emitAt}, src, nil
	case pl.emit != "" && !isSelect:
		return nil, src, errorf(pl.emitAt, "EMIT ends a push query: SELECT ... EMIT CHANGES")
	case pl.emit != "":
		return &pushStmt{sel: sel, emit: pl.emit, emitAt: pl.emitAt}, src, nil
	}
	return st, src, nil
}

// syntaxError turns a parser error into a positioned *Error.
func syntaxError(src *source, err error) *Error {
	var pe sqlparser.PositionedErr
	if !errors.As(err, &pe) {
		return &Error{Code: CodeSyntax, Message: strings.TrimSpace(err.Error())}
	}
	// The parser reports the byte offset just after the token it stopped at
	// (plus one); find that token to point at its start.
	end := pe.Pos - 1
	i := src.tokenEndingAt(end)
	var e *Error
	switch {
	case end >= len(src.sql) && (i < 0 || pe.Near == ""):
		p := src.pos(len(strings.TrimRight(src.sql, " \t\r\n;")))
		e = &Error{Code: CodeSyntax, Message: "syntax error: unexpected end of statement", Line: p.Line, Column: p.Column}
	case i >= 0:
		t := src.toks[i]
		p := src.pos(t.start)
		near := strings.TrimSpace(src.sql[t.start:t.end])
		if t.typ == sqlparser.LEX_ERROR {
			e = &Error{Code: CodeSyntax, Message: fmt.Sprintf("syntax error: cannot read %s", describeLexError(near)), Line: p.Line, Column: p.Column}
		} else {
			e = &Error{Code: CodeSyntax, Message: fmt.Sprintf("syntax error at %q", shorten(near)), Line: p.Line, Column: p.Column}
		}
		if hint := reservedHint(src, i); hint != "" {
			e.Message += ": " + hint
		}
	default:
		p := src.pos(max(0, end))
		e = &Error{Code: CodeSyntax, Message: "syntax error", Line: p.Line, Column: p.Column}
		if pe.Near != "" {
			e.Message = fmt.Sprintf("syntax error near %q", shorten(pe.Near))
		}
	}
	return e
}

func describeLexError(text string) string {
	switch {
	case strings.HasPrefix(text, "'") || strings.HasPrefix(text, `"`):
		return "an unterminated string: " + shorten(text)
	case strings.HasPrefix(text, "`"):
		return "an unterminated quoted name: " + shorten(text)
	case strings.HasPrefix(text, "/*"):
		return "an unterminated comment"
	}
	return fmt.Sprintf("%q", shorten(text))
}

func shorten(s string) string {
	if len(s) > 40 {
		return s[:37] + "..."
	}
	return s
}

// reservedHint explains the commonest surprise: a column or table of ours
// whose name is an SQL keyword (group, groups, lag, ...) used unquoted
// next to where parsing failed.
func reservedHint(src *source, i int) string {
	for j := i; j >= max(0, i-2); j-- {
		t := src.toks[j]
		if t.typ == sqlparser.ID || sqlparser.KeywordString(t.typ) == "" {
			continue
		}
		name := strings.ToLower(t.text)
		if knownName(name) {
			return fmt.Sprintf("%s is a reserved word in SQL; quote it with backquotes: `%s`", name, name)
		}
	}
	return ""
}

// knownName reports names of statistics tables and columns.
func knownName(name string) bool {
	for _, t := range statTableDefs() {
		if t.name == name {
			return true
		}
		for _, c := range t.cols {
			if c.name == name {
				return true
			}
		}
	}
	return false
}

// parseControl recognises TERMINATE, PAUSE and RESUME [QUERY] id. ok is
// false for other statements.
func parseControl(src *source, sig []token) (st statement, ok bool, err error) {
	verb := strings.ToLower(sig[0].text)
	switch verb {
	case "terminate", "pause", "resume":
	case "drop":
		if len(sig) < 2 || !strings.EqualFold(sig[1].text, "view") && !strings.EqualFold(sig[1].text, "stream") {
			return nil, false, nil
		}
		return parseDrop(src, sig)
	default:
		return nil, false, nil
	}
	rest := sig[1:]
	if len(rest) > 0 && strings.EqualFold(rest[0].text, "query") {
		rest = rest[1:]
	}
	if len(rest) != 1 || !nameToken(rest[0]) {
		p := src.pos(sig[0].start)
		if len(rest) > 1 {
			p = src.pos(rest[1].start)
		}
		return nil, true, &Error{Code: CodeSyntax, Message: fmt.Sprintf("syntax error: write %s QUERY <id> (SHOW QUERIES lists them)", strings.ToUpper(verb)), Line: p.Line, Column: p.Column}
	}
	return &terminateStmt{verb: verb, id: rest[0].text, pos: src.pos(rest[0].start)}, true, nil
}

// parseDrop reads DROP VIEW|STREAM [IF EXISTS] name.
func parseDrop(src *source, sig []token) (statement, bool, error) {
	rest := sig[2:]
	what := strings.ToLower(sig[1].text)
	st := &terminateStmt{verb: "drop " + what}
	if len(rest) >= 2 && rest[0].typ == sqlparser.IF && strings.EqualFold(rest[1].text, "exists") {
		st.ifExists = true
		rest = rest[2:]
	}
	if len(rest) != 1 || !nameToken(rest[0]) {
		p := src.pos(len(strings.TrimRight(src.sql, " \t\r\n;")))
		if len(rest) > 1 {
			p = src.pos(rest[1].start)
		}
		return nil, true, &Error{Code: CodeSyntax, Message: fmt.Sprintf("syntax error: write DROP %s [IF EXISTS] <name> (SHOW %sS lists them)", strings.ToUpper(what), strings.ToUpper(what)), Line: p.Line, Column: p.Column}
	}
	st.id, st.pos = rest[0].text, src.pos(rest[0].start)
	return st, true, nil
}

// parseExplain parses EXPLAIN <statement>: the statement with EXPLAIN
// blanked out, so that its errors point into the user's text.
func (ps *parser) parseExplain(src *source, sig []token) (statement, *source, error) {
	if len(sig) == 1 || strings.EqualFold(sig[1].text, "explain") {
		p := src.pos(sig[0].start)
		if len(sig) > 1 {
			p = src.pos(sig[1].start)
		}
		return nil, src, &Error{Code: CodeSyntax, Message: "syntax error: write EXPLAIN <statement>: EXPLAIN SELECT ..., EXPLAIN CREATE STREAM ..., EXPLAIN INSERT INTO ... or EXPLAIN CREATE VIEW ...", Line: p.Line, Column: p.Column}
	}
	buf := []byte(src.sql)
	for i := sig[0].start; i < sig[0].end; i++ {
		buf[i] = ' '
	}
	inner := string(buf)
	st, isrc, err := ps.parse(inner)
	if err != nil {
		return nil, isrc, err
	}
	return &explainStmt{stmt: st, src: isrc, sql: inner}, isrc, nil
}

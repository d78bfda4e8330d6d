package query

import (
	"fmt"
	"strings"

	"vitess.io/vitess/go/vt/sqlparser"
)

// Continuous-query statements are MySQL with a few additions that Vitess
// does not parse:
//
//	CREATE STREAM name [WITH (key = value, ...)] AS SELECT ... [EMIT CHANGES | EMIT FINAL]
//	... GROUP BY k, TUMBLING(INTERVAL 10 SECOND)
//
// peel takes them off at the token level and hands Vitess the rest: the
// same text with the additions blanked out (newlines kept), and each
// INTERVAL n UNIT inside a window call replaced by the string literal
// 'n unit' padded to the same length. Every byte offset, hence every
// error position, still points into the user's text.

// windowFuncs are the window calls whose INTERVAL arguments peel rewrites.
var windowFuncs = map[string]bool{
	"tumbling": true, "tumble": true, "tumblingwindow": true,
	"hopping": true, "hop": true, "hoppingwindow": true,
	"session": true, "sessionwindow": true,
	"slidingwindow": true, "countwindow": true, // eKuiper's, refused by name
}

// sessionAlias stands for the keyword SESSION as a window call.
const sessionAlias = "sessio_"

// peeled is a statement with the continuous-query additions taken off.
type peeled struct {
	sql    string        // what Vitess parses: the statement, blanked where peeled
	create *createClause // CREATE STREAM ... AS, or nil
	emit   string        // "", "changes" or "final"
	emitAt Pos
	// fullAt is where FULL [OUTER] JOIN was written: Vitess parses MySQL,
	// which has no FULL JOIN, so FULL is rewritten LEFT (same length).
	fullAt []Pos
}

// createClause is the prefix of a persistent query: CREATE STREAM name
// [WITH (...)] AS, INSERT INTO name, or CREATE VIEW name AS.
type createClause struct {
	kind    string // KindStream, KindInsert or KindView
	name    string
	namePos Pos
	with    []withOption
}

// withOption is one key = value of WITH (...).
type withOption struct {
	key    string
	value  any // string, int64 or bool
	pos    Pos // of the key
	valPos Pos // of the value
}

// peel recognises the additions in sig (the significant tokens of src,
// without trailing semicolons).
func peel(src *source, sig []token) (*peeled, error) {
	buf := []byte(src.sql)
	blank := func(from, to int) {
		for i := from; i < to; i++ {
			if buf[i] != '\n' {
				buf[i] = ' '
			}
		}
	}
	out := &peeled{}
	if kind := persistentKind(sig); kind != "" {
		c, n, err := peelCreate(src, sig, kind)
		if err != nil {
			return nil, err
		}
		out.create = c
		blank(sig[0].start, sig[n-1].end)
		sig = sig[n:]
	}
	// EMIT CHANGES|FINAL ends the statement, or comes before LIMIT n
	// (ksqlDB's order).
	end := len(sig)
	if n := len(sig); n >= 4 && sig[n-2].typ == sqlparser.LIMIT && sig[n-1].typ == sqlparser.INTEGRAL {
		end = n - 2
	}
	if n := end; n >= 2 && sig[n-2].typ == sqlparser.ID && strings.EqualFold(sig[n-2].text, "emit") {
		mode := strings.ToLower(sig[n-1].text)
		if mode != "changes" && mode != "final" {
			return nil, errorf(src.pos(sig[n-1].start), "EMIT must be followed by CHANGES or FINAL, not %q", sig[n-1].text)
		}
		out.emit, out.emitAt = mode, src.pos(sig[n-2].start)
		blank(sig[n-2].start, sig[n-1].end)
		sig = append(sig[:n-2:n-2], sig[n:]...)
	}
	for i := 0; i+1 < len(sig); i++ {
		if sig[i].typ == sqlparser.FULL && (sig[i+1].typ == sqlparser.JOIN || sig[i+1].typ == sqlparser.OUTER && i+2 < len(sig) && sig[i+2].typ == sqlparser.JOIN) {
			copy(buf[sig[i].start:], "LEFT")
			out.fullAt = append(out.fullAt, src.pos(sig[i].start))
			continue
		}
	}
	for i := 0; i+1 < len(sig); i++ {
		name := strings.ToLower(sig[i].text)
		if name == "session" && sig[i].typ != sqlparser.ID && sig[i+1].typ == '(' {
			// SESSION is a MySQL keyword: the call is renamed in place
			// to a name of the same length that Vitess parses.
			copy(buf[sig[i].start:], sessionAlias)
		} else if sig[i].typ != sqlparser.ID || !windowFuncs[name] || sig[i+1].typ != '(' {
			continue
		}
		depth := 0
	call:
		for j := i + 1; j < len(sig); j++ {
			switch sig[j].typ {
			case '(':
				depth++
			case ')':
				depth--
			case sqlparser.INTERVAL:
				if err := peelInterval(src, sig, j, buf); err != nil {
					return nil, err
				}
			}
			if depth == 0 {
				i = j
				break call
			}
		}
	}
	out.sql = string(buf)
	return out, nil
}

// peelInterval replaces INTERVAL n UNIT at sig[i] by 'n unit' in buf.
func peelInterval(src *source, sig []token, i int, buf []byte) error {
	at := src.pos(sig[i].start)
	if i+2 >= len(sig) || sig[i+1].typ != sqlparser.INTEGRAL || !nameToken(sig[i+2]) {
		return errorf(at, "a window size is written INTERVAL <whole number> <unit>, e.g. INTERVAL 10 SECOND")
	}
	lit := fmt.Sprintf("'%s %s'", sig[i+1].text, strings.ToLower(sig[i+2].text))
	from, to := sig[i].start, sig[i+2].end
	if len(lit) > to-from {
		return errorf(at, "a window size is written INTERVAL <whole number> <unit>, e.g. INTERVAL 10 SECOND")
	}
	copy(buf[from:], lit)
	for k := from + len(lit); k < to; k++ {
		if buf[k] != '\n' {
			buf[k] = ' '
		}
	}
	return nil
}

// Kinds of persistent queries: CREATE STREAM ... AS SELECT (a new
// output stream), INSERT INTO stream SELECT (an existing one), CREATE
// VIEW ... AS SELECT (a table kept up to date in memory).
const (
	KindStream = "stream"
	KindInsert = "insert"
	KindView   = "view"
)

// persistentKind recognises the start of a persistent query's statement.
// INSERT INTO is one only when a SELECT, WITH (or a column list, refused
// by peelCreate) follows the stream's name: INSERT ... VALUES stays an
// ordinary, refused, statement.
func persistentKind(sig []token) string {
	switch {
	case len(sig) >= 2 && sig[0].typ == sqlparser.CREATE && strings.EqualFold(sig[1].text, "stream"):
		return KindStream
	case len(sig) >= 2 && sig[0].typ == sqlparser.CREATE && strings.EqualFold(sig[1].text, "view"):
		return KindView
	case len(sig) >= 4 && sig[0].typ == sqlparser.INSERT && sig[1].typ == sqlparser.INTO && (sig[3].typ == sqlparser.SELECT || sig[3].typ == '(' || sig[3].typ == sqlparser.WITH):
		return KindInsert
	}
	return ""
}

// peelCreate reads CREATE STREAM name [WITH (k = v, ...)] AS, CREATE VIEW
// name AS or INSERT INTO name and returns it with the number of tokens it
// spans.
func peelCreate(src *source, sig []token, kind string) (*createClause, int, error) {
	at := func(i int) Pos {
		if i < len(sig) {
			return src.pos(sig[i].start)
		}
		return src.pos(len(strings.TrimRight(src.sql, " \t\r\n;")))
	}
	want, what := "CREATE STREAM <name> [WITH (<option> = <value>, ...)] AS SELECT ...", "a stream name"
	switch kind {
	case KindView:
		want, what = "CREATE VIEW <name> AS SELECT ... GROUP BY ...", "a view name"
	case KindInsert:
		want = "INSERT INTO <stream> [WITH (late = TRUE)] SELECT ..."
	}
	if len(sig) < 3 || !nameToken(sig[2]) {
		return nil, 0, &Error{Code: CodeSyntax, Message: "syntax error: expected " + what + ": " + want, Line: at(2).Line, Column: at(2).Column}
	}
	c := &createClause{kind: kind, name: sig[2].text, namePos: at(2)}
	i := 3
	if kind == KindInsert && sig[i].typ == '(' {
		return nil, 0, errorf(at(i), "INSERT INTO <stream> SELECT ... takes no column list: the output records' fields are the select list's names (use AS to rename)")
	}
	if i < len(sig) && sig[i].typ == sqlparser.WITH && kind == KindView {
		return nil, 0, errorf(at(i), "a view takes no WITH options: it is kept in memory, not written to a stream")
	}
	if i < len(sig) && sig[i].typ == sqlparser.WITH {
		i++
		if i >= len(sig) || sig[i].typ != '(' {
			return nil, 0, syntaxAt(at(i), "expected ( after WITH: "+want)
		}
		for i++; ; i++ {
			if i+2 >= len(sig) || !nameToken(sig[i]) || sig[i+1].typ != '=' {
				return nil, 0, syntaxAt(at(i), "expected <option> = <value> in WITH (...)")
			}
			opt := withOption{key: strings.ToLower(sig[i].text), pos: at(i), valPos: at(i + 2)}
			v := sig[i+2]
			switch {
			case v.typ == sqlparser.STRING:
				opt.value = v.text
			case v.typ == sqlparser.INTEGRAL:
				var n int64
				if _, err := fmt.Sscan(v.text, &n); err != nil {
					return nil, 0, syntaxAt(at(i+2), "bad number "+v.text)
				}
				opt.value = n
			case v.typ == sqlparser.TRUE || v.typ == sqlparser.FALSE:
				opt.value = v.typ == sqlparser.TRUE
			default:
				return nil, 0, syntaxAt(at(i+2), "an option value is a string, a whole number, TRUE or FALSE")
			}
			c.with = append(c.with, opt)
			i += 3
			if i < len(sig) && sig[i].typ == ',' {
				continue
			}
			if i < len(sig) && sig[i].typ == ')' {
				i++
				break
			}
			return nil, 0, syntaxAt(at(i), "expected , or ) in WITH (...)")
		}
	}
	if kind == KindInsert {
		if i >= len(sig) || sig[i].typ != sqlparser.SELECT {
			return nil, 0, syntaxAt(at(i), "expected SELECT: "+want)
		}
		return c, i, nil
	}
	if i >= len(sig) || sig[i].typ != sqlparser.AS {
		return nil, 0, syntaxAt(at(i), "expected AS: "+want)
	}
	if i+1 >= len(sig) {
		return nil, 0, syntaxAt(at(i+1), "expected SELECT after AS: "+want)
	}
	return c, i + 1, nil
}

func syntaxAt(p Pos, msg string) *Error {
	return &Error{Code: CodeSyntax, Message: "syntax error: " + msg, Line: p.Line, Column: p.Column}
}

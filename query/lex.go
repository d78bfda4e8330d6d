package query

import (
	"strings"
	"unicode/utf8"

	"vitess.io/vitess/go/vt/sqlparser"
)

// token is one lexical token of the SQL text with its byte range.
type token struct {
	typ        int
	text       string
	start, end int // byte offsets, end exclusive
}

// source is the SQL text of one statement with its tokens. It maps byte
// offsets to line/column and finds where names appear, since the parser's
// tree carries no positions.
type source struct {
	sql string
	// user is the text as the user wrote it, when sql is that text with
	// parts blanked out (peel.go; same byte length): positions count
	// the user's characters.
	user   string
	toks   []token
	cursor int // token index after the last name found (names are mostly looked up in text order)
	// fullAt is where FULL JOIN was written (peel rewrites it LEFT JOIN).
	fullAt []Pos
}

// newSource tokenizes sql with the parser's own tokenizer (so strings,
// quoted identifiers and comments are recognised exactly as the parser
// does). Tokenizing stops at the first lexical error.
func newSource(p *sqlparser.Parser, sql string) *source {
	src := &source{sql: sql}
	tkn := p.NewStringTokenizer(sql)
	for {
		before := tkn.Pos
		typ, val := tkn.Scan()
		if typ == 0 || tkn.Pos <= before && typ != sqlparser.LEX_ERROR {
			break
		}
		start := before
		for start < tkn.Pos && start < len(sql) && isSpace(sql[start]) {
			start++
		}
		end := min(tkn.Pos, len(sql))
		src.toks = append(src.toks, token{typ: typ, text: val, start: start, end: end})
		if typ == sqlparser.LEX_ERROR {
			break
		}
	}
	return src
}

func isSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'
}

// pos converts a byte offset into a 1-based line and column (columns count
// characters, not bytes).
func (s *source) pos(offset int) Pos {
	text := s.sql
	if s.user != "" {
		text = s.user
	}
	offset = max(0, min(offset, len(text)))
	line, lineStart := 1, 0
	for i := 0; i < offset; i++ {
		if text[i] == '\n' {
			line++
			lineStart = i + 1
		}
	}
	return Pos{Line: line, Column: utf8.RuneCountInString(text[lineStart:offset]) + 1}
}

// significant reports tokens that are neither comments nor errors.
func significant(t token) bool { return t.typ != sqlparser.COMMENT && t.typ != sqlparser.LEX_ERROR }

// nameToken reports tokens that can spell a name: identifiers and keywords.
func nameToken(t token) bool {
	return t.typ == sqlparser.ID || sqlparser.KeywordString(t.typ) != ""
}

// findName returns the position of the first occurrence, preferably at or
// after the cursor, of the dotted name parts (e.g. "t", "col"), compared
// without regard to case. It returns the zero Pos if there is none.
func (s *source) findName(parts ...string) Pos {
	match := func(i int) int {
		j := i
		for k, part := range parts {
			if k > 0 {
				if j >= len(s.toks) || s.toks[j].typ != '.' {
					return -1
				}
				j++
			}
			if j >= len(s.toks) || !nameToken(s.toks[j]) || !strings.EqualFold(s.toks[j].text, part) {
				return -1
			}
			j++
		}
		return j
	}
	for _, from := range [2]int{s.cursor, 0} {
		for i := from; i < len(s.toks); i++ {
			if j := match(i); j >= 0 {
				s.cursor = j
				return s.pos(s.toks[i].start)
			}
		}
	}
	return Pos{}
}

// findToken returns the position of the first token, preferably at or after
// the cursor, with the given type (and text, if not empty).
func (s *source) findToken(typ int, text string) Pos {
	for _, from := range [2]int{s.cursor, 0} {
		for i := from; i < len(s.toks); i++ {
			t := s.toks[i]
			if t.typ == typ && (text == "" || strings.EqualFold(t.text, text)) {
				s.cursor = i + 1
				return s.pos(t.start)
			}
		}
	}
	return Pos{}
}

// findKeyword returns the position of the first token spelled kw (any case),
// searching the whole text.
func (s *source) findKeyword(kw string) Pos {
	for _, t := range s.toks {
		if significant(t) && t.typ != sqlparser.STRING && strings.EqualFold(t.text, kw) {
			return s.pos(t.start)
		}
	}
	return Pos{}
}

// findSubquery returns the position of the first SELECT that opens a
// subquery (right after a '('), or of the first SELECT if none does.
func (s *source) findSubquery() Pos {
	prev := -1 // the previous significant token
	for i, t := range s.toks {
		if !significant(t) {
			continue
		}
		if prev >= 0 && s.toks[prev].typ == '(' && strings.EqualFold(t.text, "select") {
			return s.pos(t.start)
		}
		prev = i
	}
	return s.findKeyword("select")
}

// tokenEndingAt returns the index of the significant token that ends at
// offset end, or -1.
func (s *source) tokenEndingAt(end int) int {
	for i, t := range s.toks {
		if t.end == end && t.typ != sqlparser.COMMENT {
			return i
		}
	}
	return -1
}

// SplitStatements splits text into complete statements, each ending with a
// ';' outside strings, quoted names and comments (the ';' is kept), and
// returns what follows the last one (an incomplete statement, possibly
// only blanks). The interactive shell uses it to know when a statement is
// complete.
func SplitStatements(text string) (stmts []string, rest string) {
	p, err := sqlparser.New(sqlparser.Options{})
	if err != nil {
		return nil, text
	}
	tkn := p.NewStringTokenizer(text)
	start, content := 0, false
	for {
		before := tkn.Pos
		typ, _ := tkn.Scan()
		if typ == sqlparser.LEX_ERROR {
			// An unterminated string or comment: it goes on in the next line.
			return stmts, text[start:]
		}
		if typ == 0 || tkn.Pos <= before {
			break
		}
		switch typ {
		case ';':
			if content { // skip empty and comment-only statements
				stmts = append(stmts, text[start:tkn.Pos])
			}
			start, content = tkn.Pos, false
		case sqlparser.COMMENT:
		default:
			content = true
		}
	}
	if !content {
		return stmts, ""
	}
	return stmts, text[start:]
}

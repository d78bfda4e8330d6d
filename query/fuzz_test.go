package query

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/mqstream/mqstream/internal/testutil"
	"github.com/mqstream/mqstream/streams"
)

// badSQL is a corpus of statements that must fail with a positioned error.
var badSQL = []string{
	"SELEC 1", "SELECT", "SELECT * FROM", "SELECT * FROM t WHERE", "SELECT (1", "SELECT 1)", "SELECT 'x", "SELECT `x",
	"SELECT * FROM t WHERE a = = 1", "SELECT a b c FROM t", "SELECT * FROM t ORDER", "SELECT * FROM t LIMIT",
	"SELECT * FROM t LIMIT 1,", "SELECT * FROM t GROUP", "SELECT count( FROM t", "SELECT * FROM t JOIN", "SELECT * FROM t LEFT JOIN u",
	"SELECT * FROM t WHERE a IN ()", "SELECT CASE WHEN END", "SELECT 1 +", "SELECT * FROM t t2 t3", "SELECT lag FROM groups",
	"SELECT * FROM groups WHERE group = 'x'", "SELECT 1; SELECT 2", "SELECT\n\t*\nFROM\n\tt\nWHERE\n\t(", "/* unterminated",
	"SELECT * FROM jobs WHERE _payload->>", "SELECT x FROM jobs", "SELECT * FROM nope", "SELECT 'a' + 1",
	"SELECT _offset FROM jobs ORDER BY 3", "SELECT * FROM jobs LIMIT -1", "SELECT sum(sum(_offset)) FROM jobs",
	"SELECT * FROM jobs, jobs", "SELECT json_extract(_payload, 'x') FROM jobs", "SELECT nofunc()", "UPDATE jobs SET a = 1",
	"SELECT * FROM jobs WHERE _timestamp > 'soon'", "SELECT j.x FROM jobs j", "SELECT * FROM (SELECT 1) s",
}

// TestBadSQLCorpus: every bad statement gives one clear error with a
// position and none panics.
func TestBadSQLCorpus(t *testing.T) {
	n := startNode(t, nodeOptions{rules: fixtureRules})
	fillFixture(n)
	for _, sql := range badSQL {
		qe := n.queryErr(sql)
		if qe.Line < 1 || qe.Column < 1 || qe.Message == "" || qe.Code != CodeSyntax && qe.Code != CodeSQL {
			t.Errorf("%q: error without a position or code: %+v", sql, qe)
			continue
		}
		lines := strings.Split(sql, "\n")
		if qe.Line > len(lines) || qe.Column > utf8.RuneCountInString(lines[qe.Line-1])+1 {
			t.Errorf("%q: position %d:%d is outside the text", sql, qe.Line, qe.Column)
		}
	}
}

// FuzzParse checks the front end (tokenizer, parser, conversion, error
// positions) never panics and reports errors inside the text.
func FuzzParse(f *testing.F) {
	for _, s := range badSQL {
		f.Add(s)
	}
	files, _ := filepath.Glob("testdata/*.sql")
	for _, file := range files {
		b, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		for _, c := range parseGolden(nil, string(b)) {
			f.Add(c.sql)
		}
	}
	p, err := newParser()
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, sql string) {
		stmt, _, err := p.parse(sql)
		if err == nil {
			if stmt == nil {
				t.Fatalf("%q: no statement and no error", sql)
			}
			return
		}
		qe, ok := err.(*Error)
		if !ok {
			t.Fatalf("%q: error %T %v is not *Error", sql, err, err)
		}
		if qe.Message == "" || qe.Code != CodeSyntax && qe.Code != CodeSQL {
			t.Fatalf("%q: %+v", sql, qe)
		}
		if qe.Line > strings.Count(sql, "\n")+1 || qe.Line < 0 || qe.Column < 0 {
			t.Fatalf("%q: position %d:%d outside the text", sql, qe.Line, qe.Column)
		}
	})
}

func TestSplitStatements(t *testing.T) {
	cases := []struct {
		in   string
		want []string
		rest string
	}{
		{"SELECT 1;", []string{"SELECT 1;"}, ""},
		{"SELECT 1; SELECT 2;\n", []string{"SELECT 1;", " SELECT 2;"}, ""},
		{"SELECT ';' AS semi", nil, "SELECT ';' AS semi"},
		{"SELECT 'a;\nb';", []string{"SELECT 'a;\nb';"}, ""},
		{"SELECT 1 -- a comment; still\n", nil, "SELECT 1 -- a comment; still\n"},
		{"-- only a comment\n;", nil, ""},
		{";;", nil, ""},
		{"/* open comment; ", nil, "/* open comment; "},
		{"SELECT `a;b` FROM t;  SELECT", []string{"SELECT `a;b` FROM t;"}, "  SELECT"},
	}
	for _, c := range cases {
		got, rest := SplitStatements(c.in)
		if !slices.Equal(got, c.want) || rest != c.rest {
			t.Errorf("SplitStatements(%q) = %q, %q; want %q, %q", c.in, got, rest, c.want, c.rest)
		}
	}
}

// FuzzQuery runs arbitrary statements through the whole engine (parse,
// plan, execute) over a small store: it must answer or return an *Error,
// never panic. Records are appended directly: this is about the engine,
// not ingest.
func FuzzQuery(f *testing.F) {
	for _, s := range badSQL {
		f.Add(s)
	}
	files, _ := filepath.Glob("testdata/*.sql")
	for _, file := range files {
		b, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		for _, c := range parseGolden(nil, string(b)) {
			f.Add(c.sql)
		}
	}
	store, err := streams.Open(streams.Options{Dir: f.TempDir(), AutoCreate: true, Sync: streams.SyncNone, Logger: testutil.Logger()})
	if err != nil {
		f.Fatal(err)
	}
	defer store.Close()
	ctx := context.Background()
	for i, p := range []string{`{"sensor":"s1","temp":21.5,"unit":"C"}`, `{"sensor":"s2","temp":"n/a","tags":[1,{"a":null}]}`,
		`not json`, `[1,2]`, `{"id":"s1","site":"north","floor":1}`, `{"sensor":"s1","temp":9223372036854775807}`, ``} {
		for _, stream := range []string{"temperatures", "devices", "jobs"} {
			if _, err := store.Append(ctx, stream, streams.Record{Topic: fmt.Sprintf("%s/%d", stream, i), Payload: []byte(p), ClientID: "c"}); err != nil {
				f.Fatal(err)
			}
		}
	}
	engine, err := New(Options{Store: store, MaxRowsScanned: 10_000, Timeout: 5 * time.Second, Logger: testutil.Logger()})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, sql string) {
		res, err := engine.Query(ctx, sql)
		if err != nil {
			if _, ok := err.(*Error); !ok {
				t.Fatalf("%q: error %T %v is not *Error", sql, err, err)
			}
			return
		}
		for _, r := range res.Rows {
			if len(r) != len(res.Columns) {
				t.Fatalf("%q: row of %d values for %d columns", sql, len(r), len(res.Columns))
			}
		}
		if _, err := json.Marshal(res.Rows); err != nil {
			t.Fatalf("%q: rows do not encode as JSON: %v", sql, err)
		}
	})
}

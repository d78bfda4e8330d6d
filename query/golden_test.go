package query

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mqstream/mqstream/topic"
)

var rewrite = flag.Bool("rewrite", false, "rewrite the expected output of the golden files in testdata/")

// fixtureRules map sensors/<id>/temperature to the stream temperatures;
// everything else goes to the stream named by the first topic level.
var fixtureRules = []topic.Rule{{Filter: "sensors/+/temperature", Stream: "temperatures"}}

// fillFixture publishes the golden tests' data through MQTT, one message
// at a time so offsets follow this order:
//
//	temperatures  0 s1 21.5 C | 1 s2 31 | 2 s1 22.5 C | 3 s3 35.5 C roof,south | 4 s2 29
//	              5 s4 "n/a"  | 6 s1 30.5 C | 7 "not json" (QoS 0)
//	devices       0 s1 north 1 | 1 s2 south 2 | 2 s3 north 3 | 3 s5 east
//	jobs          0 "job 1" resize | 1 "job 2" thumb | 2 "job 3" resize
func fillFixture(n *node) {
	n.publish("s1", msg{"sensors/s1/temperature", `{"sensor":"s1","temp":21.5,"unit":"C"}`, 1})
	n.publish("s2", msg{"sensors/s2/temperature", `{"sensor":"s2","temp":31}`, 1})
	n.publish("s1", msg{"sensors/s1/temperature", `{"sensor":"s1","temp":22.5,"unit":"C"}`, 1})
	n.publish("s3", msg{"sensors/s3/temperature", `{"sensor":"s3","temp":35.5,"unit":"C","tags":["roof","south"]}`, 1})
	n.publish("s2", msg{"sensors/s2/temperature", `{"sensor":"s2","temp":29}`, 1})
	n.publish("s4", msg{"sensors/s4/temperature", `{"sensor":"s4","temp":"n/a"}`, 1})
	n.publish("s1", msg{"sensors/s1/temperature", `{"sensor":"s1","temp":30.5,"unit":"C"}`, 1})
	n.publish("s9", msg{"sensors/s9/temperature", `not json`, 0})
	n.publish("registry",
		msg{"devices/s1", `{"id":"s1","site":"north","floor":1}`, 1},
		msg{"devices/s2", `{"id":"s2","site":"south","floor":2}`, 1},
		msg{"devices/s3", `{"id":"s3","site":"north","floor":3}`, 1},
		msg{"devices/s5", `{"id":"s5","site":"east"}`, 1})
	n.publish("worker", msg{"jobs/resize", "job 1", 1}, msg{"jobs/thumb", "job 2", 1}, msg{"jobs/resize", "job 3", 1})
}

// TestGolden runs the statements of testdata/*.sql over the fixture and
// compares each answer with the expected output written below it. A case
// is one or more lines starting with "> " (the SQL), then the expected
// output up to a blank line: a header "name:type | ...", one line per row,
// or "error <code> <line>:<column>: <message>". Run with -rewrite to
// regenerate the expected output (then review the diff).
func TestGolden(t *testing.T) {
	n := startNode(t, nodeOptions{rules: fixtureRules})
	fillFixture(n)
	files, err := filepath.Glob("testdata/*.sql")
	if err != nil || len(files) == 0 {
		t.Fatalf("no golden files: %v", err)
	}
	for _, file := range files {
		t.Run(strings.TrimSuffix(filepath.Base(file), ".sql"), func(t *testing.T) {
			runGoldenFile(t, n, file)
		})
	}
}

type goldenCase struct {
	sql, want string
	comments  []string
}

func parseGolden(t *testing.T, text string) []goldenCase {
	var cases []goldenCase
	var cur *goldenCase
	var pending []string
	flush := func() {
		if cur != nil {
			cur.want = strings.TrimRight(cur.want, "\n")
			cases = append(cases, *cur)
			cur = nil
		}
	}
	for _, line := range strings.Split(text, "\n") {
		switch {
		case strings.HasPrefix(line, "> "):
			if cur != nil && cur.want != "" {
				flush()
			}
			if cur == nil {
				cur = &goldenCase{comments: pending}
				pending = nil
			}
			cur.sql += strings.TrimPrefix(line, "> ") + "\n"
		case strings.TrimSpace(line) == "":
			flush()
		case strings.HasPrefix(line, "#") && cur == nil:
			pending = append(pending, line)
		case cur != nil:
			cur.want += line + "\n"
		default:
			t.Fatalf("golden file: line %q is outside a case", line)
		}
	}
	flush()
	return cases
}

func runGoldenFile(t *testing.T, n *node, file string) {
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	cases := parseGolden(t, string(b))
	var out strings.Builder
	for _, c := range cases {
		got := answer(n, c.sql)
		if !*rewrite && got != c.want {
			t.Errorf("%s\n--- got:\n%s\n--- want:\n%s", strings.TrimSpace(c.sql), got, c.want)
		}
		for _, cm := range c.comments {
			out.WriteString(cm + "\n")
		}
		for _, l := range strings.Split(strings.TrimRight(c.sql, "\n"), "\n") {
			out.WriteString("> " + l + "\n")
		}
		out.WriteString(got + "\n\n")
	}
	if *rewrite {
		if err := os.WriteFile(file, []byte(strings.TrimRight(out.String(), "\n")+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// answer runs sql and renders the result or the error.
func answer(n *node, sql string) string {
	res, err := n.engine.Query(context.Background(), sql)
	if err != nil {
		var qe *Error
		if !errors.As(err, &qe) {
			return fmt.Sprintf("error (not *query.Error) %T: %v", err, err)
		}
		return fmt.Sprintf("error %s %d:%d: %s", qe.Code, qe.Line, qe.Column, qe.Message)
	}
	return strings.TrimRight(render(res), "\n")
}

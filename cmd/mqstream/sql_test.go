package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/creack/pty"
	paho3 "github.com/eclipse/paho.mqtt.golang"
	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/mqstream/mqstream/internal/testutil"
	"github.com/mqstream/mqstream/streams"
)

// sqlServer starts a node on 127.0.0.1, publishes a few records over MQTT
// and returns the node's HTTP address (which serves POST /v1/query).
func sqlServer(t *testing.T) string {
	t.Helper()
	n := startTestNode(t)
	c := paho3.NewClient(paho3.NewClientOptions().AddBroker("tcp://" + n.MQTTAddr()).SetClientID("sensor-1").
		SetAutoReconnect(false).SetOrderMatters(true))
	if tok := c.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("connect: %v", tok.Error())
	}
	defer c.Disconnect(0)
	for _, m := range [][2]string{
		{"temps/a", `{"sensor":"a","temp":21.5}`},
		{"temps/b", `{"sensor":"b","temp":31,"note":"line1\nline2"}`},
		{"temps/a", `{"sensor":"a","temp":33.25}`},
		{"jobs/x", `job, "quoted"`},
	} {
		if tok := c.Publish(m[0], 1, false, m[1]); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
			t.Fatalf("publish: %v", tok.Error())
		}
	}
	return "http://" + n.HTTPAddr()
}

// runSQLCmd runs `mqstream sql args...` under a root command that has the
// --server flag, as main's does.
func runSQLCmd(t *testing.T, stdin io.Reader, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	root := &cobra.Command{Use: "mqstream", SilenceUsage: true, SilenceErrors: true}
	root.PersistentFlags().String("server", "", "")
	root.AddCommand(newSQLCmd())
	var out, errOut bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&errOut)
	if stdin != nil {
		root.SetIn(stdin)
	}
	root.SetArgs(append([]string{"sql"}, args...))
	err = root.ExecuteContext(context.Background())
	return out.String(), errOut.String(), err
}

var summaryRE = regexp.MustCompile(`\((\d+) rows?, (\d+) scanned, [0-9.]+ ms\)\n$`)

func TestSQLExecuteTable(t *testing.T) {
	url := sqlServer(t)
	out, _, err := runSQLCmd(t, nil, "--server", url, "-e", "SELECT _offset, sensor, temp, note FROM temps ORDER BY temp DESC")
	if err != nil {
		t.Fatal(err)
	}
	want := `+---------+--------+-------+--------------+
| _offset | sensor | temp  | note         |
+---------+--------+-------+--------------+
|       2 | a      | 33.25 | NULL         |
|       1 | b      |    31 | line1\nline2 |
|       0 | a      |  21.5 | NULL         |
+---------+--------+-------+--------------+
`
	if !strings.HasPrefix(out, want) || !summaryRE.MatchString(out) || !strings.Contains(out, "(3 rows, 3 scanned") {
		t.Fatalf("output:\n%s\nwant:\n%s(3 rows, 3 scanned, ... ms)", out, want)
	}
}

func TestSQLExecuteCSVAndJSON(t *testing.T) {
	url := sqlServer(t)
	out, _, err := runSQLCmd(t, nil, "--server", url, "-o", "csv", "-e", "SELECT jobs._offset, jobs._payload, sensor FROM jobs LEFT JOIN temps ON temps._offset = jobs._offset;")
	if err != nil {
		t.Fatal(err)
	}
	if want := "_offset,_payload,sensor\n0,\"job, \"\"quoted\"\"\",a\n"; out != want {
		t.Fatalf("csv:\n%q\nwant\n%q", out, want)
	}
	out, _, err = runSQLCmd(t, nil, "--server", url, "-o", "json", "-e", "SELECT sensor, count(*) AS n, max(temp) AS hi FROM temps GROUP BY sensor ORDER BY sensor")
	if err != nil {
		t.Fatal(err)
	}
	want := "[\n  {\"sensor\": \"a\", \"n\": 2, \"hi\": 33.25},\n  {\"sensor\": \"b\", \"n\": 1, \"hi\": 31}\n]\n"
	if out != want {
		t.Fatalf("json:\n%s\nwant\n%s", out, want)
	}
	if _, _, err := runSQLCmd(t, nil, "--server", url, "-o", "yaml", "-e", "SELECT 1"); err == nil || !strings.Contains(err.Error(), "table, json or csv") {
		t.Fatalf("bad -o: %v", err)
	}
	// The statement as the argument, as with -e; not both, not two.
	out, _, err = runSQLCmd(t, nil, "--server", url, "-o", "csv", "SELECT count(*) AS n FROM temps")
	if err != nil || out != "n\n3\n" {
		t.Fatalf("statement as the argument: %q %v", out, err)
	}
	if _, _, err := runSQLCmd(t, nil, "--server", url, "-e", "SELECT 1", "SELECT 2"); err == nil || !strings.Contains(err.Error(), "give one of them") {
		t.Fatalf("argument and -e: %v", err)
	}
	if _, _, err := runSQLCmd(t, nil, "--server", url, "SELECT 1", "SELECT 2"); err == nil || !strings.Contains(err.Error(), "accepts at most 1 arg") {
		t.Fatalf("two arguments: %v", err)
	}
}

func TestSQLErrorsArePositioned(t *testing.T) {
	url := sqlServer(t)
	_, _, err := runSQLCmd(t, nil, "--server", url, "-e", "SELECT sensr FROM temps")
	if err == nil || !strings.Contains(err.Error(), `unknown column "sensr" (did you mean sensor?)`) || !strings.Contains(err.Error(), "(line 1, column 8)") {
		t.Fatalf("unknown column: %v", err)
	}
	_, _, err = runSQLCmd(t, nil, "--server", "127.0.0.1:1", "-e", "SELECT 1")
	if err == nil || !strings.Contains(err.Error(), "cannot reach") {
		t.Fatalf("no server: %v", err)
	}
}

// TestSQLScriptFromStdin: statements read from a pipe, several per line or
// spread over lines, the last one without ';'; the first error stops.
func TestSQLScriptFromStdin(t *testing.T) {
	url := sqlServer(t)
	script := "SELECT count(*) AS n FROM temps; SELECT 'x' AS a;\n" +
		"-- a comment;\n" +
		"SELECT sensor\n  FROM temps\n  WHERE temp > 30\n  ORDER BY sensor;\n" +
		"SELECT _payload FROM jobs"
	out, _, err := runSQLCmd(t, strings.NewReader(script), "--server", url, "-o", "csv")
	if err != nil {
		t.Fatal(err)
	}
	if want := "n\n3\na\nx\nsensor\na\nb\n_payload\n\"job, \"\"quoted\"\"\"\n"; out != want {
		t.Fatalf("script output:\n%q\nwant\n%q", out, want)
	}
	out, _, err = runSQLCmd(t, strings.NewReader("SELECT 1 AS one;\nSELECT * FROM nowhere;\nSELECT 2 AS two;\n"), "--server", url, "-o", "csv")
	if err == nil || !strings.Contains(err.Error(), `unknown table "nowhere"`) || out != "one\n1\n" {
		t.Fatalf("script with an error: out %q, err %v", out, err)
	}
}

// TestSQLInteractiveSession drives the shell's terminal line editor with
// keystrokes: a multi-line statement, an error (shown with a caret, the
// session goes on), history kept in a file and recalled with the up arrow
// in a second session.
func TestSQLInteractiveSession(t *testing.T) {
	url := sqlServer(t)
	histFile := filepath.Join(t.TempDir(), "history")
	session := func(keys string) string {
		t.Helper()
		c := &apiClient{base: url, http: &http.Client{Timeout: 30 * time.Second}}
		var screen bytes.Buffer
		tty := struct {
			io.Reader
			io.Writer
		}{strings.NewReader(keys), &screen}
		hist, err := openSQLHistory(histFile)
		if err != nil {
			t.Fatal(err)
		}
		sh := &sqlShell{client: c, format: "table", out: &screen, errOut: &screen}
		if err := sh.interactive(context.Background(), term.NewTerminal(tty, ""), hist); err != nil {
			t.Fatal(err)
		}
		return screen.String()
	}

	screen := session("SELECT sensor, count(*) AS n\rFROM temps\rGROUP BY sensor ORDER BY n DESC;\r" +
		"SELECT nope FROM temps;\r" +
		"SELECT count(*) AS jobs FROM jobs;\r" +
		"exit\r")
	for _, want := range []string{
		"mqstream> ", "       -> ",
		"| a      | 2 |", "| b      | 1 |", "(2 rows, 3 scanned",
		"  SELECT nope FROM temps;\r\n         ^\r\n", `ERROR: unknown column "nope"`,
		"|    1 |", "(1 row, 1 scanned",
	} {
		if !strings.Contains(screen, want) {
			t.Errorf("screen lacks %q:\n%s", want, screen)
		}
	}
	b, err := os.ReadFile(histFile)
	if err != nil {
		t.Fatal(err)
	}
	if want := "SELECT sensor, count(*) AS n\nFROM temps\nGROUP BY sensor ORDER BY n DESC;\nSELECT nope FROM temps;\nSELECT count(*) AS jobs FROM jobs;\nexit\n"; string(b) != want {
		t.Fatalf("history file:\n%q\nwant\n%q", b, want)
	}

	// Up arrow twice: "exit" then the jobs count; Enter runs it; Ctrl-D leaves.
	screen = session("\x1b[A\x1b[A\r\x04")
	if !strings.Contains(screen, "| jobs |") || strings.Count(screen, "(1 row, 1 scanned") != 1 {
		t.Fatalf("recalled statement did not run:\n%s", screen)
	}
}

func TestSQLHistoryIsBounded(t *testing.T) {
	path := filepath.Join(t.TempDir(), "h")
	var lines strings.Builder
	for i := 0; i < sqlHistoryMax+50; i++ {
		fmt.Fprintf(&lines, "SELECT %d;\n", i)
	}
	if err := os.WriteFile(path, []byte(lines.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	h, err := openSQLHistory(path)
	if err != nil {
		t.Fatal(err)
	}
	if h.Len() != sqlHistoryMax || h.At(0) != fmt.Sprintf("SELECT %d;", sqlHistoryMax+49) || h.At(h.Len()-1) != "SELECT 50;" {
		t.Fatalf("len %d, newest %q, oldest %q", h.Len(), h.At(0), h.At(h.Len()-1))
	}
	h.Add("SELECT 50;")
	h.Add("SELECT 50;")
	if h.Len() != sqlHistoryMax || h.At(0) != "SELECT 50;" || h.At(1) != fmt.Sprintf("SELECT %d;", sqlHistoryMax+49) {
		t.Fatalf("after adds: len %d, %q %q", h.Len(), h.At(0), h.At(1))
	}
}

// TestSQLShellOnAPseudoTerminal runs `mqstream sql` with its standard
// input and output on a pseudo-terminal, as a person at a terminal would:
// raw mode, line editing (a typo fixed with backspace), a multi-line
// statement, and exit.
func TestSQLShellOnAPseudoTerminal(t *testing.T) {
	url := sqlServer(t)
	t.Setenv("MQSTREAM_HISTORY", filepath.Join(t.TempDir(), "history"))
	ptmx, tty, err := pty.Open()
	if err != nil {
		t.Skipf("no pseudo-terminal: %v", err)
	}
	defer ptmx.Close()
	defer tty.Close()
	if err := pty.Setsize(ptmx, &pty.Winsize{Rows: 40, Cols: 120}); err != nil {
		t.Fatal(err)
	}
	var screen testutil.Buffer
	go io.Copy(&screen, ptmx) // ends when ptmx closes

	root := &cobra.Command{Use: "mqstream", SilenceUsage: true, SilenceErrors: true}
	root.PersistentFlags().String("server", "", "")
	root.AddCommand(newSQLCmd())
	root.SetIn(tty)
	root.SetOut(tty)
	root.SetErr(tty)
	root.SetArgs([]string{"sql", "--server", url})
	done := make(chan error, 1)
	go func() { done <- root.ExecuteContext(context.Background()) }()

	waitFor := func(what string) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for !strings.Contains(screen.String(), what) {
			if time.Now().After(deadline) {
				t.Fatalf("screen never showed %q:\n%s", what, screen.String())
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	waitFor("mqstream> ")
	// "SELEXT" fixed with two backspaces, the statement on two lines.
	io.WriteString(ptmx, "SELEXT\x7f\x7fCT count(*) AS n\r")
	waitFor("-> ")
	io.WriteString(ptmx, "FROM temps;\r")
	waitFor("(1 row, 3 scanned")
	if !strings.Contains(screen.String(), "| 3 |") {
		t.Fatalf("result missing:\n%s", screen.String())
	}
	io.WriteString(ptmx, "exit\r")
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("shell did not exit:\n%s", screen.String())
	}
}

// TestSQLPushQuery: a push query prints its rows as they come, until its
// LIMIT; -o json prints one object per row.
func TestSQLPushQuery(t *testing.T) {
	n := startTestNode(t)
	url := "http://" + n.HTTPAddr()
	if _, err := n.Store().CreateStream(context.Background(), "temps", streams.Retention{}); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ format, want string }{
		{"table", "+----------+----------+\n| sensor   | temp     |\n+----------+----------+\n| a        | 20       |\n| b        | 30       |\n+----------+----------+\n(2 rows)\n"},
		{"json", "{\"sensor\": \"a\", \"temp\": 20}\n{\"sensor\": \"b\", \"temp\": 30}\n"},
	} {
		type result struct {
			out string
			err error
		}
		done := make(chan result, 1)
		go func() {
			out, _, err := runSQLCmd(t, nil, "--server", url, "-o", tc.format, "-e", "SELECT sensor, temp FROM temps WHERE temp > 10 EMIT CHANGES LIMIT 2")
			done <- result{out, err}
		}()
		testutil.Eventually(t, 10*time.Second, "the push query running", func() bool { return n.Queries().Pushes() == 1 })
		for _, p := range []string{`{"sensor":"a","temp":20}`, `{"sensor":"x","temp":1}`, `{"sensor":"b","temp":30}`, `{"sensor":"c","temp":40}`} {
			if _, err := n.Store().Append(context.Background(), "temps", streams.Record{Topic: "temps", Payload: []byte(p)}); err != nil {
				t.Fatal(err)
			}
		}
		r := <-done
		if r.err != nil || r.out != tc.want {
			t.Fatalf("%s: %v\n%s\nwant\n%s", tc.format, r.err, r.out, tc.want)
		}
		testutil.Eventually(t, 10*time.Second, "the push query gone", func() bool { return n.Queries().Pushes() == 0 })
	}
}

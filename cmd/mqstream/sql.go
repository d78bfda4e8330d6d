package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/mqstream/mqstream/query"
)

// sqlResult is the body of a successful POST /v1/query. Values stay raw
// JSON so numbers print exactly as the server sent them.
type sqlResult struct {
	Columns     []query.Column      `json:"columns"`
	Rows        [][]json.RawMessage `json:"rows"`
	RowsScanned int64               `json:"rows_scanned"`
	ElapsedMS   float64             `json:"elapsed_ms"`
	Warnings    []string            `json:"warnings"`
}

// sqlHistoryMax is how many lines the shell's history keeps.
const sqlHistoryMax = 1000

func newSQLCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "sql [statement]",
		Short: "Run SQL over streams and live statistics (interactive shell, or one statement)",
		Long: `Run SQL statements on a node (POST /v1/query).

With a statement as the argument, or with -e, run that statement and
exit. Otherwise, when standard input is a
terminal, open an interactive shell: statements end with ';' and may span
lines; arrow keys browse the history (kept in ~/.mqstream_history, or
$MQSTREAM_HISTORY; set it to "" to keep none); type exit or press Ctrl-D to
leave. When standard input is not a terminal, read statements from it and
stop at the first error.

A push query (SELECT ... EMIT CHANGES) prints its rows as they come,
until its LIMIT or Ctrl-C.

Examples:
  mqstream sql "SHOW TABLES"
  mqstream sql -e "SELECT temp FROM temperatures WHERE temp > 30" -o csv
  echo "SELECT * FROM append_throughput;" | mqstream sql -o json
  mqstream sql -e "SELECT sensor, count(*) FROM temperatures GROUP BY sensor EMIT CHANGES"

docs/sql.md describes the dialect, the tables and their columns.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			format, _ := cmd.Flags().GetString("output")
			switch format {
			case "table", "json", "csv":
			default:
				return fmt.Errorf("--output %q: want table, json or csv", format)
			}
			c, err := newAPIClient(cmd)
			if err != nil {
				return err
			}
			sh := &sqlShell{client: streamingClient(c), format: format, out: cmd.OutOrStdout(), errOut: cmd.ErrOrStderr()}
			if len(args) == 1 {
				if cmd.Flags().Changed("execute") {
					return fmt.Errorf("a statement as the argument and one with -e: give one of them")
				}
				return sh.run(cmd.Context(), args[0])
			}
			if cmd.Flags().Changed("execute") {
				stmt, _ := cmd.Flags().GetString("execute")
				return sh.run(cmd.Context(), stmt)
			}
			in := cmd.InOrStdin()
			if f, ok := in.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
				return sh.interactiveTTY(cmd.Context(), f)
			}
			return sh.script(cmd.Context(), in)
		},
	}
	cmd.Flags().StringP("execute", "e", "", "run this statement and exit")
	cmd.Flags().StringP("output", "o", "table", "output format: table, json or csv")
	return cmd
}

// sqlShell runs statements against a node and prints their results.
type sqlShell struct {
	client *apiClient
	format string
	out    io.Writer
	errOut io.Writer
	// cooked, on a terminal in raw mode, restores its normal mode while a
	// push query runs (so Ctrl-C stops it) and returns what goes back.
	cooked func() (raw func())
}

// run sends one statement and prints its result.
func (s *sqlShell) run(ctx context.Context, stmt string) error {
	if ctx == nil {
		ctx = context.Background()
	}
	// Ctrl-C stops the statement rather than the shell.
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt)
	defer stop()
	resp, err := s.client.send(ctx, "POST", "/v1/query", map[string]string{"sql": stmt}, "application/json, application/x-ndjson")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if strings.HasPrefix(resp.Header.Get("Content-Type"), "application/x-ndjson") {
		if s.cooked != nil {
			defer s.cooked()() // in raw mode Ctrl-C is no signal
		}
		return s.printPush(ctx, resp.Body)
	}
	var res sqlResult
	if err := json.NewDecoder(resp.Body).Decode(&res); err != nil {
		return fmt.Errorf("POST /v1/query: decoding the response: %w", err)
	}
	return s.print(&res)
}

// script runs the statements read from r (not a terminal), stopping at the
// first error. A last statement without ';' runs too.
func (s *sqlShell) script(ctx context.Context, r io.Reader) error {
	var buf strings.Builder
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		buf.WriteString(sc.Text())
		buf.WriteByte('\n')
		stmts, rest := query.SplitStatements(buf.String())
		for _, st := range stmts {
			if err := s.run(ctx, st); err != nil {
				return err
			}
		}
		buf.Reset()
		buf.WriteString(rest)
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("reading statements: %w", err)
	}
	if rest := buf.String(); !blankSQL(rest) {
		return s.run(ctx, rest)
	}
	return nil
}

// blankSQL reports text with nothing to run (blanks and ';').
func blankSQL(s string) bool { return strings.Trim(s, " \t\r\n;") == "" }

// interactiveTTY runs the shell on a terminal in raw mode.
func (s *sqlShell) interactiveTTY(ctx context.Context, f *os.File) error {
	fd := int(f.Fd())
	old, err := term.MakeRaw(fd)
	if err != nil {
		return fmt.Errorf("terminal: %w", err)
	}
	defer term.Restore(fd, old)
	rw := struct {
		io.Reader
		io.Writer
	}{f, s.out}
	hist, err := openSQLHistory(historyPath())
	if err != nil {
		fmt.Fprintf(s.errOut, "history not kept: %v\r\n", err)
	}
	t := term.NewTerminal(rw, "")
	if w, h, err := term.GetSize(fd); err == nil {
		_ = t.SetSize(w, h)
	}
	s.cooked = func() func() {
		_ = term.Restore(fd, old)
		return func() { _, _ = term.MakeRaw(fd) }
	}
	return s.interactive(ctx, t, hist)
}

// historyPath is $MQSTREAM_HISTORY if set (empty: no history), else
// ~/.mqstream_history.
func historyPath() string {
	if p, ok := os.LookupEnv("MQSTREAM_HISTORY"); ok {
		return p
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return ""
	}
	return filepath.Join(home, ".mqstream_history")
}

// interactive reads statements line by line from t (prompting, editing and
// history are the terminal's), runs each complete one and goes on after
// errors. It returns on exit, quit, Ctrl-D or Ctrl-C.
func (s *sqlShell) interactive(ctx context.Context, t *term.Terminal, hist *sqlHistory) error {
	if hist != nil {
		t.History = hist
	}
	shell := *s
	shell.out = t // the terminal turns \n into \r\n in raw mode
	shell.errOut = t
	fmt.Fprintln(t, "mqstream SQL shell: statements end with ';'. SHOW TABLES lists the tables; exit or Ctrl-D leaves.")
	var buf strings.Builder
	for {
		if buf.Len() == 0 {
			t.SetPrompt("mqstream> ")
		} else {
			t.SetPrompt("       -> ")
		}
		line, err := t.ReadLine()
		if errors.Is(err, io.EOF) {
			fmt.Fprintln(t)
			return nil
		}
		if err != nil {
			return fmt.Errorf("terminal: %w", err)
		}
		if buf.Len() == 0 {
			switch strings.ToLower(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(line), ";"))) {
			case "exit", "quit", `\q`:
				return nil
			case "help", `\h`, "?":
				fmt.Fprintln(t, "End statements with ';'. Try: SHOW TABLES; SHOW STREAMS; DESCRIBE <table>; SELECT ... FROM <stream or table> ...;")
				continue
			case "":
				continue
			}
		}
		buf.WriteString(line)
		buf.WriteByte('\n')
		stmts, rest := query.SplitStatements(buf.String())
		for _, st := range stmts {
			if err := shell.run(ctx, st); err != nil {
				shell.printError(st, err)
			}
		}
		buf.Reset()
		if !blankSQL(rest) {
			buf.WriteString(rest)
		}
	}
}

// printError prints an error, with the statement line and a caret under
// the position when the server gave one.
func (s *sqlShell) printError(stmt string, err error) {
	var ae *apiError
	if errors.As(err, &ae) && ae.Line > 0 {
		lines := strings.Split(strings.TrimRight(stmt, "\n"), "\n")
		if ae.Line <= len(lines) {
			l := strings.ReplaceAll(lines[ae.Line-1], "\t", " ")
			fmt.Fprintf(s.errOut, "  %s\n  %s^\n", l, strings.Repeat(" ", max(0, ae.Column-1)))
		}
	}
	fmt.Fprintf(s.errOut, "ERROR: %v\n", err)
}

// print writes a result in the shell's format, and its warnings (rows a
// node did not answer with) on the error output.
func (s *sqlShell) print(res *sqlResult) error {
	for _, w := range res.Warnings {
		fmt.Fprintf(s.errOut, "WARNING: %s\n", w)
	}
	switch s.format {
	case "json":
		return printSQLJSON(s.out, res)
	case "csv":
		return printSQLCSV(s.out, res)
	}
	return printSQLTable(s.out, res)
}

// sqlCell renders one value for a table or CSV: NULL (table) or empty
// (CSV) for null, strings unquoted, numbers, booleans and JSON as sent.
func sqlCell(raw json.RawMessage, null string) string {
	v := bytes.TrimSpace(raw)
	switch {
	case len(v) == 0 || string(v) == "null":
		return null
	case v[0] == '"':
		var s string
		if json.Unmarshal(v, &s) == nil {
			return s
		}
	}
	return string(v)
}

func numericType(t string) bool { return t == "int" || t == "float" }

// printSQLTable draws a bordered table with a summary line.
func printSQLTable(w io.Writer, res *sqlResult) error {
	n := len(res.Columns)
	cells := make([][]string, len(res.Rows))
	width := make([]int, n)
	for i, c := range res.Columns {
		width[i] = utf8.RuneCountInString(c.Name)
	}
	for r, row := range res.Rows {
		cells[r] = make([]string, n)
		for i := 0; i < n && i < len(row); i++ {
			s := sqlCell(row[i], "NULL")
			s = strings.NewReplacer("\n", `\n`, "\r", `\r`, "\t", `\t`).Replace(s)
			cells[r][i] = s
			width[i] = max(width[i], utf8.RuneCountInString(s))
		}
	}
	var b strings.Builder
	sep := func() {
		b.WriteByte('+')
		for _, wd := range width {
			b.WriteString(strings.Repeat("-", wd+2))
			b.WriteByte('+')
		}
		b.WriteByte('\n')
	}
	line := func(vals []string, right func(i int) bool) {
		b.WriteByte('|')
		for i, v := range vals {
			pad := strings.Repeat(" ", width[i]-utf8.RuneCountInString(v))
			if right(i) {
				b.WriteString(" " + pad + v + " |")
			} else {
				b.WriteString(" " + v + pad + " |")
			}
		}
		b.WriteByte('\n')
	}
	if n > 0 {
		names := make([]string, n)
		for i, c := range res.Columns {
			names[i] = c.Name
		}
		sep()
		line(names, func(int) bool { return false })
		sep()
		for _, r := range cells {
			line(r, func(i int) bool { return numericType(res.Columns[i].Type) })
		}
		sep()
	}
	rowsWord := "rows"
	if len(res.Rows) == 1 {
		rowsWord = "row"
	}
	fmt.Fprintf(&b, "(%d %s, %d scanned, %s ms)\n", len(res.Rows), rowsWord, res.RowsScanned, strconv.FormatFloat(res.ElapsedMS, 'f', 1, 64))
	_, err := io.WriteString(w, b.String())
	return err
}

// printSQLJSON writes the rows as a JSON array of objects keyed by column
// name (a repeated name gets a suffix _2, _3, ...).
func printSQLJSON(w io.Writer, res *sqlResult) error {
	keys := make([]string, len(res.Columns))
	seen := map[string]int{}
	for i, c := range res.Columns {
		seen[c.Name]++
		keys[i] = c.Name
		if k := seen[c.Name]; k > 1 {
			keys[i] = fmt.Sprintf("%s_%d", c.Name, k)
		}
	}
	var b bytes.Buffer
	b.WriteString("[")
	for r, row := range res.Rows {
		if r > 0 {
			b.WriteString(",")
		}
		b.WriteString("\n  {")
		for i := range keys {
			if i > 0 {
				b.WriteString(", ")
			}
			k, _ := json.Marshal(keys[i])
			b.Write(k)
			b.WriteString(": ")
			if i < len(row) && len(row[i]) > 0 {
				b.Write(row[i])
			} else {
				b.WriteString("null")
			}
		}
		b.WriteString("}")
	}
	if len(res.Rows) > 0 {
		b.WriteString("\n")
	}
	b.WriteString("]\n")
	_, err := w.Write(b.Bytes())
	return err
}

// printSQLCSV writes a header line and one line per row; NULL is empty.
func printSQLCSV(w io.Writer, res *sqlResult) error {
	cw := csv.NewWriter(w)
	header := make([]string, len(res.Columns))
	for i, c := range res.Columns {
		header[i] = c.Name
	}
	if err := cw.Write(header); err != nil {
		return err
	}
	for _, row := range res.Rows {
		rec := make([]string, len(res.Columns))
		for i := range rec {
			if i < len(row) {
				rec[i] = sqlCell(row[i], "")
			}
		}
		if err := cw.Write(rec); err != nil {
			return err
		}
	}
	cw.Flush()
	return cw.Error()
}

// sqlHistory is the shell's line history, kept in a file: one line per
// entry, oldest first, the last sqlHistoryMax entries loaded. It
// implements term.History. Only the shell's goroutine uses it.
type sqlHistory struct {
	path    string
	entries []string // oldest first
}

// openSQLHistory loads the history file (path "" keeps history in memory
// only).
func openSQLHistory(path string) (*sqlHistory, error) {
	h := &sqlHistory{path: path}
	if path == "" {
		return h, nil
	}
	b, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		h.path = ""
		return h, fmt.Errorf("reading %s: %w", path, err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if strings.TrimSpace(l) != "" {
			h.entries = append(h.entries, l)
		}
	}
	if len(h.entries) > sqlHistoryMax {
		h.entries = h.entries[len(h.entries)-sqlHistoryMax:]
	}
	return h, nil
}

// Add records a line (not a repeat of the last one) and appends it to the
// file.
func (h *sqlHistory) Add(entry string) {
	if strings.TrimSpace(entry) == "" || len(h.entries) > 0 && h.entries[len(h.entries)-1] == entry {
		return
	}
	h.entries = append(h.entries, entry)
	if len(h.entries) > sqlHistoryMax {
		h.entries = h.entries[1:]
	}
	if h.path == "" {
		return
	}
	f, err := os.OpenFile(h.path, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		h.path = "" // keep going without a file
		return
	}
	_, _ = f.WriteString(entry + "\n")
	_ = f.Close()
}

// Len is the number of entries.
func (h *sqlHistory) Len() int { return len(h.entries) }

// At returns entry idx, 0 being the most recent.
func (h *sqlHistory) At(idx int) string { return h.entries[len(h.entries)-1-idx] }

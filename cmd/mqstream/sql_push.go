package main

import (
	"bufio"
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/mqstream/mqstream/query"
)

// A push query (SELECT ... EMIT CHANGES) answers with newline-delimited
// JSON: its columns, then one array per row as rows come, until the query
// ends (LIMIT) or the shell stops it (Ctrl-C). The shell prints each row
// at once.

// streamingClient returns c with no deadline on whole responses (a push
// query's lasts until it is stopped); the server's answer must still
// begin within a minute.
func streamingClient(c *apiClient) *apiClient {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.ResponseHeaderTimeout = 60 * time.Second
	return &apiClient{base: c.base, http: &http.Client{Transport: t}}
}

// pushMessage is one line of a push query's answer.
type pushMessage struct {
	Columns []query.Column      `json:"columns"`
	Error   *apiError           `json:"error"`
	End     *struct{ Rows int } `json:"end"`
}

// printPush prints a push query's rows as they come, until the answer
// ends or ctx is done (Ctrl-C: not an error).
func (s *sqlShell) printPush(ctx context.Context, body io.Reader) error {
	sc := bufio.NewScanner(body)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	var p *pushPrinter
	var rows int64
	for sc.Scan() {
		line := sc.Bytes()
		if len(line) > 0 && line[0] == '[' {
			var row []json.RawMessage
			if err := json.Unmarshal(line, &row); err != nil {
				return fmt.Errorf("push query: bad row %q: %w", line, err)
			}
			if p == nil {
				return errors.New("push query: a row before the columns")
			}
			if err := p.row(row); err != nil {
				return err
			}
			rows++
			continue
		}
		var m pushMessage
		if err := json.Unmarshal(line, &m); err != nil {
			return fmt.Errorf("push query: bad line %q: %w", line, err)
		}
		switch {
		case m.Error != nil:
			return m.Error
		case m.End != nil:
			return p.end(rows, "")
		case m.Columns != nil:
			p = &pushPrinter{format: s.format, out: s.out, cols: m.Columns}
			if err := p.header(); err != nil {
				return err
			}
		}
	}
	if ctx.Err() != nil {
		if p != nil {
			return p.end(rows, "stopped")
		}
		return nil
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("push query: %w", err)
	}
	return errors.New("push query: the server ended the answer early")
}

// pushPrinter prints rows one at a time in the shell's format. A table's
// columns widen as wider values come.
type pushPrinter struct {
	format string
	out    io.Writer
	cols   []query.Column
	width  []int
	csv    *csv.Writer
}

func (p *pushPrinter) header() error {
	switch p.format {
	case "json":
		return nil
	case "csv":
		p.csv = csv.NewWriter(p.out)
		names := make([]string, len(p.cols))
		for i, c := range p.cols {
			names[i] = c.Name
		}
		return p.flushCSV(names)
	}
	names := make([]string, len(p.cols))
	p.width = make([]int, len(p.cols))
	for i, c := range p.cols {
		names[i] = c.Name
		p.width[i] = max(utf8.RuneCountInString(c.Name), 8)
	}
	_, err := fmt.Fprint(p.out, p.rule()+p.line(names, false)+p.rule())
	return err
}

func (p *pushPrinter) row(row []json.RawMessage) error {
	switch p.format {
	case "json":
		var b strings.Builder
		b.WriteByte('{')
		for i, c := range p.cols {
			if i > 0 {
				b.WriteString(", ")
			}
			k, _ := json.Marshal(c.Name)
			b.Write(k)
			b.WriteString(": ")
			if i < len(row) {
				b.Write(row[i])
			} else {
				b.WriteString("null")
			}
		}
		b.WriteString("}\n")
		_, err := io.WriteString(p.out, b.String())
		return err
	case "csv":
		rec := make([]string, len(p.cols))
		for i := range rec {
			if i < len(row) {
				rec[i] = sqlCell(row[i], "")
			}
		}
		return p.flushCSV(rec)
	}
	cells := make([]string, len(p.cols))
	for i := range cells {
		if i < len(row) {
			cells[i] = strings.NewReplacer("\n", `\n`, "\r", `\r`, "\t", `\t`).Replace(sqlCell(row[i], "NULL"))
		}
		p.width[i] = max(p.width[i], utf8.RuneCountInString(cells[i]))
	}
	_, err := io.WriteString(p.out, p.line(cells, true))
	return err
}

func (p *pushPrinter) flushCSV(rec []string) error {
	if err := p.csv.Write(rec); err != nil {
		return err
	}
	p.csv.Flush()
	return p.csv.Error()
}

// end closes the table with the number of rows (and why it ended).
func (p *pushPrinter) end(rows int64, why string) error {
	if p == nil || p.format != "table" {
		return nil
	}
	word := "rows"
	if rows == 1 {
		word = "row"
	}
	if why != "" {
		why = ", " + why
	}
	_, err := fmt.Fprintf(p.out, "%s(%d %s%s)\n", p.rule(), rows, word, why)
	return err
}

func (p *pushPrinter) rule() string {
	var b strings.Builder
	b.WriteByte('+')
	for _, w := range p.width {
		b.WriteString(strings.Repeat("-", w+2) + "+")
	}
	return b.String() + "\n"
}

func (p *pushPrinter) line(vals []string, align bool) string {
	var b strings.Builder
	b.WriteByte('|')
	for i, v := range vals {
		pad := strings.Repeat(" ", max(0, p.width[i]-utf8.RuneCountInString(v)))
		if align && numericType(p.cols[i].Type) {
			b.WriteString(" " + pad + v + " |")
		} else {
			b.WriteString(" " + v + pad + " |")
		}
	}
	return b.String() + "\n"
}

package query

import (
	"regexp"
	"slices"
	"strings"
	"time"

	"vitess.io/vitess/go/vt/sqlparser"
)

// Hints are the options of a continuous query written as an optimizer
// hint comment anywhere in its statement, as Flink and eKuiper users
// write them: /*+ GRACE('5s') IDLE_TIMEOUT('30s') START('latest') */.
type Hints struct {
	// Grace holds the watermark back behind the newest event time, so
	// that records up to Grace out of order still count (GRACE).
	Grace time.Duration
	// IdleTimeout, if not 0, replaces the node's idle timeout for this
	// query (IDLE_TIMEOUT).
	IdleTimeout time.Duration
	// StartLatest makes a new persistent query read its input from the
	// stream's end when it is created instead of its first record kept
	// (START('latest'); START('earliest') is the default).
	StartLatest bool
	// EmitInterval, if not 0, rate-limits the updates of a query that
	// emits changes: each group's row at most once per interval of
	// record time, the latest held back never lost (EMIT_INTERVAL).
	EmitInterval time.Duration
}

// hintRE reads one hint: NAME('value').
var hintRE = regexp.MustCompile(`^\s*([A-Za-z_]+)\s*\(\s*'([^']*)'\s*\)`)

// readHints reads the hint comments (/*+ ... */) of src. Errors point at
// the hint at fault.
func readHints(src *source) (h Hints, given []string, err error) {
	for _, t := range src.toks {
		if t.typ != sqlparser.COMMENT || !strings.HasPrefix(t.text, "/*+") {
			continue
		}
		body := strings.TrimSuffix(t.text[3:], "*/")
		off := t.start + 3
		for strings.TrimSpace(body) != "" {
			m := hintRE.FindStringSubmatchIndex(body)
			if m == nil {
				lead := len(body) - len(strings.TrimLeft(body, " \t\r\n"))
				return h, nil, errorf(src.pos(off+lead), "a hint is written NAME('value'): /*+ GRACE('5s') IDLE_TIMEOUT('30s') START('earliest') */")
			}
			name, val, at := strings.ToUpper(body[m[2]:m[3]]), body[m[4]:m[5]], src.pos(off+m[2])
			if slices.Contains(given, name) {
				return h, nil, errorf(at, "hint %s is given twice", name)
			}
			given = append(given, name)
			if err := h.set(name, val, at); err != nil {
				return h, nil, err
			}
			body, off = body[m[1]:], off+m[1]
		}
	}
	return h, given, nil
}

func (h *Hints) set(name, val string, at Pos) error {
	dur := func() (time.Duration, error) {
		d, err := time.ParseDuration(val)
		if err != nil || d < 0 {
			return 0, errorf(at, "%s('%s'): a duration such as '5s', '250ms' or '1m'", name, val)
		}
		return d, nil
	}
	var err error
	switch name {
	case "GRACE":
		h.Grace, err = dur()
	case "IDLE_TIMEOUT":
		h.IdleTimeout, err = dur()
		if err == nil && h.IdleTimeout == 0 {
			err = errorf(at, "IDLE_TIMEOUT must be longer than 0")
		}
	case "START":
		switch strings.ToLower(val) {
		case "earliest":
		case "latest":
			h.StartLatest = true
		default:
			err = errorf(at, "START('%s'): 'earliest' (the first record kept, the default) or 'latest' (records appended after the query is created)", val)
		}
	case "EMIT_INTERVAL":
		h.EmitInterval, err = dur()
		if err == nil && h.EmitInterval == 0 {
			err = errorf(at, "EMIT_INTERVAL must be longer than 0")
		}
	default:
		err = errorf(at, "unknown hint %s: the hints are GRACE, IDLE_TIMEOUT, START and EMIT_INTERVAL", name)
	}
	return err
}

// checkHints refuses hints that do not apply to c.
func (c *Continuous) checkHints(given []string, src *source) error {
	at := func(name string) Pos {
		for _, t := range src.toks {
			if t.typ == sqlparser.COMMENT {
				if i := strings.Index(strings.ToUpper(t.text), name+"("); i >= 0 {
					return src.pos(t.start + i)
				}
			}
		}
		return Pos{}
	}
	for _, name := range given {
		switch {
		case (name == "GRACE" || name == "IDLE_TIMEOUT") && c.Kind == KindView:
			return errorf(at(name), "%s does not apply to views: their windows are kept, not closed", name)
		case name == "GRACE" && (!c.Windowed() || c.Emit != "final" && !c.EventTime):
			return errorf(at(name), "GRACE applies to windows with EMIT FINAL, or EMIT CHANGES on event time: the watermark waits that long for records out of order before closing them")
		case name == "EMIT_INTERVAL" && (c.Emit != "changes" || !c.Stateful || c.Join != nil || c.Window.Sessions() || c.Kind == KindView):
			return errorf(at(name), "EMIT_INTERVAL rate-limits the updates of each group of a query that aggregates with EMIT CHANGES (GROUP BY, no session window, no join, not a view): a filter outputs each record once, EMIT FINAL one row per window")
		case name == "START" && (c.Push || c.Kind == KindView):
			return errorf(at(name), "START applies to persistent queries that write a stream: a push query reads from the stream's end, a view from its first record kept")
		}
	}
	return nil
}

package query

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/mqstream/mqstream/topic"
)

// The output of a continuous query: the WITH (...) options of CREATE
// STREAM and the topic of each output record.
//
//	WITH (topic = 'alerts/{sensor}', qos = 1, retain = false)
//
// topic makes the output records also published on MQTT, each on its
// topic: literal text, and {column} templates filled in with the record's
// value of an output column. qos and retain are the records' QoS and
// retain flag, and those of the publication.

// Output is one output record of a continuous query.
type Output struct {
	// Payload is a JSON object with the keys Continuous.Columns.
	Payload []byte
	// Topic is Continuous.Topic with its templates filled in.
	Topic string
	// Values are the row's values, one per column (push queries only).
	Values []any
}

// topicPart is a piece of a topic template: literal text, or the value
// of output column col (when col >= 0).
type topicPart struct {
	lit string
	col int
}

// options applies the WITH (...) options other than topic templates,
// which need the output columns (compileTopic). It returns the topic
// option, or nil.
func (c *Continuous) options(with []withOption) (*withOption, error) {
	var topicOpt *withOption
	seen := map[string]bool{}
	for i, o := range with {
		if seen[o.key] {
			return nil, errorf(o.pos, "option %s is given twice", o.key)
		}
		seen[o.key] = true
		if c.Kind == KindInsert && o.key != "late" {
			return nil, errorf(o.pos, "INSERT INTO takes one option, late = TRUE: the stream it writes is another's, published (or not) as that one says")
		}
		switch o.key {
		case "topic":
			t, ok := o.value.(string)
			if !ok || t == "" {
				return nil, errorf(o.valPos, "topic is a topic name in quotes, e.g. topic = 'alerts/{sensor}'")
			}
			topicOpt = &with[i]
		case "qos":
			q, ok := o.value.(int64)
			if !ok || q < 0 || q > 2 {
				return nil, errorf(o.valPos, "qos is 0, 1 or 2")
			}
			c.QoS = byte(q)
		case "retain":
			r, ok := o.value.(bool)
			if !ok {
				return nil, errorf(o.valPos, "retain is TRUE or FALSE")
			}
			c.Retain = r
		case "late":
			keep, ok := o.value.(bool)
			if !ok {
				return nil, errorf(o.valPos, "late is TRUE (late records are written to the stream <name>_late) or FALSE")
			}
			if keep {
				c.LateStream, c.lateAt = c.Name+"_late", o.pos
			}
		default:
			return nil, errorf(o.pos, "unknown option %s in WITH (...): the options are topic, qos, retain and late", o.key)
		}
	}
	if topicOpt == nil && (seen["qos"] || seen["retain"]) {
		at := with[0].pos
		for _, o := range with {
			if o.key == "qos" || o.key == "retain" {
				at = o.pos
				break
			}
		}
		return nil, errorf(at, "qos and retain apply to the MQTT publication of the output: give a topic too, e.g. WITH (topic = 'alerts/hot', qos = 1)")
	}
	return topicOpt, nil
}

// compileTopic reads a topic template: literal text with {column}
// templates naming output columns. The literal text must not hold
// wildcards; the whole must give a valid topic name.
func (c *Continuous) compileTopic(o *withOption) error {
	t := o.value.(string)
	bad := func(format string, args ...any) error {
		return errorf(o.valPos, "topic %q: "+format, append([]any{t}, args...)...)
	}
	var parts []topicPart
	for rest := t; rest != ""; {
		open := strings.IndexAny(rest, "{}")
		if open < 0 {
			parts = append(parts, topicPart{lit: rest, col: -1})
			break
		}
		if rest[open] == '}' {
			return bad("a } without {: templates are written {column}")
		}
		if open > 0 {
			parts = append(parts, topicPart{lit: rest[:open], col: -1})
		}
		end := strings.IndexByte(rest[open:], '}')
		if end < 0 {
			return bad("a { without }: templates are written {column}")
		}
		name := strings.TrimSpace(rest[open+1 : open+end])
		col := c.columnIndex(name)
		if col < 0 {
			return bad("{%s} is not an output column (the columns are %s)", name, strings.Join(c.Columns, ", "))
		}
		parts = append(parts, topicPart{col: col})
		rest = rest[open+end+1:]
	}
	// Check the literal text with every template as one level's worth.
	var probe strings.Builder
	for _, p := range parts {
		if p.col >= 0 {
			probe.WriteString("x")
		} else {
			probe.WriteString(p.lit)
		}
	}
	if err := topic.ValidateName(probe.String()); err != nil {
		return bad("%v", err)
	}
	if strings.HasPrefix(probe.String(), "$") {
		return bad("topics starting with $ are reserved")
	}
	c.Topic, c.Publish, c.topic = t, true, parts
	return nil
}

// columnIndex returns the index of output column name (exact, then
// ignoring case), or -1.
func (c *Continuous) columnIndex(name string) int {
	for i, n := range c.Columns {
		if n == name {
			return i
		}
	}
	for i, n := range c.Columns {
		if strings.EqualFold(n, name) {
			return i
		}
	}
	return -1
}

// renderTopic fills the topic template with an output record's values
// (vals holds every output column). A value fills one topic level: '/',
// '+', '#' and NUL in it become '_'; strings are written as they are,
// NULL as null, times in RFC 3339, other values as in JSON.
func (c *Continuous) renderTopic(vals []any) (string, error) {
	if c.topic == nil {
		return c.Topic, nil
	}
	var b strings.Builder
	for _, p := range c.topic {
		if p.col < 0 {
			b.WriteString(p.lit)
			continue
		}
		var s string
		switch v := vals[p.col].(type) {
		case nil:
			s = "null"
		case string:
			s = v
		case time.Time:
			s = v.UTC().Format(time.RFC3339Nano)
		default:
			j, err := json.Marshal(v)
			if err != nil {
				return "", fmt.Errorf("topic template {%s}: %w", c.Columns[p.col], err)
			}
			s = string(j)
		}
		b.WriteString(strings.Map(func(r rune) rune {
			switch r {
			case '/', '+', '#', 0:
				return '_'
			}
			return r
		}, s))
	}
	out := b.String()
	if err := topic.ValidateName(out); err != nil {
		return "", &Error{Code: CodeSQL, Message: fmt.Sprintf("output topic %q: %v", shorten(out), err)}
	}
	return out, nil
}

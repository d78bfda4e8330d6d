package query

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
)

// keyValue is one top-level member of a JSON object, in document order.
type keyValue struct {
	key string
	val any
}

// objectFields returns the top-level members of a JSON-object payload in
// document order (nil if the payload is not a JSON object). Used for field
// discovery, where order matters; queries use decodeObject.
func objectFields(payload []byte) []keyValue {
	p := bytes.TrimLeft(payload, " \t\r\n")
	if len(p) == 0 || p[0] != '{' {
		return nil
	}
	d := json.NewDecoder(bytes.NewReader(p))
	d.UseNumber()
	if _, err := d.Token(); err != nil {
		return nil
	}
	var out []keyValue
	for d.More() {
		k, err := d.Token()
		if err != nil {
			return nil
		}
		key, ok := k.(string)
		if !ok {
			return nil
		}
		var v any
		if err := d.Decode(&v); err != nil {
			return nil
		}
		out = append(out, keyValue{key, v})
	}
	return out
}

// pathStep is one step of a JSON path: a member name or an array index.
type pathStep struct {
	key     string
	index   int
	isIndex bool
}

// parsePath parses a MySQL-style JSON path: $, then .name, ."quoted name"
// or [index] steps. Wildcards are not supported.
func parsePath(s string) ([]pathStep, error) {
	if !strings.HasPrefix(s, "$") {
		return nil, fmt.Errorf("JSON path %q must start with $", s)
	}
	var steps []pathStep
	rest := s[1:]
	for rest != "" {
		switch rest[0] {
		case '.':
			rest = rest[1:]
			if strings.HasPrefix(rest, `"`) {
				end := strings.Index(rest[1:], `"`)
				if end < 0 {
					return nil, fmt.Errorf("JSON path %q has an unterminated quoted name", s)
				}
				steps = append(steps, pathStep{key: rest[1 : end+1]})
				rest = rest[end+2:]
				continue
			}
			end := strings.IndexAny(rest, ".[")
			if end < 0 {
				end = len(rest)
			}
			name := rest[:end]
			if name == "" || name == "*" {
				return nil, fmt.Errorf("JSON path %q: expected a member name after '.' (wildcards are not supported)", s)
			}
			steps = append(steps, pathStep{key: name})
			rest = rest[end:]
		case '[':
			end := strings.IndexByte(rest, ']')
			if end < 0 {
				return nil, fmt.Errorf("JSON path %q has an unterminated [", s)
			}
			i, err := strconv.Atoi(strings.TrimSpace(rest[1:end]))
			if err != nil || i < 0 {
				return nil, fmt.Errorf("JSON path %q: [%s] is not an array index (wildcards are not supported)", s, rest[1:end])
			}
			steps = append(steps, pathStep{index: i, isIndex: true})
			rest = rest[end+1:]
		default:
			return nil, fmt.Errorf("JSON path %q: unexpected %q (use $.name, $.\"name\" or $[0])", s, rest[:1])
		}
	}
	return steps, nil
}

// extractPath follows steps into a decoded JSON value; ok is false when a
// step does not exist.
func extractPath(v any, steps []pathStep) (any, bool) {
	for _, st := range steps {
		if st.isIndex {
			a, ok := v.([]any)
			if !ok || st.index >= len(a) {
				return nil, false
			}
			v = a[st.index]
			continue
		}
		m, ok := v.(map[string]any)
		if !ok {
			return nil, false
		}
		if v, ok = m[st.key]; !ok {
			return nil, false
		}
	}
	return fromJSON(v), true
}

// jsonDocument returns the JSON value a json_extract argument stands for:
// objects and arrays as they are, text parsed as JSON. ok is false for text
// that is not JSON.
func jsonDocument(v any) (any, bool) {
	switch x := v.(type) {
	case map[string]any, []any:
		return x, true
	case string:
		d := json.NewDecoder(strings.NewReader(x))
		d.UseNumber()
		var doc any
		if err := d.Decode(&doc); err != nil || d.More() {
			return nil, false
		}
		return doc, true
	case int64, float64, bool:
		return x, true
	}
	return nil, false
}

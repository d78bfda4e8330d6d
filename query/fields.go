package query

import (
	"bytes"
	"encoding/json"
)

// fieldReader extracts chosen top-level fields of JSON-object payloads
// without building the whole document: it validates the payload
// (json.Valid, no allocation), walks the top level, and decodes only the
// values of the wanted keys. Values are the same as decodeObject + fromJSON
// give: int64 or float64 numbers, strings, bools, nil, and map[string]any
// or []any (numbers inside as json.Number) for objects and arrays. A
// repeated key keeps its last value, as encoding/json does.
type fieldReader struct {
	index map[string]int // key -> output slot
}

func newFieldReader(names []string, want []bool) *fieldReader {
	r := &fieldReader{index: map[string]int{}}
	for i, n := range names {
		if want[i] {
			r.index[n] = i
		}
	}
	return r
}

// read fills out[slot] for each wanted key present in payload (others are
// left as they are) and reports whether payload is a JSON object.
func (r *fieldReader) read(payload []byte, out []any) bool {
	b := bytes.TrimLeft(payload, " \t\r\n")
	if len(b) == 0 || b[0] != '{' || !json.Valid(b) {
		return false
	}
	i := 1
	for {
		i = skipSpace(b, i)
		if b[i] == '}' {
			return true
		}
		// key
		kStart := i
		i = skipString(b, i)
		key := b[kStart+1 : i-1]
		i = skipSpace(b, i) + 1 // ':'
		i = skipSpace(b, i)
		vStart := i
		i = skipValue(b, i)
		slot, ok := r.index[string(key)] // no allocation for the lookup
		if !ok && bytes.IndexByte(key, '\\') >= 0 {
			var k string
			if json.Unmarshal(b[kStart:vStart], &k) == nil {
				slot, ok = r.index[k]
			}
		}
		if ok {
			out[slot] = decodeRaw(b[vStart:i])
		}
		i = skipSpace(b, i)
		if b[i] == '}' {
			return true
		}
		i++ // ','
	}
}

func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// skipString returns the index after the string starting at b[i] ('"').
func skipString(b []byte, i int) int {
	for i++; i < len(b); i++ {
		switch b[i] {
		case '\\':
			i++
		case '"':
			return i + 1
		}
	}
	return i
}

// skipValue returns the index after the (valid) JSON value at b[i].
func skipValue(b []byte, i int) int {
	switch b[i] {
	case '"':
		return skipString(b, i)
	case '{', '[':
		depth := 0
		for ; i < len(b); i++ {
			switch b[i] {
			case '"':
				i = skipString(b, i) - 1
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return i + 1
				}
			}
		}
		return i
	}
	for i < len(b) && b[i] != ',' && b[i] != '}' && b[i] != ']' && b[i] != ' ' && b[i] != '\t' && b[i] != '\n' && b[i] != '\r' {
		i++
	}
	return i
}

// decodeRaw decodes one valid JSON value.
func decodeRaw(raw []byte) any {
	switch raw[0] {
	case '"':
		if bytes.IndexByte(raw, '\\') < 0 {
			return string(raw[1 : len(raw)-1])
		}
		var s string
		_ = json.Unmarshal(raw, &s)
		return s
	case 't':
		return true
	case 'f':
		return false
	case 'n':
		return nil
	case '{', '[':
		d := json.NewDecoder(bytes.NewReader(raw))
		d.UseNumber()
		var v any
		_ = d.Decode(&v)
		return v
	}
	return fromJSON(json.Number(raw))
}

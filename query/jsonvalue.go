package query

import (
	"encoding/json"
	"math"
	"strconv"
	"time"
	"unicode/utf8"
)

// appendJSONValue appends v as encoding/json encodes it. The values a
// row holds most (NULL, booleans, integers, finite floats, plain strings,
// times) are appended directly; anything else, and strings encoding/json
// would escape, go through json.Marshal. Closing a window encodes one row
// per key, and json.Marshal's reflection was a fifth of that.
func appendJSONValue(b []byte, v any) ([]byte, error) {
	switch x := v.(type) {
	case nil:
		return append(b, "null"...), nil
	case bool:
		return strconv.AppendBool(b, x), nil
	case int64:
		return strconv.AppendInt(b, x, 10), nil
	case int:
		return strconv.AppendInt(b, int64(x), 10), nil
	case float64:
		if f, ok := appendJSONFloat(b, x); ok {
			return f, nil
		}
	case string:
		if plainJSONString(x) {
			b = append(b, '"')
			b = append(b, x...)
			return append(b, '"'), nil
		}
	case time.Time:
		return appendJSONValue(b, x.UTC().Format(time.RFC3339Nano))
	}
	m, err := json.Marshal(v)
	if err != nil {
		return b, err
	}
	return append(b, m...), nil
}

// appendJSONFloat formats f as encoding/json does for the usual range;
// ok is false for what it formats otherwise (exponents, NaN, infinities).
func appendJSONFloat(b []byte, f float64) ([]byte, bool) {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return b, false
	}
	if abs := math.Abs(f); abs != 0 && (abs < 1e-6 || abs >= 1e21) {
		return b, false
	}
	return strconv.AppendFloat(b, f, 'f', -1, 64), true
}

// plainJSONString reports whether encoding/json writes s between quotes
// unchanged: printable ASCII other than the quote, the backslash and the
// characters it escapes for HTML (<, >, &).
func plainJSONString(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x20 || c >= utf8.RuneSelf || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			return false
		}
	}
	return true
}

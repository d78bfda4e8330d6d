package query

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// Values at run time are plain Go values:
//
//	NULL       nil
//	bool       bool
//	int        int64
//	float      float64
//	text       string
//	timestamp  time.Time
//	json       map[string]any or []any (objects and arrays from payloads;
//	           numbers inside them are json.Number)

// Type is the static type of an expression or column.
type Type uint8

const (
	// TAny is a type known only at run time (payload fields).
	TAny Type = iota
	TNull
	TBool
	TInt
	TFloat
	TText
	TTime
	TJSON
)

func (t Type) String() string {
	switch t {
	case TNull:
		return "null"
	case TBool:
		return "bool"
	case TInt:
		return "int"
	case TFloat:
		return "float"
	case TText:
		return "text"
	case TTime:
		return "timestamp"
	case TJSON:
		return "json"
	}
	return "any"
}

func (t Type) numeric() bool { return t == TInt || t == TFloat }

// typeOf returns the type of a run-time value.
func typeOf(v any) Type {
	switch v.(type) {
	case nil:
		return TNull
	case bool:
		return TBool
	case int64:
		return TInt
	case float64:
		return TFloat
	case string:
		return TText
	case time.Time:
		return TTime
	case map[string]any, []any:
		return TJSON
	}
	return TAny
}

// typeName names the type of a value in messages ("number" for both numeric types).
func typeName(v any) string {
	switch t := typeOf(v); t {
	case TInt, TFloat:
		return "number"
	default:
		return t.String()
	}
}

// fromJSON converts a decoded JSON value (numbers as json.Number) into a
// run-time value: integers that fit become int64, other numbers float64;
// objects and arrays stay as they are.
func fromJSON(v any) any {
	if n, ok := v.(json.Number); ok {
		if !strings.ContainsAny(string(n), ".eE") {
			if i, err := strconv.ParseInt(string(n), 10, 64); err == nil {
				return i
			}
		}
		f, err := strconv.ParseFloat(string(n), 64)
		if err != nil {
			return string(n)
		}
		return f
	}
	return v
}

// decodeObject decodes a JSON object payload; it returns nil if the payload
// is not a JSON object.
func decodeObject(payload []byte) map[string]any {
	p := bytes.TrimLeft(payload, " \t\r\n")
	if len(p) == 0 || p[0] != '{' {
		return nil
	}
	d := json.NewDecoder(bytes.NewReader(p))
	d.UseNumber()
	var m map[string]any
	if err := d.Decode(&m); err != nil {
		return nil
	}
	return m
}

// toFloat returns a numeric value as float64.
func toFloat(v any) (float64, bool) {
	switch x := v.(type) {
	case int64:
		return float64(x), true
	case float64:
		return x, true
	}
	return 0, false
}

// finite turns NaN and infinities into NULL (JSON cannot carry them).
func finite(f float64) any {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return nil
	}
	return f
}

// timeLayouts are the text forms accepted where a timestamp is expected.
var timeLayouts = [...]string{time.RFC3339Nano, "2006-01-02 15:04:05.999999999", "2006-01-02T15:04:05.999999999", "2006-01-02"}

// parseTime parses a timestamp given as text (RFC 3339, or
// "YYYY-MM-DD[ HH:MM:SS[.fraction]]" in UTC).
func parseTime(s string) (time.Time, bool) {
	s = strings.TrimSpace(s)
	for _, l := range timeLayouts {
		if t, err := time.Parse(l, s); err == nil {
			return t, true
		}
	}
	return time.Time{}, false
}

// typeError is a value that does not fit an operation (text in
// arithmetic, a number compared with text, ...). In an expression over row
// values it makes the result NULL, since payload fields have no declared
// types; in a constant expression it is reported as an error.
type typeError struct{ msg string }

func (e typeError) Error() string { return e.msg }

func mismatchf(format string, args ...any) error {
	return typeError{msg: "type mismatch: " + fmt.Sprintf(format, args...)}
}

// mismatch is the typeError of a binary operation on a and b.
func mismatch(op string, a, b any) error {
	return mismatchf("cannot %s %s %s and %s %s", op, typeName(a), quoteValue(a), typeName(b), quoteValue(b))
}

func isTypeError(err error) bool {
	var te typeError
	return errors.As(err, &te)
}

// quoteValue renders a value for an error message (shortened).
func quoteValue(v any) string {
	var s string
	switch x := v.(type) {
	case string:
		s = strconv.Quote(x)
	case time.Time:
		s = x.UTC().Format(time.RFC3339Nano)
	case map[string]any, []any:
		b, _ := json.Marshal(x)
		s = string(b)
	default:
		s = fmt.Sprint(x)
	}
	if len(s) > 60 {
		s = s[:57] + "..."
	}
	return s
}

// compareValues compares two non-NULL values of compatible types: numbers
// with numbers, text with text, bool with bool, timestamps with timestamps
// or with text that parses as a timestamp, JSON with JSON (by its text).
// ok is false when the types cannot be compared.
func compareValues(a, b any) (c int, ok bool) {
	switch x := a.(type) {
	case int64:
		switch y := b.(type) {
		case int64:
			return cmpOrdered(x, y), true
		case float64:
			return cmpFloat(float64(x), y), true
		}
	case float64:
		if y, isNum := toFloat(b); isNum {
			return cmpFloat(x, y), true
		}
	case string:
		switch y := b.(type) {
		case string:
			return strings.Compare(x, y), true
		case time.Time:
			if t, ok := parseTime(x); ok {
				return t.Compare(y), true
			}
		}
	case bool:
		if y, ok := b.(bool); ok {
			return cmpBool(x, y), true
		}
	case time.Time:
		switch y := b.(type) {
		case time.Time:
			return x.Compare(y), true
		case string:
			if t, ok := parseTime(y); ok {
				return x.Compare(t), true
			}
		}
	case map[string]any, []any:
		if typeOf(b) == TJSON {
			return strings.Compare(jsonText(a), jsonText(b)), true
		}
	}
	return 0, false
}

func cmpOrdered[T int64 | string](a, b T) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func cmpFloat(a, b float64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func cmpBool(a, b bool) int {
	switch {
	case a == b:
		return 0
	case !a:
		return -1
	}
	return 1
}

// typeRank orders type classes for sorting mixed values: NULL, bool,
// numbers, text, timestamps, JSON.
func typeRank(v any) int {
	switch typeOf(v) {
	case TNull:
		return 0
	case TBool:
		return 1
	case TInt, TFloat:
		return 2
	case TText:
		return 3
	case TTime:
		return 4
	}
	return 5
}

// orderValues is the total order used by ORDER BY, MIN and MAX: values of
// one class compare naturally, different classes by typeRank.
func orderValues(a, b any) int {
	ra, rb := typeRank(a), typeRank(b)
	if ra != rb {
		return ra - rb
	}
	if ra == 0 {
		return 0
	}
	if ra == 3 { // text: never parse as time here
		return strings.Compare(a.(string), b.(string))
	}
	c, _ := compareValues(a, b)
	return c
}

// jsonText is the JSON encoding of a value.
func jsonText(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	return string(b)
}

// appendKey appends an encoding of v to dst such that two values get the
// same encoding exactly when they are equal under SQL '=' (numbers by
// value across int and float), with NULLs equal to each other (GROUP BY,
// DISTINCT). Join keys skip NULLs before calling it.
func appendKey(dst []byte, v any) []byte {
	switch x := v.(type) {
	case nil:
		return append(dst, 'N')
	case bool:
		if x {
			return append(dst, 'B', '1')
		}
		return append(dst, 'B', '0')
	case int64:
		dst = append(dst, 'I')
		dst = strconv.AppendInt(dst, x, 10)
		return append(dst, 0)
	case float64:
		if x == math.Trunc(x) && math.Abs(x) < 1<<63 {
			dst = append(dst, 'I')
			dst = strconv.AppendInt(dst, int64(x), 10)
			return append(dst, 0)
		}
		dst = append(dst, 'F')
		dst = strconv.AppendFloat(dst, x, 'g', -1, 64)
		return append(dst, 0)
	case string:
		dst = append(dst, 'S')
		dst = strconv.AppendInt(dst, int64(len(x)), 10)
		dst = append(dst, ':')
		return append(dst, x...)
	case time.Time:
		dst = append(dst, 'T')
		dst = strconv.AppendInt(dst, x.UnixNano(), 10)
		return append(dst, 0)
	}
	s := jsonText(v)
	dst = append(dst, 'J')
	dst = strconv.AppendInt(dst, int64(len(s)), 10)
	dst = append(dst, ':')
	return append(dst, s...)
}

// truth evaluates a value as a condition: NULL is unknown (false for
// WHERE), numbers are true when not zero.
func truth(v any) (bool, error) {
	switch x := v.(type) {
	case nil:
		return false, nil
	case bool:
		return x, nil
	case int64:
		return x != 0, nil
	case float64:
		return x != 0, nil
	}
	return false, mismatchf("%s %s is not a condition (true or false)", typeName(v), quoteValue(v))
}

package query

import (
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// funcDef is a scalar function.
type funcDef struct {
	minArgs, maxArgs int // maxArgs < 0: any number
	// typ returns the static result type for the static argument types, or
	// an error for arguments it cannot take.
	typ func(args []Type) (Type, error)
	// eval computes the result. Unless passNulls is set, it is not called
	// when an argument is NULL: the result is NULL.
	eval      func(args []any) (any, error)
	passNulls bool
	doc       string
}

// fixed returns a typ function that always yields t and checks each
// argument against want (TAny: anything).
func fixed(t Type, want ...Type) func([]Type) (Type, error) {
	return func(args []Type) (Type, error) {
		for i, a := range args {
			w := want[min(i, len(want)-1)]
			if w == TAny || a == TAny || a == TNull || a == w || w == TFloat && a.numeric() {
				continue
			}
			if w == TTime && a == TText {
				continue
			}
			return 0, fmt.Errorf("argument %d is %s, not %s", i+1, a, w)
		}
		return t, nil
	}
}

func numArg(v any, fn string) (float64, error) {
	f, ok := toFloat(v)
	if !ok {
		return 0, mismatchf("%s() needs a number, not %s %s", fn, typeName(v), quoteValue(v))
	}
	return f, nil
}

func textArg(v any, fn string) (string, error) {
	s, ok := v.(string)
	if !ok {
		return "", mismatchf("%s() needs text, not %s %s", fn, typeName(v), quoteValue(v))
	}
	return s, nil
}

func intArg(v any, fn string) (int64, error) {
	switch x := v.(type) {
	case int64:
		return x, nil
	case float64:
		if x == math.Trunc(x) && math.Abs(x) < 1<<62 {
			return int64(x), nil
		}
	}
	return 0, mismatchf("%s() needs an integer, not %s %s", fn, typeName(v), quoteValue(v))
}

// mathFunc wraps a float function; integral inputs of floor/ceil/round/abs
// stay integers.
func mathFunc(name string, f func(float64) float64, keepInt bool) funcDef {
	return funcDef{minArgs: 1, maxArgs: 1, doc: name + "(x)",
		typ: func(args []Type) (Type, error) {
			if a := args[0]; a != TAny && a != TNull && !a.numeric() {
				return 0, fmt.Errorf("needs a number, not %s", a)
			}
			if keepInt {
				return TAny, nil
			}
			return TFloat, nil
		},
		eval: func(args []any) (any, error) {
			if i, ok := args[0].(int64); ok && keepInt {
				if name == "abs" && i < 0 {
					if i == math.MinInt64 {
						return -float64(i), nil
					}
					return -i, nil
				}
				return i, nil
			}
			x, err := numArg(args[0], name)
			if err != nil {
				return nil, err
			}
			r := f(x)
			if keepInt && name != "abs" && math.Abs(r) < 1<<62 {
				return int64(r), nil
			}
			return finite(r), nil
		}}
}

// builtinFuncs returns the scalar functions by name.
func builtinFuncs() map[string]funcDef {
	fs := map[string]funcDef{
		"abs":   mathFunc("abs", math.Abs, true),
		"floor": mathFunc("floor", math.Floor, true),
		"ceil":  mathFunc("ceil", math.Ceil, true),
		"sqrt":  mathFunc("sqrt", math.Sqrt, false),
		"ln":    mathFunc("ln", math.Log, false),
		"log10": mathFunc("log10", math.Log10, false),
		"exp":   mathFunc("exp", math.Exp, false),
		"round": {minArgs: 1, maxArgs: 2, doc: "round(x[, decimals])", typ: func(args []Type) (Type, error) {
			for _, a := range args {
				if a != TAny && a != TNull && !a.numeric() {
					return 0, fmt.Errorf("needs numbers, not %s", a)
				}
			}
			if len(args) == 1 && args[0] == TInt {
				return TInt, nil
			}
			return TAny, nil
		}, eval: func(args []any) (any, error) {
			x, err := numArg(args[0], "round")
			if err != nil {
				return nil, err
			}
			d := int64(0)
			if len(args) == 2 {
				if d, err = intArg(args[1], "round"); err != nil {
					return nil, err
				}
			}
			if _, isInt := args[0].(int64); isInt && d >= 0 {
				return args[0], nil
			}
			p := math.Pow(10, float64(d))
			r := math.Round(x*p) / p
			if d <= 0 && math.Abs(r) < 1<<62 {
				return int64(r), nil
			}
			return finite(r), nil
		}},
		"pow": {minArgs: 2, maxArgs: 2, doc: "pow(x, y)", typ: fixed(TFloat, TFloat), eval: func(args []any) (any, error) {
			x, err := numArg(args[0], "pow")
			if err != nil {
				return nil, err
			}
			y, err := numArg(args[1], "pow")
			if err != nil {
				return nil, err
			}
			return finite(math.Pow(x, y)), nil
		}},
		"mod": {minArgs: 2, maxArgs: 2, doc: "mod(a, b)", typ: fixed(TAny, TFloat), eval: func(args []any) (any, error) {
			return arith("%", args[0], args[1])
		}},
		"greatest": {minArgs: 1, maxArgs: -1, doc: "greatest(a, b, ...)", typ: sameTypes, eval: func(args []any) (any, error) {
			return extreme(args, true)
		}},
		"least": {minArgs: 1, maxArgs: -1, doc: "least(a, b, ...)", typ: sameTypes, eval: func(args []any) (any, error) {
			return extreme(args, false)
		}},

		"length": {minArgs: 1, maxArgs: 1, doc: "length(s): bytes", typ: fixed(TInt, TText), eval: func(args []any) (any, error) {
			s, err := textArg(args[0], "length")
			return int64(len(s)), err
		}},
		"char_length": {minArgs: 1, maxArgs: 1, doc: "char_length(s): characters", typ: fixed(TInt, TText), eval: func(args []any) (any, error) {
			s, err := textArg(args[0], "char_length")
			return int64(utf8.RuneCountInString(s)), err
		}},
		"lower": textFunc("lower", strings.ToLower),
		"upper": textFunc("upper", strings.ToUpper),
		"trim":  textFunc("trim", strings.TrimSpace),
		"ltrim": textFunc("ltrim", func(s string) string { return strings.TrimLeft(s, " \t\r\n") }),
		"rtrim": textFunc("rtrim", func(s string) string { return strings.TrimRight(s, " \t\r\n") }),
		"hex": {minArgs: 1, maxArgs: 1, doc: "hex(s or n)", typ: fixed(TText, TAny), eval: func(args []any) (any, error) {
			switch x := args[0].(type) {
			case string:
				return strings.ToUpper(hex.EncodeToString([]byte(x))), nil
			case int64:
				return strings.ToUpper(strconv.FormatUint(uint64(x), 16)), nil
			}
			return nil, mismatchf("hex() needs text or an integer, not %s", typeName(args[0]))
		}},
		"concat": {minArgs: 1, maxArgs: -1, doc: "concat(a, b, ...): NULL if any is NULL", typ: fixed(TText, TAny), eval: func(args []any) (any, error) {
			var sb strings.Builder
			for _, a := range args {
				sb.WriteString(textOf(a))
			}
			return sb.String(), nil
		}},
		"concat_ws": {minArgs: 2, maxArgs: -1, doc: "concat_ws(sep, a, b, ...): skips NULLs", typ: fixed(TText, TAny), passNulls: true,
			eval: func(args []any) (any, error) {
				if args[0] == nil {
					return nil, nil
				}
				var parts []string
				for _, a := range args[1:] {
					if a != nil {
						parts = append(parts, textOf(a))
					}
				}
				return strings.Join(parts, textOf(args[0])), nil
			}},
		"substring": {minArgs: 2, maxArgs: 3, doc: "substring(s, start[, length]): 1-based, characters", typ: fixed(TText, TText, TInt, TInt),
			eval: func(args []any) (any, error) {
				s, err := textArg(args[0], "substring")
				if err != nil {
					return nil, err
				}
				r := []rune(s)
				start, err := intArg(args[1], "substring")
				if err != nil {
					return nil, err
				}
				switch {
				case start > 0:
					start--
				case start < 0:
					start += int64(len(r))
				default:
					return "", nil
				}
				if start < 0 || start >= int64(len(r)) {
					return "", nil
				}
				end := int64(len(r))
				if len(args) == 3 {
					n, err := intArg(args[2], "substring")
					if err != nil {
						return nil, err
					}
					end = min(end, start+max(n, 0))
				}
				return string(r[start:end]), nil
			}},
		"left": {minArgs: 2, maxArgs: 2, doc: "left(s, n)", typ: fixed(TText, TText, TInt), eval: func(args []any) (any, error) {
			s, err := textArg(args[0], "left")
			if err != nil {
				return nil, err
			}
			n, err := intArg(args[1], "left")
			r := []rune(s)
			return string(r[:max(0, min(int64(len(r)), n))]), err
		}},
		"right": {minArgs: 2, maxArgs: 2, doc: "right(s, n)", typ: fixed(TText, TText, TInt), eval: func(args []any) (any, error) {
			s, err := textArg(args[0], "right")
			if err != nil {
				return nil, err
			}
			n, err := intArg(args[1], "right")
			r := []rune(s)
			return string(r[len(r)-int(max(0, min(int64(len(r)), n))):]), err
		}},
		"replace": {minArgs: 3, maxArgs: 3, doc: "replace(s, from, to)", typ: fixed(TText, TText), eval: func(args []any) (any, error) {
			var ss [3]string
			for i := range ss {
				var err error
				if ss[i], err = textArg(args[i], "replace"); err != nil {
					return nil, err
				}
			}
			return strings.ReplaceAll(ss[0], ss[1], ss[2]), nil
		}},

		"coalesce": {minArgs: 1, maxArgs: -1, doc: "coalesce(a, b, ...): the first non-NULL", typ: sameTypes, passNulls: true,
			eval: func(args []any) (any, error) {
				for _, a := range args {
					if a != nil {
						return a, nil
					}
				}
				return nil, nil
			}},
		"nullif": {minArgs: 2, maxArgs: 2, doc: "nullif(a, b): NULL if a = b, else a", passNulls: true,
			typ: func(args []Type) (Type, error) { return args[0], nil },
			eval: func(args []any) (any, error) {
				if args[0] != nil && args[1] != nil {
					if c, ok := compareValues(args[0], args[1]); ok && c == 0 {
						return nil, nil
					}
				}
				return args[0], nil
			}},
		"typeof": {minArgs: 1, maxArgs: 1, doc: "typeof(x): null, bool, int, float, text, timestamp or json", passNulls: true,
			typ: fixed(TText, TAny), eval: func(args []any) (any, error) { return typeOf(args[0]).String(), nil }},

		"json_extract": {minArgs: 2, maxArgs: 2, doc: "json_extract(doc, path) or doc->path", typ: fixed(TAny, TAny, TText),
			eval: func(args []any) (any, error) { return jsonExtract(args[0], args[1], nil) }},
		"json_unquote": {minArgs: 1, maxArgs: 1, doc: "json_unquote(x) or doc->>path", typ: fixed(TAny, TAny),
			eval: func(args []any) (any, error) { return jsonUnquote(args[0]), nil }},
		"json_valid": {minArgs: 1, maxArgs: 1, doc: "json_valid(s)", typ: fixed(TBool, TAny), eval: func(args []any) (any, error) {
			if s, ok := args[0].(string); ok {
				return json.Valid([]byte(s)), nil
			}
			return typeOf(args[0]) == TJSON, nil
		}},

		"json_type": {minArgs: 1, maxArgs: 1, doc: "json_type(x): OBJECT, ARRAY, STRING, INTEGER, DOUBLE, BOOLEAN or NULL", typ: fixed(TText, TAny),
			eval: func(args []any) (any, error) {
				d, ok := jsonDocument(args[0])
				if !ok {
					return nil, mismatchf("json_type() needs JSON, not %s", quoteValue(args[0]))
				}
				switch x := fromJSON(d).(type) {
				case map[string]any:
					return "OBJECT", nil
				case []any:
					return "ARRAY", nil
				case string:
					return "STRING", nil
				case int64:
					return "INTEGER", nil
				case float64:
					return "DOUBLE", nil
				case bool:
					return "BOOLEAN", nil
				case nil:
					return "NULL", nil
				default:
					return nil, mismatchf("json_type() of %v", x)
				}
			}},
		"unix_timestamp": {minArgs: 1, maxArgs: 1, doc: "unix_timestamp(t): seconds since 1970 (float)", typ: fixed(TFloat, TTime),
			eval: func(args []any) (any, error) {
				t, err := asTime(args[0])
				if err != nil {
					return nil, err
				}
				return float64(t.UnixNano()) / 1e9, nil
			}},
		"unix_millis": {minArgs: 1, maxArgs: 1, doc: "unix_millis(t): milliseconds since 1970", typ: fixed(TInt, TTime),
			eval: func(args []any) (any, error) {
				t, err := asTime(args[0])
				if err != nil {
					return nil, err
				}
				return t.UnixMilli(), nil
			}},
		"from_unixtime": {minArgs: 1, maxArgs: 1, doc: "from_unixtime(seconds): timestamp", typ: fixed(TTime, TFloat),
			eval: func(args []any) (any, error) {
				f, err := numArg(args[0], "from_unixtime")
				if err != nil {
					return nil, err
				}
				sec, frac := math.Modf(f)
				return time.Unix(int64(sec), int64(frac*1e9)).UTC(), nil
			}},
		"date_trunc": {minArgs: 2, maxArgs: 2, doc: "date_trunc(unit, t): second, minute, hour, day, month or year (UTC)", typ: fixed(TTime, TText, TTime),
			eval: func(args []any) (any, error) {
				unit, err := textArg(args[0], "date_trunc")
				if err != nil {
					return nil, err
				}
				t, err := asTime(args[1])
				if err != nil {
					return nil, err
				}
				return truncTime(t.UTC(), strings.ToLower(unit))
			}},
		"extract": {minArgs: 2, maxArgs: 2, doc: "EXTRACT(unit FROM t)", typ: fixed(TInt, TText, TTime), eval: func(args []any) (any, error) {
			unit, _ := args[0].(string)
			t, err := asTime(args[1])
			if err != nil {
				return nil, err
			}
			return extractPart(t.UTC(), unit)
		}},
		"timestampdiff": {minArgs: 3, maxArgs: 3, doc: "TIMESTAMPDIFF(unit, a, b): b - a in whole units", typ: fixed(TInt, TText, TTime, TTime),
			eval: func(args []any) (any, error) {
				unit, _ := args[0].(string)
				a, err := asTime(args[1])
				if err != nil {
					return nil, err
				}
				b, err := asTime(args[2])
				if err != nil {
					return nil, err
				}
				u := unitDuration(unit)
				if u == 0 {
					return nil, fmt.Errorf("TIMESTAMPDIFF unit %s is not supported (use microsecond, second, minute, hour, day or week)", unit)
				}
				return int64(b.Sub(a) / u), nil
			}},
	}
	fs["ceiling"] = fs["ceil"]
	fs["power"] = fs["pow"]
	fs["lcase"], fs["ucase"] = fs["lower"], fs["upper"]
	fs["character_length"] = fs["char_length"]
	fs["substr"] = fs["substring"]
	fs["ifnull"] = funcDef{minArgs: 2, maxArgs: 2, doc: "ifnull(a, b)", typ: sameTypes, passNulls: true, eval: fs["coalesce"].eval}
	for _, part := range []string{"year", "month", "day", "hour", "minute", "second"} {
		fs[part] = funcDef{minArgs: 1, maxArgs: 1, doc: part + "(t)", typ: fixed(TInt, TTime), eval: func(args []any) (any, error) {
			t, err := asTime(args[0])
			if err != nil {
				return nil, err
			}
			return extractPart(t.UTC(), part)
		}}
	}
	return fs
}

// funcNames lists the scalar functions (for the unknown-function error).
func funcNames(fs map[string]funcDef) []string {
	names := make([]string, 0, len(fs)+8)
	for n := range fs {
		names = append(names, n)
	}
	names = append(names, "count", "sum", "avg", "min", "max", "now", "if", "cast")
	sort.Strings(names)
	return names
}

func sameTypes(args []Type) (Type, error) {
	t := TNull
	for i, a := range args {
		if i > 0 && !comparable(t, a) {
			return 0, fmt.Errorf("arguments mix %s and %s", t, a)
		}
		t = unify(t, a)
	}
	return t, nil
}

func extreme(args []any, greatest bool) (any, error) {
	best := args[0]
	for _, a := range args[1:] {
		c, ok := compareValues(a, best)
		if !ok {
			return nil, mismatch("compare", best, a)
		}
		if greatest && c > 0 || !greatest && c < 0 {
			best = a
		}
	}
	return best, nil
}

func textFunc(name string, f func(string) string) funcDef {
	return funcDef{minArgs: 1, maxArgs: 1, doc: name + "(s)", typ: fixed(TText, TText), eval: func(args []any) (any, error) {
		s, err := textArg(args[0], name)
		if err != nil {
			return nil, err
		}
		return f(s), nil
	}}
}

// textOf renders a value as text (CAST(x AS CHAR), concat).
func textOf(v any) string {
	switch x := v.(type) {
	case nil:
		return ""
	case string:
		return x
	case int64:
		return strconv.FormatInt(x, 10)
	case float64:
		if math.Abs(x) < 1e21 {
			return strconv.FormatFloat(x, 'f', -1, 64)
		}
		return strconv.FormatFloat(x, 'g', -1, 64)
	case bool:
		return strconv.FormatBool(x)
	case time.Time:
		return x.UTC().Format(time.RFC3339Nano)
	}
	return jsonText(v)
}

// jsonExtract implements json_extract / ->. steps, if not nil, is the
// pre-parsed path.
func jsonExtract(doc, path any, steps []pathStep) (any, error) {
	if steps == nil {
		p, ok := path.(string)
		if !ok {
			return nil, mismatchf("a JSON path is text like '$.name', not %s %s", typeName(path), quoteValue(path))
		}
		var err error
		if steps, err = parsePath(p); err != nil {
			return nil, err
		}
	}
	d, ok := jsonDocument(doc)
	if !ok {
		return nil, nil // not JSON: nothing to extract
	}
	v, _ := extractPath(d, steps)
	return v, nil
}

// jsonUnquote implements json_unquote / ->>: strings stay text, objects and
// arrays become their JSON text, other values stay as they are.
func jsonUnquote(v any) any {
	switch x := v.(type) {
	case map[string]any, []any:
		return jsonText(x)
	case string:
		if len(x) >= 2 && x[0] == '"' && x[len(x)-1] == '"' {
			var s string
			if json.Unmarshal([]byte(x), &s) == nil {
				return s
			}
		}
	}
	return v
}

func truncTime(t time.Time, unit string) (any, error) {
	switch unit {
	case "second":
		return t.Truncate(time.Second), nil
	case "minute":
		return t.Truncate(time.Minute), nil
	case "hour":
		return t.Truncate(time.Hour), nil
	case "day":
		return time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, time.UTC), nil
	case "month":
		return time.Date(t.Year(), t.Month(), 1, 0, 0, 0, 0, time.UTC), nil
	case "year":
		return time.Date(t.Year(), 1, 1, 0, 0, 0, 0, time.UTC), nil
	}
	return nil, fmt.Errorf("date_trunc unit %q is not supported (use second, minute, hour, day, month or year)", unit)
}

func extractPart(t time.Time, unit string) (any, error) {
	switch unit {
	case "year":
		return int64(t.Year()), nil
	case "month":
		return int64(t.Month()), nil
	case "day":
		return int64(t.Day()), nil
	case "hour":
		return int64(t.Hour()), nil
	case "minute":
		return int64(t.Minute()), nil
	case "second":
		return int64(t.Second()), nil
	case "microsecond":
		return int64(t.Nanosecond() / 1000), nil
	}
	return nil, fmt.Errorf("EXTRACT unit %s is not supported (use year, month, day, hour, minute, second or microsecond)", unit)
}

// castValue converts a non-NULL value for CAST.
func castValue(v any, to Type) (any, error) {
	fail := func() (any, error) {
		return nil, fmt.Errorf("cannot cast %s %s to %s", typeName(v), quoteValue(v), to)
	}
	switch to {
	case TInt:
		switch x := v.(type) {
		case int64:
			return x, nil
		case float64:
			if r := math.Round(x); math.Abs(r) < 1<<63 {
				return int64(r), nil
			}
		case bool:
			if x {
				return int64(1), nil
			}
			return int64(0), nil
		case string:
			s := strings.TrimSpace(x)
			if i, err := strconv.ParseInt(s, 10, 64); err == nil {
				return i, nil
			}
			if f, err := strconv.ParseFloat(s, 64); err == nil && math.Abs(f) < 1<<63 {
				return int64(math.Round(f)), nil
			}
		case time.Time:
			return x.Unix(), nil
		}
		return fail()
	case TFloat:
		switch x := v.(type) {
		case int64:
			return float64(x), nil
		case float64:
			return x, nil
		case bool:
			if x {
				return 1.0, nil
			}
			return 0.0, nil
		case string:
			if f, err := strconv.ParseFloat(strings.TrimSpace(x), 64); err == nil {
				return finite(f), nil
			}
		case time.Time:
			return float64(x.UnixNano()) / 1e9, nil
		}
		return fail()
	case TText:
		return textOf(v), nil
	case TTime:
		switch x := v.(type) {
		case time.Time:
			return x, nil
		case string:
			if t, ok := parseTime(x); ok {
				return t, nil
			}
		case int64:
			return time.Unix(x, 0).UTC(), nil
		case float64:
			sec, frac := math.Modf(x)
			return time.Unix(int64(sec), int64(frac*1e9)).UTC(), nil
		}
		return fail()
	case TJSON:
		if s, ok := v.(string); ok {
			d, ok := jsonDocument(s)
			if !ok {
				return fail()
			}
			return fromJSON(d), nil
		}
		return v, nil
	}
	return fail()
}

// compileCall binds a scalar function call.
func (b *binder) compileCall(x *call, sc *scope) (*compiled, error) {
	if windowFuncs[x.name] {
		return nil, errorf(x.pos, "%s() is a window: it goes in the GROUP BY of a continuous query (CREATE STREAM <name> AS SELECT ... GROUP BY <keys>, TUMBLING(INTERVAL 10 SECOND))", x.name)
	}
	if x.distinct || x.star {
		return nil, errorf(x.pos, "%s() is not an aggregate: DISTINCT and * do not apply", x.name)
	}
	args := make([]*compiled, len(x.args))
	types := make([]Type, len(x.args))
	for i, a := range x.args {
		c, err := b.compile(a, sc)
		if err != nil {
			return nil, err
		}
		args[i], types[i] = c, c.typ
	}
	switch x.name {
	case "now":
		if len(args) > 0 {
			return nil, errorf(x.pos, "now() takes no arguments")
		}
		now := b.now
		return &compiled{eval: func([]any) (any, error) { return now, nil }, typ: TTime, pos: x.pos, konst: true}, nil
	case "if":
		if len(args) != 3 {
			return nil, errorf(x.pos, "if(condition, then, else) takes 3 arguments")
		}
		return b.compileCase(&caseExpr{whens: []caseWhen{{cond: x.args[0], val: x.args[1]}}, elseE: x.args[2], pos: x.pos}, sc)
	case "json_extract":
		if len(args) == 2 && args[1].konst {
			pv, err := args[1].eval(nil)
			if err != nil {
				return nil, err
			}
			if p, ok := pv.(string); ok {
				if _, err := parsePath(p); err != nil {
					return nil, errorf(args[1].pos, "%v", err)
				}
			}
		}
		if c := b.payloadExtract(x, args); c != nil {
			return c, nil
		}
	}
	def, ok := b.funcs[x.name]
	if !ok {
		msg := fmt.Sprintf("unknown function %s()", x.name)
		if s := closest(x.name, funcNames(b.funcs)); s != "" {
			msg += fmt.Sprintf(" (did you mean %s?)", s)
		}
		return nil, errorf(x.pos, "%s; docs/sql.md lists the functions", msg)
	}
	if len(args) < def.minArgs || def.maxArgs >= 0 && len(args) > def.maxArgs {
		return nil, errorf(x.pos, "wrong number of arguments to %s(): %d given; usage: %s", x.name, len(args), def.doc)
	}
	typ, err := def.typ(types)
	if err != nil {
		return nil, errorf(x.pos, "type mismatch in %s(): %v; usage: %s", x.name, err, def.doc)
	}
	pos, eval, passNulls := x.pos, def.eval, def.passNulls
	return fold(&compiled{typ: typ, pos: pos, konst: konstOf(args...), eval: func(row []any) (any, error) {
		vals := make([]any, len(args))
		for i, a := range args {
			v, err := a.eval(row)
			if err != nil {
				return nil, err
			}
			if v == nil && !passNulls {
				return nil, nil
			}
			vals[i] = v
		}
		out, err := eval(vals)
		if err != nil {
			return nil, wrapErr(err, pos)
		}
		return out, nil
	}})
}

// payloadExtract compiles json_extract(<stream>._payload, 'constant path')
// to read the payload decoded once per row instead of parsing it again.
func (b *binder) payloadExtract(x *call, args []*compiled) *compiled {
	ref, ok := x.args[0].(*columnRef)
	if !ok || !args[1].konst || !strings.EqualFold(ref.name, "_payload") {
		return nil
	}
	pv, err := args[1].eval(nil)
	p, isText := pv.(string)
	if err != nil || !isText {
		return nil
	}
	steps, err := parsePath(p)
	if err != nil {
		return nil
	}
	for _, t := range b.tables {
		if t.stream == nil || ref.table != "" && !strings.EqualFold(ref.table, t.label) {
			continue
		}
		// The payload column must resolve to this table's.
		if t.docSlot() < 0 {
			continue
		}
		t.needDoc = true
		slot := t.base + t.docSlot()
		payloadIdx := t.base + colPayload
		t.use(colPayload)
		return &compiled{typ: TAny, pos: x.pos, eval: func(row []any) (any, error) {
			if doc, ok := row[slot].(map[string]any); ok {
				v, _ := extractPath(doc, steps)
				return v, nil
			}
			// Not a JSON object: fall back to the general path (arrays, scalars).
			if row[payloadIdx] == nil {
				return nil, nil
			}
			return jsonExtract(row[payloadIdx], nil, steps)
		}}
	}
	return nil
}

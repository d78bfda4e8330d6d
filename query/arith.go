package query

import (
	"fmt"
	"math"
	"time"
)

// Arithmetic on numbers and on timestamps with intervals.

func compileArith(x *binary, l, r *compiled) (*compiled, error) {
	op, pos := x.op, x.pos
	for _, c := range []*compiled{l, r} {
		if t := c.typ; t != TAny && t != TNull && !t.numeric() {
			hint := ""
			if t == TTime {
				hint = " (add or subtract INTERVAL n unit; use timestampdiff(unit, a, b) for differences)"
			}
			return nil, errorf(x.pos, "type mismatch: %s needs numbers, not %s%s", op, t, hint)
		}
	}
	typ := TAny
	switch {
	case op == "/":
		typ = TFloat
	case op == "div" || op == "&" || op == "|" || op == "^" || op == "<<" || op == ">>":
		typ = TInt
	case l.typ == TInt && r.typ == TInt:
		typ = TAny // int, or float on overflow
	case l.typ == TFloat || r.typ == TFloat:
		typ = TFloat
	}
	return fold(&compiled{typ: typ, pos: pos, konst: konstOf(l, r), eval: func(row []any) (any, error) {
		a, err := l.eval(row)
		if err != nil {
			return nil, err
		}
		bv, err := r.eval(row)
		if err != nil || a == nil || bv == nil {
			return nil, err
		}
		v, err := arith(op, a, bv)
		if err != nil {
			return nil, wrapErr(err, pos)
		}
		return v, nil
	}})
}

// arith applies an arithmetic operator to two non-NULL values. Integer
// results that overflow become floats; division by zero is NULL.
func arith(op string, a, b any) (any, error) {
	ai, aInt := a.(int64)
	bi, bInt := b.(int64)
	if aInt && bInt {
		switch op {
		case "+":
			if s := ai + bi; (s > ai) == (bi > 0) {
				return s, nil
			}
			return float64(ai) + float64(bi), nil
		case "-":
			if s := ai - bi; (s < ai) == (bi > 0) {
				return s, nil
			}
			return float64(ai) - float64(bi), nil
		case "*":
			if ai == 0 || bi == 0 {
				return int64(0), nil
			}
			if p := ai * bi; p/bi == ai && !(ai == -1 && bi == math.MinInt64) && !(bi == -1 && ai == math.MinInt64) {
				return p, nil
			}
			return float64(ai) * float64(bi), nil
		case "div", "%":
			if bi == 0 {
				return nil, nil
			}
			if bi == -1 {
				if op == "%" {
					return int64(0), nil
				}
				if ai == math.MinInt64 {
					return -float64(ai), nil
				}
			}
			if op == "div" {
				return ai / bi, nil
			}
			return ai % bi, nil
		case "&":
			return ai & bi, nil
		case "|":
			return ai | bi, nil
		case "^":
			return ai ^ bi, nil
		case "<<":
			return ai << uint64(bi&63), nil
		case ">>":
			return ai >> uint64(bi&63), nil
		}
	}
	af, ok1 := toFloat(a)
	bf, ok2 := toFloat(b)
	if !ok1 || !ok2 {
		return nil, mismatch("apply "+op+" to", a, b)
	}
	switch op {
	case "+":
		return finite(af + bf), nil
	case "-":
		return finite(af - bf), nil
	case "*":
		return finite(af * bf), nil
	case "/":
		if bf == 0 {
			return nil, nil
		}
		return finite(af / bf), nil
	case "div":
		if bf == 0 {
			return nil, nil
		}
		q := math.Trunc(af / bf)
		if math.Abs(q) < 1<<63 {
			return int64(q), nil
		}
		return finite(q), nil
	case "%":
		if bf == 0 {
			return nil, nil
		}
		return finite(math.Mod(af, bf)), nil
	}
	return nil, fmt.Errorf("operator %s needs integers, not %s %s and %s %s", op, typeName(a), quoteValue(a), typeName(b), quoteValue(b))
}

func (b *binder) compileDateArith(x *dateArith, sc *scope) (*compiled, error) {
	date, err := b.compile(x.date, sc)
	if err != nil {
		return nil, err
	}
	n, err := b.compile(x.n, sc)
	if err != nil {
		return nil, err
	}
	if t := date.typ; t != TAny && t != TNull && t != TTime && t != TText {
		return nil, errorf(date.pos, "type mismatch: INTERVAL arithmetic needs a timestamp, not %s", t)
	}
	if t := n.typ; t != TAny && t != TNull && !t.numeric() {
		return nil, errorf(n.pos, "type mismatch: INTERVAL needs a number, not %s", t)
	}
	unit := unitDuration(x.unit)
	sub, pos := x.sub, x.pos
	return fold(&compiled{typ: TTime, pos: pos, konst: konstOf(date, n), eval: func(row []any) (any, error) {
		dv, err := date.eval(row)
		if err != nil {
			return nil, err
		}
		nv, err := n.eval(row)
		if err != nil || dv == nil || nv == nil {
			return nil, err
		}
		t, err := asTime(dv)
		if err != nil {
			return nil, wrapErr(err, pos)
		}
		f, ok := toFloat(nv)
		if !ok {
			return nil, wrapErr(mismatchf("INTERVAL needs a number, not %s %s", typeName(nv), quoteValue(nv)), pos)
		}
		d := time.Duration(f * float64(unit))
		if sub {
			d = -d
		}
		return t.Add(d), nil
	}})
}

func unitDuration(unit string) time.Duration {
	switch unit {
	case "microsecond":
		return time.Microsecond
	case "second":
		return time.Second
	case "minute":
		return time.Minute
	case "hour":
		return time.Hour
	case "day":
		return 24 * time.Hour
	case "week":
		return 7 * 24 * time.Hour
	}
	return 0
}

// asTime accepts a timestamp or text that parses as one.
func asTime(v any) (time.Time, error) {
	switch x := v.(type) {
	case time.Time:
		return x, nil
	case string:
		if t, ok := parseTime(x); ok {
			return t, nil
		}
	}
	return time.Time{}, mismatchf("%s %s is not a timestamp", typeName(v), quoteValue(v))
}

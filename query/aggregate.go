package query

// aggSpec is one aggregate call of a query.
type aggSpec struct {
	fn       string // count, sum, avg, min, max
	arg      *compiled
	distinct bool
	star     bool
	pos      Pos
}

func (s aggSpec) resultType() Type {
	switch s.fn {
	case "count":
		return TInt
	case "avg":
		return TFloat
	case "sum":
		if s.arg.typ == TFloat {
			return TFloat
		}
		return TAny // int, or float if any input is
	}
	return s.arg.typ // min, max
}

// aggSet collects the aggregate calls of a query; each gets a slot in the
// row that HAVING, ORDER BY and the select list read after grouping.
type aggSet struct {
	specs []aggSpec
}

func (a *aggSet) add(s aggSpec) int {
	a.specs = append(a.specs, s)
	return len(a.specs) - 1
}

// newStates returns fresh accumulators for one group.
func (a *aggSet) newStates() []aggState {
	out := make([]aggState, len(a.specs))
	for i, s := range a.specs {
		var st aggState
		switch s.fn {
		case "count":
			st = &countState{star: s.star}
		case "sum":
			st = &sumState{}
		case "avg":
			st = &avgState{}
		case "min":
			st = &extremeState{max: false}
		default:
			st = &extremeState{max: true}
		}
		if s.distinct {
			st = &distinctState{inner: st, seen: map[string]struct{}{}}
		}
		out[i] = st
	}
	return out
}

// accumulate feeds one input row to a group's accumulators.
func (a *aggSet) accumulate(states []aggState, row []any) error {
	for i, s := range a.specs {
		var v any
		if !s.star {
			var err error
			if v, err = s.arg.eval(row); err != nil {
				return err
			}
			if v == nil {
				continue // aggregates skip NULLs
			}
		}
		if err := states[i].add(v); err != nil {
			if isTypeError(err) {
				continue // a value that does not fit (text in sum) counts as NULL
			}
			return wrapErr(err, s.pos)
		}
	}
	return nil
}

// aggState accumulates the values of one aggregate in one group.
type aggState interface {
	add(v any) error // v is never NULL (COUNT(*) gets nil for each row)
	result() any
	// merge adds the values another accumulator of the same aggregate
	// has seen (a hopping window's panes, package cq).
	merge(o aggState) error
}

type countState struct {
	star bool
	n    int64
}

func (c *countState) add(any) error { c.n++; return nil }
func (c *countState) result() any   { return c.n }

func (c *countState) merge(o aggState) error { c.n += o.(*countState).n; return nil }

// sumState sums integers exactly while they fit; a float input or an
// overflow switches to float.
type sumState struct {
	any     bool
	isFloat bool
	i       int64
	f       float64
}

func (s *sumState) add(v any) error {
	s.any = true
	switch x := v.(type) {
	case int64:
		if !s.isFloat {
			if r := s.i + x; (r > s.i) == (x > 0) {
				s.i = r
				return nil
			}
			s.isFloat, s.f = true, float64(s.i)
		}
		s.f += float64(x)
	case float64:
		if !s.isFloat {
			s.isFloat, s.f = true, float64(s.i)
		}
		s.f += x
	default:
		return mismatchf("sum() needs numbers, got %s %s", typeName(v), quoteValue(v))
	}
	return nil
}

func (s *sumState) merge(o aggState) error {
	x := o.(*sumState)
	switch {
	case !x.any:
		return nil
	case x.isFloat:
		return s.add(x.f)
	}
	return s.add(x.i)
}

func (s *sumState) result() any {
	switch {
	case !s.any:
		return nil
	case s.isFloat:
		return finite(s.f)
	}
	return s.i
}

type avgState struct {
	n   int64
	sum float64
}

func (s *avgState) add(v any) error {
	f, ok := toFloat(v)
	if !ok {
		return mismatchf("avg() needs numbers, got %s %s", typeName(v), quoteValue(v))
	}
	s.n++
	s.sum += f
	return nil
}

func (s *avgState) merge(o aggState) error {
	x := o.(*avgState)
	s.n += x.n
	s.sum += x.sum
	return nil
}

func (s *avgState) result() any {
	if s.n == 0 {
		return nil
	}
	return finite(s.sum / float64(s.n))
}

type extremeState struct {
	max bool
	v   any
}

func (s *extremeState) add(v any) error {
	// Values of different types compare by type class, as in ORDER BY.
	if s.v == nil || s.max && orderValues(v, s.v) > 0 || !s.max && orderValues(v, s.v) < 0 {
		s.v = v
	}
	return nil
}

func (s *extremeState) result() any { return s.v }

func (s *extremeState) merge(o aggState) error {
	if v := o.(*extremeState).v; v != nil {
		return s.add(v)
	}
	return nil
}

// distinctState passes each distinct value to inner once. It keeps the
// values, in the order first seen, to be merged.
type distinctState struct {
	inner aggState
	seen  map[string]struct{}
	vals  []any
	buf   []byte
}

func (d *distinctState) add(v any) error {
	d.buf = appendKey(d.buf[:0], v)
	if _, dup := d.seen[string(d.buf)]; dup {
		return nil
	}
	d.seen[string(d.buf)] = struct{}{}
	d.vals = append(d.vals, v)
	return d.inner.add(v)
}

func (d *distinctState) result() any { return d.inner.result() }

func (d *distinctState) merge(o aggState) error {
	for _, v := range o.(*distinctState).vals {
		if err := d.add(v); err != nil && !isTypeError(err) {
			return err
		}
	}
	return nil
}

package query

import (
	"context"
	"errors"
	"fmt"
	"sort"

	"github.com/mqstream/mqstream/streams"
)

// executor runs one selectPlan. Rows flow from the first table's scan
// through the joins and the WHERE filter into a sink that either groups
// them, buffers them for sorting, or appends them to the result and stops
// the scan once LIMIT is reached.
type executor struct {
	ctx     context.Context
	e       *Engine
	p       *selectPlan
	maxRows int64
	scanned int64 // rows read from tables
	joined  int64 // rows formed by joins (also bounded by maxRows)

	row []any // the current input row (all tables side by side), reused

	// right holds each joined table's rows (its slots only) and, for hash
	// joins, their index by key.
	right [][][]any
	index []map[string][]int
	key   []byte

	// where the current first-table row came from, for error messages
	stream string
	offset uint64
	inRow  bool

	// sink state
	groups     map[string]*group
	groupOrder []*group
	seen       map[string]struct{} // DISTINCT
	sorted     []sortRow
	out        [][]any
	skip       int64 // OFFSET rows still to drop (unsorted path)
}

type group struct {
	first  []any
	states []aggState
}

type sortRow struct {
	vals, keys []any
}

// errStop ends a scan early (LIMIT reached).
var errStop = errors.New("stop")

func (x *executor) run() ([][]any, error) {
	p := x.p
	x.row = make([]any, p.width)
	x.skip = p.offset
	if p.agg {
		x.groups = map[string]*group{}
	}
	if p.distinct {
		x.seen = map[string]struct{}{}
	}
	if p.limit == 0 {
		return [][]any{}, nil
	}
	if len(p.tables) == 0 {
		if _, err := x.sink(x.row); err != nil {
			return nil, err
		}
	} else {
		if err := x.materializeJoins(); err != nil {
			return nil, err
		}
		if err := x.drive(); err != nil && !errors.Is(err, errStop) {
			return nil, x.decorate(err)
		}
	}
	x.inRow = false
	return x.finish()
}

// decorate adds the record being processed to an evaluation error.
func (x *executor) decorate(err error) error {
	var qe *Error
	if x.inRow && x.stream != "" && errors.As(err, &qe) && qe.Code == CodeSQL {
		cp := *qe
		cp.Message = fmt.Sprintf("%s (stream %s, offset %d)", qe.Message, x.stream, x.offset)
		return &cp
	}
	return err
}

// count charges one row read to the row budget.
func (x *executor) count() error {
	x.scanned++
	if x.scanned > x.maxRows {
		return &Error{Code: CodeBudget, Message: fmt.Sprintf(
			"query stopped: it read more than %d rows, the row budget; narrow it with WHERE _timestamp > now() - INTERVAL ... or _offset ranges, add LIMIT, or raise the budget (sql.max_rows_scanned in the node configuration)", x.maxRows)}
	}
	if x.scanned%1024 == 0 {
		if err := x.ctx.Err(); err != nil {
			return err
		}
	}
	return nil
}

// countJoined charges one row formed by the joins to the row budget: a
// join can form many more rows than its tables hold.
func (x *executor) countJoined() error {
	x.joined++
	if x.joined > x.maxRows {
		return &Error{Code: CodeBudget, Message: fmt.Sprintf(
			"query stopped: its joins formed more than %d rows, the row budget; add join conditions (ON a.x = b.y) or WHERE conditions, or raise the budget (sql.max_rows_scanned in the node configuration)", x.maxRows)}
	}
	if x.joined%1024 == 0 {
		if err := x.ctx.Err(); err != nil {
			return err
		}
	}
	return nil
}

// tableRows reads all rows of a table (its slots only), calling fn for each
// until it returns false.
func (x *executor) tableRows(t *tableInst, reverse bool, limitHint int64, fn func(seg []any) (bool, error)) error {
	if t.stat != nil {
		var rows [][]any
		var err error
		if t.view != nil {
			rows, err = t.view.Rows(x.ctx)
		} else {
			rows, err = x.e.statRows(x.ctx, t.stat.name)
		}
		if err != nil {
			return err
		}
		for _, r := range rows {
			if err := x.count(); err != nil {
				return err
			}
			if more, err := fn(r); err != nil || !more {
				return err
			}
		}
		return nil
	}
	from, to, err := x.e.offsets(t)
	if err != nil {
		return storeErr(t, err)
	}
	if from >= to {
		return nil // empty range (note that Scan reads to the newest record when to is 0)
	}
	seg := make([]any, t.width())
	visit := func(r *streams.Record) (bool, error) {
		recordRow(seg, r, t)
		x.offset = r.Offset
		return fn(seg)
	}
	if !reverse {
		err := x.e.opts.Store.Scan(x.ctx, t.stream.Name, from, to, func(r streams.Record) (bool, error) {
			if err := x.count(); err != nil {
				return false, err
			}
			return visit(&r)
		})
		return storeErr(t, err)
	}
	// Newest first: scan chunks backwards, each forwards, growing the chunk.
	chunk := uint64(max(64, min(limitHint, 1<<16)))
	var buf []streams.Record
	for to > from {
		lo := to - min(chunk, to-from)
		buf = buf[:0]
		err := x.e.opts.Store.Scan(x.ctx, t.stream.Name, lo, to, func(r streams.Record) (bool, error) {
			if err := x.count(); err != nil {
				return false, err
			}
			buf = append(buf, r)
			return true, nil
		})
		if err != nil {
			return storeErr(t, err)
		}
		for i := len(buf) - 1; i >= 0; i-- {
			more, err := visit(&buf[i])
			if err != nil || !more {
				return err
			}
		}
		to = lo
		chunk = min(chunk*2, 1<<16)
	}
	return nil
}

// storeErr explains store errors met while reading a table.
func storeErr(t *tableInst, err error) error {
	var qe *Error
	switch {
	case err == nil || errors.As(err, &qe) || errors.Is(err, errStop):
		return err
	case errors.Is(err, streams.ErrStreamNotFound):
		return &Error{Code: CodeSQL, Message: fmt.Sprintf("stream %s was deleted while the query read it", t.stream.Name), Err: err}
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return err
	}
	return fmt.Errorf("reading stream %s: %w", t.stream.Name, err)
}

// materializeJoins reads every joined table once, keeps the rows that pass
// its own conditions and indexes them by join key.
func (x *executor) materializeJoins() error {
	p := x.p
	x.right = make([][][]any, len(p.tables))
	x.index = make([]map[string][]int, len(p.tables))
	tmp := make([]any, p.width)
	for i, t := range p.tables {
		if i == 0 {
			continue
		}
		var rows [][]any
		err := x.tableRows(t, false, 0, func(seg []any) (bool, error) {
			copy(tmp[t.base:], seg)
			for _, c := range t.preConds {
				ok, err := cond(c, tmp)
				if err != nil || !ok {
					return err == nil, err
				}
			}
			rows = append(rows, append([]any(nil), seg...))
			return true, nil
		})
		if err != nil {
			return err
		}
		x.right[i] = rows
		if len(t.keyR) > 0 {
			idx := map[string][]int{}
			for ri, r := range rows {
				copy(tmp[t.base:], r)
				k, ok, err := x.joinKey(t.keyR, tmp)
				if err != nil {
					return err
				}
				if ok {
					idx[string(k)] = append(idx[string(k)], ri)
				}
			}
			x.index[i] = idx
		}
	}
	return nil
}

// joinKey encodes the values of key expressions; ok is false if one is
// NULL (NULL never equals anything).
func (x *executor) joinKey(keys []*compiled, row []any) ([]byte, bool, error) {
	x.key = x.key[:0]
	for _, k := range keys {
		v, err := k.eval(row)
		if err != nil || v == nil {
			return nil, false, err
		}
		x.key = appendKey(x.key, v)
	}
	return x.key, true, nil
}

func cond(c *compiled, row []any) (bool, error) {
	v, err := c.eval(row)
	if err != nil || v == nil {
		return false, err
	}
	t, err := truth(v)
	if err != nil {
		return false, wrapErr(err, c.pos)
	}
	return t, nil
}

// drive scans the first table and pushes its rows down the pipeline.
func (x *executor) drive() error {
	p := x.p
	t := p.tables[0]
	if t.stream != nil {
		x.stream = t.stream.Name
	}
	hint := int64(0)
	if p.limit > 0 {
		hint = p.limit + p.offset
	}
	return x.tableRows(t, p.natural < 0, hint, func(seg []any) (bool, error) {
		x.inRow = true
		copy(x.row[t.base:], seg)
		for _, c := range p.pre {
			ok, err := cond(c, x.row)
			if err != nil || !ok {
				return err == nil, err
			}
		}
		return x.join(1, x.row)
	})
}

// join extends row with the matching rows of table i and the ones after it.
func (x *executor) join(i int, row []any) (bool, error) {
	p := x.p
	if i == len(p.tables) {
		if i > 1 {
			if err := x.countJoined(); err != nil {
				return false, err
			}
		}
		return x.sink(row)
	}
	t := p.tables[i]
	rows := x.right[i]
	var cand []int
	hashed := x.index[i] != nil
	if hashed {
		k, ok, err := x.joinKey(t.keyL, row)
		if err != nil {
			return false, err
		}
		if ok {
			cand = x.index[i][string(k)]
		}
	}
	matched := false
	n := len(rows)
	if hashed {
		n = len(cand)
	}
	for j := 0; j < n; j++ {
		r := rows[j]
		if hashed {
			r = rows[cand[j]]
		}
		copy(row[t.base:], r)
		if t.on != nil {
			ok, err := cond(t.on, row)
			if err != nil {
				return false, err
			}
			if !ok {
				continue
			}
		}
		matched = true
		if more, err := x.join(i+1, row); err != nil || !more {
			return more, err
		}
	}
	if !matched && t.kind == joinLeft {
		clear(row[t.base : t.base+t.width()])
		return x.join(i+1, row)
	}
	return true, nil
}

// sink takes one joined row that passed the joins' conditions.
func (x *executor) sink(row []any) (bool, error) {
	p := x.p
	for _, c := range p.post {
		ok, err := cond(c, row)
		if err != nil || !ok {
			return err == nil, err
		}
	}
	if p.agg {
		x.key = x.key[:0]
		for _, g := range p.groupBy {
			v, err := g.eval(row)
			if err != nil {
				return false, err
			}
			x.key = appendKey(x.key, v)
		}
		grp, ok := x.groups[string(x.key)]
		if !ok {
			grp = &group{first: append([]any(nil), row...), states: p.aggs.newStates()}
			x.groups[string(x.key)] = grp
			x.groupOrder = append(x.groupOrder, grp)
		}
		return true, p.aggs.accumulate(grp.states, row)
	}
	return x.emit(row)
}

// emit projects a row (an input row, or a group's row with its aggregate
// values) and applies HAVING, DISTINCT, and ORDER BY or OFFSET/LIMIT.
func (x *executor) emit(row []any) (bool, error) {
	p := x.p
	vals := make([]any, len(p.items))
	for i, it := range p.items {
		v, err := it.eval(row)
		if err != nil {
			return false, err
		}
		vals[i] = v
	}
	*p.outs = vals
	if p.having != nil {
		ok, err := cond(p.having, row)
		if err != nil || !ok {
			return err == nil, err
		}
	}
	if p.distinct {
		var k []byte
		for _, v := range vals {
			k = appendKey(k, v)
		}
		if _, dup := x.seen[string(k)]; dup {
			return true, nil
		}
		x.seen[string(k)] = struct{}{}
	}
	if len(p.order) > 0 && p.natural == 0 {
		keys := make([]any, len(p.order))
		for i, o := range p.order {
			v, err := o.eval(row)
			if err != nil {
				return false, err
			}
			keys[i] = v
		}
		x.sorted = append(x.sorted, sortRow{vals: vals, keys: keys})
		return true, nil
	}
	if x.skip > 0 {
		x.skip--
		return true, nil
	}
	x.out = append(x.out, vals)
	return p.limit < 0 || int64(len(x.out)) < p.limit, nil
}

// finish emits the groups, sorts and applies OFFSET/LIMIT to sorted rows.
func (x *executor) finish() ([][]any, error) {
	p := x.p
	if p.agg {
		if len(x.groupOrder) == 0 && len(p.groupBy) == 0 {
			// Aggregates over no rows: one row (COUNT(*) = 0, SUM = NULL).
			x.groupOrder = append(x.groupOrder, &group{first: make([]any, p.width), states: p.aggs.newStates()})
		}
		post := make([]any, p.width+len(p.aggs.specs))
		for _, g := range x.groupOrder {
			copy(post, g.first)
			for i, st := range g.states {
				post[p.width+i] = st.result()
			}
			more, err := x.emit(post)
			if err != nil {
				return nil, err
			}
			if !more {
				break
			}
		}
	}
	if len(p.order) > 0 && p.natural == 0 {
		sort.SliceStable(x.sorted, func(i, j int) bool {
			a, b := x.sorted[i].keys, x.sorted[j].keys
			for k := range a {
				c := orderValues(a[k], b[k])
				if c == 0 {
					continue
				}
				if p.desc[k] {
					return c > 0
				}
				return c < 0
			}
			return false
		})
		rows := x.sorted[min(int64(len(x.sorted)), p.offset):]
		if p.limit >= 0 && int64(len(rows)) > p.limit {
			rows = rows[:p.limit]
		}
		out := make([][]any, len(rows))
		for i, r := range rows {
			out[i] = r.vals
		}
		return out, nil
	}
	if x.out == nil {
		x.out = [][]any{}
	}
	return x.out, nil
}

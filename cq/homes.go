package cq

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/mqstream/mqstream/query"
)

// Queries in a cluster (Options.Homes). A query's home is a stream: its
// output stream, or a view's source. The node leading the home's shard
// runs the query; the query's definition, progress hints and publication
// progress live in that shard's replicated key/value namespace, written
// with the leadership's term; its output is appended fenced by the same
// term. When the leadership moves, the old node stops the query and the
// new one starts it from the progress its output carries (doc.go), which
// it holds whole: a leader is reported only once it has applied every
// entry committed before its term. An output request of the old runner
// that was not committed by then is applied nowhere (fenced), so the new
// runner neither repeats nor loses a row. A view has no output: it runs
// on every node holding a replica of its source's shard, so that ad-hoc
// queries and lookup joins read it locally; its leader keeps its
// definition and lists it.

// Homes places the queries of a cluster; see above.
type Homes interface {
	// Lead reports whether this node leads stream's shard, and the term
	// of that leadership.
	Lead(stream string) (term uint64, ok bool)
	// Holds reports whether this node holds a replica of stream's shard
	// that serves reads.
	Holds(stream string) bool
	// KV is stream's shard's key/value namespace as this node's replica
	// holds it; writes are fenced by term (a term of 0 writes nothing).
	KV(stream string, term uint64) KV
	// Writer appends fenced by term (and creates and deletes streams).
	Writer(term uint64) Writer
}

// ElsewhereError is the error of a query request that another node of
// the cluster serves: the leader of Stream's shard, where the caller
// carries it.
type ElsewhereError struct{ Stream string }

func (e *ElsewhereError) Error() string {
	return fmt.Sprintf("cq: the query belongs to the leader of stream %s's shard, another node", e.Stream)
}

// place is where a runner keeps its state and writes its output: the
// manager's own namespace and writer standalone, its home shard's in a
// cluster, with the term they are fenced by (0: a view's replica, which
// writes nothing).
type place struct {
	kv   KV
	w    Writer
	term uint64
}

// homeOf is the stream whose shard runs a query: its output stream, or a
// view's source.
func homeOf(c *query.Continuous) string {
	if c.Kind == query.KindView {
		return c.Source
	}
	return c.Name
}

// placeOf returns the place of a query at home, or an *ElsewhereError
// when another node leads it.
func (m *Manager) placeOf(home string) (place, error) {
	h := m.opts.Homes
	if h == nil {
		return place{kv: m.opts.KV, w: m.opts.Writer}, nil
	}
	term, ok := h.Lead(home)
	if !ok {
		return place{}, &ElsewhereError{Stream: home}
	}
	return place{kv: h.KV(home, term), w: h.Writer(term), term: term}, nil
}

// adminPlace is where a request about runner r (TERMINATE, PAUSE,
// RESUME) writes, or an *ElsewhereError when another node serves it: a
// view's replica here, whose leader is another node. A view keeps
// running when its replica here becomes or stops being the leader, so
// its leadership is looked up at each request.
func (m *Manager) adminPlace(r *runner) (place, error) {
	if m.opts.Homes != nil && r.def.Everywhere {
		return m.placeOf(r.def.Home)
	}
	return r.place, nil
}

// elsewhere is adminPlace's error alone.
func (m *Manager) elsewhere(r *runner) error {
	_, err := m.adminPlace(r)
	return err
}

// wanted says whether definition d runs here, and where.
func (m *Manager) wanted(d definition) (place, bool) {
	if d.Home == "" {
		return place{}, false // not created in a cluster
	}
	if p, err := m.placeOf(d.Home); err == nil {
		return p, true
	}
	if d.Everywhere && m.opts.Homes.Holds(d.Home) {
		return place{kv: m.opts.Homes.KV(d.Home, 0), w: m.opts.Writer}, true
	}
	return place{}, false
}

// Reconcile runs here the queries whose home this node leads (views:
// whose source's shard it holds) and stops those it no longer does, or
// whose leadership term changed (restarted in the new term), or whose
// definition is gone. The node calls it at every change of the shards'
// leaders, and every second for definitions written by other nodes
// (views). Standalone it does nothing.
func (m *Manager) Reconcile() error {
	if m.opts.Homes == nil {
		return nil
	}
	defs, err := m.definitions()
	if err != nil {
		return err
	}
	// The runners of queries to replace are all cancelled first, then
	// replaced, each on its own: one slow to stop (an output write
	// waiting for a shard's leader) holds up no other.
	type job struct {
		id   string
		old  *runner
		d    definition
		p    place
		want bool
	}
	var jobs []job
	add := func(j job) {
		if j.old != nil {
			j.old.cancel()
		}
		jobs = append(jobs, j)
	}
	replaceAll := func() {
		// Each on its own: a new runner starts once its own old one
		// stopped, not once every one before it did.
		var wg sync.WaitGroup
		for _, j := range jobs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				m.replace(j.id, j.old, j.d, j.p, j.want)
			}()
		}
		wg.Wait()
	}
	seen := make(map[string]bool, len(defs))
	for _, d := range defs {
		seen[d.ID] = true
		p, want := m.wanted(d)
		m.mu.Lock()
		r := m.mu.queries[d.ID]
		m.mu.Unlock()
		if r == nil && !want || r != nil && want && m.keeps(r, d, p) { // keeps may compile: not under m.mu
			continue
		}
		m.mu.Lock()
		switch {
		case m.mu.closed:
			m.mu.Unlock()
			replaceAll()
			return nil
		case m.mu.busy[d.ID] || m.mu.queries[d.ID] != r:
			m.mu.Unlock()
			continue // being created or changed here: as it ends
		}
		m.mu.busy[d.ID] = true
		m.mu.Unlock()
		if want && !m.stillDefined(d) {
			// A request changed or removed it since the list was read
			// (TERMINATE, DROP VIEW, CREATE again): the next pass
			// sees what it wrote.
			m.release(d.ID)
			continue
		}
		if d.Everywhere {
			// A view at once (it writes nothing, so it stops at
			// once): the joins decided after it (views come first)
			// compile with it.
			m.replace(d.ID, r, d, p, want)
			continue
		}
		add(job{d.ID, r, d, p, want})
	}
	m.mu.Lock()
	var gone []string
	for id := range m.mu.queries {
		if !seen[id] && !m.mu.busy[id] {
			m.mu.busy[id] = true
			gone = append(gone, id)
		}
	}
	m.mu.Unlock()
	for _, id := range gone {
		m.mu.Lock()
		r := m.mu.queries[id]
		m.mu.Unlock()
		if r != nil && m.stillDefined(r.def) {
			if p, want := m.wanted(r.def); want && m.keeps(r, r.def, p) {
				m.release(id) // created since the list was read
				continue
			}
		}
		add(job{id: id, old: r})
	}
	replaceAll()
	return nil
}

// keeps reports whether runner r of definition d goes on running at p:
// the same leadership term (a view: any), the same definition (a view
// dropped and created again with the same name between two passes is
// another), and not one that failed to compile and would now (a join
// compiled before the view it looks up was seen here).
func (m *Manager) keeps(r *runner, d definition, p place) bool {
	switch {
	case r.place.term != p.term && !d.Everywhere:
		return false
	case r.def.SQL != d.SQL || !r.def.Created.Equal(d.Created):
		return false
	case r.c == nil && !d.Paused:
		_, err := query.CompileContinuousIn(d.SQL, m.resolve)
		return err != nil
	}
	return true
}

// stillDefined reports whether the home of definition d still holds it
// as it is, read again from the replica here; false too when it cannot
// be read.
func (m *Manager) stillDefined(d definition) bool {
	v, ok, err := m.opts.Homes.KV(d.Home, 0).Get(defKey(d.ID))
	if err != nil || !ok {
		return false
	}
	cur, err := decodeDefinition(v)
	return err == nil && cur.SQL == d.SQL && cur.Created.Equal(d.Created) && cur.Paused == d.Paused
}

// replace stops runner old of query id (if any) and, if want, starts d
// at p in its place; id is busy until it returns.
func (m *Manager) replace(id string, old *runner, d definition, p place, want bool) {
	defer m.release(id)
	if old != nil {
		// Its output requests are durable or failed once it stopped
		// (runner.output): the successor's start sees them, or they
		// are applied nowhere (fenced).
		old.terminate()
		m.log.Info("continuous query stopped here: its home moved", "query", id, "term", old.place.term)
	}
	var nr *runner
	if want {
		nr = m.prepareAt(d, p)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	switch {
	case nr == nil:
		delete(m.mu.queries, id)
		return
	case m.mu.closed:
		nr.park()
	case nr.runnable():
		m.launch(nr) // under the lock: Close waits for what was launched before it
	}
	m.mu.queries[id] = nr
	m.log.Info("continuous query runs here", "query", id, "home", d.Home, "term", p.term)
}

// definitions reads the kept definitions, views first (a join resolves
// the views it looks up when compiled).
func (m *Manager) definitions() ([]definition, error) {
	var defs []definition
	err := m.opts.KV.Scan([]byte(defPrefix), func(_, v []byte) error {
		d, err := decodeDefinition(v)
		if err != nil {
			return fmt.Errorf("cq: query definition: %w", err)
		}
		defs = append(defs, d)
		return nil
	})
	if err != nil {
		return nil, err
	}
	views := map[string]bool{}
	for _, d := range defs {
		if m.opts.Homes != nil {
			views[d.ID] = d.Everywhere // kept with the definition: no compiling every second
		} else if c, err := query.CompileContinuous(d.SQL); err == nil && c.Kind == query.KindView {
			views[d.ID] = true
		}
	}
	slices.SortStableFunc(defs, func(a, b definition) int {
		va, vb := views[a.ID], views[b.ID]
		switch {
		case va && !vb:
			return -1
		case vb && !va:
			return 1
		}
		return 0
	})
	return defs, nil
}

// definedElsewhere reports whether a query of another home has id: in a
// cluster, ids are unique across the definitions this node's replicas
// hold (every shard's, with as many nodes as the replication factor).
func (m *Manager) definedElsewhere(id string) (bool, error) {
	if m.opts.Homes == nil {
		return false, nil
	}
	found := false
	err := m.opts.KV.Scan(defKey(id), func(k, _ []byte) error {
		found = found || string(k) == string(defKey(id))
		return nil
	})
	return found, err
}

// insertSeqOf returns the number in an INSERT INTO query's id
// (<stream>_insert_<n>).
func insertSeqOf(id string) (uint64, bool) {
	i := strings.LastIndex(id, "_insert_")
	if i < 0 {
		return 0, false
	}
	n, err := strconv.ParseUint(id[i+len("_insert_"):], 10, 64)
	return n, err == nil
}

// highestInsertSeq returns the highest number among the INSERT INTO
// queries into stream whose definitions kv holds (0 if none).
func highestInsertSeq(kv KV, stream string) (uint64, error) {
	prefix := string(defKey(stream + "_insert_"))
	var highest uint64
	err := kv.Scan([]byte(prefix), func(k, _ []byte) error {
		if n, err := strconv.ParseUint(string(k[len(prefix):]), 10, 64); err == nil {
			highest = max(highest, n)
		}
		return nil
	})
	return highest, err
}

// nextInsertSeq returns the number of the last INSERT INTO query created
// whose definition kv holds (0 if none).
func nextInsertSeq(kv KV) (uint64, error) {
	v, ok, err := kv.Get([]byte(seqKey))
	if err != nil || !ok {
		return 0, err
	}
	n, err := decodeHint(v)
	return uint64(n), err
}

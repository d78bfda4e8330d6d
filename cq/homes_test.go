package cq

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand"
	"sync"
	"testing"
	"time"

	"github.com/mqstream/mqstream/internal/testutil"
	"github.com/mqstream/mqstream/query"
	"github.com/mqstream/mqstream/streams"
)

// fakeLeadership stands for a cluster's shard leadership over one store
// that two managers share as their replicated state: one node leads in
// the current term; writes carry the term they were made in and are
// refused once it is over (fenced); a new term starts only once the
// writes of the old one are applied (the barrier Set.Lead waits for).
type fakeLeadership struct {
	store *streams.Store
	mu    sync.Mutex
	cond  *sync.Cond
	// leader, term: who leads now; inflight: writes admitted, not done.
	leader   string
	term     uint64
	inflight int
	fenced   int // writes refused (for the test's report)
}

var errFakeFenced = errors.New("fake: the term is over")

func newFakeLeadership(store *streams.Store, leader string) *fakeLeadership {
	f := &fakeLeadership{store: store, leader: leader, term: 1}
	f.cond = sync.NewCond(&f.mu)
	return f
}

// admit counts a write of term in flight, or refuses it.
func (f *fakeLeadership) admit(term uint64) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if term != f.term {
		f.fenced++
		return errFakeFenced
	}
	f.inflight++
	return nil
}

func (f *fakeLeadership) done() {
	f.mu.Lock()
	f.inflight--
	f.cond.Broadcast()
	f.mu.Unlock()
}

// moveTo starts a new term led by node, once the old term's writes are
// applied.
func (f *fakeLeadership) moveTo(node string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.leader, f.term = node, f.term+1
	for f.inflight > 0 {
		f.cond.Wait()
	}
}

// fakeHomes is one node's cq.Homes over f.
type fakeHomes struct {
	self string
	f    *fakeLeadership
}

func (h fakeHomes) Lead(string) (uint64, bool) {
	h.f.mu.Lock()
	defer h.f.mu.Unlock()
	return h.f.term, h.f.leader == h.self
}

func (h fakeHomes) Holds(string) bool           { return true }
func (h fakeHomes) KV(_ string, term uint64) KV { return fencedKV{h.f, term, h.f.store.KV("home")} }
func (h fakeHomes) Writer(term uint64) Writer   { return fencedStore{h.f.store, h.f, term} }
func (h fakeHomes) manager(t *testing.T, now func() time.Time) *Manager {
	m, err := New(Options{Reader: h.f.store, Writer: h.f.store, KV: h.f.store.KV("home"), Homes: h, IdleTimeout: 50 * time.Millisecond,
		Tick: 5 * time.Millisecond, HintInterval: time.Millisecond, Now: now, Logger: testutil.Logger()})
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

type fencedKV struct {
	f    *fakeLeadership
	term uint64
	kv   *streams.KV
}

func (k fencedKV) Get(key []byte) ([]byte, bool, error) { return k.kv.Get(key) }
func (k fencedKV) Scan(prefix []byte, fn func(key, value []byte) error) error {
	return k.kv.Scan(prefix, fn)
}

func (k fencedKV) Write(ctx context.Context, writes ...streams.KVWrite) error {
	if err := k.f.admit(k.term); err != nil {
		return err
	}
	defer k.f.done()
	return k.kv.Write(ctx, writes...)
}

func (k fencedKV) Submit(writes []streams.KVWrite, noSync bool, done func(error)) error {
	if err := k.f.admit(k.term); err != nil {
		return err
	}
	err := k.kv.Submit(writes, noSync, func(err error) {
		k.f.done()
		if done != nil {
			done(err)
		}
	})
	if err != nil {
		k.f.done()
	}
	return err
}

type fencedStore struct {
	*streams.Store
	f    *fakeLeadership
	term uint64
}

func (w fencedStore) Submit(req streams.AppendRequest) error {
	if err := w.f.admit(w.term); err != nil {
		return err
	}
	done := req.Done
	req.Done = func(first uint64, err error) {
		w.f.done()
		done(first, err)
	}
	err := w.Store.Submit(req)
	if err != nil {
		w.f.done()
	}
	return err
}

// TestQueriesMoveWithTheLeadership: two managers share a store as two
// nodes share the replicated state; the leadership moves between them
// twenty times while input is appended, and the new leader's manager
// takes the queries over before the old one has noticed (the worst
// order). The output of a filter and of a windowed count is exactly
// that of one uninterrupted run: no row lost, none repeated. A request
// on the node that does not lead is answered ElsewhereError.
func TestQueriesMoveWithTheLeadership(t *testing.T) {
	store, err := streams.Open(streams.Options{Dir: t.TempDir(), Sync: streams.SyncNone, Logger: testutil.Logger()})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	if _, err := store.CreateStream(context.Background(), "src", streams.Retention{}); err != nil {
		t.Fatal(err)
	}
	f := newFakeLeadership(store, "a")
	nodes := map[string]*Manager{}
	for _, id := range []string{"a", "b"} {
		nodes[id] = fakeHomes{id, f}.manager(t, time.Now)
	}
	ctx := context.Background()
	const filter = "CREATE STREAM out AS SELECT i FROM src WHERE i >= 0"
	const counts = "CREATE STREAM counts AS SELECT count(*) AS n FROM src GROUP BY TUMBLING(INTERVAL 20 MILLISECOND)"
	var ee *ElsewhereError
	if _, err := nodes["b"].Create(ctx, filter); !errors.As(err, &ee) || ee.Stream != "out" {
		t.Fatalf("CREATE on the node that does not lead: %v, want ElsewhereError for out", err)
	}
	for _, sql := range []string{filter, counts} {
		if _, err := nodes["a"].Create(ctx, sql); err != nil {
			t.Fatal(err)
		}
	}
	const records = 3000
	appended := make(chan struct{})
	go func() {
		defer close(appended)
		for i := 0; i < records; i += 10 {
			recs := make([]streams.Record, 10)
			for j := range recs {
				recs[j] = streams.Record{Topic: "src", Payload: fmt.Appendf(nil, `{"i":%d}`, i+j)}
			}
			if _, err := store.Append(ctx, "src", recs...); err != nil {
				t.Error(err)
				return
			}
			time.Sleep(time.Millisecond)
		}
	}()
	rng := rand.New(rand.NewSource(1))
	leader, other := "a", "b"
	for move := 0; move < 20; move++ {
		time.Sleep(time.Duration(5+rng.Intn(20)) * time.Millisecond)
		f.moveTo(other)
		leader, other = other, leader
		if err := nodes[leader].Reconcile(); err != nil { // the new leader first
			t.Fatal(err)
		}
		if err := nodes[other].Reconcile(); err != nil {
			t.Fatal(err)
		}
		if _, err := nodes[other].Pause(ctx, "out"); !errors.As(err, &ee) && !errors.Is(err, ErrNotFound) {
			t.Fatalf("PAUSE on the node that no longer leads: %v", err)
		}
		if got := len(nodes[other].List()); got != 0 {
			t.Fatalf("the node that no longer leads lists %d queries", got)
		}
	}
	<-appended
	payloads := func(stream string) []string {
		var out []string
		_ = store.Scan(ctx, stream, 0, 0, func(r streams.Record) (bool, error) {
			out = append(out, string(r.Payload))
			return true, nil
		})
		return out
	}
	testutil.Eventually(t, 20*time.Second, "every record filtered and counted", func() bool {
		n := 0
		for _, p := range payloads("counts") {
			var row struct{ N int }
			_ = json.Unmarshal([]byte(p), &row)
			n += row.N
		}
		return len(payloads("out")) >= records && n >= records
	})
	for i, p := range payloads("out") {
		if want := fmt.Sprintf(`{"i":%d}`, i); p != want || i >= records {
			t.Fatalf("out row %d is %s, want %s of %d rows", i, p, want, records)
		}
	}
	n, starts := 0, map[string]bool{}
	for _, p := range payloads("counts") {
		var row struct {
			Start string `json:"window_start"`
			N     int
		}
		if err := json.Unmarshal([]byte(p), &row); err != nil || starts[row.Start] {
			t.Fatalf("counts row %s: %v, or its window output twice", p, err)
		}
		starts[row.Start] = true
		n += row.N
	}
	if n != records {
		t.Fatalf("the windows count %d records, want %d", n, records)
	}
	t.Logf("%d writes of a deposed leader fenced", f.fenced)
}

// TestCreateWaitsForAnInputNotSeenYet: in a cluster, an input stream
// created a moment ago through another node may not have reached this
// node's replica yet: CREATE waits for it (up to inputWait), and a
// stream that does not come is still an error at its position.
func TestCreateWaitsForAnInputNotSeenYet(t *testing.T) {
	store, err := streams.Open(streams.Options{Dir: t.TempDir(), Sync: streams.SyncNone, Logger: testutil.Logger()})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	m := fakeHomes{"a", newFakeLeadership(store, "a")}.manager(t, time.Now)
	ctx := context.Background()
	go func() {
		time.Sleep(300 * time.Millisecond)
		if _, err := store.CreateStream(ctx, "late_src", streams.Retention{}); err != nil {
			t.Error(err)
		}
	}()
	if _, err := m.Create(ctx, "CREATE STREAM copied AS SELECT v FROM late_src"); err != nil {
		t.Fatalf("CREATE over a stream that arrives 300 ms later: %v", err)
	}
	start := time.Now()
	_, err = m.Create(ctx, "CREATE STREAM never AS SELECT v FROM nosuch")
	var qe *query.Error
	if !errors.As(err, &qe) || qe.Column != 38 || time.Since(start) < inputWait {
		t.Fatalf("CREATE over a stream that never comes: %v after %v", err, time.Since(start))
	}
}

package cq

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mqstream/mqstream/internal/testutil"
	"github.com/mqstream/mqstream/streams"
)

// Reconcile reads the definitions once and then goes through them; the
// requests that change a query meanwhile (TERMINATE, CREATE, DROP VIEW
// and CREATE VIEW again) must win over what it read.

func reconcileStore(t *testing.T, streamNames ...string) *streams.Store {
	t.Helper()
	store, err := streams.Open(streams.Options{Dir: t.TempDir(), Sync: streams.SyncNone, Logger: testutil.Logger()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	for _, s := range streamNames {
		if _, err := store.CreateStream(context.Background(), s, streams.Retention{}); err != nil {
			t.Fatal(err)
		}
	}
	return store
}

// afterScanKV runs after once, after the next Scan (Reconcile's read of
// the definitions), and hides the keys starting with hide from Scan while
// hide is set (a shard held here that does not serve yet).
type afterScanKV struct {
	*streams.KV
	after func()
	hide  string
}

func (k *afterScanKV) Scan(prefix []byte, fn func(key, value []byte) error) error {
	err := k.KV.Scan(prefix, func(key, value []byte) error {
		if k.hide != "" && len(key) >= len(k.hide) && string(key[:len(k.hide)]) == k.hide {
			return nil
		}
		return fn(key, value)
	})
	if after := k.after; after != nil {
		k.after = nil
		after()
	}
	return err
}

func managerOver(t *testing.T, f *fakeLeadership, self string, kv KV) *Manager {
	t.Helper()
	m, err := New(Options{Reader: f.store, Writer: f.store, KV: kv, Homes: fakeHomes{self, f}, IdleTimeout: 50 * time.Millisecond,
		Tick: 5 * time.Millisecond, HintInterval: time.Millisecond, Logger: testutil.Logger()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

func TestReconcileDoesNotRestartAQueryTerminatedMeanwhile(t *testing.T) {
	store := reconcileStore(t, "src")
	f := newFakeLeadership(store, "a")
	kv := &afterScanKV{KV: store.KV("home")}
	m := managerOver(t, f, "a", kv)
	ctx := context.Background()
	if _, err := m.Create(ctx, "CREATE STREAM out AS SELECT i FROM src WHERE i >= 0"); err != nil {
		t.Fatal(err)
	}
	kv.after = func() {
		if err := m.Terminate(ctx, "out"); err != nil {
			t.Error(err)
		}
	}
	if err := m.Reconcile(); err != nil {
		t.Fatal(err)
	}
	if list := m.List(); len(list) != 0 {
		t.Fatalf("a query terminated while Reconcile went through the definitions runs again: %+v", list)
	}
}

func TestReconcileDoesNotStopAQueryCreatedMeanwhile(t *testing.T) {
	store := reconcileStore(t, "src")
	f := newFakeLeadership(store, "a")
	kv := &afterScanKV{KV: store.KV("home")}
	m := managerOver(t, f, "a", kv)
	ctx := context.Background()
	kv.after = func() {
		if _, err := m.Create(ctx, "CREATE STREAM out AS SELECT i FROM src WHERE i >= 0"); err != nil {
			t.Error(err)
		}
	}
	if err := m.Reconcile(); err != nil {
		t.Fatal(err)
	}
	if list := m.List(); len(list) != 1 {
		t.Fatalf("a query created while Reconcile went through the definitions was stopped: %+v", list)
	}
}

// TestCreateClearsProgressAnEarlierQueryLeft: a hint written by an
// earlier query of the id after its TERMINATE (a runner of an earlier
// term, a background write) made a query created again with the same
// name skip input.
func TestCreateClearsProgressAnEarlierQueryLeft(t *testing.T) {
	store := reconcileStore(t, "src")
	f := newFakeLeadership(store, "a")
	m := managerOver(t, f, "a", store.KV("home"))
	ctx := context.Background()
	if err := store.KV("home").Write(ctx, streams.KVWrite{Key: inputKey("out"), Value: encodeHint(1)}); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Create(ctx, "CREATE STREAM out AS SELECT i FROM src WHERE i >= 0"); err != nil {
		t.Fatal(err)
	}
	for i := range 2 {
		if _, err := store.Append(ctx, "src", streams.Record{Topic: "src", Payload: []byte(`{"i":` + string(rune('0'+i)) + `}`)}); err != nil {
			t.Fatal(err)
		}
	}
	testutil.Eventually(t, 10*time.Second, "both records in out", func() bool {
		info, err := store.DescribeStream("out")
		return err == nil && info.NextOffset == 2
	})
}

// TestViewCreatedAgainIsReplacedOnOtherNodes: DROP VIEW and CREATE VIEW
// of the same name between two passes of a node holding a replica left
// it running the dropped definition.
func TestViewCreatedAgainIsReplacedOnOtherNodes(t *testing.T) {
	store := reconcileStore(t, "src")
	f := newFakeLeadership(store, "a")
	a := fakeHomes{"a", f}.manager(t, time.Now)
	b := fakeHomes{"b", f}.manager(t, time.Now)
	ctx := context.Background()
	if _, err := a.Create(ctx, "CREATE VIEW v AS SELECT k, count(*) AS n FROM src GROUP BY k"); err != nil {
		t.Fatal(err)
	}
	if err := b.Reconcile(); err != nil {
		t.Fatal(err)
	}
	if _, ok := b.View("v"); !ok {
		t.Fatal("the view does not run on b")
	}
	if err := a.DropView(ctx, "v"); err != nil {
		t.Fatal(err)
	}
	again := "CREATE VIEW v AS SELECT k, sum(x) AS total FROM src GROUP BY k"
	if _, err := a.Create(ctx, again); err != nil {
		t.Fatal(err)
	}
	if err := b.Reconcile(); err != nil {
		t.Fatal(err)
	}
	b.mu.Lock()
	r := b.mu.queries["v"]
	b.mu.Unlock()
	if r == nil || r.def.SQL != again {
		t.Fatalf("b runs the dropped definition of v: %+v", r)
	}
}

// TestJoinThatFailedToCompileIsBuiltOnceItCan: the node leading a join's
// home compiled it before it saw the view the join looks up (the view's
// source's shard not serving here yet); the join failed, and stayed
// failed for the whole term.
func TestJoinThatFailedToCompileIsBuiltOnceItCan(t *testing.T) {
	store := reconcileStore(t, "temps", "registry")
	f := newFakeLeadership(store, "a")
	a := fakeHomes{"a", f}.manager(t, time.Now)
	ctx := context.Background()
	if _, err := a.Create(ctx, devicesView); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Create(ctx, "CREATE STREAM known AS SELECT sensor, floor FROM temps JOIN devs ON sensor = id"); err != nil {
		t.Fatal(err)
	}
	kv := &afterScanKV{KV: store.KV("home"), hide: "d/devs"}
	b := managerOver(t, f, "b", kv)
	f.moveTo("b")
	if err := a.Reconcile(); err != nil {
		t.Fatal(err)
	}
	if err := b.Reconcile(); err != nil {
		t.Fatal(err)
	}
	status := func() (string, string) {
		for _, q := range b.List() {
			if q.ID == "known" {
				return q.Status, q.Error
			}
		}
		return "", ""
	}
	if st, _ := status(); st != "error" {
		t.Fatalf("the join compiled without its view: %s", st)
	}
	kv.hide = ""
	if err := b.Reconcile(); err != nil {
		t.Fatal(err)
	}
	if st, msg := status(); st == "error" {
		t.Fatalf("the join stays failed once its view runs here: %s", msg)
	}
}

// failingHomes is fakeHomes whose key/value writes fail while fail is set.
type failingHomes struct {
	fakeHomes
	fail *atomic.Bool
}

func (h failingHomes) KV(home string, term uint64) KV {
	return failingKV{h.fakeHomes.KV(home, term), h.fail}
}

type failingKV struct {
	KV
	fail *atomic.Bool
}

func (k failingKV) Write(ctx context.Context, writes ...streams.KVWrite) error {
	if k.fail.Load() {
		return errors.New("injected: the write failed")
	}
	return k.KV.Write(ctx, writes...)
}

// TestTerminateThatFailedLeavesTheQueryRunning: TERMINATE stopped the
// runner before deleting the definition; when the delete failed, the
// query stayed listed, stopped, for the rest of the term.
func TestTerminateThatFailedLeavesTheQueryRunning(t *testing.T) {
	store := reconcileStore(t, "src")
	f := newFakeLeadership(store, "a")
	var fail atomic.Bool
	m, err := New(Options{Reader: store, Writer: store, KV: store.KV("home"), Homes: failingHomes{fakeHomes{"a", f}, &fail},
		IdleTimeout: 50 * time.Millisecond, Tick: 5 * time.Millisecond, HintInterval: time.Millisecond, Logger: testutil.Logger()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	ctx := context.Background()
	if _, err := m.Create(ctx, "CREATE STREAM out AS SELECT i FROM src WHERE i >= 0"); err != nil {
		t.Fatal(err)
	}
	fail.Store(true)
	if err := m.Terminate(ctx, "out"); err == nil {
		t.Fatal("TERMINATE answered although its write failed")
	}
	fail.Store(false)
	if _, err := store.Append(ctx, "src", streams.Record{Topic: "src", Payload: []byte(`{"i":1}`)}); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 10*time.Second, "the query runs on", func() bool {
		info, err := store.DescribeStream("out")
		return err == nil && info.NextOffset == 1
	})
}

// TestInsertIntoNeverReusesAKeptID: two INSERT INTO creations racing on
// a leader may leave the lower of their numbers kept; the next leader
// then numbered its next one with the other's id, and overwrote that
// query's definition before it ran there.
func TestInsertIntoNeverReusesAKeptID(t *testing.T) {
	store := reconcileStore(t, "src", "merged")
	f := newFakeLeadership(store, "a")
	a := fakeHomes{"a", f}.manager(t, time.Now)
	ctx := context.Background()
	first, err := a.Create(ctx, "INSERT INTO merged SELECT i FROM src WHERE i > 0")
	if err != nil {
		t.Fatal(err)
	}
	// The other creation's write landed last: the kept number is below
	// first's.
	if err := store.KV("home").Write(ctx, streams.KVWrite{Key: []byte(seqKey), Value: encodeHint(0)}); err != nil {
		t.Fatal(err)
	}
	f.moveTo("b")
	b := managerOver(t, f, "b", store.KV("home")) // b has not run first yet
	second, err := b.Create(ctx, "INSERT INTO merged SELECT i FROM src WHERE i > 1")
	if err != nil {
		t.Fatal(err)
	}
	if second.ID == first.ID {
		t.Fatalf("the new query took the id %s of a kept one", first.ID)
	}
	v, ok, err := store.KV("home").Get(defKey(first.ID))
	if err != nil || !ok {
		t.Fatalf("%s's definition: %v %v", first.ID, ok, err)
	}
	if d, err := decodeDefinition(v); err != nil || !strings.Contains(d.SQL, "i > 0") {
		t.Fatalf("%s's definition overwritten: %+v %v", first.ID, d, err)
	}
}

// TestInsertIntoNeverReusesATerminatedID: the kept number fell below a
// query's (two creations racing), and that query was then terminated:
// its definition is gone, its output records stay, and a new query of
// its id would take them for its progress.
func TestInsertIntoNeverReusesATerminatedID(t *testing.T) {
	store := reconcileStore(t, "src", "merged")
	f := newFakeLeadership(store, "a")
	a := fakeHomes{"a", f}.manager(t, time.Now)
	ctx := context.Background()
	first, err := a.Create(ctx, "INSERT INTO merged SELECT i FROM src WHERE i > 0")
	if err != nil {
		t.Fatal(err)
	}
	if err := store.KV("home").Write(ctx, streams.KVWrite{Key: []byte(seqKey), Value: encodeHint(0)}); err != nil {
		t.Fatal(err)
	}
	if err := a.Terminate(ctx, first.ID); err != nil {
		t.Fatal(err)
	}
	f.moveTo("b")
	b := managerOver(t, f, "b", store.KV("home"))
	second, err := b.Create(ctx, "INSERT INTO merged SELECT i FROM src WHERE i > 1")
	if err != nil {
		t.Fatal(err)
	}
	if second.ID == first.ID {
		t.Fatalf("the new query took the id %s of a terminated one", first.ID)
	}
}

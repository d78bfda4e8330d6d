package shards

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/mqstream/mqstream/internal/testutil"
	"github.com/mqstream/mqstream/streams"
)

// TestForwardWhoseAnswerIsLostIsStoredOnce: the leader commits forwarded
// appends but the answers never reach the forwarding node, which sends
// them again: each record is stored once and every append succeeds.
func TestForwardWhoseAnswerIsLostIsStoredOnce(t *testing.T) {
	c := newCluster(t, 3, 1, 3)
	leaders := c.waitLeaders()
	follower := c.nodes[(leaders[0]+1)%3]
	stream := streamOfShard(t, 0, 1)
	c.mu.Lock()
	c.dropAnswers = 3
	c.mu.Unlock()
	var want []string
	for i := 0; i < 6; i++ {
		r := streams.Record{Topic: "t", Payload: fmt.Appendf(nil, "once-%d", i)}
		first, err := follower.set.Append(context.Background(), stream, r)
		if err != nil {
			t.Fatalf("append %d: %v", i, err)
		}
		if first != uint64(i) {
			t.Fatalf("append %d answered with offset %d", i, first)
		}
		want = append(want, string(r.Payload))
	}
	c.sameEverywhere(stream, want)
}

// applyEntry applies one entry at index to f and returns its results.
func applyEntry(t *testing.T, f *fsm, index uint64, cmds ...appendCmd) []appendResult {
	t.Helper()
	return applyEntryAs(t, f, index, entryVersion1, cmds...)
}

// applyEntryAs is applyEntry with the entry in at least version least.
func applyEntryAs(t *testing.T, f *fsm, index uint64, least byte, cmds ...appendCmd) []appendResult {
	t.Helper()
	out := f.ApplyBatch([]*raft.Log{{Index: index, Type: raft.LogCommand, Data: encodeEntryAs(time.Now(), cmds, least)}})
	res, _ := out[0].([]appendResult)
	return res
}

// openTestFSM opens a store in a temporary directory and a state machine
// of a one-shard cluster over it.
func openTestFSM(t *testing.T) (*fsm, *streams.Store) {
	t.Helper()
	store, err := streams.Open(streams.Options{Dir: t.TempDir(), AutoCreate: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	f, err := newFSM(fsmConfig{shards: 1, store: store, logger: testutil.Logger(), stop: make(chan struct{})})
	if err != nil {
		t.Fatal(err)
	}
	return f, store
}

// TestStateMachineAnswersRetriesFromItsWindow: a repeated append id is
// answered with the first result and not stored; the window survives a
// snapshot and a replay of entries the store holds already; an id
// evicted from the window is stored again (the window's bound).
func TestStateMachineAnswersRetriesFromItsWindow(t *testing.T) {
	store, err := streams.Open(streams.Options{Dir: t.TempDir(), AutoCreate: true})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	stop := make(chan struct{})
	f, err := newFSM(fsmConfig{shards: 1, store: store, logger: testutil.Logger(), stop: stop})
	if err != nil {
		t.Fatal(err)
	}
	cmd := func(seq uint64, payload string) appendCmd {
		return appendCmd{kind: kindAppend, stream: "s", id: appendID{17, seq},
			records: encodeRecords([]streams.Record{{Topic: "t", Payload: []byte(payload)}})}
	}
	if r := applyEntry(t, f, 1, cmd(1, "a"), cmd(2, "b")); r[1].err != nil || r[1].first != 1 {
		t.Fatalf("first entry: %+v", r)
	}
	// The retry of seq 2 in the same entry as a new append.
	if r := applyEntry(t, f, 2, cmd(2, "b"), cmd(3, "c")); r[0].first != 1 || r[0].err != nil || r[1].first != 2 {
		t.Fatalf("retry: %+v", r)
	}
	if info, _ := store.DescribeStream("s"); info.NextOffset != 3 {
		t.Fatalf("%d records stored, want 3", info.NextOffset)
	}

	// A new state machine over the same store: a replay of the entries
	// remembers their ids; a retry after it is not stored.
	g, _ := newFSM(fsmConfig{shards: 1, store: store, logger: testutil.Logger(), stop: stop})
	applyEntry(t, g, 1, cmd(1, "a"), cmd(2, "b"))
	applyEntry(t, g, 2, cmd(2, "b"), cmd(3, "c"))
	// The replay derived the results: the retry is answered with the
	// offset the first apply gave.
	if r := applyEntry(t, g, 3, cmd(3, "c")); r[0].err != nil || r[0].first != 2 {
		t.Fatalf("retry after replay: %+v", r)
	}
	if info, _ := store.DescribeStream("s"); info.NextOffset != 3 {
		t.Fatalf("after the replay: %d records, want 3", info.NextOffset)
	}

	// The window travels in snapshots.
	snap, _ := g.Snapshot()
	sink := &memSink{}
	if err := snap.Persist(sink); err != nil {
		t.Fatal(err)
	}
	h, _ := newFSM(fsmConfig{shards: 1, store: store, logger: testutil.Logger(), stop: stop})
	if err := h.Restore(sink.reader()); err != nil {
		t.Fatal(err)
	}
	if e, ok := h.dd.lookup(appendID{17, 3}); !ok || e.result == nil || e.result.first != 2 {
		t.Fatalf("the restored window's seq 3: %+v %v", e, ok)
	}
	// A snapshot ahead of the store is refused.
	ahead := &memSink{}
	ahead.Write(encodeSnapshot(shardState{index: 99, complete: true}))
	if err := h.Restore(ahead.reader()); err == nil {
		t.Fatal("restored a snapshot the store is behind")
	}

	// Eviction is first in, first out.
	d := newDedupe()
	for i := 0; i < dedupeWindow+5; i++ {
		d.add(appendID{9, uint64(i)}, nil)
	}
	if _, ok := d.lookup(appendID{9, 4}); ok {
		t.Fatal("seq 4 still remembered past the window")
	}
	if _, ok := d.lookup(appendID{9, 5}); !ok {
		t.Fatal("seq 5 forgotten too early")
	}
	if ids := d.ids(); len(ids) != dedupeWindow || ids[0].seq != 5 {
		t.Fatalf("window %d ids from %d", len(ids), ids[0].seq)
	}
}

// mapDedupe is the window as a plain map of every id: the model the
// per-producer runs must agree with.
type mapDedupe struct {
	window int
	ring   []dedupeEntry
	next   int
	index  map[appendID]int
}

func (m *mapDedupe) lookup(id appendID) (*appendResult, bool) {
	if id.producer == 0 {
		return nil, false
	}
	pos, ok := m.index[id]
	if !ok {
		return nil, false
	}
	return m.ring[pos].result, true
}

func (m *mapDedupe) add(id appendID, result *appendResult) {
	if id.producer == 0 {
		return
	}
	e := dedupeEntry{id: id, result: result}
	if len(m.ring) < m.window {
		m.index[id] = len(m.ring)
		m.ring = append(m.ring, e)
		return
	}
	old := m.ring[m.next]
	if pos, ok := m.index[old.id]; ok && pos == m.next {
		delete(m.index, old.id)
	}
	m.ring[m.next] = e
	m.index[id] = m.next
	m.next = (m.next + 1) % m.window
}

// TestDedupeAgreesWithAMapOfIDs drives the window and the model with the
// same ids: mostly in order per producer, some swapped, retries of ids in
// and past the window, ids applied twice, three producers and appends
// without id. Every lookup and the snapshot's ids must agree.
func TestDedupeAgreesWithAMapOfIDs(t *testing.T) {
	for _, window := range []int{1, 7, 64, 1000} {
		rng := rand.New(rand.NewPCG(uint64(window), 99))
		d := newDedupeWindow(window)
		m := &mapDedupe{window: window, index: make(map[appendID]int)}
		next := map[uint64]uint64{}
		var applied []appendID
		for step := 0; step < 20000; step++ {
			var id appendID
			switch r := rng.IntN(100); {
			case r < 3:
				id = appendID{0, rng.Uint64N(100)}
			case r < 10 && len(applied) > 0: // a retry, recent or old
				back := 1 + rng.IntN(min(len(applied), 3*window))
				id = applied[len(applied)-back]
			case r < 15: // two of a producer swapped
				p := 1 + rng.Uint64N(3)
				next[p] += 2
				id = appendID{p, next[p]}
				res := new(appendResult)
				d.add(id, res)
				m.add(id, res)
				applied = append(applied, id)
				id = appendID{p, next[p] - 1}
			default:
				p := 1 + rng.Uint64N(3)
				next[p]++
				id = appendID{p, next[p]}
			}
			got, gok := d.lookup(id)
			want, wok := m.lookup(id)
			if gok != wok || (gok && got.result != want) {
				t.Fatalf("window %d step %d: lookup %v = %v %v, the model says %v %v", window, step, id, got.result, gok, want, wok)
			}
			if id.producer != 0 && (!gok || rng.IntN(4) == 0) { // an id applied again now and then
				res := new(appendResult)
				d.add(id, res)
				m.add(id, res)
				applied = append(applied, id)
			}
		}
		// The snapshot's ids: the model's ring, oldest first.
		var want []appendID
		for i := range m.ring {
			want = append(want, m.ring[(m.next+i)%len(m.ring)].id)
		}
		if got := d.ids(); !slices.Equal(got, want) {
			t.Fatalf("window %d: ids %v, the model's %v", window, got[:min(len(got), 5)], want[:min(len(want), 5)])
		}
		// Restored from them, every id is there.
		r := newDedupeWindow(window)
		for _, id := range want {
			r.add(id, nil)
		}
		for _, id := range want {
			if _, ok := r.lookup(id); !ok {
				t.Fatalf("window %d: the restored window lacks %v", window, id)
			}
		}
	}
}

// BenchmarkDedupe is the state machine's work per append on a full
// window: a lookup and an add, three producers taking turns, twelve
// shards' windows (as on a node at full load); against the map model.
func BenchmarkDedupe(b *testing.B) {
	run := func(b *testing.B, lookup func(int, appendID) bool, add func(int, appendID)) {
		seq := uint64(0)
		for i := 0; i < 12*dedupeWindow; i++ {
			seq++
			add(i%12, appendID{1 + seq%3, seq})
		}
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			seq++
			id := appendID{1 + seq%3, seq}
			if !lookup(i%12, id) {
				add(i%12, id)
			}
		}
	}
	b.Run("runs", func(b *testing.B) {
		var ds [12]*dedupe
		for i := range ds {
			ds[i] = newDedupe()
		}
		run(b, func(s int, id appendID) bool { _, ok := ds[s].lookup(id); return ok },
			func(s int, id appendID) { ds[s].add(id, nil) })
	})
	b.Run("map", func(b *testing.B) {
		var ms [12]*mapDedupe
		for i := range ms {
			ms[i] = &mapDedupe{window: dedupeWindow, index: make(map[appendID]int)}
		}
		run(b, func(s int, id appendID) bool { _, ok := ms[s].lookup(id); return ok },
			func(s int, id appendID) { ms[s].add(id, nil) })
	})
}

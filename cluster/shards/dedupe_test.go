package shards

import (
	"context"
	"fmt"
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
	out := f.ApplyBatch([]*raft.Log{{Index: index, Type: raft.LogCommand, Data: encodeEntry(time.Now(), cmds)}})
	res, _ := out[0].([]appendResult)
	return res
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
	if r := applyEntry(t, g, 3, cmd(3, "c")); r[0].err != nil {
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
	if _, ok := h.dd.lookup(appendID{17, 3}); !ok {
		t.Fatal("the restored window lacks seq 3")
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

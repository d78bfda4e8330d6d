package shards

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/mqstream/mqstream/internal/testutil"
	"github.com/mqstream/mqstream/streams"
)

// TestWindowKeepsTheFloorsOfWhatItEvicted: an id evicted from the window
// is below its producer's floor; an id above it, or of another producer,
// is not; the floors are bounded, the oldest rise going first.
func TestWindowKeepsTheFloorsOfWhatItEvicted(t *testing.T) {
	d := newDedupeWindow(4)
	for seq := uint64(1); seq <= 6; seq++ {
		d.add(appendID{9, seq}, nil)
	}
	for _, c := range []struct {
		id   appendID
		late bool
	}{{appendID{9, 1}, true}, {appendID{9, 2}, true}, {appendID{9, 7}, false}, {appendID{8, 1}, false}, {appendID{0, 1}, false}} {
		if got := d.tooLate(c.id); got != c.late {
			t.Errorf("tooLate(%v) = %v, want %v", c.id, got, c.late)
		}
	}
	if _, ok := d.lookup(appendID{9, 3}); !ok {
		t.Fatal("seq 3 is in the window")
	}

	d = newDedupeWindow(1)
	for p := uint64(1); p <= maxFloors+2; p++ {
		d.add(appendID{p, 5}, nil)
	}
	// Producers 1 to maxFloors+1 were evicted; the first one's floor is
	// the oldest and went.
	if len(d.floors) != maxFloors || d.tooLate(appendID{1, 5}) || !d.tooLate(appendID{2, 5}) {
		t.Fatalf("%d floors; producer 1 late %v, producer 2 late %v", len(d.floors), d.tooLate(appendID{1, 5}), d.tooLate(appendID{2, 5}))
	}
	// A window restored from a snapshot (its ids, then its floors) goes
	// on as the first one does.
	e := newDedupeWindow(1)
	for _, id := range d.ids() {
		e.add(id, nil)
	}
	e.setFloors(d.floorList())
	d.add(appendID{3, 9}, nil) // raises producer maxFloors+2's floor
	e.add(appendID{3, 9}, nil)
	d.add(appendID{4, 9}, nil) // raises 3's: a new producer beyond the bound goes
	e.add(appendID{4, 9}, nil)
	if a, b := d.floorList(), e.floorList(); !slices.Equal(a, b) {
		t.Fatalf("restored floors went another way: %d and %d floors, first %v and %v", len(a), len(b), a[0], b[0])
	}

	// In snapshots: the floors in their order; a producer 0 or one listed
	// twice is refused.
	s := shardState{index: 5, complete: true, floorsOn: true, floors: d.floorList()}
	got, err := decodeSnapshot(encodeSnapshot(s))
	if err != nil || !slices.Equal(got.floors, s.floors) {
		t.Fatalf("decoded %d floors (%v), want %d", len(got.floors), err, len(s.floors))
	}
	for _, bad := range [][]producerFloor{{{0, 1}}, {{3, 1}, {3, 2}}} {
		if _, err := decodeSnapshot(encodeSnapshot(shardState{index: 5, complete: true, floorsOn: true, floors: bad})); !errors.Is(err, ErrBadEntry) {
			t.Errorf("floors %v: %v", bad, err)
		}
	}
}

// TestRetryPastTheWindowIsNotStoredAgain: a retry that comes after its id
// left the window is refused in an entry of version 5, as unavailable,
// and stores nothing; so does its replay, and a restored snapshot keeps
// the floor. Entries of earlier versions keep the earlier rule.
func TestRetryPastTheWindowIsNotStoredAgain(t *testing.T) {
	f, store := openTestFSM(t)
	f.dd = newDedupeWindow(4)
	cmd := func(seq uint64) appendCmd {
		return appendCmd{kind: kindAppend, stream: "s", id: appendID{17, seq},
			records: encodeRecords([]streams.Record{{Topic: "t", Payload: []byte{byte(seq)}}})}
	}
	apply := func(f *fsm, index uint64, version byte, cmds ...appendCmd) []appendResult {
		t.Helper()
		return applyEntryAs(t, f, index, version, cmds...)
	}
	stop := make(chan struct{})
	stored := func(want uint64) {
		t.Helper()
		if info, _ := store.DescribeStream("s"); info.NextOffset != want {
			t.Fatalf("%d records stored, want %d", info.NextOffset, want)
		}
	}
	apply(f, 1, entryVersion5, cmd(1), cmd(2), cmd(3), cmd(4), cmd(5), cmd(6))
	stored(6)
	r := apply(f, 2, entryVersion5, cmd(1), cmd(7))
	if !errors.Is(r[0].err, ErrRetryTooLate) || !errors.Is(r[0].err, streams.ErrUnavailable) || r[1].err != nil || r[1].first != 6 {
		t.Fatalf("retry of seq 1 past the window, then seq 7: %+v", r)
	}
	stored(7)

	// A replay over the same store decides the same: the retry is not
	// remembered (seq 7 evicts seq 3, not the retry).
	g, _ := newFSM(fsmConfig{shards: 1, store: store, logger: testutil.Logger(), stop: stop})
	g.dd = newDedupeWindow(4)
	apply(g, 1, entryVersion5, cmd(1), cmd(2), cmd(3), cmd(4), cmd(5), cmd(6))
	apply(g, 2, entryVersion5, cmd(1), cmd(7))
	if a, b := f.dd.ids(), g.dd.ids(); len(a) != len(b) || a[0] != b[0] || a[3] != b[3] {
		t.Fatalf("windows differ after the replay: %v against %v", a, b)
	}
	if r := apply(g, 3, entryVersion5, cmd(3)); !errors.Is(r[0].err, ErrRetryTooLate) {
		t.Fatalf("retry of seq 3 after the replay: %+v", r)
	}
	stored(7)

	// The floors travel in snapshots.
	snap, _ := g.Snapshot()
	sink := &memSink{}
	if err := snap.Persist(sink); err != nil {
		t.Fatal(err)
	}
	h, _ := newFSM(fsmConfig{shards: 1, store: store, logger: testutil.Logger(), stop: stop})
	if err := h.Restore(sink.reader()); err != nil {
		t.Fatal(err)
	}
	if !h.dd.tooLate(appendID{17, 3}) || h.dd.tooLate(appendID{17, 4}) || h.dd.tooLate(appendID{17, 8}) {
		t.Fatalf("restored floors: %v", h.dd.floorList())
	}

	// An entry of an earlier version: the earlier rule, stored again.
	if r := apply(g, 4, entryVersion1, cmd(2)); r[0].err != nil || r[0].first != 7 {
		t.Fatalf("retry in an entry of version 1: %+v", r)
	}
	stored(8)
}

// TestFloorsStartAfreshWithVersion5: one replica saw ids evicted while
// the cluster wrote entries of version 1 (its floors rose), another
// restored a snapshot of the old encoding (the same window, no floors).
// From the first entry of version 5 on, both decide a late retry alike:
// the floors count from there on every replica. And until then, their
// snapshots are of encoding 4, which members of earlier versions read.
func TestFloorsStartAfreshWithVersion5(t *testing.T) {
	a, storeA := openTestFSM(t)
	b, storeB := openTestFSM(t)
	cmd := func(seq uint64) appendCmd {
		return appendCmd{kind: kindAppend, stream: "s", id: appendID{17, seq},
			records: encodeRecords([]streams.Record{{Topic: "t", Payload: []byte{byte(seq)}}})}
	}
	a.dd = newDedupeWindow(4)
	applyEntryAs(t, a, 1, entryVersion1, cmd(1), cmd(2), cmd(3), cmd(4), cmd(5), cmd(6))
	applyEntryAs(t, b, 1, entryVersion1, cmd(1), cmd(2), cmd(3), cmd(4), cmd(5), cmd(6))
	b.dd = newDedupeWindow(4) // as restored: a's window, no floors
	for _, id := range a.dd.ids() {
		b.dd.add(id, nil)
	}
	if !a.dd.tooLate(appendID{17, 1}) || b.dd.tooLate(appendID{17, 1}) {
		t.Fatal("the replicas' floors should differ before version 5")
	}
	if snap, _ := a.Snapshot(); encodeSnapshot(snap.(*snapshot).state)[0] != snapshotVersion4 {
		t.Fatal("a snapshot before version 5 is not of encoding 4")
	}
	ra := applyEntryAs(t, a, 2, entryVersion5, cmd(1), cmd(7))
	rb := applyEntryAs(t, b, 2, entryVersion5, cmd(1), cmd(7))
	if (ra[0].err == nil) != (rb[0].err == nil) || ra[0].first != rb[0].first {
		t.Fatalf("the replicas decided the retry differently: %+v against %+v", ra[0], rb[0])
	}
	ia, _ := storeA.DescribeStream("s")
	ib, _ := storeB.DescribeStream("s")
	if ia.NextOffset != ib.NextOffset {
		t.Fatalf("the replicas hold %d and %d records", ia.NextOffset, ib.NextOffset)
	}
	if snap, _ := a.Snapshot(); encodeSnapshot(snap.(*snapshot).state)[0] != snapshotVersion5 {
		t.Fatal("a snapshot after an entry of version 5 is not of encoding 5")
	}
}

// TestLeadersWriteVersion5OnceEveryMemberKnowsIt: with every member
// announcing it (Options.DedupeFloors), a leader writes its entries in
// version 5; otherwise in the lowest version that holds them.
func TestLeadersWriteVersion5OnceEveryMemberKnowsIt(t *testing.T) {
	for _, known := range []bool{true, false} {
		t.Run(fmt.Sprintf("known=%v", known), func(t *testing.T) { entryVersionOfAnAppend(t, known) })
	}
}

func entryVersionOfAnAppend(t *testing.T, known bool) {
	c := newClusterWith(t, 3, 1, 3, LocalTimers(), func(c *cluster) { c.noFloors = !known })
	leaders := c.waitLeaders()
	nd := c.nodes[leaders[0]]
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	if _, err := nd.set.Append(ctx, streamOfShard(t, 0, 1), streams.Record{Topic: "t", Payload: []byte("x")}); err != nil {
		t.Fatal(err)
	}
	cancel()
	c.mu.Lock()
	logs := nd.logs[groupName(0)]
	c.mu.Unlock()
	last, _ := logs.LastIndex()
	var version byte
	for i := last; i > 0 && version == 0; i-- {
		var l raft.Log
		if err := logs.GetLog(i, &l); err == nil && l.Type == raft.LogCommand {
			version = l.Data[0]
		}
	}
	want := byte(entryVersion1)
	if known {
		want = entryVersion5
	}
	if version != want {
		t.Fatalf("the append's entry is of version %d, want %d", version, want)
	}
}

package shards

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/hashicorp/raft"

	"github.com/mqstream/mqstream/internal/testutil"
	"github.com/mqstream/mqstream/streams"
)

// replayLog is a log of appends with ids over streams that are created,
// deleted and created again, with a retry, appends without id and a
// no-op entry (index 5: raft hands the state machine none).
func replayLog() map[uint64][]appendCmd {
	app := func(stream string, seq uint64, n int) appendCmd {
		recs := make([]streams.Record, n)
		for i := range recs {
			recs[i] = streams.Record{Topic: "t", Payload: fmt.Appendf(nil, "%s-%d-%d", stream, seq, i)}
		}
		return appendCmd{kind: kindAppend, stream: stream, id: appendID{7, seq}, records: encodeRecords(recs)}
	}
	noID := app("a", 0, 1)
	noID.id = appendID{}
	return map[uint64][]appendCmd{
		1: {app("a", 1, 2), app("b", 2, 1)},
		2: {{kind: kindCreate, stream: "c"}, app("c", 3, 3)},
		3: {app("a", 4, 1), app("a", 1, 2)}, // seq 1 again: a retry
		4: {noID, app("b", 5, 2)},
		6: {{kind: kindDelete, stream: "b"}, app("a", 6, 1)},
		7: {app("b", 7, 1), app("c", 8, 2)}, // b created again by its append
		8: {app("nope/x", 9, 1)},            // an invalid name: refused
		9: {app("c", 10, 1)},
	}
}

// replayStore opens a store (auto_create as given) and returns it with a
// function that opens a state machine over it, as a replica that starts
// or restarts does.
func replayStore(t *testing.T, autoCreate bool) (*streams.Store, func() *fsm) {
	t.Helper()
	store, err := streams.Open(streams.Options{Dir: t.TempDir(), AutoCreate: autoCreate})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = store.Close() })
	stop := make(chan struct{})
	return store, func() *fsm {
		f, err := newFSM(fsmConfig{shards: 1, store: store, logger: testutil.Logger(), stop: stop})
		if err != nil {
			t.Fatal(err)
		}
		return f
	}
}

// oneRecord is an append of one record to stream with id {3, seq}.
func oneRecord(seq uint64, stream string) appendCmd {
	return appendCmd{kind: kindAppend, stream: stream, id: appendID{3, seq},
		records: encodeRecords([]streams.Record{{Topic: "t", Payload: []byte("x")}})}
}

// applyLog applies the log's entries from..to (inclusive) to f, one batch
// per entry, and returns the results by append id.
func applyLog(t *testing.T, f *fsm, log map[uint64][]appendCmd, from, to uint64, got map[appendID]appendResult) {
	t.Helper()
	for i := from; i <= to; i++ {
		cmds, ok := log[i]
		if !ok {
			continue // a no-op: not handed to the state machine
		}
		out := f.ApplyBatch([]*raft.Log{{Index: i, Type: raft.LogCommand, Data: encodeEntry(time.Now(), cmds)}})
		res, _ := out[0].([]appendResult)
		for j, c := range cmds {
			if got != nil && c.kind == kindAppend && c.id.producer != 0 && res != nil {
				if _, seen := got[c.id]; !seen {
					got[c.id] = res[j]
				}
			}
		}
	}
}

// retryAll sends every id of want again in one entry at index and checks
// that each is answered as it was first, or with offset 0 and no error
// for the ids of unknown (results the state machine cannot know).
func retryAll(t *testing.T, f *fsm, index uint64, log map[uint64][]appendCmd, want map[appendID]appendResult, unknown ...appendID) {
	t.Helper()
	var cmds []appendCmd
	for i := uint64(1); i < index; i++ {
		for _, c := range log[i] {
			if c.kind == kindAppend && c.id.producer != 0 {
				cmds = append(cmds, c)
			}
		}
	}
	res := applyEntry(t, f, index, cmds...)
	for j, c := range cmds {
		w := want[c.id]
		if slices.Contains(unknown, c.id) {
			w = appendResult{}
		}
		if res[j].first != w.first || (res[j].err == nil) != (w.err == nil) {
			t.Errorf("retry of %v: %d %v, first answered %d %v", c.id, res[j].first, res[j].err, w.first, w.err)
		}
		if w.err != nil && !errors.Is(res[j].err, streams.ErrInvalidName) {
			t.Errorf("retry of %v: %v, want an invalid name", c.id, res[j].err)
		}
	}
}

// TestReplayedAppendsAnswerRetriesWithTheirOffsets: a state machine that
// restarts over its store, from the snapshot or from the start of the
// log, answers a retry of any append in its window with the result the
// first apply gave (offset, or refusal), and stores nothing again. The
// appends the replay derived for stream b before b was deleted are
// unknown (offset 0): the store can no longer confirm them.
func TestReplayedAppendsAnswerRetriesWithTheirOffsets(t *testing.T) {
	store, open := replayStore(t, true)
	log := replayLog()
	live := map[appendID]appendResult{}
	f := open()
	applyLog(t, f, log, 1, 3, live)
	snap, err := f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	sink := &memSink{}
	if err := snap.Persist(sink); err != nil {
		t.Fatal(err)
	}
	applyLog(t, f, log, 4, 9, live)
	if r := live[appendID{7, 9}]; !errors.Is(r.err, streams.ErrInvalidName) {
		t.Fatalf("the invalid name was answered %+v", r)
	}
	if r := live[appendID{7, 7}]; r.first != 0 || r.err != nil {
		t.Fatalf("b created again: %+v", r)
	}
	before := shardStreams(store, 0, 1)

	// From the snapshot (index 3), replaying 4 to 9.
	g := open()
	if err := g.Restore(sink.reader()); err != nil {
		t.Fatal(err)
	}
	applyLog(t, g, log, 4, 9, nil)
	if g.replay != nil {
		t.Fatal("the replay did not end at the store's index")
	}
	retryAll(t, g, 10, log, live, appendID{7, 5})

	// From the start of the log (no snapshot), over a fresh store copy:
	// the retries of entry 10 changed nothing, so the same store serves.
	if after := shardStreams(store, 0, 1); fmt.Sprint(after) != fmt.Sprint(before) {
		t.Fatalf("the retries stored something: %v, before %v", after, before)
	}
	h := open()
	applyLog(t, h, log, 1, 10, nil) // 10: the retries, in the store too
	retryAll(t, h, 11, log, live, appendID{7, 2}, appendID{7, 5})

	// The results travel in the next snapshot.
	snap, _ = h.Snapshot()
	sink = &memSink{}
	if err := snap.Persist(sink); err != nil {
		t.Fatal(err)
	}
	k := open()
	if err := k.Restore(sink.reader()); err != nil {
		t.Fatal(err)
	}
	retryAll(t, k, 12, log, live, appendID{7, 2}, appendID{7, 5})
}

// TestReplayThatDisagreesWithTheStoreLearnsNothing: the derivation takes
// an append to a missing stream for one that creates it; a store without
// auto_create refused it, so the derived offsets disagree with the store
// and no result is learned: a retry is answered with offset 0, and
// nothing is stored twice.
func TestReplayThatDisagreesWithTheStoreLearnsNothing(t *testing.T) {
	store, open := replayStore(t, false)
	one := oneRecord
	log := map[uint64][]appendCmd{
		1: {one(1, "s")}, // refused: no such stream
		2: {{kind: kindCreate, stream: "s"}, one(2, "s"), one(3, "s")},
	}
	f := open()
	live := map[appendID]appendResult{}
	applyLog(t, f, log, 1, 2, live)
	if r := live[appendID{3, 1}]; !errors.Is(r.err, streams.ErrStreamNotFound) || live[appendID{3, 3}].first != 1 {
		t.Fatalf("first applies: %+v", live)
	}
	g := open()
	applyLog(t, g, log, 1, 2, nil)
	res := applyEntry(t, g, 3, one(3, "s"))
	if res[0].first != 0 || res[0].err != nil {
		t.Fatalf("retry after a replay that disagreed: %+v", res)
	}
	if info, _ := store.DescribeStream("s"); info.NextOffset != 2 {
		t.Fatalf("%d records, want 2", info.NextOffset)
	}
}

// TestReplayForgetsWhatADeletionHides: with auto_create off, appends to a
// deleted stream are refused, and the derivation takes them for stored.
// Deleting the stream again takes it out of both the derivation and the
// store, so the final check agrees; what was derived for the stream must
// go with it, or a retry of a refused append would be answered as stored.
func TestReplayForgetsWhatADeletionHides(t *testing.T) {
	_, open := replayStore(t, false)
	one := oneRecord
	log := map[uint64][]appendCmd{
		1: {{kind: kindCreate, stream: "s"}, one(1, "s")},
		2: {{kind: kindDelete, stream: "s"}},
		3: {one(2, "s")},                     // refused: s is gone
		4: {one(3, "s")},                     // refused
		5: {{kind: kindDelete, stream: "s"}}, // a retried deletion: refused
		6: {{kind: kindCreate, stream: "u"}, one(4, "u"), one(5, "u")},
	}
	f := open()
	live := map[appendID]appendResult{}
	applyLog(t, f, log, 1, 6, live)
	if r := live[appendID{3, 3}]; !errors.Is(r.err, streams.ErrStreamNotFound) {
		t.Fatalf("first apply of seq 3: %+v", r)
	}
	g := open()
	applyLog(t, g, log, 1, 6, nil)
	if g.replay != nil {
		t.Fatal("the replay did not end at the store's index")
	}
	res := applyEntry(t, g, 7, one(3, "s"), one(5, "u"))
	if res[0].first != 0 || res[0].err != nil {
		t.Fatalf("retry of a refused append: %d %v, want unknown (offset 0)", res[0].first, res[0].err)
	}
	if res[1].first != 1 || res[1].err != nil {
		t.Fatalf("retry of the second append to u: %d %v, want offset 1", res[1].first, res[1].err)
	}
}

// TestReplayLearnsTheNewestResultOfAnID: an id that left the window and
// was stored again is in the replay twice; a retry is answered with the
// newer copy's offset, as the live window answers it.
func TestReplayLearnsTheNewestResultOfAnID(t *testing.T) {
	_, open := replayStore(t, true)
	rec := encodeRecords([]streams.Record{{Topic: "t", Payload: []byte("x")}})
	x := appendCmd{kind: kindAppend, stream: "s", id: appendID{9, 1}, records: rec}
	filler := appendCmd{kind: kindAppend, stream: "s", records: encodeRecords(make([]streams.Record, 5))}
	log := map[uint64][]appendCmd{1: {filler, x}} // x at offset 5
	index := uint64(2)
	for seq := uint64(1); seq <= dedupeWindow; index++ {
		var cmds []appendCmd
		for k := 0; k < 4096 && seq <= dedupeWindow; k++ {
			cmds = append(cmds, appendCmd{kind: kindAppend, stream: "t", id: appendID{8, seq}, records: rec})
			seq++
		}
		log[index] = cmds
	}
	log[index] = []appendCmd{x} // out of the window by now: stored again, at offset 6
	f := open()
	live := map[appendID]appendResult{}
	applyLog(t, f, log, 1, index-1, nil)
	applyLog(t, f, log, index, index, live)
	if r := live[x.id]; r.first != 6 || r.err != nil {
		t.Fatalf("x stored again: %+v, want offset 6", r)
	}
	g := open()
	applyLog(t, g, log, 1, index, nil)
	if g.replay != nil {
		t.Fatal("the replay did not end at the store's index")
	}
	if r := applyEntry(t, g, index+1, x); r[0].first != 6 || r[0].err != nil {
		t.Fatalf("retry after the replay: %d %v, want offset 6", r[0].first, r[0].err)
	}
}

// TestRefusedAppendMovesTheStoresMarker: an entry whose only append
// the store refuses still moves the store's applied index to the state
// machine's, or a snapshot taken then would find the store behind it
// after a restart and catch up from a peer for nothing.
func TestRefusedAppendMovesTheStoresMarker(t *testing.T) {
	store, open := replayStore(t, true)
	f := open()
	applyEntry(t, f, 1, oneRecord(1, "a"))
	res := applyEntry(t, f, 2, oneRecord(2, "bad/x"))
	if !errors.Is(res[0].err, streams.ErrInvalidName) {
		t.Fatalf("append to an invalid name: %v", res[0].err)
	}
	if got, err := store.AppliedIndexOf(f.log); err != nil || got != 2 || f.applied.Load() != 2 {
		t.Fatalf("store's marker %d (%v), state machine applied %d; want 2", got, err, f.applied.Load())
	}
}

// TestSnapshotResultsEncoding: encoding 4 carries the window's results,
// refusals with their sentinel; results that are not the log's (a store
// that failed) are written as unknown; a count that differs from the
// ids' is refused.
func TestSnapshotResultsEncoding(t *testing.T) {
	s := shardState{index: 5, ids: []appendID{{1, 1}, {1, 2}, {1, 3}, {1, 4}}, complete: true,
		results: []*appendResult{{first: 42}, nil, {err: fmt.Errorf("x: %w", streams.ErrStreamNotFound)},
			{err: fmt.Errorf("disk: %w", streams.ErrWrite)}}}
	got, err := decodeSnapshot(encodeSnapshot(s))
	if err != nil {
		t.Fatal(err)
	}
	r := got.results
	if len(r) != 4 || r[0] == nil || r[0].first != 42 || r[0].err != nil || r[1] != nil ||
		r[2] == nil || !errors.Is(r[2].err, streams.ErrStreamNotFound) || r[3] != nil {
		t.Fatalf("results %v", r)
	}
	s.results = []*appendResult{nil, nil, nil, nil}
	if got, err := decodeSnapshot(encodeSnapshot(s)); err != nil || got.results != nil {
		t.Fatalf("no result known: %v %v", got.results, err)
	}
	s.results = []*appendResult{{first: 1}, nil, nil, nil}
	b := encodeSnapshot(s)
	for cut := 0; cut < len(b); cut++ {
		if _, err := decodeSnapshot(b[:cut]); !errors.Is(err, ErrBadEntry) {
			t.Fatalf("truncated at %d: %v", cut, err)
		}
	}
	s.ids = s.ids[:3] // the results' count no longer matches
	s.results = s.results[:3]
	b = encodeSnapshotAs(s, snapshotVersion4)
	// The section is 3, then [2: ok, offset 1], [0], [0]; make it 4 results.
	if tail := b[len(b)-6:]; fmt.Sprint(tail) != "[3 2 0 1 0 0]" {
		t.Fatalf("results section %v", tail)
	}
	b = append(b[:len(b)-6], 4, 2, 0, 1, 0, 0, 0)
	if _, err := decodeSnapshot(b); !errors.Is(err, ErrBadEntry) {
		t.Fatalf("4 results for 3 ids: %v", err)
	}
}

// unitCounter counts the units a state machine opens, and calls
// onUnit before each.
type unitCounter struct {
	*streams.Store
	onUnit func(n int)
	n      int
}

func (u *unitCounter) NewUnit() *streams.Unit {
	u.n++
	if u.onUnit != nil {
		u.onUnit(u.n)
	}
	return u.Store.NewUnit()
}

// TestEntryWithARetryIsOneUnit: an entry holding a new append, a retry
// of an append applied before and another new append goes to the store
// as one unit. It went as two (the retry's result was fetched by
// committing what came before it, under the entry's marker): a crash
// after the first was made durable by someone's sync (another shard's
// snapshot, a stream's creation) left the marker at the entry and the
// last append lost, and the replay skips an entry under its marker.
func TestEntryWithARetryIsOneUnit(t *testing.T) {
	fs := vfs.NewCrashableMem()
	store, err := streams.Open(streams.Options{Dir: "/db", FS: fs, AutoCreate: true})
	if err != nil {
		t.Fatal(err)
	}
	counted := &unitCounter{Store: store}
	stop := make(chan struct{})
	f, err := newFSM(fsmConfig{shards: 1, store: counted, logger: testutil.Logger(), stop: stop})
	if err != nil {
		t.Fatal(err)
	}
	app := func(stream string, seq uint64) appendCmd {
		return appendCmd{kind: kindAppend, stream: stream, id: appendID{7, seq},
			records: encodeRecords([]streams.Record{{Topic: "t", Payload: []byte(stream)}})}
	}
	at := time.Unix(1_700_000_000, 0)
	// a's append 1 is stored at offset 1.
	f.ApplyBatch([]*raft.Log{{Index: 1, Type: raft.LogCommand, Data: encodeEntry(at, []appendCmd{app("a", 9), app("a", 1)})}})

	// The second unit of entry 2, if any, opens after the first is
	// synced: the process dies there.
	var crashed *vfs.MemFS
	counted.n = 0
	counted.onUnit = func(n int) {
		if n == 2 {
			if err := store.Sync(context.Background()); err != nil {
				t.Error(err)
			}
			crashed = fs.CrashClone(vfs.CrashCloneCfg{})
		}
	}
	out := f.ApplyBatch([]*raft.Log{{Index: 2, Type: raft.LogCommand,
		Data: encodeEntry(at.Add(time.Second), []appendCmd{app("s", 2), app("a", 1), app("u", 3)})}})
	close(stop)
	_ = store.Close()
	results := out[0].([]appendResult)
	for j, r := range results {
		if r.err != nil {
			t.Fatalf("entry 2, append %d: %v", j, r.err)
		}
	}
	if results[1].first != 1 {
		t.Fatalf("the retry was answered with offset %d, want its first copy's, 1", results[1].first)
	}
	if crashed != nil {
		again, err := streams.Open(streams.Options{Dir: "/db", FS: crashed, AutoCreate: true})
		if err != nil {
			t.Fatal(err)
		}
		defer again.Close()
		applied, _ := again.AppliedIndexOf(groupName(0))
		_, uerr := again.DescribeStream("u")
		t.Fatalf("entry 2 went to the store as %d units; after a crash between them the marker is %d and stream u: %v",
			counted.n, applied, uerr)
	}
}

// TestRetryInTheSameBatchGetsTheFirstCopysResult: a retry whose first
// copy is in an earlier entry of the same batch, not committed yet when
// the retry is met, is answered with the first copy's result.
func TestRetryInTheSameBatchGetsTheFirstCopysResult(t *testing.T) {
	_, open := replayStore(t, true)
	f := open()
	app := func(seq uint64, n int) appendCmd {
		recs := make([]streams.Record, n)
		for i := range recs {
			recs[i] = streams.Record{Topic: "t", Payload: fmt.Appendf(nil, "%d-%d", seq, i)}
		}
		return appendCmd{kind: kindAppend, stream: "a", id: appendID{7, seq}, records: encodeRecords(recs)}
	}
	at := time.Unix(1_700_000_000, 0)
	out := f.ApplyBatch([]*raft.Log{
		{Index: 1, Type: raft.LogCommand, Data: encodeEntry(at, []appendCmd{app(1, 2), app(2, 3)})},
		{Index: 2, Type: raft.LogCommand, Data: encodeEntry(at, []appendCmd{app(2, 3), app(3, 1)})},
	})
	first, second := out[0].([]appendResult), out[1].([]appendResult)
	if first[1].err != nil || first[1].first != 2 {
		t.Fatalf("append 2: %+v, want offset 2", first[1])
	}
	if second[0] != first[1] {
		t.Fatalf("its retry in the next entry: %+v, want %+v", second[0], first[1])
	}
	if second[1].err != nil || second[1].first != 5 {
		t.Fatalf("append 3: %+v, want offset 5 (the retry stored nothing)", second[1])
	}
}

// TestStreamChangeAppliedAgainAfterACrashKeepsItsResult: an entry that
// creates (or deletes) a stream and then appends is applied in two
// steps, the change synced first. After a crash between the two the
// store's marker does not cover the entry, which is applied again: its
// change must be answered as made (a retry of it gets that answer from
// the dedupe window), not "exists" or "not found", and its append stored.
func TestStreamChangeAppliedAgainAfterACrashKeepsItsResult(t *testing.T) {
	at := time.Unix(1_700_000_000, 0)
	app := func(stream string, seq uint64) appendCmd {
		return appendCmd{kind: kindAppend, stream: stream, id: appendID{7, seq},
			records: encodeRecords([]streams.Record{{Topic: "t", Payload: []byte(stream)}})}
	}
	change := func(kind byte, stream string, seq uint64) appendCmd {
		return appendCmd{kind: kind, stream: stream, id: appendID{7, seq}}
	}
	entries := []*raft.Log{
		{Index: 1, Type: raft.LogCommand, Data: encodeEntry(at, []appendCmd{change(kindCreate, "d", 1), app("d", 2)})},
		{Index: 2, Type: raft.LogCommand, Data: encodeEntry(at.Add(time.Second), []appendCmd{change(kindCreate, "c", 3), app("c", 4)})},
		{Index: 3, Type: raft.LogCommand, Data: encodeEntry(at.Add(2*time.Second), []appendCmd{change(kindDelete, "d", 5), app("c", 6)})},
		// Retries of the two changes.
		{Index: 4, Type: raft.LogCommand, Data: encodeEntry(at.Add(3*time.Second), []appendCmd{change(kindCreate, "c", 3)})},
		{Index: 5, Type: raft.LogCommand, Data: encodeEntry(at.Add(4*time.Second), []appendCmd{change(kindDelete, "d", 5)})},
	}
	// run starts a state machine on the store in fs, applies entries up
	// to crashAt one by one (all when 0) and, at crashAt, dies as the
	// store's first unit of that entry opens (after its change was
	// synced). It returns the results and what the disk held then.
	run := func(fs *vfs.MemFS, crashAt uint64) ([][]appendResult, *vfs.MemFS) {
		store, err := streams.Open(streams.Options{Dir: "/db", FS: fs, AutoCreate: true})
		if err != nil {
			t.Fatal(err)
		}
		counted := &unitCounter{Store: store}
		stop := make(chan struct{})
		defer func() {
			close(stop)
			_ = store.Close()
		}()
		f, err := newFSM(fsmConfig{shards: 1, store: counted, logger: testutil.Logger(), stop: stop})
		if err != nil {
			t.Fatal(err)
		}
		var out [][]appendResult
		for _, e := range entries {
			var crashed *vfs.MemFS
			counted.onUnit = func(int) {
				if e.Index == crashAt && crashed == nil {
					crashed = fs.CrashClone(vfs.CrashCloneCfg{})
				}
			}
			res, _ := f.ApplyBatch([]*raft.Log{e})[0].([]appendResult) // none for an entry under the store's marker
			out = append(out, res)
			if crashed != nil {
				return out, crashed
			}
			if err := store.Sync(context.Background()); err != nil {
				t.Fatal(err)
			}
		}
		return out, nil
	}
	for _, crashAt := range []uint64{2, 3} {
		t.Run(fmt.Sprintf("crash in entry %d", crashAt), func(t *testing.T) {
			_, crashed := run(vfs.NewCrashableMem(), crashAt)
			if crashed == nil {
				t.Fatalf("entry %d opened no unit", crashAt)
			}
			out, _ := run(crashed, 0)
			for i, res := range out {
				for j, r := range res {
					if r.err != nil {
						t.Errorf("entry %d, command %d, applied again after the crash: %v", i+1, j, r.err)
					}
				}
			}
			if len(out[1]) > 0 && out[1][1].first != 0 {
				t.Errorf("c's first append stored at offset %d, want 0", out[1][1].first)
			}
			if got := out[2][1].first; got != 1 {
				t.Errorf("c's second append stored at offset %d, want 1", got)
			}
		})
	}
}

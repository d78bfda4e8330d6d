package shards

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/mqstream/mqstream/internal/testutil"
	"github.com/mqstream/mqstream/streams"
)

// State machine tests of the catch-up from peers, without Raft: replicas
// are stores with a state machine each, fed the same entries; one lags,
// and restores a snapshot of another, fetching from peers that may be
// down, behind, or answer garbage.

// fakePeers serves fetches from the stores of replicas by address.
type fakePeers struct {
	mu sync.Mutex // guards everything below
	by map[string]*testReplica
	// down: fetches fail; truncate: answers are cut short; badRecord:
	// the records of an answer are not stored encodings.
	down, truncate, badRecord map[string]bool
	calls                     map[string]int
	// budget, if not negative, is how many fetches succeed before every
	// one fails.
	budget int
}

func newFakePeers() *fakePeers {
	return &fakePeers{by: map[string]*testReplica{}, down: map[string]bool{}, truncate: map[string]bool{},
		badRecord: map[string]bool{}, calls: map[string]int{}, budget: -1}
}

func (p *fakePeers) Call(ctx context.Context, addr, service string, req []byte) ([]byte, error) {
	p.mu.Lock()
	r := p.by[addr]
	p.calls[addr]++
	down := p.down[addr] || r == nil || p.budget == 0
	if p.budget > 0 {
		p.budget--
	}
	truncate, bad := p.truncate[addr], p.badRecord[addr]
	p.mu.Unlock()
	if down || service != FetchService {
		return nil, fmt.Errorf("%s unreachable", addr)
	}
	resp, err := ServeFetch(ctx, r.store, req)
	if err != nil {
		return nil, err
	}
	if truncate {
		return resp[:len(resp)-1], nil
	}
	if bad {
		fr, _ := decodeFetchRequest(req)
		page, err := decodeFetchPage(resp, fr)
		if err != nil || len(page.records) == 0 {
			return resp, err
		}
		page.records[0] = []byte{7, 7, 7}
		return encodeFetchPage(page), nil
	}
	return resp, nil
}

func (p *fakePeers) set(f func(p *fakePeers)) {
	p.mu.Lock()
	defer p.mu.Unlock()
	f(p)
}

// testReplica is a store and the state machine of shard 0 of 1 over it.
type testReplica struct {
	t     *testing.T
	id    string
	dir   string
	store *streams.Store
	fsm   *fsm
	stop  chan struct{}
	// applied counts the entries given (their indexes are 1, 2, ...).
	applied int
}

func newTestReplica(t *testing.T, id string, peers *fakePeers, layout []Peer) *testReplica {
	r := &testReplica{t: t, id: id, dir: t.TempDir()}
	r.open(peers, layout)
	peers.set(func(p *fakePeers) { p.by[id] = r })
	return r
}

func (r *testReplica) open(peers *fakePeers, layout []Peer) {
	var err error
	if r.store, err = streams.Open(streams.Options{Dir: r.dir, AutoCreate: true, Logger: testutil.Logger()}); err != nil {
		r.t.Fatal(err)
	}
	r.stop = make(chan struct{})
	src := &peerSource{self: r.id, layout: func() []Peer { return layout }, call: peers}
	if r.fsm, err = newFSM(fsmConfig{shards: 1, store: r.store, logger: testutil.Logger(), src: src, stop: r.stop}); err != nil {
		r.t.Fatal(err)
	}
	r.fsm.pageRecords = 4
	r.fsm.retry = time.Millisecond
	store, stop := r.store, r.stop
	r.t.Cleanup(func() {
		select {
		case <-stop:
		default:
			close(stop)
		}
		_ = store.Close()
	})
}

// crash closes the replica's store and state machine, and opens them again.
func (r *testReplica) crash(peers *fakePeers, layout []Peer) {
	close(r.stop)
	_ = r.store.Close()
	r.open(peers, layout)
}

// feed applies entries [r.applied, upTo) of log to the replica.
func (r *testReplica) feed(log [][]appendCmd, upTo int) {
	r.t.Helper()
	base := time.Unix(1_700_000_000, 0)
	for ; r.applied < upTo; r.applied++ {
		i := r.applied
		l := &raft.Log{Index: uint64(i + 1), Type: raft.LogCommand, Data: encodeEntry(base.Add(time.Duration(i)*time.Second), log[i])}
		for _, res := range r.fsm.ApplyBatch([]*raft.Log{l}) {
			for _, a := range res.([]appendResult) {
				if a.err != nil && !errors.Is(a.err, streams.ErrStreamNotFound) {
					r.t.Fatalf("%s: entry %d: %v", r.id, i+1, a.err)
				}
			}
		}
	}
}

// snapshot returns the replica's snapshot, as Raft would send it.
func (r *testReplica) snapshot() *memSink {
	r.t.Helper()
	s, err := r.fsm.Snapshot()
	if err != nil {
		r.t.Fatal(err)
	}
	sink := &memSink{}
	if err := s.Persist(sink); err != nil {
		r.t.Fatal(err)
	}
	return sink
}

// state is the replica's shard as replicaState, records from offset 0.
func (r *testReplica) state() replicaState {
	st, err := stateOf(r.store, 0, 1)
	if err != nil {
		r.t.Fatal(err)
	}
	return st
}

func (r *testReplica) same(other *testReplica) {
	r.t.Helper()
	if d := other.state().diff(r.state()); d != "" {
		r.t.Fatalf("%s and %s differ: %s", other.id, r.id, d)
	}
}

func appendOf(stream string, n int) appendCmd {
	return appendCmd{kind: kindAppend, stream: stream, records: encodeRecords(recs(stream, n))}
}

// testLog is a shard's log: streams created, appended to, deleted and
// created again; a replica that applied 4 entries lacks most of it.
func testLog() [][]appendCmd {
	log := [][]appendCmd{
		{{kind: kindCreate, stream: "keep", retention: streams.Retention{MaxRecords: 1000}}, appendOf("keep", 3)},
		{appendOf("again", 2), appendOf("gone", 1)},
		{appendOf("keep", 2)},
		{appendOf("again", 1)},
		// The lagging replica stops here.
		{{kind: kindDelete, stream: "gone"}, {kind: kindDelete, stream: "again"}, appendOf("again", 2)},
	}
	for i := 0; i < 6; i++ {
		log = append(log, []appendCmd{appendOf("keep", 3), appendOf("again", 1), appendOf("new", 2)})
	}
	return log
}

var testLayout = []Peer{{ID: "a", RPC: "a"}, {ID: "b", RPC: "b"}, {ID: "c", RPC: "c"}}

// replicasFed returns replicas a, b, ... of testLayout, each fed the first
// fed[i] entries of log.
func replicasFed(t *testing.T, peers *fakePeers, log [][]appendCmd, fed ...int) []*testReplica {
	var out []*testReplica
	for i, n := range fed {
		r := newTestReplica(t, testLayout[i].ID, peers, testLayout)
		r.feed(log, n)
		out = append(out, r)
	}
	return out
}

// goOn feeds ref and r (which restored a snapshot of log) an entry more,
// and checks that they are the same.
func goOn(ref, r *testReplica, log [][]appendCmd) {
	r.t.Helper()
	more := append(log[:len(log):len(log)], []appendCmd{appendOf("keep", 1), appendOf("again", 1)})
	ref.feed(more, len(more))
	r.applied = len(log)
	r.feed(more, len(more))
	r.same(ref)
}

// TestRestoreFetchesFromTheNextPeer: the first peer is down, or behind
// the snapshot: the lagging replica fetches from the next one and ends
// identical to the snapshot's replica.
func TestRestoreFetchesFromTheNextPeer(t *testing.T) {
	for _, tc := range []struct {
		name  string
		fault func(p *fakePeers, first *testReplica)
	}{
		{"down", func(p *fakePeers, first *testReplica) { p.down["a"] = true }},
		{"behind", func(p *fakePeers, first *testReplica) {}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			peers, log := newFakePeers(), testLog()
			fedA := len(log)
			if tc.name == "behind" {
				fedA = 6 // asked first, behind the snapshot
			}
			rs := replicasFed(t, peers, log, fedA, len(log), 4)
			a, b, c := rs[0], rs[1], rs[2]
			tc.fault(peers, a)
			if err := c.fsm.Restore(b.snapshot().reader()); err != nil {
				t.Fatal(err)
			}
			c.same(b)
			if got := c.fsm.applied.Load(); got != uint64(len(log)) {
				t.Fatalf("applied index %d after the restore, want %d", got, len(log))
			}
			if peers.calls["a"] == 0 || peers.calls["b"] == 0 {
				t.Fatalf("fetches: %v; want both peers asked", peers.calls)
			}
			goOn(b, c, log) // the log goes on from the snapshot
		})
	}
}

// TestRestoreRefusesCorruptPages: peers that answer truncated pages, or
// records that are not stored encodings, fail the restore with ErrNoPeer
// and leave every stream's offsets dense and the applied index where it
// was; once a peer answers well, the restore completes.
func TestRestoreRefusesCorruptPages(t *testing.T) {
	peers, log := newFakePeers(), testLog()
	rs := replicasFed(t, peers, log, len(log), len(log), 4)
	a, c := rs[0], rs[2]
	peers.set(func(p *fakePeers) { p.truncate["a"], p.badRecord["b"] = true, true })
	snap := a.snapshot()
	err := c.fsm.Restore(snap.reader())
	if !errors.Is(err, ErrNoPeer) {
		t.Fatalf("restore from corrupt peers: %v", err)
	}
	if got := c.fsm.applied.Load(); got != 4 {
		t.Fatalf("applied index %d after a failed restore, want 4", got)
	}
	for _, info := range c.store.ListStreams() {
		recs, err := c.store.Read(info.Name, 0, streams.ReadOptions{MaxRecords: 10000})
		if err != nil || uint64(len(recs)) != info.NextOffset-info.FirstOffset {
			t.Fatalf("%s after a failed restore: %d records for %+v (%v)", info.Name, len(recs), info, err)
		}
		for i, r := range recs {
			if r.Offset != info.FirstOffset+uint64(i) {
				t.Fatalf("%s: record %d at offset %d", info.Name, i, r.Offset)
			}
		}
	}
	// Nothing can be applied over the half-done restore: the next entry
	// finishes it first, once a peer answers well.
	peers.set(func(p *fakePeers) { p.badRecord["b"] = false })
	goOn(a, c, log)
}

// TestRestoreResumesAfterACrash: a restore whose fetches stop midway
// leaves its target recorded; after a crash, the restore Raft runs when
// the group starts fails again (its peers are still down) and is finished
// before the next entry, from where each stream stands.
func TestRestoreResumesAfterACrash(t *testing.T) {
	peers, log := newFakePeers(), testLog()
	rs := replicasFed(t, peers, log, len(log), 0, 4)
	a, c := rs[0], rs[2]
	peers.set(func(p *fakePeers) { p.down["b"] = true })
	snap := a.snapshot()
	peers.set(func(p *fakePeers) { p.budget = 5 })
	if err := c.fsm.Restore(snap.reader()); !errors.Is(err, ErrNoPeer) {
		t.Fatalf("restore with fetches failing midway: %v", err)
	}
	if info, _ := c.store.DescribeStream("keep"); info.NextOffset <= 5 {
		t.Fatalf("keep at %d: nothing fetched before the failure", info.NextOffset)
	}
	c.crash(peers, testLayout)
	if c.fsm.restoring.Load() != uint64(len(log)) || c.fsm.applied.Load() != 4 {
		t.Fatalf("after the crash: restoring %d, applied %d", c.fsm.restoring.Load(), c.fsm.applied.Load())
	}
	if _, err := c.fsm.Snapshot(); !errors.Is(err, errRestoring) {
		t.Fatalf("snapshot of a half-restored store: %v", err)
	}
	// Raft starting the group restores its newest snapshot.
	c.fsm.opening.Store(true)
	if err := c.fsm.Restore(snap.reader()); err != nil {
		t.Fatalf("restore while the group starts: %v", err)
	}
	c.fsm.opening.Store(false)
	peers.set(func(p *fakePeers) { p.budget = -1 })
	goOn(a, c, log)
}

// TestRestoreSkipsRecordsTrimmedOnPeers: records the peers no longer keep
// (retention trimmed them) are skipped: the lagging replica's stream goes
// on from the peer's first offset, at the same offsets.
func TestRestoreSkipsRecordsTrimmedOnPeers(t *testing.T) {
	peers := newFakePeers()
	log := [][]appendCmd{
		{{kind: kindCreate, stream: "t", retention: streams.Retention{MaxRecords: 4}}, appendOf("t", 2)},
	}
	for i := 0; i < 5; i++ {
		log = append(log, []appendCmd{appendOf("t", 2)})
	}
	a := newTestReplica(t, "a", peers, testLayout)
	c := newTestReplica(t, "c", peers, testLayout)
	a.feed(log, len(log))
	c.feed(log, 1)
	if _, err := a.store.EnforceRetention(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := c.fsm.Restore(a.snapshot().reader()); err != nil {
		t.Fatal(err)
	}
	info, _ := c.store.DescribeStream("t")
	if info.FirstOffset != 8 || info.NextOffset != 12 {
		t.Fatalf("after the restore: %+v", info)
	}
	want, _ := a.store.ReadStored("t", 0, 0, 100, 1<<20)
	got, _ := c.store.ReadStored("t", 0, 0, 100, 1<<20)
	if got.From != want.From || fmt.Sprint(got.Records) != fmt.Sprint(want.Records) {
		t.Fatalf("records from %d, want from %d, or differ", got.From, want.From)
	}
}

// TestRestoreKeepsAStreamCreatedOnEachReplica: a stream each node created
// on its own (a declared stream: another creation time on each) is kept
// when its newest record is the peer's, and replaced when it is not.
func TestRestoreKeepsAStreamCreatedOnEachReplica(t *testing.T) {
	peers := newFakePeers()
	log := [][]appendCmd{{appendOf("declared", 2), appendOf("other", 2)}, {appendOf("declared", 3)}}
	a := newTestReplica(t, "a", peers, testLayout)
	c := newTestReplica(t, "c", peers, testLayout)
	ctx := context.Background()
	for _, r := range []*testReplica{a, c} {
		for _, s := range []string{"declared", "other"} {
			if _, err := r.store.CreateStream(ctx, s, streams.Retention{}); err != nil {
				t.Fatal(err)
			}
		}
	}
	a.feed(log, len(log))
	c.feed(log, 1)
	if _, err := c.store.Append(ctx, "other", recs("local", 1)...); err != nil { // a record the others lack
		t.Fatal(err)
	}
	before, _ := c.store.DescribeStream("declared")
	if err := c.fsm.Restore(a.snapshot().reader()); err != nil {
		t.Fatal(err)
	}
	after, _ := c.store.DescribeStream("declared")
	if after.ID != before.ID || after.NextOffset != 5 {
		t.Fatalf("declared: %+v before, %+v after; want the same stream with 5 records", before, after)
	}
	if other, _ := c.store.DescribeStream("other"); !other.CreatedAt.Equal(time.Unix(0, streamStatesByName(a)["other"].created)) {
		t.Fatalf("other was kept: %+v", other)
	}
	got, _ := c.store.ReadStored("other", 0, 0, 100, 1<<20)
	want, _ := a.store.ReadStored("other", 0, 0, 100, 1<<20)
	if fmt.Sprint(got.Records) != fmt.Sprint(want.Records) {
		t.Fatal("other differs from the peer's")
	}
}

func streamStatesByName(r *testReplica) map[string]streamState {
	out := map[string]streamState{}
	for _, s := range shardStreams(r.store, 0, 1) {
		out[s.name] = s
	}
	return out
}

// TestSnapshotEncodings: the second encoding round-trips with the
// shard's streams; the first still decodes (without streams), and a
// replica behind a snapshot of the first encoding cannot catch up.
func TestSnapshotEncodings(t *testing.T) {
	s := shardState{index: 42, ids: []appendID{{1, 2}, {3, 4}}, complete: true, streams: []streamState{
		{name: "a", created: 5, retention: streams.Retention{MaxAge: time.Hour, MaxBytes: 7, MaxRecords: 8}, next: 9, lastTS: 10},
		{name: "b", created: -1},
	}}
	b := encodeSnapshot(s)
	got, err := decodeSnapshot(b)
	if err != nil || fmt.Sprint(got) != fmt.Sprint(s) {
		t.Fatalf("round trip: %+v %v", got, err)
	}
	for cut := 0; cut < len(b); cut++ {
		if _, err := decodeSnapshot(b[:cut]); !errors.Is(err, ErrBadEntry) {
			t.Fatalf("truncated at %d: %v", cut, err)
		}
	}
	// Version 1: index and ids only.
	v1 := []byte{snapshotVersion1, 0, 0, 0, 0, 0, 0, 0, 42, 1, 1, 2}
	got, err = decodeSnapshot(v1)
	if err != nil || got.index != 42 || got.complete || len(got.ids) != 1 || got.ids[0] != (appendID{1, 2}) {
		t.Fatalf("version 1: %+v %v", got, err)
	}
	peers := newFakePeers()
	c := newTestReplica(t, "c", peers, testLayout)
	if err := c.fsm.Restore((&memSink{buf: v1}).reader()); !errors.Is(err, ErrBehind) {
		t.Fatalf("restore of a version 1 snapshot ahead of the store: %v", err)
	}
}

// TestRestoreOfAStreamDeletedSinceOnEveryPeer: a stream of the snapshot
// that every peer deleted after it (they applied the log further) cannot
// be fetched; the restore leaves it empty at its next offset instead of
// failing for ever, and the log after the snapshot deletes it.
func TestRestoreOfAStreamDeletedSinceOnEveryPeer(t *testing.T) {
	peers := newFakePeers()
	log := [][]appendCmd{
		{appendOf("x", 3)},
		{appendOf("x", 2), appendOf("keep", 1)},
		{{kind: kindDelete, stream: "x"}},
		{appendOf("keep", 1)},
	}
	rs := replicasFed(t, peers, log, 2, 0, 1)
	a, b, c := rs[0], rs[1], rs[2]
	snap := a.snapshot()
	a.feed(log, len(log))
	b.feed(log, len(log))
	if err := c.fsm.Restore(snap.reader()); err != nil {
		t.Fatal(err)
	}
	if info, err := c.store.DescribeStream("x"); err != nil || info.FirstOffset != 5 || info.NextOffset != 5 {
		t.Fatalf("x after the restore: %+v %v", info, err)
	}
	c.applied = 2
	c.feed(log, len(log))
	c.same(a)
}

// TestRestoreRecreatesAnEmptyStreamOfAnotherCreation: a replica holding
// an empty stream x (created at C1) catches up to a snapshot where x was
// deleted and created again (C2) with records. It must take C2, or its
// own snapshots would say x(C1) with C2's records, and a replica that
// still holds the old x(C1) with records would keep them under C2's.
func TestRestoreRecreatesAnEmptyStreamOfAnotherCreation(t *testing.T) {
	peers := newFakePeers()
	log := [][]appendCmd{
		{{kind: kindCreate, stream: "x"}},
		{{kind: kindAppend, stream: "x", records: encodeRecords(recs("old", 3))}},
		{{kind: kindDelete, stream: "x"}},
		{{kind: kindCreate, stream: "x"}},
		{{kind: kindAppend, stream: "x", records: encodeRecords(recs("new", 5))}},
	}
	rs := replicasFed(t, peers, log, len(log), 1, 2)
	a, b, c := rs[0], rs[1], rs[2]
	if err := b.fsm.Restore(a.snapshot().reader()); err != nil {
		t.Fatal(err)
	}
	if ax, bx := streamStatesByName(a)["x"], streamStatesByName(b)["x"]; ax.created != bx.created {
		t.Fatalf("after b's catch-up: x created %d on a, %d on b", ax.created, bx.created)
	}
	// c, away since it stored the old x's records, catches up from b's
	// snapshot.
	if err := c.fsm.Restore(b.snapshot().reader()); err != nil {
		t.Fatal(err)
	}
	want, _ := a.store.ReadStored("x", 0, 0, 100, 1<<20)
	got, _ := c.store.ReadStored("x", 0, 0, 100, 1<<20)
	if len(got.Records) != len(want.Records) {
		t.Fatalf("c holds %d records of x, a %d", len(got.Records), len(want.Records))
	}
	for i := range want.Records {
		if !bytes.Equal(got.Records[i], want.Records[i]) {
			t.Errorf("c's x offset %d differs from a's", i)
		}
	}
}

// TestNoFetchFromAShardBeingCleared: a node clearing its part of a shard
// (clearStore: the clearing marker, then the streams, the markers last)
// has streams deleted outside the log. Answering a fetch, it would make
// them look deleted by the log, and a replica whose other peers failed
// once would restore without their records. It answers none meanwhile:
// the restore fails, and succeeds once a good peer answers.
func TestNoFetchFromAShardBeingCleared(t *testing.T) {
	peers := newFakePeers()
	log := [][]appendCmd{{appendOf("keep", 3)}, {appendOf("keep", 2)}}
	rs := replicasFed(t, peers, log, len(log), len(log), 0)
	a, b, c := rs[0], rs[1], rs[2]
	snap := a.snapshot()
	// b is clearing the shard: its marker set, its stream deleted already.
	if err := submitWait(b.store, streams.AppendRequest{AppliedLog: b.fsm.log + clearingSuffix, AppliedIndex: 1}); err != nil {
		t.Fatal(err)
	}
	if err := b.store.DeleteStream(context.Background(), "keep"); err != nil {
		t.Fatal(err)
	}
	peers.set(func(p *fakePeers) { p.down["a"] = true })
	if err := c.fsm.Restore(snap.reader()); !errors.Is(err, ErrNoPeer) {
		t.Fatalf("restore with only a peer clearing the shard: %v, want ErrNoPeer", err)
	}
	peers.set(func(p *fakePeers) { p.down["a"] = false })
	if err := c.fsm.Restore(snap.reader()); err != nil {
		t.Fatal(err)
	}
	if info, _ := c.store.DescribeStream("keep"); info.NextOffset-info.FirstOffset != 5 {
		t.Fatalf("keep after the restore: %+v, want 5 records", info)
	}
}

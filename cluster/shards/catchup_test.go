package shards

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mqstream/mqstream/internal/testutil"
	"github.com/mqstream/mqstream/streams"
)

// compactingTimers snapshot only when told (raft.Snapshot) and keep 8
// entries of log after a snapshot, so a replica away for a few dozen
// entries can only catch up from a snapshot.
func compactingTimers() Timers {
	t := LocalTimers()
	t.SnapshotInterval, t.SnapshotThreshold, t.TrailingLogs = time.Hour, 1<<30, 8
	return t
}

// snapshotAll has every running replica take a snapshot (compacting its log).
func (c *cluster) snapshotAll() {
	c.t.Helper()
	for _, nd := range c.nodes {
		if nd.set == nil {
			continue
		}
		for i := range nd.set.replicas {
			r := nd.set.replica(i)
			if r == nil {
				continue
			}
			if err := r.raft.Snapshot().Error(); err != nil {
				c.t.Fatalf("snapshot of shard %d on %s: %v", i, nd.self.ID, err)
			}
		}
	}
}

// replicaState is what must be identical on every replica of a shard.
type replicaState struct {
	streams []streamState
	records map[string][][]byte // by stream, from offset 0
	kv      []kvPair            // the shard's key/value namespace
}

// stateOf returns a store's replica of shard (of n), records from offset 0.
func stateOf(store Store, shard, n int) (replicaState, error) {
	st := replicaState{streams: shardStreams(store, shard, n), records: map[string][][]byte{}}
	for _, s := range st.streams {
		p, err := store.ReadStored(s.name, 0, 0, 1<<20, 1<<30)
		if err != nil {
			return st, err
		}
		if p.From != 0 {
			return st, fmt.Errorf("%s starts at %d", s.name, p.From)
		}
		st.records[s.name] = p.Records
	}
	err := store.KV(kvNamespace(shard)).Scan(nil, func(k, v []byte) error {
		st.kv = append(st.kv, kvPair{key: k, value: v})
		return nil
	})
	return st, err
}

// diff describes how b differs from a ("" if it does not).
func (a replicaState) diff(b replicaState) string {
	if ka, kb := fmt.Sprintf("%q", a.kv), fmt.Sprintf("%q", b.kv); ka != kb {
		return fmt.Sprintf("key/value namespace %s, %s", ka, kb)
	}
	if len(a.streams) != len(b.streams) {
		return fmt.Sprintf("%d streams, %d", len(a.streams), len(b.streams))
	}
	for i, s := range a.streams {
		if b.streams[i] != s {
			return fmt.Sprintf("stream %+v, %+v", s, b.streams[i])
		}
		ra, rb := a.records[s.name], b.records[s.name]
		if len(ra) != len(rb) {
			return fmt.Sprintf("%s: %d records, %d", s.name, len(ra), len(rb))
		}
		for k := range ra {
			if !bytes.Equal(ra[k], rb[k]) {
				return fmt.Sprintf("%s: record %d differs", s.name, k)
			}
		}
	}
	return ""
}

// identical waits until every running replica of every shard holds the
// same streams (creation time, retention, next offset, newest timestamp)
// with the same record bytes at the same offsets.
func (c *cluster) identical() {
	c.t.Helper()
	waitIdentical(c.t, len(c.layout.Shards), func(shard int) map[string]Store {
		out := map[string]Store{}
		for _, nd := range c.nodes {
			if nd.set != nil && c.layout.Holds(shard, nd.self.ID) {
				out[nd.self.ID] = nd.store
			}
		}
		return out
	})
}

// waitIdentical waits until the stores holders returns for each of the
// shards hold the same replica of it.
func waitIdentical(t testing.TB, shards int, holders func(shard int) map[string]Store) {
	t.Helper()
	var why string
	same := func() bool {
		for shard := 0; shard < shards; shard++ {
			var ref *replicaState
			var refID string
			for id, store := range holders(shard) {
				st, err := stateOf(store, shard, shards)
				if err != nil {
					why = fmt.Sprintf("%s: %v", id, err)
					return false
				}
				if ref == nil {
					ref, refID = &st, id
					continue
				}
				if d := ref.diff(st); d != "" {
					why = fmt.Sprintf("shard %d: %s and %s: %s", shard, refID, id, d)
					return false
				}
			}
		}
		return true
	}
	// Polls like testutil.Eventually, and says how the replicas differ.
	for deadline := time.Now().Add(15 * time.Second); !same(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("replicas still differ after 15s: %s", why)
		}
	}
}

// TestReplicaBehindCompactedLogCatchesUpFromPeers: a replica stopped while
// the others append, create, delete and re-create streams, then snapshot
// and compact their logs, gets a snapshot when it restarts and fetches
// what it missed from its peers: every stream is the same on every replica
// (offsets, timestamps, bytes, creation times), and it applies the log
// again afterwards.
func TestReplicaBehindCompactedLogCatchesUpFromPeers(t *testing.T) {
	c := newClusterWith(t, 3, 2, 3, compactingTimers())
	c.waitLeaders()
	ctx := context.Background()
	n1, n3 := c.nodes[0], c.nodes[2]
	appendN := func(stream string, n int) {
		t.Helper()
		for i := 0; i < n; i++ {
			if _, err := n1.set.Append(ctx, stream, recs(stream, 2)...); err != nil {
				t.Fatalf("append to %s: %v", stream, err)
			}
		}
	}
	names := func(prefix string) []string {
		return []string{prefix + streamOfShard(t, 0, 2), prefix + streamOfShard(t, 1, 2)}
	}
	for _, s := range append(names("keep-"), names("gone-")...) {
		if _, err := n1.set.CreateStream(ctx, s, streams.Retention{MaxRecords: 1000}); err != nil {
			t.Fatal(err)
		}
		appendN(s, 3)
	}
	for _, s := range names("again-") {
		appendN(s, 2) // auto-created
	}
	c.identical()

	n3.stop()
	for _, s := range names("keep-") {
		appendN(s, 20)
	}
	for _, s := range names("gone-") {
		if err := n1.set.DeleteStream(ctx, s); err != nil {
			t.Fatal(err)
		}
	}
	for _, s := range names("again-") {
		// Deleted and created again: the same name, another stream
		// (longer than the one the stopped replica holds).
		if err := n1.set.DeleteStream(ctx, s); err != nil {
			t.Fatal(err)
		}
		appendN(s, 4)
	}
	for _, s := range names("new-") {
		if _, err := n1.set.CreateStream(ctx, s, streams.Retention{MaxAge: time.Hour}); err != nil {
			t.Fatal(err)
		}
		appendN(s, 5)
	}
	c.snapshotAll()
	appendN(names("keep-")[0], 2) // entries after the snapshot too

	n3.start()
	c.waitLeaders()
	c.identical()
	for shard := range c.layout.Shards {
		if got, _ := n3.store.AppliedIndexOf(groupName(shard) + restoreSuffix); got == 0 {
			t.Fatalf("shard %d: caught up without a snapshot (the log was not compacted?)", shard)
		}
	}
	// The caught-up replica applies the log from there on.
	for _, s := range names("keep-") {
		appendN(s, 3)
	}
	c.identical()
}

// TestCatchUpSurvivesUnreachablePeerAndCrash: while a restarted replica
// catches up, its fetches fail after a few pages (the peers drop off), and
// it is stopped midway; restarted with its peers back, it finishes the
// catch-up where it stood when its Raft group starts, and ends identical
// to the others. Snapshots kept in memory or in files (the two newest,
// as nodes keep them).
func TestCatchUpSurvivesUnreachablePeerAndCrash(t *testing.T) {
	for _, files := range []bool{false, true} {
		t.Run(map[bool]string{false: "memory snapshots", true: "file snapshots"}[files], func(t *testing.T) {
			testCatchUpSurvivesUnreachablePeerAndCrash(t, files)
		})
	}
}

func testCatchUpSurvivesUnreachablePeerAndCrash(t *testing.T, fileSnapshots bool) {
	c := newClusterWith(t, 3, 1, 3, compactingTimers(), func(c *cluster) { c.fileSnapshots = fileSnapshots })
	c.waitLeaders()
	ctx := context.Background()
	n1, n3 := c.nodes[0], c.nodes[2]
	c.writeKV(0, put("g/old", "1"), put("g/kept", "1"))
	c.sameKV(0, "g/kept=1 g/old=1")
	n3.stop()
	var names []string
	for i := 0; i < 6; i++ {
		s := fmt.Sprintf("crash-%d", i)
		names = append(names, s)
		for k := 0; k < 5; k++ {
			if _, err := n1.set.Append(ctx, s, recs(s, 3)...); err != nil {
				t.Fatal(err)
			}
		}
		c.writeKV(0, put(fmt.Sprintf("g/%d", i), s))
	}
	c.writeKV(0, streams.KVWrite{Key: []byte("g/old"), Delete: true})
	c.snapshotAll()

	// Each stream is fetched in one page; three succeed, then every
	// fetch fails.
	var served atomic.Int32
	c.mu.Lock()
	c.fetchFault = func(addr string) error {
		if served.Add(1) > 3 {
			return errors.New("connection refused (test)")
		}
		return nil
	}
	c.mu.Unlock()
	n3.start()
	testutil.Eventually(t, 15*time.Second, "the catch-up to fail midway", func() bool { return served.Load() > 5 })
	n3.stop()
	applied, _ := n3.storeIndex(0)
	if target := n3.restoreTarget(0); target == 0 || applied >= target {
		t.Fatalf("after the failed catch-up: applied %d, restore target %d", applied, target)
	}

	c.mu.Lock()
	c.fetchFault = nil
	c.mu.Unlock()
	n3.start()
	c.identical() // the key/value namespace too
	applied, _ = n3.storeIndex(0)
	if target := n3.restoreTarget(0); applied < target {
		t.Fatalf("after the restart: applied %d, restore target %d", applied, target)
	}
}

// storeIndex opens the stopped node's store and returns its applied
// index of shard.
func (nd *testNode) storeIndex(shard int) (uint64, error) {
	nd.c.t.Helper()
	if nd.set != nil {
		return nd.store.AppliedIndexOf(groupName(shard))
	}
	store, err := streams.Open(streams.Options{Dir: nd.dir})
	if err != nil {
		nd.c.t.Fatal(err)
	}
	defer store.Close()
	return store.AppliedIndexOf(groupName(shard))
}

// restoreTarget returns the index the node's last catch-up of shard aimed at.
func (nd *testNode) restoreTarget(shard int) uint64 {
	nd.c.t.Helper()
	store := nd.store
	if nd.set == nil {
		var err error
		if store, err = streams.Open(streams.Options{Dir: nd.dir}); err != nil {
			nd.c.t.Fatal(err)
		}
		defer store.Close()
	}
	v, err := store.AppliedIndexOf(groupName(shard) + restoreSuffix)
	if err != nil {
		nd.c.t.Fatal(err)
	}
	return v
}

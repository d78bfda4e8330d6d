package shards

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cockroachdb/pebble/v2/vfs/errorfs"
	"github.com/hashicorp/raft"

	"github.com/mqstream/mqstream/internal/testutil"
	"github.com/mqstream/mqstream/streams"
)

// failWAL fails the writes and syncs of a store's WAL (and of its
// recovery's probe file).
func failWAL(op errorfs.Op) error {
	if strings.HasSuffix(op.Path, ".log") || strings.HasSuffix(op.Path, "probe.tmp") {
		switch op.Kind {
		case errorfs.OpFileWrite, errorfs.OpFileWriteAt, errorfs.OpFileSync, errorfs.OpFileSyncData, errorfs.OpFileSyncTo, errorfs.OpCreate:
			return errorfs.ErrInjected
		}
	}
	return nil
}

// openFailingStore opens a store in memory whose WAL's writes fail while
// the toggle is on; closed when the test ends.
func openFailingStore(t *testing.T) (*streams.Store, *errorfs.Toggle) {
	t.Helper()
	faults := &errorfs.Toggle{Injector: errorfs.InjectorFunc(failWAL)}
	store, err := streams.Open(streams.Options{Dir: "/db", FS: errorfs.Wrap(vfs.NewMem(), faults), AutoCreate: true, Logger: testutil.Logger()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = store.Close() })
	return store, faults
}

// TestStoreRecoveryThatLostEntriesStopsTheReplica: entries 4-6 are
// applied without fsync while the disk fails writes; a sync fails, and
// the store recovers by reopening from what reached the disk, entries
// 1-3. The state machine must not apply entry 7 on top: this replica's
// copy would lack 4-6 for good, its offsets off by three. It waits,
// until the replica stops, for a restart to replay them from the Raft
// log. Before, entry 7 was stored at offset 3 under marker 7.
func TestStoreRecoveryThatLostEntriesStopsTheReplica(t *testing.T) {
	ctx := context.Background()
	store, faults := openFailingStore(t)
	stop := make(chan struct{})
	f, err := newFSM(fsmConfig{shards: 1, store: store, logger: testutil.Logger(), stop: stop})
	if err != nil {
		t.Fatal(err)
	}
	at := time.Unix(1_700_000_000, 0)
	entry := func(i uint64) *raft.Log {
		return &raft.Log{Index: i, Type: raft.LogCommand, Data: encodeEntry(at, []appendCmd{{kind: kindAppend, stream: "s",
			id: appendID{7, i}, records: encodeRecords([]streams.Record{{Topic: "t", Payload: []byte{byte(i)}}})}})}
	}
	f.ApplyBatch([]*raft.Log{entry(1), entry(2), entry(3)})
	if err := store.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	faults.On()
	f.ApplyBatch([]*raft.Log{entry(4), entry(5), entry(6)}) // committed without fsync
	if err := store.Sync(ctx); err == nil {
		t.Fatal("a sync with the disk failing writes succeeded")
	}
	faults.Off()
	testutil.Eventually(t, 10*time.Second, "the store to recover", func() bool { return store.Healthy() == nil })
	if got, _ := store.AppliedIndexOf(groupName(0)); got != 3 {
		t.Fatalf("the recovered store's marker is %d, want 3 (the test's premise: 4-6 lost)", got)
	}

	close(stop) // the replica stops: the wait for a restart ends
	f.ApplyBatch([]*raft.Log{entry(7)})
	info, err := store.DescribeStream("s")
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := store.AppliedIndexOf(groupName(0)); got != 3 || info.NextOffset != 3 {
		t.Fatalf("entry 7 applied over the lost ones: marker %d, next offset %d; want 3 and 3", got, info.NextOffset)
	}
}

// TestReplicaWhoseStoreLostEntriesIsOpenedAgain: the shard's leader x
// applies entries while its disk fails the WAL's writes; a sync fails and
// x's store recovers from what reached the disk, losing them. x's replica
// stops applying (TestStoreRecoveryThatLostEntriesStopsTheReplica), and
// the node opens it again: it hands the leadership over, Raft replays the
// lost entries from its log, and the shard's writes go on. Before, x kept
// the leadership with its state machine stalled, and the shard's writes
// failed on every node until x restarted.
func TestReplicaWhoseStoreLostEntriesIsOpenedAgain(t *testing.T) {
	c := newClusterWith(t, 3, 1, 3, LocalTimers(), func(c *cluster) { c.faultyStores = true })
	lead := c.waitLeaders()[0]
	x := c.nodes[lead]
	w := startWriter(t, 1, c.nodes[(lead+1)%3], c.nodes[(lead+2)%3])
	w.waitMore(t, 20)
	before := x.set.replica(0)

	// The premise: x applies entries while its WAL's writes fail, and
	// the sync that fails then loses them. When the disk's failure
	// surfaces at the first commit instead (nothing applied, nothing
	// lost), the store recovers and the test tries again.
	reopened := func() bool {
		r := x.set.replica(0)
		return r != nil && r != before
	}
	for try := 0; ; try++ {
		if try == 10 {
			t.Fatal("x never applied an entry while its WAL failed (the test's premise)")
		}
		applied := before.fsm.applied.Load()
		x.faults.On()
		deadline := time.Now().Add(time.Second)
		for before.fsm.applied.Load() < applied+3 && time.Now().Before(deadline) {
			time.Sleep(time.Millisecond) // polled: x applying with its WAL failing
		}
		reached := before.fsm.applied.Load()
		if err := x.store.Sync(context.Background()); err == nil {
			t.Fatal("a sync with the disk failing writes succeeded")
		}
		x.faults.Off()
		testutil.Eventually(t, 10*time.Second, "x's store to recover", func() bool { return x.store.Healthy() == nil })
		if marker, _ := x.store.AppliedIndexOf(groupName(0)); marker < reached || reopened() {
			break // lost: the premise holds
		}
	}
	testutil.Eventually(t, 15*time.Second, "x's replica to be opened again", reopened)
	w.waitMore(t, 40)
	w.stop()
	testutil.Eventually(t, 15*time.Second, "x's replica to serve reads again", func() bool { return x.set.Serves(0) })
	c.identical()
	for _, nd := range c.nodes {
		w.checkAcked(t, nd.self.ID, nd.store)
	}
	t.Logf("%d appends acknowledged, %d refused (the last: %v)", w.count(), w.refused.Load(), w.lastErr)
}

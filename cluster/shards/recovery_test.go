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

// TestStoreRecoveryThatLostEntriesStopsTheReplica: entries 4-6 are
// applied without fsync while the disk fails writes; a sync fails, and
// the store recovers by reopening from what reached the disk, entries
// 1-3. The state machine must not apply entry 7 on top: this replica's
// copy would lack 4-6 for good, its offsets off by three. It waits,
// until the replica stops, for a restart to replay them from the Raft
// log. Before, entry 7 was stored at offset 3 under marker 7.
func TestStoreRecoveryThatLostEntriesStopsTheReplica(t *testing.T) {
	ctx := context.Background()
	faults := &errorfs.Toggle{Injector: errorfs.InjectorFunc(func(op errorfs.Op) error {
		if strings.HasSuffix(op.Path, ".log") || strings.HasSuffix(op.Path, "probe.tmp") {
			switch op.Kind {
			case errorfs.OpFileWrite, errorfs.OpFileWriteAt, errorfs.OpFileSync, errorfs.OpFileSyncData, errorfs.OpFileSyncTo, errorfs.OpCreate:
				return errorfs.ErrInjected
			}
		}
		return nil
	})}
	store, err := streams.Open(streams.Options{Dir: "/db", FS: errorfs.Wrap(vfs.NewMem(), faults), AutoCreate: true, Logger: testutil.Logger()})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
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

package shards

import (
	"context"
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/mqstream/mqstream/internal/testutil"
	"github.com/mqstream/mqstream/streams"
)

// TestFencedAppendEncoding: a fenced append makes an entry of version 3
// that decodes to itself; its term cannot hide in a version 2 entry, nor
// travel in a forward.
func TestFencedAppendEncoding(t *testing.T) {
	ts := time.Unix(1_700_000_000, 0)
	cmds := []appendCmd{appendOf("a", 2), {kind: kindAppend, stream: "b", noSync: true, records: encodeRecords(recs("b", 1)),
		id: appendID{producer: 9, seq: 4}, term: 7}, kvCmd(7, put("k", "v"))}
	b := encodeEntry(ts, cmds)
	if b[0] != entryVersion3 {
		t.Fatalf("an entry with a fenced append is of version %d", b[0])
	}
	_, got, err := decodeEntry(b)
	if err != nil || !reflect.DeepEqual(got, cmds) {
		t.Fatalf("round trip: %v\n%+v\n%+v", err, got, cmds)
	}
	for cut := 0; cut < len(b); cut++ {
		if _, _, err := decodeEntry(b[:cut]); !errors.Is(err, ErrBadEntry) {
			t.Fatalf("truncated at %d: %v", cut, err)
		}
	}
	if _, _, err := decodeEntry(append([]byte{entryVersion2}, b[1:]...)); !errors.Is(err, ErrBadEntry) {
		t.Fatalf("a fenced append in version 2: %v", err)
	}
	if _, _, _, err := decodeForward(encodeForward(0, 0, cmds[:2])); !errors.Is(err, ErrBadEntry) {
		t.Fatalf("a fenced append in a forward: %v", err)
	}
	if b := encodeEntry(ts, cmds[:1]); b[0] != entryVersion1 {
		t.Fatalf("an entry of unfenced appends is of version %d", b[0])
	}
}

// TestFencedAppendStateMachine: a fenced append in an entry of another
// term stores nothing on any replica and is not remembered as applied
// (so a replica replaying the log keeps the same window of ids as one
// applying it live); in its own term it is applied as any append.
func TestFencedAppendStateMachine(t *testing.T) {
	store, err := streams.Open(streams.Options{Dir: t.TempDir(), AutoCreate: true, Logger: testutil.Logger()})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	stop := make(chan struct{})
	defer close(stop)
	f, err := newFSM(fsmConfig{shards: 1, store: store, logger: testutil.Logger(), stop: stop})
	if err != nil {
		t.Fatal(err)
	}
	fencedOf := func(term, seq uint64) appendCmd {
		c := appendOf("s", 1)
		c.id, c.term = appendID{producer: 5, seq: seq}, term
		return c
	}
	entry := func(index, term uint64, cmds ...appendCmd) *raft.Log {
		return &raft.Log{Index: index, Term: term, Type: raft.LogCommand, Data: encodeEntry(time.Unix(int64(index), 0), cmds)}
	}
	out := f.ApplyBatch([]*raft.Log{entry(1, 2, fencedOf(1, 1), fencedOf(2, 2)), entry(2, 3, fencedOf(3, 1))})
	res := out[0].([]appendResult)
	if !errors.Is(res[0].err, ErrFenced) || res[1].err != nil {
		t.Fatalf("term 1 and 2 in an entry of term 2: %v, %v; want ErrFenced, nil", res[0].err, res[1].err)
	}
	// The id of the fenced one was not remembered: the same id in its
	// own term is a new append, not a retry.
	if res := out[1].([]appendResult); res[0].err != nil {
		t.Fatalf("the refused id again in its term: %v", res[0].err)
	}
	if info, _ := store.DescribeStream("s"); info.NextOffset != 2 {
		t.Fatalf("%d records stored, want 2", info.NextOffset)
	}
	if _, dup := f.dd.lookup(appendID{producer: 5, seq: 2}); !dup {
		t.Fatal("an applied fenced append is not in the window")
	}
	g, err := newFSM(fsmConfig{shards: 1, store: store, logger: testutil.Logger(), stop: stop})
	if err != nil {
		t.Fatal(err)
	}
	g.ApplyBatch([]*raft.Log{entry(1, 2, fencedOf(1, 9))}) // replayed: at or below the marker
	if _, dup := g.dd.lookup(appendID{producer: 5, seq: 9}); dup {
		t.Fatal("a replayed fenced append of another term was remembered")
	}
}

// TestSubmitFenced: the leader appends in its term; the old term is
// refused after a transfer, on the new leader (ErrFenced) and on the old
// one (ErrNoLeader), and never forwarded.
func TestSubmitFenced(t *testing.T) {
	c := newClusterWith(t, 3, 1, 3, noBalance())
	ctx := context.Background()
	first, t1 := c.leadOf(0)
	if _, err := first.set.CreateStream(ctx, "out", streams.Retention{}); err != nil {
		t.Fatal(err)
	}
	submit := func(nd *testNode, term uint64, payload string) error {
		errc := make(chan error, 1)
		err := nd.set.SubmitFenced(streams.AppendRequest{Stream: "out", Records: []streams.Record{{Topic: "t", Payload: []byte(payload)}},
			Done: func(_ uint64, err error) { errc <- err }}, term)
		if err != nil {
			return err
		}
		return <-errc
	}
	if err := submit(first, t1, "first"); err != nil {
		t.Fatal(err)
	}
	var second *testNode
	for _, nd := range c.nodes {
		if nd != first {
			second = nd
			break
		}
	}
	t2 := c.transfer(0, first, second)
	if err := submit(second, t1, "stale on the new leader"); !errors.Is(err, ErrFenced) {
		t.Fatalf("the old term on the new leader: %v, want ErrFenced", err)
	}
	if err := submit(first, t1, "stale on the old leader"); !errors.Is(err, ErrNoLeader) {
		t.Fatalf("the old term on the old leader: %v, want ErrNoLeader", err)
	}
	if err := submit(second, t2, "second"); err != nil {
		t.Fatal(err)
	}
	// A stale append proposed past the check reaches the log: applied
	// nowhere, and the proposer is told.
	r := second.set.replica(0)
	stale := appendOf("out", 1)
	stale.term = t1
	errc := make(chan error, 1)
	r.propose(stale, func(_ uint64, err error) { errc <- err })
	if err := <-errc; !errors.Is(err, ErrFenced) {
		t.Fatalf("a stale append in the log: %v, want ErrFenced", err)
	}
	if err := second.set.SubmitFenced(streams.AppendRequest{Stream: "out", Done: func(uint64, error) {}}, 0); err == nil {
		t.Fatal("term 0 accepted")
	}
	c.sameEverywhere("out", []string{"first", "second"})
}

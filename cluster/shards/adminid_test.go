package shards

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/mqstream/mqstream/internal/testutil"
	"github.com/mqstream/mqstream/streams"
)

// countForwards makes c count the forwards it delivers, and run before,
// if set, ahead of the forward numbered n (from 1) being delivered.
func countForwards(c *cluster, before map[int]func()) func() int {
	var mu sync.Mutex
	calls := 0
	c.mu.Lock()
	c.forwardFault = func(string) error {
		mu.Lock()
		calls++
		f := before[calls]
		mu.Unlock()
		if f != nil {
			f()
		}
		return nil
	}
	c.mu.Unlock()
	return func() int {
		mu.Lock()
		defer mu.Unlock()
		return calls
	}
}

// TestLostAnswerToAForwardedCreationIsSentAgain: a follower forwards a
// stream's creation; the leader applies it but the answer is lost. The
// creation carries an id, so it is sent again and answered as the first
// one was (created), not with the outcome unknown, nor with "the stream
// exists" (which its first copy made so).
func TestLostAnswerToAForwardedCreationIsSentAgain(t *testing.T) {
	c := newSteadyCluster(t, 3)
	leaders := c.waitLeaders()
	follower := c.nodes[(leaders[0]+1)%3]
	stream := streamOfShard(t, 0, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c.mu.Lock()
	c.dropAnswers = 1
	c.mu.Unlock()
	calls := countForwards(c, nil)
	info, err := follower.set.CreateStream(ctx, stream, streams.Retention{MaxRecords: 7})
	if err != nil {
		t.Fatalf("CreateStream with its first answer lost: %v, want it created", err)
	}
	if n := calls(); n != 2 {
		t.Fatalf("the creation was forwarded %d times, want twice (the second answered from the window)", n)
	}
	if info.Retention.MaxRecords != 7 {
		t.Fatalf("created %+v", info)
	}
	// A creation of its own, later, is still refused.
	if _, err := follower.set.CreateStream(ctx, stream, streams.Retention{}); !errors.Is(err, streams.ErrStreamExists) {
		t.Fatalf("a second creation: %v, want ErrStreamExists", err)
	}
}

// TestLostAnswerToAForwardedDeletionIsSentAgain: a follower forwards a
// stream's deletion, the leader applies it and the answer is lost; before
// the deletion is sent again, another client creates the stream anew and
// has a record acknowledged. The retry carries the first one's id: it is
// answered as the first one was (deleted), and deletes nothing.
func TestLostAnswerToAForwardedDeletionIsSentAgain(t *testing.T) {
	c := newSteadyCluster(t, 3)
	leaders := c.waitLeaders()
	leader, follower := c.nodes[leaders[0]], c.nodes[(leaders[0]+1)%3]
	stream := streamOfShard(t, 0, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := leader.set.CreateStream(ctx, stream, streams.Retention{}); err != nil {
		t.Fatal(err)
	}
	c.mu.Lock()
	c.dropAnswers = 1
	c.mu.Unlock()
	var recreateErr error
	calls := countForwards(c, map[int]func(){2: func() {
		// Between the lost answer and the retry.
		if _, recreateErr = leader.set.CreateStream(ctx, stream, streams.Retention{}); recreateErr == nil {
			_, recreateErr = leader.set.Append(ctx, stream, recs("R", 1)...)
		}
	}})
	if err := follower.set.DeleteStream(ctx, stream); err != nil {
		t.Fatalf("DeleteStream with its first answer lost: %v, want it deleted", err)
	}
	if recreateErr != nil {
		t.Fatalf("creating the stream anew: %v", recreateErr)
	}
	if n := calls(); n != 2 {
		t.Fatalf("the deletion was forwarded %d times, want twice", n)
	}
	testutil.Eventually(t, 5*time.Second, "the stream created anew, with its record, on every replica", func() bool {
		for _, nd := range c.nodes {
			if got, err := nd.store.Read(stream, 0, streams.ReadOptions{MaxRecords: 10}); err != nil || len(got) != 1 {
				return false
			}
		}
		return true
	})
	// A deletion of its own, later, deletes it.
	if err := follower.set.DeleteStream(ctx, stream); err != nil {
		t.Fatal(err)
	}
	if err := follower.set.DeleteStream(ctx, stream); !errors.Is(err, streams.ErrStreamNotFound) {
		t.Fatalf("deleting a deleted stream: %v, want ErrStreamNotFound", err)
	}
}

// TestAdminIDsTravelInEntryVersion4: a creation or deletion with an id is
// encoded in version 4, decoded with its id, and refused in an entry of
// an earlier version; without an id it stays in version 1, byte for byte.
func TestAdminIDsTravelInEntryVersion4(t *testing.T) {
	ts := time.Unix(0, 1234)
	id := appendID{producer: 9, seq: 3}
	for _, kind := range []byte{kindCreate, kindDelete} {
		cmd := appendCmd{kind: kind, stream: "s", id: id}
		if kind == kindCreate {
			cmd.retention = streams.Retention{MaxRecords: 5}
		}
		b := encodeEntry(ts, []appendCmd{cmd})
		if b[0] != entryVersion4 {
			t.Fatalf("kind %d with an id: version %d, want 4", kind, b[0])
		}
		_, got, err := decodeEntry(b)
		if err != nil || len(got) != 1 || got[0].kind != kind || got[0].id != id || got[0].retention != cmd.retention {
			t.Fatalf("kind %d decoded as %+v, %v", kind, got, err)
		}
		if !got[0].retriable() {
			t.Fatalf("kind %d with an id is not retriable", kind)
		}
		old := append([]byte{entryVersion3}, b[1:]...)
		if _, _, err := decodeEntry(old); !errors.Is(err, ErrBadEntry) {
			t.Fatalf("kind %d with an id in version 3: %v, want ErrBadEntry", kind, err)
		}
		cmd.id = appendID{}
		b = encodeEntry(ts, []appendCmd{cmd})
		if b[0] != entryVersion1 {
			t.Fatalf("kind %d without an id: version %d, want 1", kind, b[0])
		}
		if _, got, err := decodeEntry(b); err != nil || got[0].retriable() {
			t.Fatalf("kind %d without an id decoded as %+v, %v (retriable: want not)", kind, got, err)
		}
	}
	// Producer 0 is "no id": an encoding that claims an id of producer 0
	// is malformed.
	b := encodeEntry(ts, []appendCmd{{kind: kindDelete, stream: "s", id: id}})
	bad := append([]byte{}, b[:len(b)-2]...)
	bad = append(bad, 0, 3)
	if _, _, err := decodeEntry(bad); !errors.Is(err, ErrBadEntry) {
		t.Fatalf("a deletion with producer 0: %v, want ErrBadEntry", err)
	}
}

// TestReplayDerivesAdminResults: a replayed creation or deletion with an
// id gets its result derived (created or "exists"; deleted or "not
// found"), and a retry of one in the window changes nothing the
// derivation follows.
func TestReplayDerivesAdminResults(t *testing.T) {
	tally := newReplayTally(0, 10, nil)
	entry := func(index uint64, c appendCmd, isNew bool) {
		tally.entry(&raft.Log{Index: index, Term: 1}, []appendCmd{c}, []bool{isNew})
	}
	id := func(seq uint64) appendID { return appendID{producer: 7, seq: seq} }
	entry(1, appendCmd{kind: kindCreate, stream: "a", id: id(1)}, true)
	entry(2, appendCmd{kind: kindCreate, stream: "a", id: id(2)}, true)
	entry(3, appendCmd{kind: kindDelete, stream: "b", id: id(3)}, true)
	entry(4, appendCmd{kind: kindCreate, stream: "b", id: id(4)}, true)
	entry(5, appendCmd{kind: kindDelete, stream: "b", id: id(3)}, false) // a retry: deletes nothing
	if tally.broken != "" {
		t.Fatal(tally.broken)
	}
	if _, ok := tally.streams["b"]; !ok {
		t.Fatal("a retried deletion took stream b out of the derivation")
	}
	want := map[uint64]error{1: nil, 2: streams.ErrStreamExists, 3: streams.ErrStreamNotFound, 4: nil}
	if len(tally.derived) != len(want) {
		t.Fatalf("derived %+v", tally.derived)
	}
	for _, d := range tally.derived {
		if w := want[d.id.seq]; !errors.Is(d.result.err, w) || (w == nil && d.result.err != nil) {
			t.Fatalf("seq %d derived %v, want %v", d.id.seq, d.result.err, w)
		}
	}
	// "exists" is a result the log alone decides: it travels in
	// snapshots.
	ids := []appendID{id(2)}
	b := appendResults(nil, ids, []*appendResult{{err: streams.ErrStreamExists}})
	d := decoder{b: b}
	got, err := decodeResults(&d, 1)
	if err != nil || len(got) != 1 || !errors.Is(got[0].err, streams.ErrStreamExists) {
		t.Fatalf("decoded %+v, %v", got, err)
	}
}

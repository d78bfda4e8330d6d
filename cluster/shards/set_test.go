package shards

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/mqstream/mqstream/internal/testutil"
	"github.com/mqstream/mqstream/streams"
)

// streamOfShard returns a stream name that falls in shard i.
func streamOfShard(t *testing.T, i, shards int) string {
	t.Helper()
	for k := 0; k < 10000; k++ {
		if name := fmt.Sprintf("s%d", k); ShardOf(name, shards) == i {
			return name
		}
	}
	t.Fatalf("no stream name for shard %d", i)
	return ""
}

func recs(prefix string, n int) []streams.Record {
	out := make([]streams.Record, n)
	for i := range out {
		out[i] = streams.Record{Topic: "t/" + prefix, Payload: fmt.Appendf(nil, "%s-%d", prefix, i), QoS: 1, ClientID: "c1"}
	}
	return out
}

// sameEverywhere checks that every running replica of stream's shard holds
// exactly want (payloads in order), with the same offsets and timestamps.
func (c *cluster) sameEverywhere(stream string, want []string) {
	c.t.Helper()
	shard := ShardOf(stream, len(c.layout.Shards))
	var ref []streams.Record
	testutil.Eventually(c.t, 10*time.Second, "replicas of "+stream+" to converge", func() bool {
		ref = nil
		for _, nd := range c.nodes {
			if nd.set == nil || !c.layout.Holds(shard, nd.self.ID) {
				continue
			}
			got, err := nd.store.Read(stream, 0, streams.ReadOptions{MaxRecords: 100000})
			if err != nil || len(got) != len(want) {
				return false
			}
			for i, r := range got {
				if string(r.Payload) != want[i] || r.Offset != uint64(i) {
					c.t.Fatalf("%s on %s: record %d is %q at offset %d, want %q", stream, nd.self.ID, i, r.Payload, r.Offset, want[i])
				}
				if ref != nil && !r.Timestamp.Equal(ref[i].Timestamp) {
					c.t.Fatalf("%s on %s: record %d has timestamp %v, another replica %v", stream, nd.self.ID, i, r.Timestamp, ref[i].Timestamp)
				}
			}
			ref = got
		}
		return ref != nil
	})
}

// TestAppendsReplicateFromAnyNode: appends sent to every node, for streams
// of every shard, are committed once, in order, at the same offsets with
// the same timestamps on every replica; a follower forwards to the leader.
func TestAppendsReplicateFromAnyNode(t *testing.T) {
	c := newCluster(t, 3, 4, 3)
	c.waitLeaders()
	ctx := context.Background()
	for shard := 0; shard < 4; shard++ {
		stream := streamOfShard(t, shard, 4)
		var want []string
		for k, nd := range c.nodes {
			batch := recs(fmt.Sprintf("%s-%d", stream, k), 3)
			first, err := nd.set.Append(ctx, stream, batch...)
			if err != nil {
				t.Fatalf("append to %s through %s: %v", stream, nd.self.ID, err)
			}
			if first != uint64(len(want)) || batch[2].Offset != first+2 {
				t.Fatalf("append through %s: first offset %d, want %d", nd.self.ID, first, len(want))
			}
			for _, r := range batch {
				want = append(want, string(r.Payload))
			}
		}
		c.sameEverywhere(stream, want)
	}
}

// TestConcurrentAppendsKeepPerPublisherOrder: many concurrent appenders
// on every node; each one's records keep their order and nothing is lost
// or stored twice.
func TestConcurrentAppendsKeepPerPublisherOrder(t *testing.T) {
	c := newCluster(t, 3, 2, 3)
	c.waitLeaders()
	stream := streamOfShard(t, 0, 2)
	const per = 40
	errc := make(chan error, 6)
	for k := 0; k < 6; k++ {
		nd := c.nodes[k%3]
		go func() {
			for i := 0; i < per; i++ {
				r := streams.Record{Topic: "t", Payload: fmt.Appendf(nil, "p%d-%03d", k, i)}
				if _, err := nd.set.Append(context.Background(), stream, r); err != nil {
					errc <- err
					return
				}
			}
			errc <- nil
		}()
	}
	for k := 0; k < 6; k++ {
		if err := <-errc; err != nil {
			t.Fatal(err)
		}
	}
	leader := c.nodes[c.waitLeaders()[0]] // acknowledged: applied on the leader
	got, err := leader.store.Read(stream, 0, streams.ReadOptions{MaxRecords: 1000})
	if err != nil || len(got) != 6*per {
		t.Fatalf("read %d records, %v", len(got), err)
	}
	next := map[byte]int{}
	for _, r := range got {
		var k byte
		var i int
		if _, err := fmt.Sscanf(string(r.Payload), "p%c-%d", &k, &i); err != nil {
			t.Fatal(err)
		}
		if i != next[k] {
			t.Fatalf("publisher %c: record %d after %d", k, i, next[k]-1)
		}
		next[k]++
	}
	want := make([]string, len(got))
	for i, r := range got {
		want[i] = string(r.Payload)
	}
	c.sameEverywhere(stream, want)
}

// TestLeaderLossLosesNothingAcknowledged: the leader of a shard stops;
// the others elect a new one and take appends; every acknowledged record
// is on both survivors, and on the old leader once it is back.
func TestLeaderLossLosesNothingAcknowledged(t *testing.T) {
	c := newCluster(t, 3, 1, 3)
	leaders := c.waitLeaders()
	stream := streamOfShard(t, 0, 1)
	ctx := context.Background()
	var want []string
	appendVia := func(nd *testNode, prefix string, n int) {
		t.Helper()
		for _, r := range recs(prefix, n) {
			if _, err := nd.set.Append(ctx, stream, r); err != nil {
				t.Fatalf("append %s through %s: %v", prefix, nd.self.ID, err)
			}
			want = append(want, string(r.Payload))
		}
	}
	old := c.nodes[leaders[0]]
	other := c.nodes[(leaders[0]+1)%3]
	appendVia(old, "before", 20)
	old.stop()
	appendVia(other, "after", 20) // waits for the new leader
	c.sameEverywhere(stream, want)
	old.start()
	c.sameEverywhere(stream, want)
	appendVia(old, "back", 5)
	c.sameEverywhere(stream, want)
}

// TestRestartReplaysWithoutDuplicates: a replica restarted from its
// store and Raft log (which replays entries already applied) ends with
// each record once.
func TestRestartReplaysWithoutDuplicates(t *testing.T) {
	c := newCluster(t, 3, 1, 3)
	leaders := c.waitLeaders()
	stream := streamOfShard(t, 0, 1)
	batch := recs("r", 10)
	if _, err := c.nodes[0].set.Append(context.Background(), stream, batch...); err != nil {
		t.Fatal(err)
	}
	var want []string
	for _, r := range batch {
		want = append(want, string(r.Payload))
	}
	c.sameEverywhere(stream, want)
	follower := c.nodes[(leaders[0]+1)%3]
	follower.stop()
	follower.start()
	c.waitLeaders()
	c.sameEverywhere(stream, want)
}

// TestNoMajorityRefusesWrites: with two of three replicas gone, an append
// fails with ErrUnavailable after the write timeout, and nothing is
// stored.
func TestNoMajorityRefusesWrites(t *testing.T) {
	c := newCluster(t, 3, 1, 3)
	c.waitLeaders()
	c.nodes[1].stop()
	c.nodes[2].stop()
	nd := c.nodes[0]
	nd.set.opts.WriteTimeout = 500 * time.Millisecond
	stream := streamOfShard(t, 0, 1)
	_, err := nd.set.Append(context.Background(), stream, recs("x", 1)...)
	if !errors.Is(err, streams.ErrUnavailable) {
		t.Fatalf("append without a majority: %v, want ErrUnavailable", err)
	}
	if _, err := nd.store.DescribeStream(stream); !errors.Is(err, streams.ErrStreamNotFound) {
		t.Fatalf("stream exists after a refused append: %v", err)
	}
}

// TestValidationErrorsComeBackThroughForwards: a record too large is
// refused with the store's error, also when forwarded.
func TestValidationErrorsComeBackThroughForwards(t *testing.T) {
	c := newCluster(t, 3, 1, 3)
	leaders := c.waitLeaders()
	follower := c.nodes[(leaders[0]+1)%3]
	big := streams.Record{Topic: "t", Payload: make([]byte, 2<<20)}
	if _, err := follower.set.Append(context.Background(), streamOfShard(t, 0, 1), big); !errors.Is(err, streams.ErrRecordTooLarge) {
		t.Fatalf("oversized record through a follower: %v", err)
	}
	if _, err := follower.set.Append(context.Background(), "bad/name", recs("x", 1)...); !errors.Is(err, streams.ErrInvalidName) {
		t.Fatalf("bad stream name: %v", err)
	}
}

// TestCreateAndDeleteStreamsEverywhere: streams created and deleted
// through any node, with or without auto-create, exist (with their
// retention) or are gone on every replica; errors come back through
// forwards.
func TestCreateAndDeleteStreamsEverywhere(t *testing.T) {
	c := newCluster(t, 3, 2, 3)
	leaders := c.waitLeaders()
	ctx := context.Background()
	follower := c.nodes[(leaders[0]+1)%3]
	name := streamOfShard(t, 0, 2)
	ret := streams.Retention{MaxAge: time.Hour, MaxRecords: 100}
	info, err := follower.set.CreateStream(ctx, name, ret)
	if err != nil || info.Name != name || info.Retention != ret {
		t.Fatalf("create through a follower: %+v %v", info, err)
	}
	if _, err := c.nodes[leaders[0]].set.CreateStream(ctx, name, ret); !errors.Is(err, streams.ErrStreamExists) {
		t.Fatalf("second create: %v", err)
	}
	if _, err := follower.set.CreateStream(ctx, "bad name!", ret); !errors.Is(err, streams.ErrInvalidName) {
		t.Fatalf("bad name: %v", err)
	}
	if _, err := follower.set.Append(ctx, name, recs("a", 2)...); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 10*time.Second, "the stream on every replica", func() bool {
		for _, nd := range c.nodes {
			got, err := nd.store.DescribeStream(name)
			if err != nil || got.Retention != ret || got.NextOffset != 2 {
				return false
			}
		}
		return true
	})
	if err := follower.set.DeleteStream(ctx, name); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 10*time.Second, "the stream gone everywhere", func() bool {
		for _, nd := range c.nodes {
			if _, err := nd.store.DescribeStream(name); !errors.Is(err, streams.ErrStreamNotFound) {
				return false
			}
		}
		return true
	})
	if err := follower.set.DeleteStream(ctx, name); !errors.Is(err, streams.ErrStreamNotFound) {
		t.Fatalf("second delete: %v", err)
	}
}

// TestBalancerSpreadsLeaders: whoever wins the first elections, each
// shard ends up led by its preferred leader, so leaders are spread evenly.
func TestBalancerSpreadsLeaders(t *testing.T) {
	c := newCluster(t, 3, 6, 3)
	preferred := func() bool {
		for i, peers := range c.layout.Shards {
			for _, nd := range c.nodes {
				if nd.self.ID == peers[0].ID && !nd.set.replica(i).isLeader() {
					return false
				}
			}
		}
		return true
	}
	handoffs := func() (n uint64) {
		for _, nd := range c.nodes {
			n += nd.set.Handoffs()
		}
		return n
	}
	testutil.Eventually(t, 20*time.Second, "every shard led by its preferred leader", preferred)

	// Shard 0's leadership moved away from its preferred leader comes
	// back, and the node that hands it back counts the handoff.
	before := handoffs()
	for _, nd := range c.nodes {
		if r := nd.set.replica(0); r.isLeader() {
			if err := r.raft.LeadershipTransfer().Error(); err != nil {
				t.Fatalf("transfer: %v", err)
			}
			break // the next node may lead it now
		}
	}
	testutil.Eventually(t, 20*time.Second, "a handoff counted", func() bool { return handoffs() > before })
	testutil.Eventually(t, 20*time.Second, "shard 0 led by its preferred leader again", preferred)
}

// TestWritesSurviveLeadershipTransfers: appends keep succeeding, each
// stored once, while the shard's leadership moves back and forth.
func TestWritesSurviveLeadershipTransfers(t *testing.T) {
	c := newCluster(t, 3, 1, 3)
	c.waitLeaders()
	stream := streamOfShard(t, 0, 1)
	stop := make(chan struct{})
	errc := make(chan error, 1)
	var n int
	go func() {
		defer close(errc)
		for {
			select {
			case <-stop:
				return
			default:
			}
			r := streams.Record{Topic: "t", Payload: fmt.Appendf(nil, "m%05d", n)}
			if _, err := c.nodes[n%3].set.Append(context.Background(), stream, r); err != nil {
				errc <- fmt.Errorf("append %d: %w", n, err)
				return
			}
			n++
		}
	}()
	for k := 0; k < 4; k++ {
		leaders := c.waitLeaders()
		r := c.nodes[leaders[0]].set.replica(0)
		if err := r.raft.LeadershipTransfer().Error(); err != nil {
			t.Logf("transfer %d: %v", k, err)
		}
	}
	close(stop)
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	want := make([]string, n)
	for i := range want {
		want[i] = fmt.Sprintf("m%05d", i)
	}
	c.sameEverywhere(stream, want)
}

// TestStoppingLeadersRefuseNothing: appenders on two nodes keep
// appending while the third, leading the shard, stops (handing its
// leadership over with entries in flight) and comes back, three times.
// Each append is acknowledged, none refused, and each is stored once, in
// its appender's order: an entry whose outcome the old leader could not
// know is sent again to the new one, which answers it from its window if
// it was committed.
func TestStoppingLeadersRefuseNothing(t *testing.T) {
	c := newCluster(t, 3, 1, 3)
	stopping := c.nodes[c.waitLeaders()[0]]
	stream := streamOfShard(t, 0, 1)
	var mu sync.Mutex // guards acked and failed
	acked := 0
	var failed []error
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for k := 0; k < 8; k++ {
		nd := c.nodes[(slices.Index(c.nodes, stopping)+1+k%2)%3]
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				r := streams.Record{Topic: "t", Payload: fmt.Appendf(nil, "p%d-%05d", k, i)}
				_, err := nd.set.Append(context.Background(), stream, r)
				mu.Lock()
				if err != nil {
					failed = append(failed, fmt.Errorf("appender %d, append %d: %w", k, i, err))
				} else {
					acked++
				}
				mu.Unlock()
				if err != nil {
					return
				}
			}
		}()
	}
	ackedNow := func() int {
		mu.Lock()
		defer mu.Unlock()
		return acked
	}
	for round := 0; round < 3; round++ {
		if round > 0 {
			testutil.Eventually(t, 10*time.Second, stopping.self.ID+" leading again", func() bool {
				for _, nd := range c.nodes {
					if r := nd.set.replica(0); nd != stopping && r.isLeader() {
						_ = r.raft.LeadershipTransferToServer(raft.ServerID(stopping.self.ID), raft.ServerAddress(stopping.self.RPC)).Error()
					}
				}
				return stopping.set.replica(0).isLeader()
			})
		}
		before := ackedNow()
		testutil.Eventually(t, 10*time.Second, "appends flowing", func() bool { return ackedNow() >= before+200 })
		stopping.stop()
		before = ackedNow()
		testutil.Eventually(t, 10*time.Second, "appends flowing after the leader stopped", func() bool { return ackedNow() >= before+200 })
		stopping.start()
	}
	close(stop)
	wg.Wait()
	if len(failed) > 0 {
		t.Fatalf("%d appends refused, first: %v", len(failed), failed[0])
	}
	leader := c.nodes[c.waitLeaders()[0]]
	got, err := leader.store.Read(stream, 0, streams.ReadOptions{MaxRecords: 1 << 20})
	if err != nil || len(got) != acked {
		t.Fatalf("read %d records for %d acknowledged, %v", len(got), acked, err)
	}
	next := map[int]int{}
	want := make([]string, len(got))
	for j, r := range got {
		var k, i int
		if _, err := fmt.Sscanf(string(r.Payload), "p%d-%d", &k, &i); err != nil {
			t.Fatal(err)
		}
		if i != next[k] {
			t.Fatalf("appender %d: record %d stored after %d", k, i, next[k]-1)
		}
		next[k]++
		want[j] = string(r.Payload)
	}
	c.sameEverywhere(stream, want)
}

// TestEntryLengthStartsAnEntryAtEachCreationOrDeletion: a stream's
// creation or deletion never follows other commands in one entry (admin),
// appends gather up to maxEntryBytes, and an entry holds at least one.
func TestEntryLengthStartsAnEntryAtEachCreationOrDeletion(t *testing.T) {
	p := func(kind byte, size int) proposal {
		return proposal{cmd: appendCmd{kind: kind, stream: "s"}, size: size}
	}
	var got []int
	queue := []proposal{p(kindAppend, 10), p(kindKV, 10), p(kindDelete, 1), p(kindAppend, 10),
		p(kindCreate, 1), p(kindCreate, 1), p(kindAppend, maxEntryBytes), p(kindAppend, 1), p(kindAppend, 1)}
	for len(queue) > 0 {
		n := entryLength(queue)
		got = append(got, n)
		queue = queue[n:]
	}
	// [append, kv] [delete, append] [create] [create] [the big append] [append, append]
	if fmt.Sprint(got) != "[2 2 1 1 1 2]" {
		t.Fatalf("entries of %v proposals, want [2 2 1 1 1 2]", got)
	}
}

// TestOutboxKeepsItsOrderWhenTheNodeTakesTheLead: one publisher's A1
// waits in its node's outbox (the forward to the old leader is stuck); the
// node then takes the shard's leadership; the publisher's A2 must not be
// proposed ahead of A1.
func TestOutboxKeepsItsOrderWhenTheNodeTakesTheLead(t *testing.T) {
	c := newSteadyCluster(t, 3)
	leaders := c.waitLeaders()
	old, b := c.nodes[leaders[0]], c.nodes[(leaders[0]+1)%3]
	entered, release := c.stallFirstForward()
	stream := streamOfShard(t, 0, 1)
	a1 := submitOne(t, b.set, stream, "A1")
	<-entered // A1's forward is stuck
	if err := old.set.replica(0).raft.LeadershipTransferToServer(raft.ServerID(b.self.ID), raft.ServerAddress(b.self.RPC)).Error(); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 5*time.Second, "b to lead", func() bool { return b.set.replica(0).isLeader() })
	a2 := submitOne(t, b.set, stream, "A2")
	close(release)
	expectInOrder(t, a1, a2)
}

// submitted is the answer to an append of a test's.
type submitted struct {
	first uint64
	err   error
}

// submitOne submits one record to stream through set; the channel gets
// its answer.
func submitOne(t *testing.T, set *Set, stream, payload string) chan submitted {
	t.Helper()
	ch := make(chan submitted, 1)
	if err := set.Submit(streams.AppendRequest{Stream: stream, Records: recs(payload, 1),
		Done: func(first uint64, err error) { ch <- submitted{first, err} }}); err != nil {
		t.Fatal(err)
	}
	return ch
}

// expectStored waits for an append's answer and fails the test unless
// it was stored.
func expectStored(t *testing.T, what string, ch chan submitted) submitted {
	t.Helper()
	select {
	case got := <-ch:
		if got.err != nil {
			t.Fatalf("%s: %v", what, got.err)
		}
		return got
	case <-time.After(10 * time.Second):
		t.Fatalf("%s: no answer", what)
	}
	return submitted{}
}

// expectInOrder waits for one publisher's appends to be answered and
// fails the test unless each succeeded at a higher offset than the one
// submitted before.
func expectInOrder(t *testing.T, chans ...chan submitted) {
	t.Helper()
	got := make([]submitted, len(chans))
	for i, ch := range chans {
		got[i] = expectStored(t, fmt.Sprintf("A%d", i+1), ch)
		if i > 0 && got[i-1].first > got[i].first {
			t.Fatalf("one publisher's appends reordered: A%d at offset %d, A%d at %d", i, got[i-1].first, i+1, got[i].first)
		}
	}
}

// TestOutboxKeepsItsOrderWhenTheLeaderStepsDown: the leader has a
// publisher's A1 in flight when a partition deposes it; the publisher's
// A2, submitted after the step-down, goes to the outbox at once, while A1
// comes back there only when its failure is answered. A1 must still be
// sent first.
func TestOutboxKeepsItsOrderWhenTheLeaderStepsDown(t *testing.T) {
	c := newSteadyCluster(t, 3)
	leaders := c.waitLeaders()
	l := c.nodes[leaders[0]]
	stream := streamOfShard(t, 0, 1)
	var term uint64
	testutil.Eventually(t, 5*time.Second, "the leader to settle", func() bool {
		var ok bool
		term, ok = l.set.replica(0).lead()
		return ok
	})
	fenced := func(payload string, done func()) {
		if err := l.set.SubmitFenced(streams.AppendRequest{Stream: stream, Records: recs(payload, 1),
			Done: func(uint64, error) { done() }}, term); err != nil {
			t.Fatal(err)
		}
	}

	c.partition(l)
	// A leader answers its appends in the order it proposed them. E0's
	// answer (a fenced append's, never sent again) waits for release, so
	// A1's failure comes after A2 is queued; E2's tells when A1's failure
	// has been answered.
	release, a1Answered := make(chan struct{}), make(chan struct{})
	fenced("E0", func() { <-release })
	a1 := submitOne(t, l.set, stream, "A1")
	fenced("E2", func() { close(a1Answered) })
	testutil.Eventually(t, 5*time.Second, "the partitioned leader to step down", func() bool { return !l.set.replica(0).isLeader() })
	a2 := submitOne(t, l.set, stream, "A2")
	testutil.Eventually(t, 10*time.Second, "a new leader", func() bool {
		for _, nd := range c.nodes {
			if nd != l && nd.set.replica(0).isLeader() {
				return true
			}
		}
		return false
	})
	close(release)
	<-a1Answered // A1 is back in the outbox, A2 queued before it
	c.heal()
	expectInOrder(t, a1, a2)
}

// TestAppendLargerThanANodeTakesIsRefused: an append past maxAppendBytes
// is refused as too large, before it is queued; one below the limit is
// stored.
func TestAppendLargerThanANodeTakesIsRefused(t *testing.T) {
	c := newCluster(t, 1, 1, 1)
	c.waitLeaders()
	set := c.nodes[0].set
	stream := streamOfShard(t, 0, 1)
	records := func(n int) []streams.Record {
		out := make([]streams.Record, n)
		for i := range out {
			out[i] = streams.Record{Topic: "t", Payload: make([]byte, 800<<10)}
		}
		return out
	}
	tooMany := records(maxAppendBytes/(800<<10) + 1)
	err := set.Submit(streams.AppendRequest{Stream: stream, Records: tooMany,
		Done: func(uint64, error) { t.Error("a refused append was answered") }})
	if !errors.Is(err, streams.ErrRecordTooLarge) {
		t.Fatalf("Submit: %v, want ErrRecordTooLarge", err)
	}
	if _, err := set.Append(context.Background(), stream, tooMany...); !errors.Is(err, streams.ErrRecordTooLarge) {
		t.Fatalf("Append: %v, want ErrRecordTooLarge", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := set.Append(ctx, stream, records(maxAppendBytes/(800<<10)-1)...); err != nil {
		t.Fatalf("an append within the limit: %v", err)
	}
	// An append of no records is refused too: it would store nothing,
	// and a replay could not tell its result (found by review).
	if err := set.Submit(streams.AppendRequest{Stream: "nothing", Done: func(uint64, error) { t.Error("an empty append was answered") }}); err == nil {
		t.Fatal("an append of no records was taken")
	}
	tally := newReplayTally(0, 2, nil)
	tally.entry(&raft.Log{Index: 1}, []appendCmd{{kind: kindAppend, stream: "q", id: appendID{7, 1}}}, []bool{true})
	if tally.broken == "" {
		t.Fatal("a replayed empty append to a stream not derived did not stop the derivation")
	}
}

// A node holding no replica of a shard forwards its appends to the
// shard's preferred leader (the leader once balanced) rather than to any
// replica, which would forward them once more; while forwards to it fail,
// to the next replicas in turn.
func TestForwardsFromANonHolderGoToThePreferredLeader(t *testing.T) {
	p := peersN(4)
	s := &Set{replicas: make([]atomic.Pointer[replica], 1)}
	s.opts.Self = p[3]
	s.layout.Store(&Layout{Version: 1, Shards: [][]Peer{{p[1], p[0], p[2]}}})
	for range 3 {
		if got, ok := s.target(0); !ok || got.ID != "n2" {
			t.Fatalf("target %v %v, want the preferred leader n2", got, ok)
		}
	}
	s.passOver(0, "n3") // not the one chosen: nothing changes
	if got, _ := s.target(0); got.ID != "n2" {
		t.Fatalf("target %v after another node failed, want n2", got)
	}
	for _, want := range []string{"n1", "n3", "n2"} {
		s.passOver(0, mustTarget(t, s).ID)
		if got := mustTarget(t, s); got.ID != want {
			t.Fatalf("target %v, want %s", got, want)
		}
	}
}

func mustTarget(t *testing.T, s *Set) Peer {
	t.Helper()
	p, ok := s.target(0)
	if !ok {
		t.Fatal("no target")
	}
	return p
}

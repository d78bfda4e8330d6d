package shards

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/mqstream/mqstream/internal/testutil"
	"github.com/mqstream/mqstream/streams"
)

// TestPartitionedLeaderCannotAcknowledge: the leader of a shard is cut off
// from both other replicas. An append sent to it is never acknowledged
// (it fails after the write timeout); the majority elects a new leader
// and takes appends; once the partition heals, the old leader drops what
// it could not commit and every replica holds exactly the acknowledged
// records.
func TestPartitionedLeaderCannotAcknowledge(t *testing.T) {
	c := newCluster(t, 3, 1, 3)
	leaders := c.waitLeaders()
	stream := streamOfShard(t, 0, 1)
	old := c.nodes[leaders[0]]
	var majority []*testNode
	for _, nd := range c.nodes {
		if nd != old {
			majority = append(majority, nd)
		}
	}
	ctx := context.Background()
	var want []string
	for i := 0; i < 5; i++ {
		r := streams.Record{Topic: "t", Payload: fmt.Appendf(nil, "before-%d", i)}
		if _, err := old.set.Append(ctx, stream, r); err != nil {
			t.Fatal(err)
		}
		want = append(want, string(r.Payload))
	}
	c.sameEverywhere(stream, want)

	c.partition(old)
	old.set.opts.WriteTimeout = 2 * time.Second
	lost := make(chan error, 1)
	go func() {
		_, err := old.set.Append(ctx, stream, streams.Record{Topic: "t", Payload: []byte("never acknowledged")})
		lost <- err
	}()
	for i := 0; i < 5; i++ {
		r := streams.Record{Topic: "t", Payload: fmt.Appendf(nil, "majority-%d", i)}
		if _, err := majority[i%2].set.Append(ctx, stream, r); err != nil {
			t.Fatalf("append through the majority: %v", err)
		}
		want = append(want, string(r.Payload))
	}
	if err := <-lost; !errors.Is(err, streams.ErrUnavailable) {
		t.Fatalf("append on the cut-off leader: %v, want it refused", err)
	}
	c.heal()
	c.sameEverywhere(stream, want)
}

// TestMinorityFollowerRejoins: a follower cut off while the others go on
// catches up once the partition heals.
func TestMinorityFollowerRejoins(t *testing.T) {
	c := newCluster(t, 3, 1, 3)
	leaders := c.waitLeaders()
	stream := streamOfShard(t, 0, 1)
	leader := c.nodes[leaders[0]]
	follower := c.nodes[(leaders[0]+1)%3]
	c.partition(follower)
	var want []string
	for i := 0; i < 20; i++ {
		r := streams.Record{Topic: "t", Payload: fmt.Appendf(nil, "m%d", i)}
		if _, err := leader.set.Append(context.Background(), stream, r); err != nil {
			t.Fatal(err)
		}
		want = append(want, string(r.Payload))
	}
	c.heal()
	c.sameEverywhere(stream, want)
}

// TestAppendInFlightWhenLeadershipIsLostIsSentAgain: an append proposed
// by a leader that loses its leadership before the entry is committed
// (cut off from the other replicas, it steps down) has an unknown
// outcome on that node: it is sent again, to the new leader once the
// partition heals within the write timeout, and stored once.
func TestAppendInFlightWhenLeadershipIsLostIsSentAgain(t *testing.T) {
	c, old, stream := cutOffLeader(t, 20*time.Second)
	ctx := context.Background()
	res := make(chan error, 1)
	go func() {
		_, err := old.set.Append(ctx, stream, streams.Record{Topic: "t", Payload: []byte("in flight")})
		res <- err
	}()
	testutil.Eventually(t, 10*time.Second, "the cut-off leader to step down", func() bool {
		return !old.set.replica(0).isLeader()
	})
	var newLeader *testNode
	testutil.Eventually(t, 10*time.Second, "a new leader among the others", func() bool {
		for _, nd := range c.nodes {
			if nd != old && nd.set.replica(0).isLeader() {
				newLeader = nd
				return true
			}
		}
		return false
	})
	if _, err := newLeader.set.Append(ctx, stream, streams.Record{Topic: "t", Payload: []byte("majority")}); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-res:
		t.Fatalf("append on the cut-off leader answered before the partition healed: %v", err)
	default:
	}
	c.heal()
	if err := <-res; err != nil {
		t.Fatalf("append in flight on the old leader: %v", err)
	}
	c.sameEverywhere(stream, []string{"before", "majority", "in flight"})
}

// TestAppendThatReachedALeaderFailsAsMaybeStored: an append that fails
// for want of a leader after an attempt reached one (proposed by a leader
// cut off with it in flight) says that it may still be stored, since a
// leader may commit that entry once the shard has a majority again; one
// that never reached a leader fails without saying so.
func TestAppendThatReachedALeaderFailsAsMaybeStored(t *testing.T) {
	c, old, stream := cutOffLeader(t, 2*time.Second)
	ctx := context.Background()
	_, err := old.set.Append(ctx, stream, streams.Record{Topic: "t", Payload: []byte("in flight")})
	if !errors.Is(err, ErrNoLeader) || !errors.Is(err, errMayBeStored) {
		t.Fatalf("append proposed on the cut-off leader: %v, want no leader and maybe stored", err)
	}
	if old.set.replica(0).isLeader() {
		t.Fatal("the cut-off leader still leads")
	}
	_, err = old.set.Append(ctx, stream, streams.Record{Topic: "t", Payload: []byte("never reached")})
	if !errors.Is(err, ErrNoLeader) || errors.Is(err, errMayBeStored) {
		t.Fatalf("append on the cut-off node after it stepped down: %v, want no leader, not maybe stored", err)
	}
	c.heal()
	// The majority's new leader wrote over the entry of the old one.
	c.sameEverywhere(stream, []string{"before"})
}

// cutOffLeader starts three nodes holding one shard, appends "before"
// to a stream of it through its leader, and cuts that leader off from
// the others, its appends waiting up to writeTimeout for a leader.
func cutOffLeader(t *testing.T, writeTimeout time.Duration) (c *cluster, leader *testNode, stream string) {
	t.Helper()
	c = newCluster(t, 3, 1, 3)
	leaders := c.waitLeaders()
	stream = streamOfShard(t, 0, 1)
	leader = c.nodes[leaders[0]]
	if _, err := leader.set.Append(context.Background(), stream, streams.Record{Topic: "t", Payload: []byte("before")}); err != nil {
		t.Fatal(err)
	}
	c.partition(leader)
	leader.set.opts.WriteTimeout = writeTimeout
	return c, leader, stream
}

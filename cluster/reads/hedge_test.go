package reads

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mqstream/mqstream/internal/testutil"
	"github.com/mqstream/mqstream/streams"
)

// stuckCaller never answers calls to addr stuck (a stopped or partitioned
// peer whose connection stays open) and passes the others on.
type stuckCaller struct {
	stuck string
	next  Caller
	calls atomic.Int32
}

func (c *stuckCaller) Call(ctx context.Context, addr, service string, req []byte) ([]byte, error) {
	if addr == c.stuck {
		c.calls.Add(1)
		<-ctx.Done()
		return nil, ctx.Err()
	}
	return c.next.Call(ctx, addr, service, req)
}

// allElsewhere places n shards on the nodes at addrs, none here.
type allElsewhere struct {
	n     int
	addrs []string
}

func (p allElsewhere) Shards() int                  { return p.n }
func (p allElsewhere) ShardOf(s string) int         { return len(s) % p.n }
func (p allElsewhere) Holders(int) (bool, []string) { return false, p.addrs }

// TestReadsDoNotWaitForAStuckHolder: with the first holder of every shard
// stuck, a listing of eight shards and a stream's description are
// answered by the next holder, not after the stuck one's timeout (an
// hour here), once per shard.
func TestReadsDoNotWaitForAStuckHolder(t *testing.T) {
	a, b := startNode(t, "a"), startNode(t, "b")
	appendN(t, b.store, "beta", 3)
	c := &stuckCaller{stuck: "127.0.0.1:9", next: a.mux}
	r := New(a.store, allElsewhere{n: 8, addrs: []string{c.stuck, b.mux.Addr().String()}}, c, testutil.Logger())
	r.timeout = time.Hour
	done := make(chan struct{})
	go func() {
		defer close(done)
		list, unlisted := r.Listing()
		if len(list) != 1 || list[0].Name != "beta" || list[0].Records != 3 || len(unlisted) != 0 {
			t.Errorf("listed %+v, unlisted %v", list, unlisted)
		}
		if info, err := r.DescribeStream("beta"); err != nil || info.Records != 3 {
			t.Errorf("describe: %+v, %v", info, err)
		}
	}()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("reads waited for the stuck holder")
	}
	if c.calls.Load() == 0 {
		t.Fatal("the stuck holder was never asked: the test proves nothing")
	}
}

// movingShard: shard 1 is held elsewhere until here is set, then here (a
// replica that caught up after a restart, or a layout change).
type movingShard struct {
	addrs []string
	here  *atomic.Bool
}

func (p movingShard) Shards() int { return 2 }
func (p movingShard) ShardOf(s string) int {
	if s != "" && s[0] == 'a' {
		return 0
	}
	return 1
}
func (p movingShard) Holders(i int) (bool, []string) {
	if i == 0 || p.here.Load() {
		return true, nil
	}
	return false, p.addrs
}

// TestListingOfAShardThatCameHereIsNotCountedTwice: the other nodes'
// listing is kept for a moment, but not for a shard held here since.
func TestListingOfAShardThatCameHereIsNotCountedTwice(t *testing.T) {
	a, b := startNode(t, "a"), startNode(t, "b")
	appendN(t, b.store, "beta", 10)
	appendN(t, a.store, "beta", 10) // a's replica of shard 1, caught up
	var here atomic.Bool
	r := New(a.store, movingShard{addrs: []string{b.mux.Addr().String()}, here: &here}, a.mux, testutil.Logger())
	if list, _ := r.Listing(); len(list) != 1 {
		t.Fatalf("before: %+v", list)
	}
	here.Store(true)
	if list, _ := r.Listing(); len(list) != 1 || list[0].Records != 10 {
		t.Fatalf("after the shard came here: %+v", list)
	}
}

// TestNotifyKeepsOnePollPerStream: callers that ask to be told of growth
// after every batch (queries catching up) share the long poll under way
// for the stream, rather than each leave one open on both nodes.
func TestNotifyKeepsOnePollPerStream(t *testing.T) {
	a, b := startNode(t, "a"), startNode(t, "b")
	appendN(t, b.store, "beta", 5)
	c := &countingCaller{next: a.mux}
	r := New(a.store, twoShards{mine: 0, addrs: []string{b.mux.Addr().String()}}, c, testutil.Logger())
	var first <-chan struct{}
	for i := range 50 {
		ch, next, err := r.Notify("beta")
		if err != nil || next != 5 {
			t.Fatalf("Notify: %d, %v", next, err)
		}
		if i == 0 {
			first = ch
		} else if ch != first {
			t.Fatalf("call %d got a poll of its own", i)
		}
	}
	if n := c.waits.Load(); n != 1 {
		t.Fatalf("%d long polls sent for one stream", n)
	}
	appendN(t, b.store, "beta", 1)
	select {
	case <-first:
	case <-time.After(10 * time.Second):
		t.Fatal("the shared poll did not end when the stream grew")
	}
	testutil.Eventually(t, 5*time.Second, "a new poll once the first ended", func() bool {
		ch, _, err := r.Notify("beta")
		return err == nil && ch != first
	})
}

// countingCaller counts the long polls (wait requests) it passes on.
type countingCaller struct {
	next  Caller
	waits atomic.Int32
}

func (c *countingCaller) Call(ctx context.Context, addr, service string, req []byte) ([]byte, error) {
	if q, err := decodeRequest(req); err == nil && q.op == opWait {
		c.waits.Add(1)
	}
	return c.next.Call(ctx, addr, service, req)
}

// slowCaller delays the calls to addr slow by delay.
type slowCaller struct {
	slow  string
	delay time.Duration
	next  Caller
}

func (c *slowCaller) Call(ctx context.Context, addr, service string, req []byte) ([]byte, error) {
	if addr == c.slow {
		select {
		case <-time.After(c.delay):
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	return c.next.Call(ctx, addr, service, req)
}

// TestHedgedNotFoundWaitsForTheSlowerHolder: a holder asked because the
// first was slow, and that has not applied the stream's creation yet,
// answers "not found"; the first holder's answer is waited for.
func TestHedgedNotFoundWaitsForTheSlowerHolder(t *testing.T) {
	a, b, behind := startNode(t, "a"), startNode(t, "b"), startNode(t, "behind")
	appendN(t, b.store, "beta", 2)
	c := &slowCaller{slow: b.mux.Addr().String(), delay: 2 * hedgeAfter, next: a.mux}
	r := New(a.store, allElsewhere{n: 2, addrs: []string{b.mux.Addr().String(), behind.mux.Addr().String()}}, c, testutil.Logger())
	info, err := r.DescribeStream("beta")
	if err != nil || info.Records != 2 {
		t.Fatalf("describe: %+v, %v", info, err)
	}
	if _, err := r.DescribeStream("nowhere"); !errors.Is(err, streams.ErrStreamNotFound) {
		t.Fatalf("a stream no holder has: %v", err)
	}
}

package heartbeat

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/mqstream/mqstream/cluster/rpcmux"
	"github.com/mqstream/mqstream/internal/testutil"
)

// countingCaller counts the batches and heartbeats a node sends.
type countingCaller struct {
	Caller
	calls, beats atomic.Int64
}

func (c *countingCaller) Call(ctx context.Context, addr, service string, req []byte) ([]byte, error) {
	if service == Service {
		c.calls.Add(1)
		if items, err := decodeBatch(req); err == nil {
			c.beats.Add(int64(len(items)))
		}
	}
	return c.Caller.Call(ctx, addr, service, req)
}

// testNode is a mux with a Coalescer serving on it.
type testNode struct {
	id     string
	mux    *rpcmux.Mux
	calls  *countingCaller
	beats  *Coalescer
	inmems []*raft.InmemTransport
}

func newNode(t *testing.T, id string, faults *rpcmux.Faults, opts Options) *testNode {
	t.Helper()
	mux, err := rpcmux.Listen("127.0.0.1:0", rpcmux.Options{NodeID: id, Faults: faults, Logger: testutil.Logger().With("node", id)})
	if err != nil {
		t.Fatal(err)
	}
	n := &testNode{id: id, mux: mux, calls: &countingCaller{Caller: mux}}
	if opts.Logger == nil {
		opts.Logger = testutil.Logger().With("node", id)
	}
	n.beats = New(n.calls, opts)
	mux.Handle(Service, n.beats.Serve)
	t.Cleanup(func() {
		_ = n.beats.Close()
		_ = mux.Close()
	})
	return n
}

func (n *testNode) addr() raft.ServerAddress { return raft.ServerAddress(n.mux.Addr().String()) }

// group wraps a fresh in-memory transport for the named group, whose
// heartbeats are answered by answer (nil: no handler set).
func (n *testNode) group(name string, answer func(raft.RPC)) raft.Transport {
	_, inner := raft.NewInmemTransport(n.addr())
	n.inmems = append(n.inmems, inner)
	tr := n.beats.Wrap(name, inner)
	if answer != nil {
		tr.SetHeartbeatHandler(answer)
	}
	return tr
}

// answerWith answers every heartbeat with term and lastLog, and counts
// them.
func answerWith(term, lastLog uint64, count *atomic.Int64) func(raft.RPC) {
	return func(rpc raft.RPC) {
		if count != nil {
			count.Add(1)
		}
		req := rpc.Command.(*raft.AppendEntriesRequest)
		rpc.Respond(&raft.AppendEntriesResponse{RPCHeader: raft.RPCHeader{ID: []byte("follower")},
			Term: max(term, req.Term), LastLog: lastLog, Success: req.Term >= term}, nil)
	}
}

func heartbeatReq(term uint64) *raft.AppendEntriesRequest {
	return &raft.AppendEntriesRequest{RPCHeader: raft.RPCHeader{ProtocolVersion: raft.ProtocolVersionMax, ID: []byte("leader"), Addr: []byte("leader:1")},
		Term: term, Leader: []byte("leader:1")}
}

// heartbeats sends a heartbeat of each transport to target at once and
// returns the responses and errors.
func heartbeats(target raft.ServerAddress, term uint64, trs ...raft.Transport) ([]raft.AppendEntriesResponse, []error) {
	resps := make([]raft.AppendEntriesResponse, len(trs))
	errs := make([]error, len(trs))
	var wg sync.WaitGroup
	for i, tr := range trs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = tr.AppendEntries("follower", target, heartbeatReq(term), &resps[i])
		}()
	}
	wg.Wait()
	return resps, errs
}

func TestBatchCarriesEveryGroupAndRoutesAnswers(t *testing.T) {
	leader := newNode(t, "leader", nil, Options{Wait: time.Second, Interval: time.Millisecond})
	follower := newNode(t, "follower", nil, Options{})
	var trs []raft.Transport
	var served [3]atomic.Int64
	for i := range 3 {
		g := fmt.Sprintf("g%d", i)
		follower.group(g, answerWith(10+uint64(i), 100+uint64(i), &served[i]))
		trs = append(trs, leader.group(g, nil))
	}

	start := time.Now()
	resps, errs := heartbeats(follower.addr(), 5, trs...)
	first := time.Since(start)
	for i := range trs {
		if errs[i] != nil {
			t.Fatalf("g%d: %v", i, errs[i])
		}
		if r := resps[i]; r.Term != 10+uint64(i) || r.LastLog != 100+uint64(i) || r.Success || string(r.ID) != "follower" {
			t.Fatalf("g%d answered %+v; want its own term %d and last log %d", i, r, 10+i, 100+i)
		}
	}
	if got := leader.calls.calls.Load(); got != 1 {
		t.Fatalf("3 heartbeats took %d calls; want one batch", got)
	}
	for i := range served {
		if n := served[i].Load(); n != 1 {
			t.Fatalf("g%d's handler served %d heartbeats; want 1", i, n)
		}
	}

	// The next round is complete once every group of the last batch has
	// its heartbeat in: it goes without waiting for the timer.
	start = time.Now()
	resps, errs = heartbeats(follower.addr(), 20, trs...)
	second := time.Since(start)
	for i := range trs {
		if errs[i] != nil || !resps[i].Success || resps[i].Term != 20 {
			t.Fatalf("g%d, second round: %+v, %v", i, resps[i], errs[i])
		}
	}
	if got := leader.calls.calls.Load(); got != 2 {
		t.Fatalf("two rounds took %d calls; want 2", got)
	}
	if first < time.Second || second >= time.Second {
		t.Fatalf("the first batch went after %s, the second after %s; want the first to wait for more "+
			"heartbeats (1 s) and the second, complete, to go at once", first, second)
	}
}

func TestIntervalSpacesBatches(t *testing.T) {
	const interval = 300 * time.Millisecond
	leader := newNode(t, "leader", nil, Options{Wait: time.Millisecond, Interval: interval})
	follower := newNode(t, "follower", nil, Options{})
	follower.group("g", answerWith(1, 1, nil))
	g := leader.group("g", nil)
	var sent []time.Time
	for range 3 {
		var resp raft.AppendEntriesResponse
		if err := g.AppendEntries("follower", follower.addr(), heartbeatReq(1), &resp); err != nil {
			t.Fatal(err)
		}
		sent = append(sent, time.Now())
	}
	for i := 1; i < len(sent); i++ {
		if d := sent[i].Sub(sent[i-1]); d < interval-10*time.Millisecond {
			t.Fatalf("heartbeats %d and %d answered %s apart; want batches at least %s apart", i-1, i, d, interval)
		}
	}
}

func TestHeartbeatsToPeersBatchSeparately(t *testing.T) {
	leader := newNode(t, "leader", nil, Options{Wait: 20 * time.Millisecond})
	f1 := newNode(t, "f1", nil, Options{})
	f2 := newNode(t, "f2", nil, Options{})
	f1.group("g", answerWith(1, 1, nil))
	f2.group("g", answerWith(2, 2, nil))
	tr := leader.group("g", nil)
	var r1, r2 raft.AppendEntriesResponse
	var wg sync.WaitGroup
	var e1, e2 error
	wg.Add(2)
	go func() { defer wg.Done(); e1 = tr.AppendEntries("f1", f1.addr(), heartbeatReq(1), &r1) }()
	go func() { defer wg.Done(); e2 = tr.AppendEntries("f2", f2.addr(), heartbeatReq(1), &r2) }()
	wg.Wait()
	if e1 != nil || e2 != nil || r1.LastLog != 1 || r2.LastLog != 2 {
		t.Fatalf("f1: %+v %v; f2: %+v %v", r1, e1, r2, e2)
	}
}

func TestSilentGroupTimesOutAlone(t *testing.T) {
	leader := newNode(t, "leader", nil, Options{Wait: 100 * time.Millisecond})
	follower := newNode(t, "follower", nil, Options{AnswerTimeout: 50 * time.Millisecond})
	follower.group("fast", answerWith(3, 30, nil))
	follower.group("silent", func(raft.RPC) {}) // takes the heartbeat, never answers
	// "absent" is not open on the follower.
	trs := []raft.Transport{leader.group("fast", nil), leader.group("silent", nil), leader.group("absent", nil)}
	resps, errs := heartbeats(follower.addr(), 3, trs...)
	if errs[0] != nil || resps[0].LastLog != 30 {
		t.Fatalf("fast group: %+v, %v", resps[0], errs[0])
	}
	for i, name := range []string{"", "silent", "absent"} {
		if i == 0 {
			continue
		}
		if !errors.Is(errs[i], ErrNoAnswer) {
			t.Fatalf("%s group: %v; want ErrNoAnswer", name, errs[i])
		}
	}
	if got := leader.calls.calls.Load(); got != 1 {
		t.Fatalf("%d calls; want the three heartbeats in one batch", got)
	}
}

func TestOtherRPCsUseTheGroupTransport(t *testing.T) {
	leader := newNode(t, "leader", nil, Options{})
	_, inner := raft.NewInmemTransport("leader:1")
	_, peer := raft.NewInmemTransport("follower:1")
	inner.Connect("follower:1", peer)
	tr := leader.beats.Wrap("g", inner)
	if _, ok := tr.(raft.WithPreVote); !ok {
		t.Fatal("the wrapped transport lost pre-vote")
	}
	go func() {
		for rpc := range peer.Consumer() {
			rpc.Respond(&raft.AppendEntriesResponse{Term: 4, LastLog: 44, Success: true}, nil)
		}
	}()
	// An append with entries is no heartbeat: the group's own transport
	// carries it.
	req := heartbeatReq(4)
	req.PrevLogEntry, req.PrevLogTerm, req.LeaderCommitIndex = 43, 4, 43
	req.Entries = []*raft.Log{{Index: 44, Term: 4}}
	var resp raft.AppendEntriesResponse
	if err := tr.AppendEntries("follower", "follower:1", req, &resp); err != nil || resp.LastLog != 44 {
		t.Fatalf("append: %+v, %v", resp, err)
	}
	if got := leader.calls.calls.Load(); got != 0 {
		t.Fatalf("an append went through %d heartbeat batches", got)
	}
	_ = inner.Close()
	_ = peer.Close()
}

func TestIsHeartbeat(t *testing.T) {
	hb := heartbeatReq(1)
	if !isHeartbeat(hb) {
		t.Fatal("a heartbeat not taken for one")
	}
	noAddr := *hb
	noAddr.Addr, noAddr.Leader = nil, nil
	for name, req := range map[string]raft.AppendEntriesRequest{
		"no term":      {RPCHeader: hb.RPCHeader},
		"no leader":    noAddr,
		"prev entry":   {RPCHeader: hb.RPCHeader, Term: 1, PrevLogEntry: 1},
		"prev term":    {RPCHeader: hb.RPCHeader, Term: 1, PrevLogTerm: 1},
		"commit index": {RPCHeader: hb.RPCHeader, Term: 1, LeaderCommitIndex: 1},
		"entries":      {RPCHeader: hb.RPCHeader, Term: 1, Entries: []*raft.Log{{}}},
	} {
		if isHeartbeat(&req) {
			t.Errorf("%s: taken for a heartbeat", name)
		}
	}
}

func TestClosedTransportAndCoalescer(t *testing.T) {
	leader := newNode(t, "leader", nil, Options{Wait: time.Hour})
	follower := newNode(t, "follower", nil, Options{})
	follower.group("g", answerWith(1, 1, nil))
	follower.group("h", answerWith(1, 1, nil))

	// A heartbeat waiting for its batch returns when its transport closes.
	g := leader.group("g", nil)
	errc := make(chan error, 1)
	go func() {
		var resp raft.AppendEntriesResponse
		errc <- g.AppendEntries("follower", follower.addr(), heartbeatReq(1), &resp)
	}()
	testutil.Eventually(t, 5*time.Second, "the heartbeat queued", func() bool { return queued(leader.beats) == 1 })
	if err := g.(raft.WithClose).Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-errc; !errors.Is(err, ErrClosed) || !errors.Is(err, raft.ErrTransportShutdown) {
		t.Fatalf("heartbeat of a closed transport: %v; want ErrClosed", err)
	}
	if n := queued(leader.beats); n != 0 {
		t.Fatalf("%d heartbeats left queued by the closed transport", n)
	}
	var resp raft.AppendEntriesResponse
	if err := g.AppendEntries("follower", follower.addr(), heartbeatReq(1), &resp); !errors.Is(err, ErrClosed) {
		t.Fatalf("heartbeat after close: %v", err)
	}

	// Closing the coalescer fails what waits, and what comes after.
	h := leader.group("h", nil)
	go func() {
		var resp raft.AppendEntriesResponse
		errc <- h.AppendEntries("follower", follower.addr(), heartbeatReq(1), &resp)
	}()
	testutil.Eventually(t, 5*time.Second, "the heartbeat queued", func() bool { return queued(leader.beats) == 1 })
	if err := leader.beats.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-errc; !errors.Is(err, ErrClosed) {
		t.Fatalf("heartbeat waiting when the coalescer closed: %v", err)
	}
	if err := h.AppendEntries("follower", follower.addr(), heartbeatReq(1), &resp); !errors.Is(err, ErrClosed) {
		t.Fatalf("heartbeat after the coalescer closed: %v", err)
	}
	if err := leader.beats.Close(); err != nil {
		t.Fatalf("second close: %v", err)
	}

	// A follower whose group's transport closed answers that it is not
	// open.
	other := newNode(t, "other", nil, Options{Wait: time.Millisecond})
	ft := follower.group("k", answerWith(1, 1, nil))
	_ = ft.(raft.WithClose).Close()
	if err := other.group("k", nil).AppendEntries("follower", follower.addr(), heartbeatReq(1), &resp); !errors.Is(err, ErrNoAnswer) {
		t.Fatalf("heartbeat to a closed group: %v; want ErrNoAnswer", err)
	}
}

func TestPartitionFailsHeartbeats(t *testing.T) {
	faults := rpcmux.NewFaults()
	leader := newNode(t, "leader", faults, Options{Wait: time.Millisecond})
	follower := newNode(t, "follower", faults, Options{})
	follower.group("g", answerWith(1, 1, nil))
	g := leader.group("g", nil)
	var resp raft.AppendEntriesResponse
	if err := g.AppendEntries("follower", follower.addr(), heartbeatReq(1), &resp); err != nil {
		t.Fatal(err)
	}
	faults.Partition(string(leader.addr()), string(follower.addr()))
	if err := g.AppendEntries("follower", follower.addr(), heartbeatReq(1), &resp); !errors.Is(err, rpcmux.ErrUnreachable) {
		t.Fatalf("heartbeat across a partition: %v; want ErrUnreachable", err)
	}
	// One way is enough: the leader's batches do not get through.
	faults.Heal()
	faults.Block(string(leader.addr()), string(follower.addr()))
	if err := g.AppendEntries("follower", follower.addr(), heartbeatReq(1), &resp); !errors.Is(err, rpcmux.ErrUnreachable) {
		t.Fatalf("heartbeat over a blocked direction: %v; want ErrUnreachable", err)
	}
	faults.Heal()
	if err := g.AppendEntries("follower", follower.addr(), heartbeatReq(1), &resp); err != nil || !resp.Success {
		t.Fatalf("heartbeat after the heal: %+v, %v", resp, err)
	}
}

func TestServeRefusesMalformedBatch(t *testing.T) {
	n := newNode(t, "n", nil, Options{})
	if _, err := n.beats.Serve(context.Background(), "x", []byte{wireVersion, 5}); !errors.Is(err, errMalformed) {
		t.Fatalf("malformed batch: %v", err)
	}
}

// queued counts c's heartbeats waiting for their batch.
func queued(c *Coalescer) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, p := range c.mu.peers {
		n += len(p.queue)
	}
	return n
}

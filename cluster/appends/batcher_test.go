package appends

import (
	"errors"
	"io"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/mqstream/mqstream/cluster/rpcmux"
	"github.com/mqstream/mqstream/internal/testutil"
)

// testNode is a mux with a Batcher on its channel.
type testNode struct {
	id  string
	mux *rpcmux.Mux
	b   *Batcher
}

func newNode(t testing.TB, id string, faults *rpcmux.Faults, opts Options) *testNode {
	t.Helper()
	mux, err := rpcmux.Listen("127.0.0.1:0", rpcmux.Options{NodeID: id, Faults: faults, Logger: testutil.Logger().With("node", id)})
	if err != nil {
		t.Fatal(err)
	}
	if opts.Logger == nil {
		opts.Logger = testutil.Logger().With("node", id)
	}
	n := &testNode{id: id, mux: mux, b: New(mux.StreamLayer(Channel), opts)}
	t.Cleanup(func() {
		_ = n.b.Close()
		_ = mux.Close()
	})
	return n
}

func (n *testNode) addr() raft.ServerAddress { return raft.ServerAddress(n.mux.Addr().String()) }

// group wraps a fresh in-memory transport for the named group.
func (n *testNode) group(t *testing.T, name string) raft.Transport {
	_, inner := raft.NewInmemTransport(n.addr())
	tr := n.b.Wrap(name, inner)
	t.Cleanup(func() { _ = tr.(raft.WithClose).Close() })
	return tr
}

// serveAll answers every append that reaches tr's consumer with success
// and LastLog the request's last entry's index (or previous index),
// until stop closes.
func serveAll(tr raft.Transport, stop <-chan struct{}) {
	for {
		select {
		case rpc := <-tr.Consumer():
			req := rpc.Command.(*raft.AppendEntriesRequest)
			last := req.PrevLogEntry
			if n := len(req.Entries); n > 0 {
				last = req.Entries[n-1].Index
			}
			rpc.Respond(&raft.AppendEntriesResponse{Term: req.Term, LastLog: last, Success: true}, nil)
		case <-stop:
			return
		}
	}
}

func appendReq(index uint64) *raft.AppendEntriesRequest {
	return &raft.AppendEntriesRequest{Term: 1, Leader: []byte("l"), PrevLogEntry: index - 1, PrevLogTerm: 1, LeaderCommitIndex: index - 1,
		Entries: []*raft.Log{{Index: index, Term: 1, Type: raft.LogCommand, Data: []byte("x" + strconv.FormatUint(index, 10))}}}
}

// TestAppendsReachTheirGroups: synchronous appends of several groups to
// one peer are answered by the right groups.
func TestAppendsReachTheirGroups(t *testing.T) {
	a, b := newNode(t, "a", nil, Options{}), newNode(t, "b", nil, Options{})
	stop := make(chan struct{})
	defer close(stop)
	var wg sync.WaitGroup
	for g := range 4 {
		name := "shard-" + strconv.Itoa(g)
		send := a.group(t, name)
		go serveAll(b.group(t, name), stop)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := uint64(1); i <= 50; i++ {
				var resp raft.AppendEntriesResponse
				if err := send.AppendEntries("b", b.addr(), appendReq(i), &resp); err != nil {
					t.Errorf("%s: append %d: %v", name, i, err)
					return
				}
				if !resp.Success || resp.LastLog != i {
					t.Errorf("%s: append %d answered %+v", name, i, resp)
					return
				}
			}
		}()
	}
	wg.Wait()
	st := a.b.Stats()
	t.Logf("%d requests in %d frames", st.Requests, st.Frames)
	if st.Requests != 200 || st.Frames == 0 || st.Frames > st.Requests {
		t.Fatalf("stats %+v, want 200 requests in 1..200 frames", st)
	}
}

// TestPipelineKeepsOrder: a pipeline's futures come back in the order
// the appends were sent, each with its own answer.
func TestPipelineKeepsOrder(t *testing.T) {
	a, b := newNode(t, "a", nil, Options{MaxInFlight: 4}), newNode(t, "b", nil, Options{})
	stop := make(chan struct{})
	defer close(stop)
	go serveAll(b.group(t, "g"), stop)
	p, err := a.group(t, "g").AppendEntriesPipeline("b", b.addr())
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	const n = 200
	go func() {
		for i := uint64(1); i <= n; i++ {
			if _, err := p.AppendEntries(appendReq(i), new(raft.AppendEntriesResponse)); err != nil {
				t.Errorf("append %d: %v", i, err)
				return
			}
		}
	}()
	for i := uint64(1); i <= n; i++ {
		f := <-p.Consumer()
		if err := f.Error(); err != nil {
			t.Fatalf("future %d: %v", i, err)
		}
		if got := f.Request().Entries[0].Index; got != i {
			t.Fatalf("future %d is the append of entry %d", i, got)
		}
		if r := f.Response(); !r.Success || r.LastLog != i {
			t.Fatalf("future %d answered %+v", i, r)
		}
	}
}

// TestSlowGroupDoesNotHoldOthers: a group that does not take its appends
// holds up neither the other groups' answers on the same connection, nor
// beyond AnswerTimeout its own, which then fails.
func TestSlowGroupDoesNotHoldOthers(t *testing.T) {
	a := newNode(t, "a", nil, Options{})
	b := newNode(t, "b", nil, Options{AnswerTimeout: 300 * time.Millisecond})
	stop := make(chan struct{})
	defer close(stop)
	slowSend, fastSend := a.group(t, "slow"), a.group(t, "fast")
	b.group(t, "slow") // never answers
	go serveAll(b.group(t, "fast"), stop)

	slowDone := make(chan error, 1)
	go func() {
		var resp raft.AppendEntriesResponse
		slowDone <- slowSend.AppendEntries("b", b.addr(), appendReq(1), &resp)
	}()
	for i := uint64(1); i <= 20; i++ {
		var resp raft.AppendEntriesResponse
		if err := fastSend.AppendEntries("b", b.addr(), appendReq(i), &resp); err != nil || !resp.Success {
			t.Fatalf("fast group, append %d: %+v, %v", i, resp, err)
		}
		select {
		case err := <-slowDone:
			if i < 20 {
				t.Logf("slow group answered after %d fast appends: %v", i, err)
			}
			slowDone <- err
		default:
		}
	}
	if err := <-slowDone; !errors.Is(err, ErrNoAnswer) {
		t.Fatalf("slow group: %v, want ErrNoAnswer", err)
	}
}

// TestGroupNotOpen: an append for a group the peer does not run fails
// with ErrNoAnswer, and one for a closed group too.
func TestGroupNotOpen(t *testing.T) {
	a, b := newNode(t, "a", nil, Options{}), newNode(t, "b", nil, Options{})
	send := a.group(t, "g")
	var resp raft.AppendEntriesResponse
	if err := send.AppendEntries("b", b.addr(), appendReq(1), &resp); !errors.Is(err, ErrNoAnswer) {
		t.Fatalf("append to a group not open: %v, want ErrNoAnswer", err)
	}
	recv := b.group(t, "g")
	_ = recv.(raft.WithClose).Close()
	if err := send.AppendEntries("b", b.addr(), appendReq(1), &resp); !errors.Is(err, ErrNoAnswer) {
		t.Fatalf("append to a closed group: %v, want ErrNoAnswer", err)
	}
}

// TestPeerDownFailsWithoutBlockingOthers: appends to a peer that is gone
// fail, appends to another peer go on, and once the peer is back (a new
// node on the same address would do; here the partition heals) appends
// to it succeed again.
func TestPeerDownFailsWithoutBlockingOthers(t *testing.T) {
	faults := rpcmux.NewFaults()
	a := newNode(t, "a", faults, Options{PeerHold: -1})
	b, c := newNode(t, "b", faults, Options{}), newNode(t, "c", faults, Options{})
	stop := make(chan struct{})
	defer close(stop)
	send := a.group(t, "g")
	go serveAll(b.group(t, "g"), stop)
	go serveAll(c.group(t, "g"), stop)
	var resp raft.AppendEntriesResponse
	for _, n := range []*testNode{b, c} {
		if err := send.AppendEntries(raft.ServerID(n.id), n.addr(), appendReq(1), &resp); err != nil {
			t.Fatalf("append to %s: %v", n.id, err)
		}
	}
	faults.Partition(string(a.addr()), string(c.addr()))
	if err := send.AppendEntries("c", c.addr(), appendReq(2), &resp); err == nil {
		t.Fatal("an append to a partitioned peer succeeded")
	}
	for i := uint64(2); i <= 10; i++ {
		if err := send.AppendEntries("b", b.addr(), appendReq(i), &resp); err != nil {
			t.Fatalf("append %d to b while c is away: %v", i, err)
		}
	}
	faults.Heal()
	if err := send.AppendEntries("c", c.addr(), appendReq(2), &resp); err != nil || !resp.Success {
		t.Fatalf("append to c after the heal: %+v, %v", resp, err)
	}
}

// TestCloseFailsAppends: once the Batcher closes, appends and pipelines
// fail with ErrClosed.
func TestCloseFailsAppends(t *testing.T) {
	a, b := newNode(t, "a", nil, Options{}), newNode(t, "b", nil, Options{})
	send := a.group(t, "g")
	_ = a.b.Close()
	var resp raft.AppendEntriesResponse
	if err := send.AppendEntries("b", b.addr(), appendReq(1), &resp); !errors.Is(err, ErrClosed) {
		t.Fatalf("append after Close: %v, want ErrClosed", err)
	}
	if _, err := send.AppendEntriesPipeline("b", b.addr()); !errors.Is(err, ErrClosed) {
		t.Fatalf("pipeline after Close: %v, want ErrClosed", err)
	}
}

// TestPipelineOpenWhenTheBatcherCloses: a pipeline made before its
// Batcher closed fails its next append with ErrClosed (delivered to the
// consumer) instead of settling it under its own lock, which hung the
// sending goroutine.
func TestPipelineOpenWhenTheBatcherCloses(t *testing.T) {
	a, b := newNode(t, "a", nil, Options{}), newNode(t, "b", nil, Options{})
	p, err := a.group(t, "g").AppendEntriesPipeline("b", b.addr())
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	_ = a.b.Close()
	sent := make(chan error, 1)
	go func() {
		_, err := p.AppendEntries(appendReq(1), new(raft.AppendEntriesResponse))
		sent <- err
	}()
	select {
	case err := <-sent:
		if err != nil && !errors.Is(err, ErrClosed) {
			t.Fatalf("append: %v", err)
		}
		if err == nil {
			if f := <-p.Consumer(); !errors.Is(f.Error(), ErrClosed) {
				t.Fatalf("future: %v, want ErrClosed", f.Error())
			}
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the append on a pipeline of a closed Batcher hangs")
	}
}

// TestIdleConnectionKept: a connection idle past Timeout is kept (the
// read deadline only counts while requests are in flight), and a peer
// that takes requests but never answers fails them after Timeout.
func TestIdleConnectionKept(t *testing.T) {
	const timeout = 200 * time.Millisecond
	a, b := newNode(t, "a", nil, Options{Timeout: timeout}), newNode(t, "b", nil, Options{})
	stop := make(chan struct{})
	defer close(stop)
	send := a.group(t, "g")
	go serveAll(b.group(t, "g"), stop)
	var resp raft.AppendEntriesResponse
	if err := send.AppendEntries("b", b.addr(), appendReq(1), &resp); err != nil {
		t.Fatal(err)
	}
	l := a.b.link(string(b.addr()))
	l.mu.Lock()
	first := l.mu.conn
	l.mu.Unlock()
	// Idle for a few timeouts: the reader hits its deadline and carries on.
	testutil.Eventually(t, 5*time.Second, "the idle deadline to pass", func() bool {
		l.mu.Lock()
		defer l.mu.Unlock()
		return l.mu.conn == first && first.readArmed.IsZero()
	})
	if err := send.AppendEntries("b", b.addr(), appendReq(2), &resp); err != nil {
		t.Fatal(err)
	}
	l.mu.Lock()
	same := l.mu.conn == first
	l.mu.Unlock()
	if !same {
		t.Fatal("the idle connection was replaced")
	}

	// A peer that reads requests and never answers.
	mux, err := rpcmux.Listen("127.0.0.1:0", rpcmux.Options{NodeID: "mute", Logger: testutil.Logger()})
	if err != nil {
		t.Fatal(err)
	}
	defer mux.Close()
	layer := mux.StreamLayer(Channel)
	go func() {
		for {
			c, err := layer.Accept()
			if err != nil {
				return
			}
			go func() { _, _ = io.Copy(io.Discard, c) }()
		}
	}()
	err = send.AppendEntries("mute", raft.ServerAddress(mux.Addr().String()), appendReq(1), &resp)
	if err == nil || !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("append to a peer that does not answer: %v, want a deadline error", err)
	}
}

// TestPeerWithoutTheFeature: appends to a peer that does not take batched
// appends (Options.Supports says so: an earlier version, during a rolling
// upgrade) go through the group's own transport, synchronous and
// pipelined, and the Batcher sends nothing.
func TestPeerWithoutTheFeature(t *testing.T) {
	a := newNode(t, "a", nil, Options{Supports: func(string) bool { return false }})
	addrA, innerA := raft.NewInmemTransport(a.addr())
	addrB, innerB := raft.NewInmemTransport("")
	innerA.Connect(addrB, innerB)
	innerB.Connect(addrA, innerA)
	send := a.b.Wrap("shard-0", innerA)
	t.Cleanup(func() { _ = send.(raft.WithClose).Close() })
	stop := make(chan struct{})
	defer close(stop)
	go serveAll(innerB, stop) // the old peer: its own transport only

	var resp raft.AppendEntriesResponse
	if err := send.AppendEntries("b", addrB, appendReq(1), &resp); err != nil || !resp.Success || resp.LastLog != 1 {
		t.Fatalf("append to a peer without the feature: %+v, %v", resp, err)
	}
	p, err := send.AppendEntriesPipeline("b", addrB)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if _, err := p.AppendEntries(appendReq(2), &raft.AppendEntriesResponse{}); err != nil {
		t.Fatal(err)
	}
	select {
	case f := <-p.Consumer():
		if f.Error() != nil || !f.Response().Success || f.Response().LastLog != 2 {
			t.Fatalf("pipelined append: %+v, %v", f.Response(), f.Error())
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no answer through the group's own pipeline")
	}
	if st := a.b.Stats(); st.Requests != 0 || st.Frames != 0 {
		t.Fatalf("the Batcher sent %+v to a peer without the feature", st)
	}
}

// TestAppendWaitsForAPeerComingBack: an append to a peer that cannot be
// reached waits for it, up to PeerHold (dialed again through several
// DialHolds), rather than failing at once (raft backs off longer after
// each failure); a peer that starts meanwhile on that address answers
// it. With a negative DialHold it fails at once; released, at once too.
func TestAppendWaitsForAPeerComingBack(t *testing.T) {
	a := newNode(t, "a", nil, Options{DialHold: 100 * time.Millisecond, PeerHold: 20 * time.Second})
	down := newNode(t, "b", nil, Options{})
	addr := down.addr()
	_ = down.b.Close()
	_ = down.mux.Close()
	send := a.group(t, "g")
	errc := make(chan error, 1)
	go func() {
		var resp raft.AppendEntriesResponse
		err := send.AppendEntries("b", addr, appendReq(1), &resp)
		if err == nil && !resp.Success {
			err = errors.New("not a success")
		}
		errc <- err
	}()
	select {
	case err := <-errc:
		t.Fatalf("the append to a peer that is down ended before it came back: %v", err)
	case <-time.After(500 * time.Millisecond): // five DialHolds
	}
	// The peer comes back on its address.
	var mux *rpcmux.Mux
	testutil.Eventually(t, 5*time.Second, "the peer listening again", func() bool {
		m, err := rpcmux.Listen(string(addr), rpcmux.Options{NodeID: "b", Logger: testutil.Logger()})
		mux = m
		return err == nil
	})
	b := New(mux.StreamLayer(Channel), Options{Logger: testutil.Logger()})
	t.Cleanup(func() {
		_ = b.Close()
		_ = mux.Close()
	})
	_, inner := raft.NewInmemTransport(addr)
	recv := b.Wrap("g", inner)
	stop := make(chan struct{})
	defer close(stop)
	go serveAll(recv, stop)
	if err := <-errc; err != nil {
		t.Fatalf("the append held for the peer: %v", err)
	}

	c := newNode(t, "c", nil, Options{DialHold: -1})
	var resp raft.AppendEntriesResponse
	if err := c.group(t, "g").AppendEntries("d", "127.0.0.1:1", appendReq(1), &resp); err == nil {
		t.Fatal("an append to an address nobody listens on succeeded")
	}

	// A group about to shut down is released: its append held for an
	// unreachable peer fails, and so do the next ones, without waiting.
	held := a.group(t, "h")
	send1 := appendAsync(held, "127.0.0.1:1", 1)
	select {
	case err := <-send1:
		t.Fatalf("the append to an unreachable peer ended before its hold: %v", err)
	case <-time.After(300 * time.Millisecond):
	}
	Release(held)
	for i, what := range []string{"the released append", "an append after the release"} {
		errs := send1
		if i == 1 {
			errs = appendAsync(held, "127.0.0.1:1", 2)
		}
		select {
		case err := <-errs:
			if !errors.Is(err, ErrUnreachable) {
				t.Fatalf("%s failed with %v, want ErrUnreachable", what, err)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("%s still waits for the peer", what)
		}
	}
}

// appendAsync sends append index to addr through tr and delivers its
// error.
func appendAsync(tr raft.Transport, addr raft.ServerAddress, index uint64) <-chan error {
	errc := make(chan error, 1)
	go func() {
		var resp raft.AppendEntriesResponse
		errc <- tr.AppendEntries("d", addr, appendReq(index), &resp)
	}()
	return errc
}

// TestMissingAnswerFailsItsConnection: a peer that answers every request
// but one group's keeps the connection's read deadline moving; the
// request left unanswered still fails, after answerBound Timeouts,
// instead of holding its group's pipeline for ever.
func TestMissingAnswerFailsItsConnection(t *testing.T) {
	const timeout = 200 * time.Millisecond
	a := newNode(t, "a", nil, Options{Timeout: timeout})
	mux, err := rpcmux.Listen("127.0.0.1:0", rpcmux.Options{NodeID: "picky", Logger: testutil.Logger()})
	if err != nil {
		t.Fatal(err)
	}
	defer mux.Close()
	layer := mux.StreamLayer(Channel)
	go func() { // answers every request except those of group "lost"
		for {
			c, err := layer.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				for {
					body, err := readFrame(c)
					if err != nil {
						return
					}
					reqs, err := decodeRequests(body)
					if err != nil {
						return
					}
					var answers []answer
					for _, q := range reqs {
						if q.group != "lost" {
							answers = append(answers, answer{id: q.id, resp: raft.AppendEntriesResponse{Success: true}})
						}
					}
					if len(answers) > 0 {
						b, at := beginFrame(nil)
						if _, err := c.Write(endFrame(appendAnswers(b, answers), at)); err != nil {
							return
						}
					}
				}
			}()
		}
	}()
	peer := raft.ServerAddress(mux.Addr().String())
	busy, lost := a.group(t, "g"), a.group(t, "lost")
	stop := make(chan struct{})
	defer close(stop)
	go func() { // answered appends keep the connection talking
		for i := uint64(1); ; i++ {
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
			var resp raft.AppendEntriesResponse
			_ = busy.AppendEntries("picky", peer, appendReq(i), &resp)
		}
	}()
	failed := make(chan error, 1)
	go func() {
		var resp raft.AppendEntriesResponse
		failed <- lost.AppendEntries("picky", peer, appendReq(1), &resp)
	}()
	select {
	case err := <-failed:
		if err == nil || !strings.Contains(err.Error(), "unanswered") {
			t.Fatalf("the unanswered append: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("an append whose answer is missing waits for ever while the connection carries other answers")
	}
}

// TestRequestOfAGoneConnectionIsNotHandedToRaft: a request still queued
// for its group when the connection it came on is gone (its sender
// failed it and sends it again on a new one) does not reach raft; the
// next one does.
func TestRequestOfAGoneConnectionIsNotHandedToRaft(t *testing.T) {
	n := newNode(t, "a", nil, Options{})
	tr := n.group(t, "g").(preVoteTransport).Transport
	gone := &serverConn{b: n.b, wake: make(chan struct{}, 1), done: make(chan struct{})}
	close(gone.done)
	live := &serverConn{b: n.b, wake: make(chan struct{}, 1), done: make(chan struct{})}
	tr.receive(incoming{id: 1, req: appendReq(1), to: gone})
	tr.receive(incoming{id: 2, req: appendReq(2), to: live})
	select {
	case rpc := <-tr.Consumer():
		if got := rpc.Command.(*raft.AppendEntriesRequest).Entries[0].Index; got != 2 {
			t.Fatalf("raft got the request of entry %d first, want the live connection's (2)", got)
		}
		rpc.Respond(&raft.AppendEntriesResponse{Term: 1, Success: true}, nil)
	case <-time.After(5 * time.Second):
		t.Fatal("the live connection's request did not reach raft")
	}
	testutil.Eventually(t, 5*time.Second, "the live connection's answer", func() bool {
		live.mu.Lock()
		defer live.mu.Unlock()
		return len(live.answers) == 1 && live.answers[0].id == 2 && live.answers[0].resp.Success
	})
}

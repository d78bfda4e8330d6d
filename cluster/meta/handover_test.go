package meta

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/mqstream/mqstream/internal/testutil"
)

// leaderAmong waits for one of ms to lead the group and returns it.
func leaderAmong(t *testing.T, ms []*Meta) *Meta {
	t.Helper()
	var l *Meta
	testutil.Eventually(t, 10*time.Second, "a leader of the metadata group", func() bool {
		for _, m := range ms {
			if m.IsLeader() {
				l = m
				return true
			}
		}
		return false
	})
	return l
}

// votes records the vote requests members receive (raft observations).
type votes struct {
	mu   sync.Mutex // guards reqs
	reqs []raft.RequestVoteRequest
}

func (v *votes) watch(t *testing.T, m *Meta) {
	ch := make(chan raft.Observation, 64)
	o := raft.NewObserver(ch, false, func(o *raft.Observation) bool {
		_, ok := o.Data.(raft.RequestVoteRequest)
		return ok
	})
	m.raft.RegisterObserver(o)
	t.Cleanup(func() {
		m.raft.DeregisterObserver(o)
		close(ch)
	})
	go func() {
		for o := range ch {
			v.mu.Lock()
			v.reqs = append(v.reqs, o.Data.(raft.RequestVoteRequest))
			v.mu.Unlock()
		}
	}()
}

// of returns the vote requests candidate id sent for term.
func (v *votes) of(id string, term uint64) []raft.RequestVoteRequest {
	v.mu.Lock()
	defer v.mu.Unlock()
	var out []raft.RequestVoteRequest
	for _, r := range v.reqs {
		if string(r.ID) == id && r.Term == term {
			out = append(out, r)
		}
	}
	return out
}

// waitVersion waits until m has applied layout version v or later.
func waitVersion(ctx context.Context, m *Meta, v uint64) error {
	for {
		ch := m.Changed()
		if m.State().Layout.Version >= v {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// TestLeaderHandsOverWhenClosing: the leader of the group, closed
// gracefully, hands the leadership over: another member leads after an
// election the transfer started (its vote requests say so; an election
// timeout would have started one without the flag), and the layout
// changes a member sends while the leader stops and right after it
// stopped all succeed (tried again on the new leader when the old one
// could not finish them). The closed member's own operations fail with
// ErrClosed, and an operation that reaches it as it stops is answered
// "no leader", which its sender tries on the new leader.
func TestLeaderHandsOverWhenClosing(t *testing.T) {
	_, ms := newNetWith(t, func(o *Options) { o.HandOverTimeout = 10 * time.Second }, "n1", "n2", "n3")
	old := leaderAmong(t, ms)
	var others []*Meta
	var seen votes
	for _, m := range ms {
		seen.watch(t, m)
		if m != old {
			others = append(others, m)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()

	// One member changes the layout again and again, from before the
	// leader stops until it has sent three changes after.
	writer := others[0]
	stopped := make(chan struct{})
	result := make(chan error, 1)
	go func() {
		after := 0
		for v := uint64(0); after < 3; v++ {
			select {
			case <-stopped:
				after++
			default:
			}
			err := writer.SetLayout(ctx, v, layoutOf(v+1, "n1", "n2", "n3"))
			if errors.Is(err, ErrStale) {
				// A change the old leader committed but could not
				// confirm, tried again: it is there.
				err = waitVersion(ctx, writer, v+1)
			}
			if err != nil {
				result <- fmt.Errorf("layout version %d: %w", v+1, err)
				return
			}
		}
		result <- nil
	}()
	if err := waitVersion(ctx, writer, 2); err != nil {
		t.Fatalf("changes before the stop: %v", err)
	}
	if err := old.Close(); err != nil {
		t.Fatalf("close the leader: %v", err)
	}
	close(stopped)

	next := leaderAmong(t, others)
	testutil.Eventually(t, 10*time.Second, "the vote requests of the new leader's election", func() bool {
		return len(seen.of(next.self.ID, next.raft.CurrentTerm())) > 0
	})
	for _, r := range seen.of(next.self.ID, next.raft.CurrentTerm()) {
		if !r.LeadershipTransfer {
			t.Fatalf("%s was elected in term %d after an election timeout, not a leadership transfer", next.self.ID, r.Term)
		}
	}
	if err := <-result; err != nil {
		t.Fatalf("a layout change while the leader stopped: %v", err)
	}

	if err := old.SetLayout(ctx, 0, layoutOf(1, "n1", "n2")); !errors.Is(err, ErrClosed) {
		t.Fatalf("a change through the closed member: %v, want ErrClosed", err)
	}
	// What a forwarded change meets on a leader shut down while serving
	// it (raft.ErrRaftShutdown): "no leader", so that the sender tries
	// the new leader, across the hop too.
	err := old.serve(ctx, request{Cmd: &command{Op: "remove", Node: "n9"}})
	if !errors.Is(err, errNoLeader) {
		t.Fatalf("a change served by a shut down leader: %v, want errNoLeader", err)
	}
	if err := decodeResponse(encodeResponse(err)); !errors.Is(err, errNoLeader) {
		t.Fatalf("its answer to the sender: %v, want errNoLeader", err)
	}
}

// TestLoneLeaderCloses: a leader with no other voter has nobody to hand
// over to and closes all the same.
func TestLoneLeaderCloses(t *testing.T) {
	_, ms := newNet(t, "n1")
	l := leaderAmong(t, ms)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatalf("close again: %v", err)
	}
}

// unanswered is a Raft future Raft dropped at shutdown.
type unanswered struct{ block chan struct{} }

func (f unanswered) Error() error { <-f.block; return nil }

// TestWaitGivesUpOnceRaftIsDown: an operation whose future Raft left
// unanswered when it shut down (still in its apply queue) fails as "no
// leader" once Raft is down, so its sender tries the new leader, instead
// of holding the sender until its deadline (a layout change of
// TestLeaderHandsOverWhenClosing waited out its 15 s this way in CI).
func TestWaitGivesUpOnceRaftIsDown(t *testing.T) {
	m := &Meta{raftDown: make(chan struct{})}
	f := unanswered{block: make(chan struct{})}
	defer close(f.block)
	done := make(chan error, 1)
	go func() { done <- m.wait(context.Background(), f) }()
	close(m.raftDown)
	select {
	case err := <-done:
		if !errors.Is(leaderErr(err), errNoLeader) {
			t.Fatalf("wait: %v, want it taken for no leader", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("wait still blocked after Raft shut down")
	}
}

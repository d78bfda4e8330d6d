package rpcmux

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/mqstream/mqstream/internal/testutil"
)

// listenAll starts n muxes sharing faults, each serving "echo".
func listenAll(t *testing.T, faults *Faults, ids ...string) []*Mux {
	var ms []*Mux
	for _, id := range ids {
		m := listen(t, id, faults)
		m.Handle("echo", echo)
		ms = append(ms, m)
	}
	return ms
}

// linkConns counts the open connection ends f knows of dialed from one mux
// to another.
func linkConns(f *Faults, from, to *Mux) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, l := range f.mu.conns {
		if l == (link{addr(from), addr(to)}) {
			n++
		}
	}
	return n
}

func TestPartitionAndHeal(t *testing.T) {
	f := NewFaults()
	ms := listenAll(t, f, "a", "b", "c")
	a, b, c := ms[0], ms[1], ms[2]
	// Open connections both ways first: the partition must close them.
	for _, p := range [][2]*Mux{{a, b}, {b, a}} {
		if _, err := call(p[0], p[1], "echo", "x"); err != nil {
			t.Fatal(err)
		}
	}
	bl := b.StreamLayer("g")
	sc, err := a.StreamLayer("g").Dial(raft.ServerAddress(addr(b)), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer sc.Close()
	sa, err := bl.Accept()
	if err != nil {
		t.Fatal(err)
	}
	// Both ends of each connection are known: a dialed a call and a stream
	// connection to b, b a call connection to a.
	if ab, ba := linkConns(f, a, b), linkConns(f, b, a); ab != 4 || ba != 2 {
		t.Fatalf("tracked a -> b %d, b -> a %d; want 4 and 2", ab, ba)
	}

	f.Partition(addr(a), addr(b))
	readClosed(t, sc) // the stream connection is closed, at both ends
	readClosed(t, sa)
	for _, p := range [][2]*Mux{{a, b}, {b, a}} {
		if _, err := call(p[0], p[1], "echo", "x"); !errors.Is(err, ErrUnreachable) {
			t.Fatalf("%s -> %s across the partition: %v", p[0].opts.NodeID, p[1].opts.NodeID, err)
		}
	}
	if _, err := a.StreamLayer("g2").Dial(raft.ServerAddress(addr(b)), time.Second); !errors.Is(err, ErrUnreachable) {
		t.Fatalf("stream dial across the partition: %v", err)
	}
	// c reaches both, and both reach c.
	for _, p := range [][2]*Mux{{a, c}, {c, a}, {b, c}, {c, b}} {
		if _, err := call(p[0], p[1], "echo", "x"); err != nil {
			t.Fatalf("%s -> %s outside the partition: %v", p[0].opts.NodeID, p[1].opts.NodeID, err)
		}
	}
	if ab, ba := linkConns(f, a, b), linkConns(f, b, a); ab != 0 || ba != 0 {
		t.Fatalf("left open across the partition: a -> b %d, b -> a %d", ab, ba)
	}

	f.Heal()
	for _, p := range [][2]*Mux{{a, b}, {b, a}} {
		if got, err := call(p[0], p[1], "echo", "x"); err != nil || got != p[0].opts.NodeID+":x" {
			t.Fatalf("after Heal: %q %v", got, err)
		}
	}
}

func TestBlockIsOneWay(t *testing.T) {
	f := NewFaults()
	ms := listenAll(t, f, "a", "b")
	a, b := ms[0], ms[1]
	if _, err := call(b, a, "echo", "x"); err != nil { // a connection b dialed
		t.Fatal(err)
	}
	f.Block(addr(a), addr(b))
	if _, err := call(a, b, "echo", "x"); !errors.Is(err, ErrUnreachable) {
		t.Fatalf("a -> b blocked: %v", err)
	}
	// b still reaches a, over its pooled connection and over new ones.
	if n := idleConns(b); n != 1 {
		t.Fatalf("b's connection to a was closed by a block of a -> b (%d idle)", n)
	}
	if got, err := call(b, a, "echo", "x"); err != nil || got != "b:x" {
		t.Fatalf("b -> a: %q %v", got, err)
	}
	if _, err := b.StreamLayer("g").Dial(raft.ServerAddress(addr(a)), time.Second); err != nil {
		t.Fatalf("b -> a stream: %v", err)
	}
	f.Heal()
	if _, err := call(a, b, "echo", "x"); err != nil {
		t.Fatalf("after Heal: %v", err)
	}
}

func TestDelay(t *testing.T) {
	f := NewFaults()
	ms := listenAll(t, f, "a", "b")
	a, b := ms[0], ms[1]
	f.Delay(50 * time.Millisecond)
	start := time.Now()
	if _, err := call(a, b, "echo", "x"); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d < 50*time.Millisecond {
		t.Fatalf("delayed call took %s", d)
	}
	// The delay counts against the call's deadline.
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Millisecond)
	defer cancel()
	if _, err := a.Call(ctx, addr(b), "echo", nil); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("call shorter than the delay: %v", err)
	}
	f.Heal()
	if f.latency() != 0 {
		t.Fatal("Heal left the delay")
	}
}

// TestPartitionDuringDial: connections made while a partition is being set
// up are either closed by it or refused, never left open across it.
func TestPartitionDuringDial(t *testing.T) {
	f := NewFaults()
	ms := listenAll(t, f, "a", "b")
	a, b := ms[0], ms[1]
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range 200 { // a service each: a dial each
			_, _ = call(a, b, fmt.Sprint("s", i), "x")
		}
	}()
	f.Partition(addr(a), addr(b))
	<-done
	testutil.Eventually(t, 5*time.Second, "no connection across the partition", func() bool {
		f.mu.Lock()
		defer f.mu.Unlock()
		return len(f.mu.conns) == 0
	})
}

package rpcmux

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mqstream/mqstream/internal/testutil"
)

func TestCallRoundTrip(t *testing.T) {
	a, b := listen(t, "a", nil), listen(t, "b", nil)
	b.Handle("echo", echo)
	for i := range 3 {
		got, err := call(a, b, "echo", fmt.Sprint("hello ", i))
		if err != nil || got != fmt.Sprint("a:hello ", i) {
			t.Fatalf("call %d: %q %v", i, got, err)
		}
	}
	if n := idleConns(a); n != 1 {
		t.Fatalf("%d idle connections after sequential calls; want the one reused", n)
	}
	// Empty request and response.
	b.Handle("empty", func(context.Context, string, []byte) ([]byte, error) { return nil, nil })
	if got, err := call(a, b, "empty", ""); err != nil || got != "" {
		t.Fatalf("empty: %q %v", got, err)
	}
	// A large one.
	big := bytes.Repeat([]byte("x"), 1<<20)
	resp, err := a.Call(t.Context(), addr(b), "echo", big)
	if err != nil || !bytes.Equal(resp, append([]byte("a:"), big...)) {
		t.Fatalf("1 MiB echo: %d bytes, %v", len(resp), err)
	}
}

func TestCallHandlerError(t *testing.T) {
	a, b := listen(t, "a", nil), listen(t, "b", nil)
	b.Handle("fail", func(context.Context, string, []byte) ([]byte, error) {
		return nil, errors.New("not the leader of shard-3")
	})
	_, err := call(a, b, "fail", "x")
	if !errors.Is(err, ErrRemote) || !strings.Contains(err.Error(), "not the leader of shard-3") {
		t.Fatalf("handler error came back as %v", err)
	}
	if errors.Is(err, ErrUnreachable) {
		t.Fatalf("a remote error is not unreachable: %v", err)
	}
	// The connection survives an error reply.
	if n := idleConns(a); n != 1 {
		t.Fatalf("%d idle connections after an error reply", n)
	}
}

func TestCallUnknownService(t *testing.T) {
	a, b := listen(t, "a", nil), listen(t, "b", nil)
	_, err := call(a, b, "nope", "x")
	if !errors.Is(err, ErrRemote) || !strings.Contains(err.Error(), `"nope"`) {
		t.Fatalf("unknown service: %v", err)
	}
	// Registered later, the same connection serves it.
	b.Handle("nope", echo)
	if got, err := call(a, b, "nope", "x"); err != nil || got != "a:x" {
		t.Fatalf("after Handle: %q %v", got, err)
	}
}

func TestCallContextDeadlineAndCancel(t *testing.T) {
	a, b := listen(t, "a", nil), listen(t, "b", nil)
	release := make(chan struct{})
	b.Handle("slow", func(ctx context.Context, _ string, _ []byte) ([]byte, error) {
		select {
		case <-release:
		case <-ctx.Done():
		}
		return []byte("late"), nil
	})
	defer close(release)

	ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := a.Call(ctx, addr(b), "slow", nil)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("deadline: %v", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("call returned %s after its 100ms deadline", d)
	}

	ctx, cancel = context.WithCancel(t.Context())
	go func() {
		// Cancel once the call is in flight (its connection is in use).
		for openConns(a) == 0 {
			time.Sleep(time.Millisecond)
		}
		cancel()
	}()
	if _, err := a.Call(ctx, addr(b), "slow", nil); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancel: %v", err)
	}
	if n := idleConns(a); n != 0 {
		t.Fatalf("%d idle connections: a cancelled call's connection was pooled", n)
	}
}

func TestManyConcurrentCalls(t *testing.T) {
	a, b := listen(t, "a", nil), listen(t, "b", nil)
	b.Handle("echo", echo)
	const callers, each = 32, 20
	var wg sync.WaitGroup
	errs := make(chan error, callers)
	for i := range callers {
		wg.Go(func() {
			for j := range each {
				req := fmt.Sprintf("%d/%d", i, j)
				got, err := call(a, b, "echo", req)
				if err == nil && got != "a:"+req {
					err = fmt.Errorf("asked %q, got %q", req, got)
				}
				if err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if n := idleConns(a); n == 0 || n > a.opts.MaxIdlePerPeer {
		t.Fatalf("%d idle connections; want 1..%d", n, a.opts.MaxIdlePerPeer)
	}
}

func TestPooledConnectionToRestartedPeer(t *testing.T) {
	a, b := listen(t, "a", nil), listen(t, "b", nil)
	b.Handle("echo", echo)
	if _, err := call(a, b, "echo", "x"); err != nil {
		t.Fatal(err)
	}
	where := addr(b)
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	b2, err := Listen(where, Options{NodeID: "b2", Logger: testutil.Logger()})
	if err != nil {
		t.Skipf("port %s not free again: %v", where, err)
	}
	defer b2.Close()
	b2.Handle("echo", echo)
	// a's pooled connection to b is dead; a notices before using it.
	if got, err := call(a, b2, "echo", "y"); err != nil || got != "a:y" {
		t.Fatalf("call after the peer restarted: %q %v", got, err)
	}
}

func TestCallTooLarge(t *testing.T) {
	a, b := listen(t, "a", nil), listen(t, "b", nil)
	if _, err := a.Call(t.Context(), addr(b), "x", make([]byte, MaxFrame+1)); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("request over MaxFrame: %v", err)
	}
}

func TestCallUnreachable(t *testing.T) {
	a, b := listen(t, "a", nil), listen(t, "b", nil)
	where := addr(b)
	_ = b.Close()
	if _, err := a.Call(t.Context(), where, "x", nil); !errors.Is(err, ErrUnreachable) {
		t.Fatalf("call to a closed port: %v", err)
	}
}

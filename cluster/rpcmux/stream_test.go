package rpcmux

import (
	"bufio"
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// dialLine dials channel layer l to the mux at to and sends a line.
func dialLine(t *testing.T, l raft.StreamLayer, to *Mux, line string) net.Conn {
	t.Helper()
	c, err := l.Dial(raft.ServerAddress(addr(to)), 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	if _, err := io.WriteString(c, line+"\n"); err != nil {
		t.Fatal(err)
	}
	return c
}

// acceptLine accepts on l and reads a line, within a deadline.
func acceptLine(t *testing.T, l raft.StreamLayer) (net.Conn, string) {
	t.Helper()
	type accepted struct {
		c   net.Conn
		err error
	}
	ch := make(chan accepted, 1)
	go func() {
		c, err := l.Accept()
		ch <- accepted{c, err}
	}()
	var a accepted
	select {
	case a = <-ch:
	case <-time.After(5 * time.Second):
		t.Fatal("no connection accepted within 5s")
	}
	if a.err != nil {
		t.Fatal(a.err)
	}
	t.Cleanup(func() { _ = a.c.Close() })
	_ = a.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	line, err := bufio.NewReader(a.c).ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	return a.c, line[:len(line)-1]
}

// readClosed waits for c to be closed: by its peer (EOF, or a reset when the
// peer closed with our bytes unread) or here.
func readClosed(t *testing.T, c net.Conn) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, err := c.Read(make([]byte, 16))
	if !errors.Is(err, io.EOF) && !isReset(err) && !errors.Is(err, net.ErrClosed) {
		t.Fatalf("read %d bytes, err %v; want the connection closed", n, err)
	}
}

func TestChannelsAreDispatchedByName(t *testing.T) {
	a, b := listen(t, "a", nil), listen(t, "b", nil)
	ax, ay := a.StreamLayer("x"), a.StreamLayer("y")
	bx, by := b.StreamLayer("x"), b.StreamLayer("y")
	if ax.Addr().String() != addr(a) || bx.Addr().String() != addr(b) {
		t.Fatalf("layer addrs %s %s, mux addrs %s %s", ax.Addr(), bx.Addr(), addr(a), addr(b))
	}
	// Dial y first: the x listener must not see it.
	cy := dialLine(t, ay, b, "to y")
	cx := dialLine(t, ax, b, "to x")
	sx, got := acceptLine(t, bx)
	if got != "to x" {
		t.Fatalf("channel x accepted %q", got)
	}
	sy, got := acceptLine(t, by)
	if got != "to y" {
		t.Fatalf("channel y accepted %q", got)
	}
	// Both ways, raw bytes after the header.
	for _, p := range []struct{ from, to net.Conn }{{sx, cx}, {sy, cy}} {
		if _, err := io.WriteString(p.from, "back\n"); err != nil {
			t.Fatal(err)
		}
		_ = p.to.SetReadDeadline(time.Now().Add(5 * time.Second))
		if line, err := bufio.NewReader(p.to).ReadString('\n'); err != nil || line != "back\n" {
			t.Fatalf("reply %q %v", line, err)
		}
	}
}

func TestUnknownChannelIsClosed(t *testing.T) {
	a, b := listen(t, "a", nil), listen(t, "b", nil)
	c := dialLine(t, a.StreamLayer("nobody"), b, "hello")
	readClosed(t, c)
}

func TestChannelCloseClosesOnlyThatChannel(t *testing.T) {
	a, b := listen(t, "a", nil), listen(t, "b", nil)
	ax, ay := a.StreamLayer("x"), a.StreamLayer("y")
	bx, by := b.StreamLayer("x"), b.StreamLayer("y")
	cx := dialLine(t, ax, b, "x")
	cy := dialLine(t, ay, b, "y")
	acceptLine(t, bx)
	sy, _ := acceptLine(t, by)

	if err := bx.Close(); err != nil {
		t.Fatal(err)
	}
	readClosed(t, cx) // b closed its end of channel x
	if _, err := bx.Accept(); !errors.Is(err, ErrClosed) || !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Accept on a closed channel: %v", err)
	}
	if _, err := io.WriteString(cy, "still\n"); err != nil {
		t.Fatal(err)
	}
	_ = sy.SetReadDeadline(time.Now().Add(5 * time.Second))
	if line, err := bufio.NewReader(sy).ReadString('\n'); err != nil || line != "still\n" {
		t.Fatalf("channel y after x closed: %q %v", line, err)
	}

	// A closed channel can be opened again.
	bx2 := b.StreamLayer("x")
	dialLine(t, ax, b, "again")
	if _, got := acceptLine(t, bx2); got != "again" {
		t.Fatalf("reopened channel accepted %q", got)
	}
	_ = bx.Close() // closing the old layer again leaves the new one open
	dialLine(t, ax, b, "once more")
	if _, got := acceptLine(t, bx2); got != "once more" {
		t.Fatalf("reopened channel accepted %q", got)
	}
}

func TestOpeningAnOpenChannelPanics(t *testing.T) {
	m := listen(t, "a", nil)
	m.StreamLayer("x")
	defer func() {
		if recover() == nil {
			t.Fatal("no panic")
		}
	}()
	m.StreamLayer("x")
}

func TestCloseIsIdempotentAndUnblocksAccept(t *testing.T) {
	a, b := listen(t, "a", nil), listen(t, "b", nil)
	l := b.StreamLayer("x")
	errc := make(chan error, 1)
	go func() {
		_, err := l.Accept()
		errc <- err
	}()
	dialLine(t, a.StreamLayer("other"), b, "x") // Close must not wait for open connections
	b.Handle("s", echo)
	if _, err := call(a, b, "s", "hi"); err != nil {
		t.Fatal(err)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-errc:
		if !errors.Is(err, ErrClosed) {
			t.Fatalf("Accept after Close: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Accept still blocked after Close")
	}
	if err := b.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if n := openConns(b); n != 0 {
		t.Fatalf("%d connections open after Close", n)
	}
	if _, err := b.Call(t.Context(), addr(a), "s", nil); !errors.Is(err, ErrClosed) {
		t.Fatalf("Call on a closed mux: %v", err)
	}
	if _, err := b.StreamLayer("y").Dial(raft.ServerAddress(addr(a)), time.Second); !errors.Is(err, ErrClosed) {
		t.Fatalf("Dial on a closed mux: %v", err)
	}
	// The peer's pooled connection was closed by b: the next call finds no
	// one listening.
	if _, err := call(a, b, "s", "hi"); !errors.Is(err, ErrUnreachable) {
		t.Fatalf("call to a closed mux: %v", err)
	}
}

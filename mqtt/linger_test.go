package mqtt

import (
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"github.com/mqstream/mqstream/internal/testutil"
)

// lingerPair returns the server side of a TCP connection, wrapped by l
// and marked to linger, and the client side.
func lingerPair(t *testing.T, l *lingering) (*lingerConn, net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	server, client := acceptPair(t, ln)
	c := l.wrap(server)
	c.linger.Store(true)
	return c, client
}

// acceptPair dials ln, accepts the connection and closes ln; both sides
// are closed when the test ends.
func acceptPair(t *testing.T, ln net.Listener) (server, client net.Conn) {
	t.Helper()
	defer ln.Close()
	client, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	server, err = ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { server.Close() })
	return server, client
}

func lingeringNow(l *lingering) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.mu.conns)
}

// TestLingerSendsEOFAndEndsWhenClientCloses: a lingering close ends the
// server's sending side at once (the client reads what was written, then
// EOF), takes the client's writes without resetting, and closes when the
// client closes, long before the timeout.
func TestLingerSendsEOFAndEndsWhenClientCloses(t *testing.T) {
	l := newLingering(time.Hour)
	defer l.stop()
	c, client := lingerPair(t, l)
	if _, err := c.Write([]byte("bye")); err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Read(make([]byte, 1)); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("read after close: %v, want net.ErrClosed", err)
	}
	for i := 0; i < 100; i++ {
		if _, err := client.Write([]byte("late packet")); err != nil {
			t.Fatalf("client write %d during the linger: %v", i, err)
		}
	}
	_ = client.SetReadDeadline(time.Now().Add(5 * time.Second))
	got, err := io.ReadAll(client)
	if err != nil || string(got) != "bye" {
		t.Fatalf("client read %q, %v; want \"bye\" then EOF", got, err)
	}
	client.Close()
	testutil.Eventually(t, 5*time.Second, "the linger to end", func() bool { return lingeringNow(l) == 0 })
}

// TestLingerIsBounded: a client that never closes is closed on after the
// timeout.
func TestLingerIsBounded(t *testing.T) {
	l := newLingering(50 * time.Millisecond)
	defer l.stop()
	c, _ := lingerPair(t, l)
	_ = c.Close()
	if lingeringNow(l) != 1 {
		t.Fatal("the connection does not linger")
	}
	testutil.Eventually(t, 5*time.Second, "the linger to time out", func() bool { return lingeringNow(l) == 0 })
}

// TestLingerStopCutsShort: closing the listener ends every linger at once,
// and later closes do not linger.
func TestLingerStopCutsShort(t *testing.T) {
	l := newLingering(time.Hour)
	c, _ := lingerPair(t, l)
	_ = c.Close()
	stopped := make(chan struct{})
	go func() {
		l.stop()
		close(stopped)
	}()
	select {
	case <-stopped:
	case <-time.After(5 * time.Second):
		t.Fatal("stop waited for the linger's timeout")
	}
	c2, client := lingerPair(t, l)
	_ = c2.Close()
	if lingeringNow(l) != 0 {
		t.Fatal("a close after stop lingers")
	}
	_ = client.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := client.Read(make([]byte, 1)); !errors.Is(err, io.EOF) {
		t.Fatalf("client read after a close: %v, want EOF", err)
	}
}

// TestUnmarkedCloseDoesNotLinger: a connection the server did not end with
// a reason closes at once.
func TestUnmarkedCloseDoesNotLinger(t *testing.T) {
	l := newLingering(time.Hour)
	defer l.stop()
	c, _ := lingerPair(t, l)
	c.linger.Store(false)
	_ = c.Close()
	if lingeringNow(l) != 0 {
		t.Fatal("an unmarked connection lingers")
	}
}

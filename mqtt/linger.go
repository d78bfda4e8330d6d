package mqtt

import (
	"crypto/tls"
	"net"
	"sync"
	"sync/atomic"
	"time"

	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// Lingering close.
//
// When the server ends a connection with a reason (a DISCONNECT such as
// 0x93 "receive maximum exceeded", or a CONNACK that refuses the client),
// the client may still be writing: a client that answers each PUBREC it
// reads with a PUBREL still has PUBRECs to answer ahead of the DISCONNECT.
// mochi closes the socket right after writing the DISCONNECT; the client's
// next write meets a reset ("broken pipe"), and a client that stops on that
// error never reads the DISCONNECT and its reason code.
//
// So a connection the server ended with such a packet lingers, as web
// servers close connections: the server shuts down its sending side (the
// client reads the last packet, then the end of the stream), stops handing
// the client's packets to mochi, and reads and discards what still comes
// until the client closes its side or lingerTimeout has passed; then it
// closes the socket. mochi is done with the connection at once (its read
// returns, OnDisconnect runs); only the socket stays open a little longer.
// Closing the listener cuts every linger short.

// lingerTimeout bounds how long a connection lingers: long enough for a
// client to read the packets ahead of the DISCONNECT, short enough that
// sockets of clients that never close their side do not pile up.
const lingerTimeout = 2 * time.Second

// lingerConn is a connection of one of our listeners as mochi sees it.
type lingerConn struct {
	net.Conn
	lingers *lingering
	// linger is set once the server wrote the packet that ends the
	// connection (lingerHook): closing it lingers.
	linger    atomic.Bool
	closeOnce sync.Once
	// closing is set when a lingering close starts: mochi reads and
	// writes nothing more.
	closing atomic.Bool
	// readMu is held while mochi reads: the linger reads the socket only
	// once mochi's read has returned. It guards burst.
	readMu sync.Mutex
	burst  burstReader
	// deadlineMu orders mochi's read deadlines before the linger's: once
	// closing is set, mochi's are ignored.
	deadlineMu sync.Mutex
}

func (c *lingerConn) Read(p []byte) (int, error) {
	c.readMu.Lock()
	defer c.readMu.Unlock()
	if c.closing.Load() {
		return 0, net.ErrClosed
	}
	return c.burst.read(c.Conn, p)
}

func (c *lingerConn) Write(p []byte) (int, error) {
	if c.closing.Load() {
		return 0, net.ErrClosed
	}
	return c.Conn.Write(p)
}

func (c *lingerConn) SetDeadline(t time.Time) error {
	c.deadlineMu.Lock()
	defer c.deadlineMu.Unlock()
	if c.closing.Load() {
		return c.Conn.SetWriteDeadline(t)
	}
	return c.Conn.SetDeadline(t)
}

func (c *lingerConn) SetReadDeadline(t time.Time) error {
	c.deadlineMu.Lock()
	defer c.deadlineMu.Unlock()
	if c.closing.Load() {
		return nil
	}
	return c.Conn.SetReadDeadline(t)
}

// NetConn returns the connection it wraps (as tls.Conn.NetConn does).
func (c *lingerConn) NetConn() net.Conn { return c.Conn }

// Close closes the connection, lingering if the server ended it with a
// reason; it does not wait for the linger.
func (c *lingerConn) Close() error {
	var err error
	c.closeOnce.Do(func() {
		if !c.linger.Load() || !c.lingers.start(c) {
			err = c.Conn.Close()
		}
	})
	return err
}

// socket returns the network connection under c's TLS or WebSocket layers.
func (c *lingerConn) socket() net.Conn {
	conn := c.Conn
	for {
		switch t := conn.(type) {
		case *wsConn:
			conn = t.Conn
		case *tls.Conn:
			conn = t.NetConn()
		default:
			return conn
		}
	}
}

// lingering tracks a listener's lingering connections.
type lingering struct {
	timeout time.Duration
	// bursts holds the read buffers of busy connections (readburst.go).
	bursts *sync.Pool
	wg     sync.WaitGroup
	mu     struct {
		sync.Mutex
		stopped bool                     // the listener closed: no more lingers
		conns   map[*lingerConn]struct{} // lingering now
	}
}

func newLingering(timeout time.Duration) *lingering {
	l := &lingering{timeout: timeout, bursts: newBurstPool()}
	l.mu.conns = map[*lingerConn]struct{}{}
	return l
}

// wrap returns conn as mochi gets it.
func (l *lingering) wrap(conn net.Conn) *lingerConn {
	return &lingerConn{Conn: conn, lingers: l, burst: burstReader{pool: l.bursts}}
}

// start begins c's lingering close; false if the listener is closed (close
// c at once).
func (l *lingering) start(c *lingerConn) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.mu.stopped {
		return false
	}
	l.mu.conns[c] = struct{}{}
	l.wg.Add(1)
	c.deadlineMu.Lock()
	c.closing.Store(true)
	_ = c.Conn.SetReadDeadline(time.Now()) // wakes mochi's read
	c.deadlineMu.Unlock()
	if cw, ok := c.socket().(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite() // after the last packet: the client reads it, then EOF
	}
	go l.drain(c)
	return true
}

// drain reads and discards until the client closes, the timeout passes or
// the listener closes, then closes c.
func (l *lingering) drain(c *lingerConn) {
	defer l.wg.Done()
	// Wait for mochi's read, woken by start, to return; later ones see
	// closing and do not touch the socket.
	c.readMu.Lock()
	c.readMu.Unlock()
	sock := c.socket()
	l.mu.Lock()
	if !l.mu.stopped {
		_ = sock.SetReadDeadline(time.Now().Add(l.timeout))
	}
	l.mu.Unlock()
	buf := make([]byte, 2048)
	for {
		if _, err := sock.Read(buf); err != nil {
			break
		}
	}
	_ = c.Conn.Close()
	l.mu.Lock()
	delete(l.mu.conns, c)
	l.mu.Unlock()
}

// stop cuts every linger short and waits for them; later closes do not
// linger. It is idempotent.
func (l *lingering) stop() {
	l.mu.Lock()
	l.mu.stopped = true
	for c := range l.mu.conns {
		_ = c.socket().SetReadDeadline(time.Now())
	}
	l.mu.Unlock()
	l.wg.Wait()
}

// lingerHook marks the connections the server ends with a reason: after a
// DISCONNECT or a CONNACK that refuses the client, closing lingers.
type lingerHook struct{ mochi.HookBase }

func (h *lingerHook) ID() string { return "mqstream-linger" }

func (h *lingerHook) Provides(b byte) bool { return b == mochi.OnPacketSent }

func (h *lingerHook) OnPacketSent(cl *mochi.Client, pk packets.Packet, _ []byte) {
	t := pk.FixedHeader.Type
	if t != packets.Disconnect && (t != packets.Connack || pk.ReasonCode == packets.CodeSuccess.Code) {
		return
	}
	if c, ok := cl.Net.Conn.(*lingerConn); ok {
		c.linger.Store(true)
	}
}

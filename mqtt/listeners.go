package mqtt

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/gorilla/websocket"
	"github.com/mochi-mqtt/server/v2/listeners"
)

// tcpListener serves MQTT over TCP (or TLS) on a socket bound at
// construction, so the real address (port 0 in tests) is known before Serve.
type tcpListener struct {
	id  string
	ln  net.Listener
	log *slog.Logger
	// disconnect, if set, disconnects the listener's clients on Close
	// instead of mochi's function (see Broker.disconnectListener).
	disconnect func(listenerID string)
	// open, if set, is told of each connection before mochi serves it;
	// the function it returns, once mochi is done with it (takeover.go).
	open func(net.Conn) (closed func())
	// lingers closes connections the server ended with a reason (linger.go).
	lingers *lingering

	mu     sync.Mutex // guards closed
	closed bool
}

func newTCPListener(id, addr string, tlsConfig *tls.Config) (*tcpListener, error) {
	ln, err := listenTCP(addr)
	if err != nil {
		return nil, err
	}
	if tlsConfig != nil {
		ln = tls.NewListener(ln, tlsConfig)
	}
	return &tcpListener{id: id, ln: ln, lingers: newLingering(lingerTimeout)}, nil
}

func (l *tcpListener) ID() string       { return l.id }
func (l *tcpListener) Address() string  { return l.ln.Addr().String() }
func (l *tcpListener) Protocol() string { return "tcp" }

func (l *tcpListener) Init(log *slog.Logger) error {
	l.log = log
	return nil
}

func (l *tcpListener) Serve(establish listeners.EstablishFn) {
	var backoff time.Duration
	for {
		c, err := l.ln.Accept()
		if err != nil {
			if l.isClosed() || errors.Is(err, net.ErrClosed) {
				return
			}
			// Out of file descriptors and the like: wait a little and retry.
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			l.log.Warn("accept failed", "listener", l.id, "error", err, "retry_in", backoff)
			time.Sleep(backoff)
			continue
		}
		backoff = 0
		conn := l.lingers.wrap(c)
		go func() {
			growStack()
			if l.open != nil {
				defer l.open(conn)()
			}
			if err := establish(l.id, conn); err != nil && !errors.Is(err, io.EOF) {
				l.log.Debug("connection ended", "listener", l.id, "remote", conn.RemoteAddr().String(), "error", err)
			}
		}()
	}
}

// connectionStackPad is the frame growStack takes: a connection's
// goroutine (mochi's read loop) reaches about 32 KiB of stack while
// mochi processes CONNECT and the first SUBSCRIBE, which pass packets
// (about 800 bytes each) by value through deep call chains.
const connectionStackPad = 16 << 10

// growStack grows the calling goroutine's stack to 32 KiB at once, while
// it is nearly empty. Growing it later, deep in CONNECT or SUBSCRIBE
// processing, copies a full stack and adjusts the pointers of every
// frame, twice (8 to 16 to 32 KiB): runtime.newstack was 17% of the
// broker's CPU in a connect storm (docs/performance.md, round two). An
// idle connection's stack is shrunk by the collector as before.
//
//go:noinline
func growStack() {
	var pad [connectionStackPad]byte
	touchStack(pad[:])
}

// touchStack keeps growStack's frame from being optimised away.
//
//go:noinline
func touchStack(b []byte) { b[len(b)-1] = 0 }

func (l *tcpListener) isClosed() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.closed
}

func (l *tcpListener) Close(closeClients listeners.CloseFn) {
	l.mu.Lock()
	already := l.closed
	l.closed = true
	l.mu.Unlock()
	if !already {
		_ = l.ln.Close()
	}
	defer l.lingers.stop()
	if l.disconnect != nil {
		l.disconnect(l.id)
		return
	}
	closeClients(l.id)
}

// wsListener serves MQTT over WebSocket (subprotocol "mqtt", binary frames).
type wsListener struct {
	id       string
	ln       net.Listener
	srv      *http.Server
	upgrader websocket.Upgrader
	log      *slog.Logger
	estab    listeners.EstablishFn
	// disconnect, open and lingers: as for tcpListener.
	disconnect func(listenerID string)
	open       func(net.Conn) (closed func())
	lingers    *lingering
}

func newWSListener(id, addr string, tlsConfig *tls.Config) (*wsListener, error) {
	ln, err := listenTCP(addr)
	if err != nil {
		return nil, err
	}
	if tlsConfig != nil {
		ln = tls.NewListener(ln, tlsConfig)
	}
	l := &wsListener{
		id:      id,
		ln:      ln,
		lingers: newLingering(lingerTimeout),
		upgrader: websocket.Upgrader{
			Subprotocols: []string{"mqtt"},
			// MQTT clients are not browsers holding cookies for this origin;
			// authentication happens in CONNECT.
			CheckOrigin: func(*http.Request) bool { return true },
		},
	}
	l.srv = &http.Server{Handler: http.HandlerFunc(l.handle), ReadHeaderTimeout: 10 * time.Second}
	return l, nil
}

func (l *wsListener) ID() string       { return l.id }
func (l *wsListener) Address() string  { return l.ln.Addr().String() }
func (l *wsListener) Protocol() string { return "ws" }

func (l *wsListener) Init(log *slog.Logger) error {
	l.log = log
	return nil
}

func (l *wsListener) Serve(establish listeners.EstablishFn) {
	l.estab = establish
	if err := l.srv.Serve(l.ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		l.log.Error("websocket listener stopped", "listener", l.id, "error", err)
	}
}

func (l *wsListener) handle(w http.ResponseWriter, r *http.Request) {
	ws, err := l.upgrader.Upgrade(w, r, nil)
	if err != nil {
		return // the upgrader has answered with an HTTP error
	}
	conn := l.lingers.wrap(&wsConn{Conn: ws.UnderlyingConn(), ws: ws})
	defer conn.Close() // as ws.Close does, or lingering (linger.go)
	if l.open != nil {
		defer l.open(conn)()
	}
	if err := l.estab(l.id, conn); err != nil && !errors.Is(err, io.EOF) {
		l.log.Debug("connection ended", "listener", l.id, "remote", r.RemoteAddr, "error", err)
	}
}

func (l *wsListener) Close(closeClients listeners.CloseFn) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = l.srv.Shutdown(ctx)
	defer l.lingers.stop()
	if l.disconnect != nil {
		l.disconnect(l.id)
		return
	}
	closeClients(l.id)
}

// wsConn adapts a WebSocket to the byte stream mochi reads packets from:
// MQTT packets may span binary messages and a message may hold several.
// Deadlines go to the embedded TCP connection (safe to set concurrently),
// not to the websocket, whose deadline setters race with its writers.
type wsConn struct {
	net.Conn
	ws *websocket.Conn
	r  io.Reader // the current message, nil between messages
}

func (c *wsConn) Read(p []byte) (int, error) {
	for {
		if c.r == nil {
			mt, r, err := c.ws.NextReader()
			if err != nil {
				return 0, err
			}
			if mt != websocket.BinaryMessage {
				return 0, errors.New("websocket: MQTT needs binary messages")
			}
			c.r = r
		}
		n, err := c.r.Read(p)
		if errors.Is(err, io.EOF) {
			c.r = nil
			if n == 0 {
				continue
			}
			err = nil
		}
		return n, err
	}
}

func (c *wsConn) Write(p []byte) (int, error) {
	if err := c.ws.WriteMessage(websocket.BinaryMessage, p); err != nil {
		return 0, err
	}
	return len(p), nil
}

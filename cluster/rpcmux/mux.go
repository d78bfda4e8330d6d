package rpcmux

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// Errors, compared with errors.Is.
var (
	// ErrClosed: the Mux, or the channel, is closed.
	ErrClosed = errors.New("rpcmux: closed")
	// ErrRemote: the remote handler returned an error; its message follows.
	ErrRemote = errors.New("rpcmux: remote error")
	// ErrUnreachable: the peer could not be dialed, or the connection
	// failed before the response arrived. A call that failed so may or
	// may not have run.
	ErrUnreachable = errors.New("rpcmux: unreachable")
	// ErrTooLarge: a request or response is over MaxFrame.
	ErrTooLarge = errors.New("rpcmux: frame too large")
	// ErrNotSent comes with a call's error when none of the request was
	// written (no connection, or the call's context ended first): the
	// handler did not run, so sending it again cannot run it twice.
	ErrNotSent = errors.New("rpcmux: request not sent")
)

// HeaderTimeout bounds how long an accepted connection may take to send
// its header, and how long a stream channel may take to accept it.
const HeaderTimeout = 5 * time.Second

// responseWriteTimeout bounds writing one response, so that a caller that
// stopped reading holds a serving goroutine no longer than this.
const responseWriteTimeout = 10 * time.Second

// Options configure a Mux.
type Options struct {
	// NodeID is this node's id, sent in every connection header; handlers
	// see it as the caller.
	NodeID string
	// Advertise is the address peers dial ("" = the listener's address).
	// Set it when listening on a wildcard address.
	Advertise string
	// Logger receives the mux's logs (nil = slog.Default()).
	Logger *slog.Logger
	// Faults, when set, injects network faults (tests); nil = none.
	Faults *Faults
	// DialTimeout bounds connecting to a peer for a call (default 2 s:
	// peers are on one network; a slower connect is a fault to report).
	DialTimeout time.Duration
	// MaxIdlePerPeer is how many idle call connections are kept per
	// (address, service) (default 8: enough for the usual concurrency of
	// forwarded appends, more are dialed when needed and closed after).
	MaxIdlePerPeer int
}

// EnsureDefaults fills in the zero fields.
func (o *Options) EnsureDefaults() {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.DialTimeout <= 0 {
		o.DialTimeout = 2 * time.Second
	}
	if o.MaxIdlePerPeer <= 0 {
		o.MaxIdlePerPeer = 8
	}
}

// Mux is one node's listener, carrying stream channels and call services.
// It is safe for concurrent use.
type Mux struct {
	opts   Options
	ln     net.Listener
	addr   net.Addr // what peers dial
	self   string   // addr.String(): this mux in the Faults table
	log    *slog.Logger
	faults *Faults // nil = none

	// ctx is cancelled by Close: handlers' context, and the done signal of
	// every goroutine that waits.
	ctx       context.Context
	cancel    context.CancelFunc
	wg        sync.WaitGroup // the accept loop and one goroutine per accepted conn
	closeOnce sync.Once

	// mu guards what follows. It is never held across network I/O:
	// connections are collected under it and closed after.
	mu struct {
		sync.Mutex
		closed   bool
		channels map[string]*streamLayer // open stream channels by name
		handlers map[string]Handler      // call services by name
		conns    map[*muxConn]struct{}   // every open connection, dialed or accepted
		idle     map[poolKey][]*callConn // idle call connections, newest last
	}
}

// Listen starts a Mux on addr (host:port; port 0 picks one).
func Listen(addr string, opts Options) (*Mux, error) {
	opts.EnsureDefaults()
	if len(opts.NodeID) > maxNodeID {
		return nil, fmt.Errorf("rpcmux: node id %q: longer than %d", opts.NodeID, maxNodeID)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("rpcmux: listen %s: %w", addr, err)
	}
	m := &Mux{opts: opts, ln: ln, addr: ln.Addr(), faults: opts.Faults}
	if opts.Advertise != "" {
		m.addr = advertised(opts.Advertise)
	}
	m.self = m.addr.String()
	m.log = opts.Logger.With("component", "rpcmux", "addr", m.self)
	m.ctx, m.cancel = context.WithCancel(context.Background())
	m.mu.channels = make(map[string]*streamLayer)
	m.mu.handlers = make(map[string]Handler)
	m.mu.conns = make(map[*muxConn]struct{})
	m.mu.idle = make(map[poolKey][]*callConn)
	m.wg.Add(1)
	go m.acceptLoop()
	return m, nil
}

// advertised is an address given as a string.
type advertised string

func (a advertised) Network() string { return "tcp" }
func (a advertised) String() string  { return string(a) }

// Addr is the address peers dial to reach this mux.
func (m *Mux) Addr() net.Addr { return m.addr }

// Close stops the listener, closes every channel and connection (pooled,
// in use, accepted) and waits for the mux's goroutines, handlers included.
// Calls in flight fail with ErrClosed. Later calls return nil.
func (m *Mux) Close() error {
	var err error
	m.closeOnce.Do(func() {
		m.mu.Lock()
		m.mu.closed = true
		layers := make([]*streamLayer, 0, len(m.mu.channels))
		for _, l := range m.mu.channels {
			layers = append(layers, l)
		}
		conns := make([]*muxConn, 0, len(m.mu.conns))
		for c := range m.mu.conns {
			conns = append(conns, c)
		}
		m.mu.idle = nil
		m.mu.Unlock()

		m.cancel()
		err = m.ln.Close()
		for _, l := range layers {
			_ = l.Close()
		}
		for _, c := range conns {
			_ = c.Close()
		}
		m.wg.Wait()
		m.log.Debug("closed")
	})
	return err
}

func (m *Mux) closed() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.mu.closed
}

// acceptLoop accepts connections until the listener is closed.
func (m *Mux) acceptLoop() {
	defer m.wg.Done()
	var backoff time.Duration
	for {
		raw, err := m.ln.Accept()
		if err != nil {
			if m.closed() || errors.Is(err, net.ErrClosed) {
				return
			}
			// Out of file descriptors and the like: wait, as net/http does.
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			m.log.Warn("accept failed", "err", err, "retry_in", backoff)
			select {
			case <-m.ctx.Done():
				return
			case <-time.After(backoff):
			}
			continue
		}
		backoff = 0
		m.wg.Add(1)
		go m.serveConn(raw)
	}
}

// serveConn reads an accepted connection's header and hands it to its
// stream channel, or serves its calls.
func (m *Mux) serveConn(raw net.Conn) {
	defer m.wg.Done()
	log := m.log.With("remote", raw.RemoteAddr().String())
	// Tracked from the start, so that Close does not wait out the header
	// timeout of a connection that sends nothing.
	c, err := m.track(raw, nil)
	if err != nil {
		return
	}
	// Read the header unbuffered: on a stream connection, what follows it
	// is the channel's.
	_ = c.SetReadDeadline(time.Now().Add(HeaderTimeout))
	h, err := readHeader(c)
	if err != nil {
		level := slog.LevelDebug // port probes, peers going away, Close
		if errors.Is(err, errBadHeader) {
			level = slog.LevelWarn // something not ours, or another version of us
		}
		log.Log(m.ctx, level, "connection rejected", "err", err)
		_ = c.Close()
		return
	}
	_ = c.SetReadDeadline(time.Time{})
	log = log.With("kind", h.kind.String(), "name", h.name, "node", h.nodeID)
	var l *streamLayer
	if h.kind == kindStream {
		if l = m.claim(c, h.name); l == nil {
			log.Debug("no such channel; connection closed")
			_ = c.Close()
			return
		}
	}
	if err := m.faults.trackAccepted(c, m.self); err != nil {
		log.Debug("connection rejected", "err", err)
		_ = c.Close()
		return
	}
	if l != nil {
		m.handOff(c, l, log)
		return
	}
	m.serveCalls(c, h, log)
}

// muxConn is an open connection of this mux, tracked so that Close, a
// channel's Close and Faults can close it.
type muxConn struct {
	net.Conn
	m      *Mux
	layer  *streamLayer // the stream channel it belongs to (nil for calls); guarded by m.mu
	closed atomic.Bool
	once   sync.Once
	err    error
}

// Close closes the connection and forgets it; safe to call more than once.
func (c *muxConn) Close() error {
	c.once.Do(func() {
		c.closed.Store(true)
		c.m.untrack(c)
		c.m.faults.untrack(c)
		c.err = c.Conn.Close()
	})
	return c.err
}

// track registers raw as a connection of layer (nil = a call connection,
// or one accepted whose header is still to come). It closes raw and fails
// if the mux is closed or layer is no longer the open channel of its name.
func (m *Mux) track(raw net.Conn, layer *streamLayer) (*muxConn, error) {
	c := &muxConn{Conn: raw, m: m, layer: layer}
	var err error
	m.mu.Lock()
	switch {
	case m.mu.closed:
		err = ErrClosed
	case layer != nil && m.mu.channels[layer.name] != layer:
		err = fmt.Errorf("rpcmux: channel %q: %w", layer.name, ErrClosed)
	default:
		m.mu.conns[c] = struct{}{}
	}
	m.mu.Unlock()
	if err != nil {
		_ = raw.Close()
		return nil, err
	}
	return c, nil
}

func (m *Mux) untrack(c *muxConn) {
	m.mu.Lock()
	delete(m.mu.conns, c)
	m.mu.Unlock()
}

// dial connects to addr for h, bounded by ctx and timeout, and sends the
// header. Errors wrap ErrUnreachable, ErrClosed or ctx's error.
func (m *Mux) dial(ctx context.Context, addr string, timeout time.Duration, h header, layer *streamLayer) (*muxConn, error) {
	what := fmt.Sprintf("rpcmux: dial %s %q at %s", h.kind, h.name, addr)
	hdr, err := appendHeader(nil, h)
	if err != nil {
		return nil, err
	}
	if err := m.faults.check(m.self, addr); err != nil {
		return nil, fmt.Errorf("%s: %w: %w", what, ErrUnreachable, err)
	}
	d := net.Dialer{Timeout: timeout}
	raw, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, m.failed(ctx, what, err)
	}
	c, err := m.track(raw, layer)
	if err == nil {
		if err = m.faults.trackDialed(c, m.self, addr); err != nil {
			_ = c.Close()
		}
	}
	if err != nil {
		return nil, m.failed(ctx, what, err)
	}
	_ = c.SetWriteDeadline(time.Now().Add(timeout))
	if _, err := c.Write(hdr); err != nil {
		_ = c.Close()
		return nil, m.failed(ctx, what, err)
	}
	_ = c.SetWriteDeadline(time.Time{})
	return c, nil
}

// failed wraps err, met while doing what, in the sentinel that says why:
// ErrClosed if the mux is closed, ctx's error if it is done (a connection
// deadline set from ctx counts), errors wrapping a sentinel as they are,
// ErrUnreachable for the rest.
func (m *Mux) failed(ctx context.Context, what string, err error) error {
	deadline, hasDeadline := ctx.Deadline()
	switch {
	case m.closed():
		return fmt.Errorf("%s: %w", what, ErrClosed)
	case ctx.Err() != nil:
		return fmt.Errorf("%s: %w (%v)", what, ctx.Err(), err)
	case hasDeadline && !time.Now().Before(deadline) && errors.Is(err, os.ErrDeadlineExceeded):
		// os.ErrDeadlineExceeded from a deadline set to ctx's, just before
		// ctx's own timer fires.
		return fmt.Errorf("%s: %w (%v)", what, context.DeadlineExceeded, err)
	case errors.Is(err, ErrClosed), errors.Is(err, ErrUnreachable), errors.Is(err, ErrTooLarge):
		return fmt.Errorf("%s: %w", what, err)
	}
	return fmt.Errorf("%s: %w: %w", what, ErrUnreachable, err)
}

// sleep waits d, or until ctx or the mux is done.
func (m *Mux) sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-m.ctx.Done():
		return ErrClosed
	}
}

// isEOF tells a peer that closed its end from other read errors.
func isEOF(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, net.ErrClosed)
}

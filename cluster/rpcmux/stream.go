package rpcmux

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// StreamLayer opens the stream channel named channel (1..255 bytes), for
// raft.NewNetworkTransport: its Dial connects to a peer mux and announces
// channel, its Accept returns the connections peers announced for channel,
// its Close closes this channel only (its listener and its connections), and
// its Addr is the mux's address. Once closed, the channel can be opened
// again. Opening a channel that is open panics; on a closed Mux, the
// channel returned is closed.
func (m *Mux) StreamLayer(channel string) raft.StreamLayer {
	if len(channel) == 0 || len(channel) > maxName {
		panic(fmt.Sprintf("rpcmux: channel name %q: length must be 1..%d", channel, maxName))
	}
	l := &streamLayer{m: m, name: channel, accepted: make(chan net.Conn), closed: make(chan struct{})}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.mu.closed {
		l.once.Do(func() { close(l.closed) })
		return l
	}
	if _, dup := m.mu.channels[channel]; dup {
		panic(fmt.Sprintf("rpcmux: channel %q is already open", channel))
	}
	m.mu.channels[channel] = l
	return l
}

// streamLayer is one stream channel of a mux.
type streamLayer struct {
	m        *Mux
	name     string
	accepted chan net.Conn // unbuffered: handOff waits for Accept
	closed   chan struct{} // closed by Close
	once     sync.Once
}

// Accept waits for a connection announced for this channel.
func (l *streamLayer) Accept() (net.Conn, error) {
	select {
	case c := <-l.accepted:
		return c, nil
	case <-l.closed:
		return nil, fmt.Errorf("rpcmux: channel %q: %w: %w", l.name, ErrClosed, net.ErrClosed)
	}
}

// Close closes the channel and its connections; other channels carry on.
func (l *streamLayer) Close() error {
	l.once.Do(func() {
		close(l.closed)
		l.m.closeChannel(l)
	})
	return nil
}

// Addr is the mux's address.
func (l *streamLayer) Addr() net.Addr { return l.m.Addr() }

// Dial connects to the mux at address and announces this channel.
func (l *streamLayer) Dial(address raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	select {
	case <-l.closed:
		return nil, fmt.Errorf("rpcmux: channel %q: %w", l.name, ErrClosed)
	default:
	}
	m := l.m
	ctx, cancel := context.WithTimeout(m.ctx, timeout)
	defer cancel()
	if err := m.sleep(ctx, m.faults.latency()); err != nil {
		return nil, m.failed(ctx, fmt.Sprintf("rpcmux: dial stream %q at %s", l.name, address), err)
	}
	c, err := m.dial(ctx, string(address), timeout, header{kind: kindStream, name: l.name, nodeID: m.opts.NodeID}, l)
	if err != nil {
		return nil, err
	}
	return c, nil
}

// closeChannel forgets l, if it is still the open channel of its name, and
// closes its connections.
func (m *Mux) closeChannel(l *streamLayer) {
	var conns []*muxConn
	m.mu.Lock()
	if m.mu.channels[l.name] == l {
		delete(m.mu.channels, l.name)
	}
	for c := range m.mu.conns {
		if c.layer == l {
			conns = append(conns, c)
		}
	}
	m.mu.Unlock()
	for _, c := range conns {
		_ = c.Close()
	}
}

// claim gives accepted connection c to the open channel named name, and
// returns that channel; nil if there is none.
func (m *Mux) claim(c *muxConn, name string) *streamLayer {
	m.mu.Lock()
	defer m.mu.Unlock()
	l := m.mu.channels[name]
	if l != nil {
		c.layer = l
	}
	return l
}

// handOff gives accepted connection c to its channel's Accept, or closes it
// if the channel closes or does not accept in time.
func (m *Mux) handOff(c *muxConn, l *streamLayer, log *slog.Logger) {
	t := time.NewTimer(HeaderTimeout)
	defer t.Stop()
	select {
	case l.accepted <- c:
		return
	case <-l.closed:
	case <-m.ctx.Done():
	case <-t.C:
		log.Warn("channel did not accept the connection in time; closed", "timeout", HeaderTimeout)
	}
	_ = c.Close()
}

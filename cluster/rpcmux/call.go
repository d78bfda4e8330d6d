package rpcmux

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"
)

// Handler serves one call: from is the caller's node id (as its header
// said), req the request. A returned error reaches the caller as an error
// wrapping ErrRemote with err's message. ctx is cancelled when the Mux
// closes; a handler must return then. Handlers run concurrently, one per
// connection in use.
type Handler func(ctx context.Context, from string, req []byte) ([]byte, error)

// Handle registers h for the service named service (1..255 bytes). Register
// before peers call: a call to a service with no handler gets an error reply
// naming it. Registering a service twice panics.
func (m *Mux) Handle(service string, h Handler) {
	if len(service) == 0 || len(service) > maxName {
		panic(fmt.Sprintf("rpcmux: service name %q: length must be 1..%d", service, maxName))
	}
	if h == nil {
		panic(fmt.Sprintf("rpcmux: service %q: nil handler", service))
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, dup := m.mu.handlers[service]; dup {
		panic(fmt.Sprintf("rpcmux: service %q is already handled", service))
	}
	m.mu.handlers[service] = h
}

// Call sends req to service at the mux at addr and returns its response.
// ctx bounds the whole call, dial included; with neither a deadline nor a
// cancel, a call waits as long as the handler takes. Errors wrap
// ErrRemote (the handler failed; its message follows), ErrUnreachable (no
// connection, or it broke before the response), ErrClosed (this mux is
// closed), ErrTooLarge, or ctx's error; and ErrNotSent too when none of
// the request was written. Calls may run concurrently: each
// uses its own connection, from a pool of idle ones (see the package doc).
func (m *Mux) Call(ctx context.Context, addr, service string, req []byte) ([]byte, error) {
	what := fmt.Sprintf("rpcmux: call %q at %s", service, addr)
	buf, err := appendRequest(nil, req)
	if err != nil {
		return nil, err
	}
	if err := m.sleep(ctx, m.faults.latency()); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrNotSent, m.failed(ctx, what, err))
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrNotSent, m.failed(ctx, what, err))
	}
	key := poolKey{addr: addr, service: service}
	cc, err := m.idleConn(key)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrNotSent, what, err)
	}
	if cc == nil {
		c, err := m.dial(ctx, addr, m.opts.DialTimeout, header{kind: kindCall, name: service, nodeID: m.opts.NodeID}, nil)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrNotSent, err)
		}
		cc = &callConn{c: c, r: bufio.NewReader(c)}
	}

	if deadline, ok := ctx.Deadline(); ok {
		_ = cc.c.SetDeadline(deadline)
	}
	// A cancel without a deadline interrupts the exchange through the
	// connection's deadline too.
	stop := context.AfterFunc(ctx, func() { _ = cc.c.SetDeadline(time.Unix(1, 0)) })
	var status byte
	var payload []byte
	_, err = cc.c.Write(buf)
	if err == nil {
		status, payload, err = readResponse(cc.r)
	}
	if stopped := stop(); err != nil || !stopped {
		// Broken midway (where the stream stands is unknown), or ctx is
		// done and its AfterFunc may yet set a past deadline: not reused.
		_ = cc.c.Close()
		if err != nil {
			return nil, m.failed(ctx, what, err)
		}
	} else {
		_ = cc.c.SetDeadline(time.Time{})
		m.putIdle(key, cc)
	}
	if status == statusError {
		return nil, fmt.Errorf("%s: %w: %s", what, ErrRemote, payload)
	}
	return payload, nil
}

// poolKey names the idle call connections to one service of one peer (the
// header names the service, so a connection serves one).
type poolKey struct{ addr, service string }

// callConn is a call connection on the calling side.
type callConn struct {
	c *muxConn
	r *bufio.Reader
}

// idleConn takes an idle connection for key that is still open, or returns
// nil if there is none.
func (m *Mux) idleConn(key poolKey) (*callConn, error) {
	for {
		m.mu.Lock()
		if m.mu.closed {
			m.mu.Unlock()
			return nil, ErrClosed
		}
		list := m.mu.idle[key]
		if len(list) == 0 {
			m.mu.Unlock()
			return nil, nil
		}
		cc := list[len(list)-1]
		list[len(list)-1] = nil
		m.mu.idle[key] = list[:len(list)-1]
		m.mu.Unlock()
		// The server writes only when asked: anything readable on an idle
		// connection, EOF included, means it is not one to use.
		if !cc.c.closed.Load() && cc.r.Buffered() == 0 && quiet(cc.c.Conn) {
			return cc, nil
		}
		_ = cc.c.Close()
	}
}

// putIdle keeps cc for the next call to key, or closes it if enough are
// kept already or the mux is closed.
func (m *Mux) putIdle(key poolKey, cc *callConn) {
	m.mu.Lock()
	keep := !m.mu.closed && len(m.mu.idle[key]) < m.opts.MaxIdlePerPeer
	if keep {
		m.mu.idle[key] = append(m.mu.idle[key], cc)
	}
	m.mu.Unlock()
	if !keep {
		_ = cc.c.Close()
	}
}

// serveCalls answers the requests on an accepted call connection, one at a
// time, until it closes.
func (m *Mux) serveCalls(c *muxConn, h header, log *slog.Logger) {
	defer func() { _ = c.Close() }()
	r := bufio.NewReader(c)
	var out []byte
	for {
		req, err := readFrame(r)
		if err != nil {
			if !isEOF(err) && m.ctx.Err() == nil {
				log.Debug("call connection failed", "err", err)
			}
			return
		}
		resp, err := m.serve(h, req)
		out = out[:0]
		switch {
		case err != nil:
			out = appendResponse(out, statusError, []byte(err.Error()))
		case len(resp) > MaxFrame:
			msg := fmt.Sprintf("rpcmux: service %q: response of %d bytes: %v", h.name, len(resp), ErrTooLarge)
			out = appendResponse(out, statusError, []byte(msg))
		default:
			out = appendResponse(out, statusOK, resp)
		}
		_ = c.SetWriteDeadline(time.Now().Add(responseWriteTimeout))
		if _, err := c.Write(out); err != nil {
			log.Debug("call response not sent", "err", err)
			return
		}
	}
}

// noHandler is in the message of a call to a service the remote mux has
// no handler for (yet: a process registers its services while it
// starts).
const noHandler = "no handler for service"

// IsNoHandler reports whether err is a call's failure because the remote
// mux had no handler for the service: a node that restarted may register
// it a moment later, unlike a handler's own refusal.
func IsNoHandler(err error) bool {
	return errors.Is(err, ErrRemote) && strings.Contains(err.Error(), noHandler)
}

// serve runs the handler of h's service on req.
func (m *Mux) serve(h header, req []byte) ([]byte, error) {
	m.mu.Lock()
	handler := m.mu.handlers[h.name]
	m.mu.Unlock()
	if handler == nil {
		return nil, fmt.Errorf("rpcmux: %s %q on %s", noHandler, h.name, m.self)
	}
	return handler(m.ctx, h.nodeID, req)
}

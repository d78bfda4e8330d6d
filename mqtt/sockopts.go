package mqtt

import (
	"context"
	"net"
	"syscall"
	"time"
)

// TCP keep-alive of accepted MQTT connections: Go's defaults (probe after
// 15 s idle, every 15 s, 9 probes), so that a peer that vanished without a
// FIN is found even when its MQTT keep-alive is 0.
const (
	tcpKeepAliveIdle     = 15 * time.Second
	tcpKeepAliveInterval = 15 * time.Second
	tcpKeepAliveCount    = 9
)

// listenTCP binds a TCP listener whose accepted connections get their TCP
// keep-alive from the listening socket: Linux copies SO_KEEPALIVE,
// TCP_KEEPIDLE, TCP_KEEPINTVL and TCP_KEEPCNT into each connection it
// accepts, where Go's default sets them again on every connection, four
// setsockopt calls per CONNECT (3% of the broker's CPU in a connect storm,
// docs/performance.md). Where the options cannot be set on the listener,
// Go sets them per connection as before.
func listenTCP(addr string) (net.Listener, error) {
	var setErr error
	lc := net.ListenConfig{
		KeepAlive: -1, // set on the listening socket instead
		Control: func(_, _ string, c syscall.RawConn) error {
			if err := c.Control(func(fd uintptr) { setErr = setKeepAlive(int(fd)) }); err != nil {
				setErr = err
			}
			return nil
		},
	}
	ln, err := lc.Listen(context.Background(), "tcp", addr)
	if err != nil {
		return nil, err
	}
	if setErr != nil {
		_ = ln.Close()
		return net.Listen("tcp", addr) // Go's per-connection keep-alive
	}
	return ln, nil
}

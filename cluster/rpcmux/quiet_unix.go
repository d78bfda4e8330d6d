//go:build unix

package rpcmux

import (
	"errors"
	"net"
	"syscall"
)

// quiet reports whether c, an idle call connection, has nothing to read: no
// bytes and no EOF. It reads once, without blocking, from the socket (a
// pooled connection whose peer closed it reads EOF). A byte read is lost,
// but a connection with one is not used anyway.
func quiet(c net.Conn) bool {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return true
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	quiet := false
	var b [1]byte
	err = rc.Read(func(fd uintptr) bool {
		_, rerr := syscall.Read(int(fd), b[:])
		quiet = errors.Is(rerr, syscall.EAGAIN) || errors.Is(rerr, syscall.EWOULDBLOCK)
		return true // done, whatever the answer: never wait
	})
	return err == nil && quiet
}

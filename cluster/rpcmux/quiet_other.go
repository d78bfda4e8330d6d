//go:build !unix

package rpcmux

import "net"

// quiet cannot tell here; a connection the peer closed fails its next call.
func quiet(net.Conn) bool { return true }

//go:build !linux

package mqtt

import "errors"

// setKeepAlive is not tried outside Linux: whether accepted sockets
// inherit the options varies, so Go sets them per connection.
func setKeepAlive(int) error { return errors.New("keep-alive on the listening socket: Linux only") }

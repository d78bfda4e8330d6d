package mqtt

import (
	"net"
	"sync"
)

// Reading a connection.
//
// mochi reads each connection through a bufio.Reader of its own, made with
// the connection and held as long as it lives: with mochi's 2 KiB that was
// a tenth of what an idle connection costs. mochi's buffer is now small
// (mochiReadBuffer), and a busy connection still reads the socket in large
// bursts: once a read fills mochi's buffer (more is probably waiting), the
// next one reads up to readBurst bytes into a pooled buffer and hands them
// to mochi from there, and the buffer goes back to the pool as soon as it
// is drained. An idle connection waits on its socket with mochi's small
// buffer only.

const (
	// mochiReadBuffer is the size of mochi's read buffer per connection
	// (mochi.Options.ClientNetReadBufferSize): a CONNECT, SUBSCRIBE or
	// PINGREQ fits.
	mochiReadBuffer = 256
	// readBurst is the size of a pooled read while packets stream in.
	readBurst = 8 << 10
)

// burstReader reads a connection in bursts while it is busy (see above).
// It is used by one reader at a time (lingerConn.readMu).
type burstReader struct {
	pool *sync.Pool // of *[]byte of readBurst bytes
	// buf[start:end] are bytes read and not handed on yet; buf is nil
	// when there are none.
	buf        *[]byte
	start, end int
	// err is the error of the read that filled buf, returned once buf
	// is drained.
	err error
	// streaming: the last read filled what it was given, so the next one
	// goes through a pooled buffer.
	streaming bool
}

func newBurstPool() *sync.Pool {
	return &sync.Pool{New: func() any {
		b := make([]byte, readBurst)
		return &b
	}}
}

func (r *burstReader) read(conn net.Conn, p []byte) (int, error) {
	if r.buf != nil {
		n := copy(p, (*r.buf)[r.start:r.end])
		r.start += n
		if r.start == r.end {
			r.release()
		}
		return n, nil
	}
	if err := r.err; err != nil {
		r.err = nil
		return 0, err
	}
	if !r.streaming || len(p) >= readBurst || r.pool == nil {
		n, err := conn.Read(p)
		r.streaming = n == len(p) && len(p) > 0
		return n, err
	}
	b := r.pool.Get().(*[]byte)
	n, err := conn.Read(*b)
	r.streaming = n == len(*b)
	k := copy(p, (*b)[:n])
	if k == n {
		r.pool.Put(b)
		return k, err
	}
	r.buf, r.start, r.end, r.err = b, k, n, err
	return k, nil
}

// release returns the pooled buffer.
func (r *burstReader) release() {
	r.pool.Put(r.buf)
	r.buf, r.start, r.end = nil, 0, 0
}

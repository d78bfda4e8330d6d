package mqtt

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net"
	"testing"
)

// TestBurstReaderPassesEveryByte: a stream read through a small bufio
// reader over burstReader arrives byte for byte, then the end of the
// stream; the pooled buffer is handed back once drained, and a read that
// does not fill its buffer ends the burst.
func TestBurstReaderPassesEveryByte(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	want := make([]byte, 300_000)
	for i := range want {
		want[i] = byte(i * 7)
	}
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		// Writes of odd sizes, as packets come.
		for b := want; len(b) > 0; b = b[min(len(b), 1337):] {
			if _, err := c.Write(b[:min(len(b), 1337)]); err != nil {
				return
			}
		}
		c.Close()
	}()
	conn, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	r := &burstReader{pool: newBurstPool()}
	got, err := io.ReadAll(bufio.NewReaderSize(readerFunc(func(p []byte) (int, error) { return r.read(conn, p) }), mochiReadBuffer))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("read %d bytes, want %d, equal %v", len(got), len(want), bytes.Equal(got[:min(len(got), len(want))], want[:min(len(got), len(want))]))
	}
	if r.buf != nil {
		t.Fatal("a pooled buffer is held after the end of the stream")
	}
}

// TestBurstReaderKeepsTheErrorAfterPendingBytes: bytes read together
// with an error are handed on first, then the error.
func TestBurstReaderKeepsTheErrorAfterPendingBytes(t *testing.T) {
	r := &burstReader{pool: newBurstPool(), streaming: true}
	boom := errors.New("boom")
	src := readerConn{data: bytes.Repeat([]byte{1}, 600), err: boom}
	p := make([]byte, 256)
	var n int
	for {
		k, err := r.read(&src, p)
		n += k
		if err != nil {
			if !errors.Is(err, boom) || n != 600 {
				t.Fatalf("error %v after %d bytes, want boom after 600", err, n)
			}
			break
		}
	}
	// A read that does not fill its buffer ends the burst: no pooled
	// buffer while a connection waits.
	src = readerConn{data: []byte{1, 2, 3}}
	if k, err := r.read(&src, p); k != 3 || err != nil || r.streaming || r.buf != nil {
		t.Fatalf("small read: %d %v streaming %v", k, err, r.streaming)
	}
}

type readerFunc func([]byte) (int, error)

func (f readerFunc) Read(p []byte) (int, error) { return f(p) }

// readerConn is a net.Conn whose one read returns data and err together.
type readerConn struct {
	net.Conn
	data []byte
	err  error
}

func (c *readerConn) Read(p []byte) (int, error) {
	n := copy(p, c.data)
	c.data = c.data[n:]
	if len(c.data) == 0 {
		return n, c.err
	}
	return n, nil
}

package rpcmux

import (
	"bytes"
	"context"
	"testing"
)

// benchCall starts a caller and a server echoing requests, and returns one
// call of a 256-byte request.
func benchCall(b *testing.B) func() error {
	caller, server := listen(b, "a", nil), listen(b, "b", nil)
	server.Handle("echo", func(_ context.Context, _ string, req []byte) ([]byte, error) { return req, nil })
	to, req := addr(server), bytes.Repeat([]byte("r"), 256)
	b.SetBytes(int64(len(req)))
	b.ReportAllocs()
	return func() error {
		_, err := caller.Call(context.Background(), to, "echo", req)
		return err
	}
}

// BenchmarkCall is one call at a time.
func BenchmarkCall(b *testing.B) {
	call := benchCall(b)
	for b.Loop() {
		if err := call(); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkCallParallel is calls from GOMAXPROCS goroutines (times -cpu),
// each on its own pooled connection.
func BenchmarkCallParallel(b *testing.B) {
	call := benchCall(b)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := call(); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

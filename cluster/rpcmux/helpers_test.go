package rpcmux

import (
	"context"
	"errors"
	"syscall"
	"testing"
	"time"

	"github.com/mqstream/mqstream/internal/testutil"
)

// listen starts a mux on 127.0.0.1 with a random port, closed when the test
// ends.
func listen(t testing.TB, id string, faults *Faults) *Mux {
	t.Helper()
	m, err := Listen("127.0.0.1:0", Options{NodeID: id, Faults: faults, Logger: testutil.Logger().With("node", id)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Close() })
	return m
}

func addr(m *Mux) string { return m.Addr().String() }

// echo answers "from:req".
func echo(_ context.Context, from string, req []byte) ([]byte, error) {
	return append([]byte(from+":"), req...), nil
}

// call calls with a 5 s timeout.
func call(m *Mux, to *Mux, service, req string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := m.Call(ctx, addr(to), service, []byte(req))
	return string(resp), err
}

// idleConns counts m's idle call connections.
func idleConns(m *Mux) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	n := 0
	for _, list := range m.mu.idle {
		n += len(list)
	}
	return n
}

// openConns counts m's open connections.
func openConns(m *Mux) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.mu.conns)
}

// isReset: the peer closed with our bytes unread.
func isReset(err error) bool { return errors.Is(err, syscall.ECONNRESET) }

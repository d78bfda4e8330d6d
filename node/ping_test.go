package node

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/mqstream/mqstream/cluster/rpcmux"
)

// TestPingOverTCP: membership's TCP fallback counts a node that answers
// (this one), and one of an earlier version, whose mux answers that it
// has no ping service; not an address where nothing listens.
func TestPingOverTCP(t *testing.T) {
	n := startNode(t, clusterConfig(t, "n1", 1))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if !n.answersOverTCP(ctx, n.repl.rpcAddr()) {
		t.Fatal("a node does not answer its own ping")
	}
	older, err := rpcmux.Listen("127.0.0.1:0", rpcmux.Options{NodeID: "old"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = older.Close() })
	if !n.answersOverTCP(ctx, older.Addr().String()) {
		t.Fatal("a node without the ping service does not count as answering")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gone := ln.Addr().String()
	ln.Close()
	if n.answersOverTCP(ctx, gone) {
		t.Fatal("an address where nothing listens answers")
	}
}

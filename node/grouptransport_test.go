package node

import (
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"

	"github.com/mqstream/mqstream/cluster/rpcmux"
	"github.com/mqstream/mqstream/internal/testutil"
)

// TestGroupTransportReachesARestartedPeer: a group's own transport
// reaches a peer that restarted since the last call, at the first try
// (a leadership handover's TimeoutNow to a node back from a restart
// failed with EOF over the connection kept from before).
func TestGroupTransportReachesARestartedPeer(t *testing.T) {
	listen := func(addr, id string) *rpcmux.Mux {
		t.Helper()
		m, err := rpcmux.Listen(addr, rpcmux.Options{NodeID: id, Logger: testutil.Logger()})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = m.Close() })
		return m
	}
	// serve answers every TimeoutNow on tr until it closes.
	serve := func(tr *raft.NetworkTransport) {
		go func() {
			for rpc := range tr.Consumer() {
				rpc.Respond(&raft.TimeoutNowResponse{RPCHeader: raft.RPCHeader{ID: []byte("b")}}, nil)
			}
		}()
	}
	a := listen("127.0.0.1:0", "a")
	ta := groupTransport(a.StreamLayer("shard-0"), hclog.NewNullLogger())
	defer ta.Close()
	b := listen("127.0.0.1:0", "b")
	addr := b.Addr().String()
	tb := groupTransport(b.StreamLayer("shard-0"), hclog.NewNullLogger())
	serve(tb)
	call := func() error {
		var resp raft.TimeoutNowResponse
		return ta.TimeoutNow("b", raft.ServerAddress(addr), &raft.TimeoutNowRequest{RPCHeader: raft.RPCHeader{ID: []byte("a")}}, &resp)
	}
	if err := call(); err != nil {
		t.Fatalf("before the restart: %v", err)
	}
	_ = tb.Close()
	_ = b.Close()
	// The restarted peer listens on the same address.
	var b2 *rpcmux.Mux
	testutil.Eventually(t, 5*time.Second, "the peer listening again on "+addr, func() bool {
		m, err := rpcmux.Listen(addr, rpcmux.Options{NodeID: "b", Logger: testutil.Logger()})
		if err != nil {
			return false
		}
		b2 = m
		return true
	})
	t.Cleanup(func() { _ = b2.Close() })
	tb2 := groupTransport(b2.StreamLayer("shard-0"), hclog.NewNullLogger())
	defer tb2.Close()
	serve(tb2)
	for i := 0; i < 3; i++ {
		if err := call(); err != nil {
			t.Fatalf("call %d after the restart: %v", i+1, err)
		}
	}
}

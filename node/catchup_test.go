package node

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/mqstream/mqstream/cluster/rpcmux"
	"github.com/mqstream/mqstream/cluster/shards"
	"github.com/mqstream/mqstream/internal/testutil"
)

// TestNodeServesRecordFetches: a cluster node answers the record fetches
// of replicas catching up (shards.fetch) on its RPC address, from its
// store (the catch-up itself is tested in cluster/shards, over the same
// transports).
func TestNodeServesRecordFetches(t *testing.T) {
	n := startNode(t, clusterConfig(t, "n1", 1))
	testutil.Eventually(t, 20*time.Second, "n1 ready with its shards", n.Ready)
	var addr string
	for _, m := range n.Members() {
		if m.ID == "n1" {
			addr = m.RPC
		}
	}
	caller, err := rpcmux.Listen("127.0.0.1:0", rpcmux.Options{NodeID: "probe", Logger: testutil.Logger()})
	if err != nil {
		t.Fatal(err)
	}
	defer caller.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	// A malformed fetch reaches the handler, which refuses it.
	_, err = caller.Call(ctx, addr, shards.FetchService, []byte{0})
	if !errors.Is(err, rpcmux.ErrRemote) || !strings.Contains(err.Error(), shards.ErrBadEntry.Error()) {
		t.Fatalf("malformed fetch: %v", err)
	}
}

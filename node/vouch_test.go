package node

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mqstream/mqstream/internal/testutil"
)

// TestPartlyLostDataDirectoryIsRefused: a node whose Raft log was lost
// while its store stayed (it would vote with an empty log), or whose store
// was replaced under its Raft log, does not start, and says what happened.
func TestPartlyLostDataDirectoryIsRefused(t *testing.T) {
	nodes, cfgs := startClusterConfigs(t, nil)
	n2, n3 := nodes[1], nodes[2]
	for _, n := range []*Node{n2, n3} {
		if err := n.Close(context.Background()); err != nil {
			t.Fatal(err)
		}
	}

	// n3 loses its Raft log.
	if err := os.RemoveAll(filepath.Join(cfgs[2].Node.DataDir, "raft")); err != nil {
		t.Fatal(err)
	}
	if n, err := Open(cfgs[2], testutil.Logger()); err == nil {
		_ = n.Close(context.Background())
		t.Fatal("a node whose Raft log was lost started")
	} else if !errors.Is(err, ErrLostData) || !strings.Contains(err.Error(), "is empty: its Raft state was lost") || !strings.Contains(err.Error(), "node remove n3") {
		t.Fatalf("a node whose Raft log was lost: %v, want ErrLostData saying so", err)
	}

	// n2 keeps its Raft log, but its store is replaced by an empty one.
	entries, err := os.ReadDir(cfgs[1].Node.DataDir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if e.Name() != "raft" {
			if err := os.RemoveAll(filepath.Join(cfgs[1].Node.DataDir, e.Name())); err != nil {
				t.Fatal(err)
			}
		}
	}
	if n, err := Open(cfgs[1], testutil.Logger()); err == nil {
		_ = n.Close(context.Background())
		t.Fatal("a node whose store was replaced started")
	} else if !errors.Is(err, ErrLostData) || !strings.Contains(err.Error(), "part of the data directory was replaced") {
		t.Fatalf("a node whose store was replaced: %v, want ErrLostData saying so", err)
	}
}

package node

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/mqstream/mqstream/config"
	"github.com/mqstream/mqstream/internal/testutil"
	"github.com/mqstream/mqstream/streams"
)

// TestDataDirBelongsToOneNode: a data directory remembers the node and
// cluster it belongs to; starting it as another node, in another cluster
// or in the other mode is refused with what to do, and nothing in it is
// touched.
func TestDataDirBelongsToOneNode(t *testing.T) {
	log := testutil.Logger()
	open := func(cfg config.Config) error {
		n, err := Open(cfg, log)
		if err == nil {
			_ = n.Close(context.Background())
		}
		return err
	}
	// A standalone node's directory with data.
	standalone := testConfig(t.TempDir())
	n := startNode(t, standalone)
	if _, err := n.Store().Append(context.Background(), "s", streams.Record{Topic: "s/1", Payload: []byte("x")}); err != nil {
		t.Fatal(err)
	}
	if err := n.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	inCluster := clusterConfig(t, "n1", 1)
	inCluster.Node.DataDir = standalone.Node.DataDir
	if err := open(inCluster); !errors.Is(err, ErrDataDirMismatch) || !strings.Contains(err.Error(), "standalone") {
		t.Fatalf("standalone data in cluster mode: %v", err)
	}
	if err := open(standalone); err != nil {
		t.Fatalf("standalone again: %v", err)
	}

	// A cluster node's directory.
	c := clusterConfig(t, "n1", 1)
	if err := open(c); err != nil {
		t.Fatal(err)
	}
	for name, mod := range map[string]func(*config.Config){
		"another node id": func(cfg *config.Config) { cfg.Node.ID = "n2" },
		"another cluster": func(cfg *config.Config) { cfg.Cluster.Name = "other" },
		"standalone":      func(cfg *config.Config) { cfg.Cluster.Name = "" },
	} {
		cfg := c
		mod(&cfg)
		if err := open(cfg); !errors.Is(err, ErrDataDirMismatch) || !strings.Contains(err.Error(), `node "n1" of cluster "test"`) {
			t.Errorf("%s: %v", name, err)
		}
	}
	if err := open(c); err != nil {
		t.Fatalf("the same node again: %v", err)
	}

	// A directory whose cluster never formed (two nodes expected, one
	// started) holds nothing, and the refusal says so: a start refused
	// for a duplicate node.id leaves such a directory stamped.
	lone := clusterConfig(t, "n1", 2)
	if err := open(lone); err != nil {
		t.Fatal(err)
	}
	lone.Node.ID = "n2"
	if err := open(lone); !errors.Is(err, ErrDataDirMismatch) || !strings.Contains(err.Error(), "deleting it is safe") {
		t.Errorf("an empty directory of another node: %v", err)
	}
}

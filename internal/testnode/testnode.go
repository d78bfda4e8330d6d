// Package testnode runs real mqstream nodes for the tests of the packages
// above node (api, cmd, bench, and external test packages): listeners on
// 127.0.0.1 random ports, data in a temp dir. Packages below node cannot
// import it (node imports them) and wire their parts themselves.
package testnode

import (
	"context"
	"testing"
	"time"

	"github.com/mqstream/mqstream/config"
	"github.com/mqstream/mqstream/internal/testutil"
	"github.com/mqstream/mqstream/node"
)

// Config is the default configuration with data in dir, MQTT/TCP and HTTP
// on 127.0.0.1 random ports, no WebSocket listener, fast group progress
// flushes and no free-disk floor (tests must not depend on the machine's
// free disk space).
func Config(dir string) config.Config {
	cfg := config.Default()
	cfg.Node.ID = "test"
	cfg.Node.DataDir = dir
	cfg.MQTT.TCP, cfg.MQTT.WebSocket, cfg.HTTP.Listen = "127.0.0.1:0", "", "127.0.0.1:0"
	cfg.Groups.FlushInterval = 20 * time.Millisecond
	cfg.Storage.MinFree = 0
	return cfg
}

// Start opens and starts a node with cfg (logs discarded); it is closed
// when the test ends.
func Start(t testing.TB, cfg config.Config) *node.Node {
	t.Helper()
	n, err := node.Open(cfg, testutil.Logger())
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Start(); err != nil {
		_ = n.Close(context.Background())
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = n.Close(context.Background()) })
	return n
}

// StartCluster starts a three-node cluster (ids n1, n2, n3, cluster
// "test", 4 shards, replication factor 3) on 127.0.0.1 with each node's
// configuration adjusted by adjust (nil: none), and waits until every node
// is ready. The nodes are closed when the test ends; a test may close one
// before.
func StartCluster(t testing.TB, adjust func(*config.Config)) []*node.Node {
	t.Helper()
	var nodes []*node.Node
	for _, id := range []string{"n1", "n2", "n3"} {
		cfg := Config(t.TempDir())
		cfg.Node.ID = id
		cfg.Cluster.Name, cfg.Cluster.BootstrapExpect, cfg.Cluster.Shards = "test", 3, 4
		cfg.Cluster.Gossip, cfg.Cluster.RPC = "127.0.0.1:0", "127.0.0.1:0"
		if len(nodes) > 0 {
			for _, m := range nodes[0].Members() {
				if m.ID == nodes[0].ID() {
					cfg.Cluster.Seeds = []string{m.Gossip}
				}
			}
		}
		if adjust != nil {
			adjust(&cfg)
		}
		nodes = append(nodes, Start(t, cfg))
	}
	for _, n := range nodes {
		testutil.Eventually(t, 20*time.Second, n.ID()+" ready with its shards", n.Ready)
	}
	return nodes
}

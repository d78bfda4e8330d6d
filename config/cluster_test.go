package config

import (
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/mqstream/mqstream/shared"
)

func TestClusterSectionLoads(t *testing.T) {
	path := writeFile(t, `
node: {id: node1, data_dir: ./data/node1}
mqtt: {tcp: "127.0.0.1:1883", websocket: ""}
http: {listen: "127.0.0.1:8080"}
cluster:
  name: demo
  gossip: 127.0.0.1:7946
  rpc: 127.0.0.1:7947
  seeds: [127.0.0.1:7946, 127.0.0.1:7956]
  bootstrap_expect: 3
  shards: 12
  replication_factor: 3
  dead_node_timeout: 10m
`)
	cfg, err := Load(path, []string{"MQSTREAM_CLUSTER_SEEDS=127.0.0.1:7946,127.0.0.1:7966"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	cl := cfg.Cluster
	if !cl.Enabled() || cl.Name != "demo" || cl.BootstrapExpect != 3 || cl.DeadNodeTimeout != 10*time.Minute ||
		strings.Join(cl.Seeds, " ") != "127.0.0.1:7946 127.0.0.1:7966" {
		t.Fatalf("cluster %+v", cl)
	}
	if cfg, err := Load("", nil, nil); err != nil || cfg.Cluster.Enabled() {
		t.Fatalf("default is standalone: %+v %v", cfg.Cluster, err)
	}
}

func TestClusterErrorsNameTheKey(t *testing.T) {
	cases := []struct {
		name, file string
		want       []string
	}{
		{"no node id", "cluster: {name: demo}\n", []string{"node.id"}},
		{"clashing ports", `
node: {id: a}
mqtt: {tcp: "127.0.0.1:7946", websocket: ""}
cluster: {name: demo, gossip: "127.0.0.1:7946", rpc: "127.0.0.1:7946"}
`, []string{"cluster.rpc", "mqtt.tcp"}},
		{"wildcard without advertise", `
node: {id: a}
cluster: {name: demo, gossip: "0.0.0.0:7946", rpc: ":7947"}
`, []string{"cluster.gossip", "cluster.rpc", "cluster.advertise"}},
		{"bad values", `
node: {id: a}
cluster: {name: demo, gossip: "nonsense", seeds: ["x"], shards: 0, replication_factor: 9, bootstrap_expect: 0}
`, []string{"cluster.gossip", "cluster.seeds[0]", "cluster.shards", "cluster.replication_factor", "cluster.bootstrap_expect"}},
		{"a payload larger than a node forwards", `
node: {id: a}
mqtt: {max_payload: 33MiB}
cluster: {name: demo, gossip: "127.0.0.1:7946", rpc: "127.0.0.1:7947"}
`, []string{"mqtt.max_payload", "32MiB"}},
		{"no payload limit", `
node: {id: a}
mqtt: {max_payload: 0}
cluster: {name: demo, gossip: "127.0.0.1:7946", rpc: "127.0.0.1:7947"}
`, []string{"mqtt.max_payload", "no limit", "32MiB"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := Load(writeFile(t, c.file), nil, nil)
			if err == nil {
				t.Fatal("accepted")
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error does not mention %q:\n%v", w, err)
				}
			}
		})
	}
}

// TestClusterWidePartsNameEachGroupDefault: every group default has a
// part of its own, and changing one changes only its part (and the
// setting's fingerprint).
func TestClusterWidePartsNameEachGroupDefault(t *testing.T) {
	base := Default()
	parts := base.ClusterWideParts()["groups"]
	if n := reflect.TypeOf(shared.GroupOptions{}).NumField(); len(parts) != n {
		t.Fatalf("%d parts for the %d group options", len(parts), n)
	}
	changed := base
	changed.Groups.MaxWindow++
	after := changed.ClusterWideParts()["groups"]
	for i := range parts {
		if differs := parts[i].Print != after[i].Print; differs != (parts[i].Key == "groups.max_window") {
			t.Errorf("%s: %s -> %s", parts[i].Key, parts[i].Print, after[i].Print)
		}
		if strings.Contains(parts[i].Print, ".") || len(parts[i].Print) != 3 {
			t.Errorf("%s: print %q", parts[i].Key, parts[i].Print)
		}
	}
	if base.ClusterWide()["groups"] == changed.ClusterWide()["groups"] {
		t.Error("the setting's fingerprint did not change")
	}
}

package main

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	paho3 "github.com/eclipse/paho.mqtt.golang"
)

// A real network partition: three mqstream processes, each in a network
// namespace of its own joined by a bridge in the host's namespace (the
// test talks to every node through it), and iptables rules inside one
// namespace that drop the traffic between that node and the two others.
// Needs root, ip(8) and iptables(8); skipped where they are not available.

// netnsNet is a bridge and three namespaces with one address each on
// 10.201.<n>.0/24; the host side is .254.
type netnsNet struct {
	t      *testing.T
	suffix string
	subnet string   // "10.201.n"
	ns     []string // namespace names, node i at subnet.(i+1)
	bridge string
	cmds   [][]string // undo, run in reverse at cleanup
}

func (n *netnsNet) run(args ...string) error {
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s: %v: %s", strings.Join(args, " "), err, out)
	}
	return nil
}

func (n *netnsNet) addr(i int) string { return fmt.Sprintf("%s.%d", n.subnet, i+1) }

// newNetnsNet builds the network, or skips the test saying why.
func newNetnsNet(t *testing.T) *netnsNet {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("a real partition needs network namespaces: run as root")
	}
	for _, tool := range []string{"ip", "iptables"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("a real partition needs %s: %v", tool, err)
		}
	}
	var b [2]byte
	_, _ = rand.Read(b[:])
	n := &netnsNet{t: t, suffix: hex.EncodeToString(b[:]), subnet: fmt.Sprintf("10.201.%d", 1+int(b[0])%250)}
	n.bridge = "mqb" + n.suffix
	t.Cleanup(n.teardown)
	steps := [][]string{
		{"ip", "link", "add", n.bridge, "type", "bridge"},
		{"ip", "addr", "add", n.subnet + ".254/24", "dev", n.bridge},
		{"ip", "link", "set", n.bridge, "up"},
	}
	n.cmds = append(n.cmds, []string{"ip", "link", "del", n.bridge})
	// Docker sets the FORWARD policy to DROP; bridged traffic may go
	// through it (br_netfilter).
	steps = append(steps, []string{"iptables", "-I", "FORWARD", "-i", n.bridge, "-o", n.bridge, "-j", "ACCEPT"})
	for i := range 3 {
		ns := fmt.Sprintf("mqns%s%d", n.suffix, i)
		host, peer := fmt.Sprintf("mqv%s%d", n.suffix, i), fmt.Sprintf("mqp%s%d", n.suffix, i)
		n.ns = append(n.ns, ns)
		steps = append(steps,
			[]string{"ip", "netns", "add", ns},
			[]string{"ip", "link", "add", host, "type", "veth", "peer", "name", peer},
			[]string{"ip", "link", "set", host, "master", n.bridge},
			[]string{"ip", "link", "set", host, "up"},
			[]string{"ip", "link", "set", peer, "netns", ns},
			[]string{"ip", "-n", ns, "link", "set", peer, "name", "eth0"},
			[]string{"ip", "-n", ns, "addr", "add", n.addr(i) + "/24", "dev", "eth0"},
			[]string{"ip", "-n", ns, "link", "set", "eth0", "up"},
			[]string{"ip", "-n", ns, "link", "set", "lo", "up"},
		)
	}
	for _, s := range steps {
		if err := n.run(s...); err != nil {
			t.Skipf("network namespaces are not available here: %v", err)
		}
		switch {
		case s[0] == "ip" && s[1] == "netns" && s[2] == "add":
			n.cmds = append(n.cmds, []string{"ip", "netns", "del", s[3]})
		case s[0] == "iptables":
			n.cmds = append(n.cmds, []string{"iptables", "-D", "FORWARD", "-i", n.bridge, "-o", n.bridge, "-j", "ACCEPT"})
		}
	}
	return n
}

func (n *netnsNet) teardown() {
	for i := len(n.cmds) - 1; i >= 0; i-- {
		if err := n.run(n.cmds[i]...); err != nil {
			n.t.Logf("cleanup: %v", err)
		}
	}
}

// isolate drops the traffic between node i and the other nodes (the host
// still reaches it); heal removes that.
func (n *netnsNet) isolate(i int) {
	n.t.Helper()
	for j := range 3 {
		if j == i {
			continue
		}
		for _, rule := range [][]string{{"INPUT", "-s"}, {"OUTPUT", "-d"}} {
			if err := n.run("ip", "netns", "exec", n.ns[i], "iptables", "-A", rule[0], rule[1], n.addr(j), "-j", "DROP"); err != nil {
				n.t.Fatal(err)
			}
		}
	}
}

func (n *netnsNet) heal(i int) {
	n.t.Helper()
	for _, chain := range []string{"INPUT", "OUTPUT"} {
		if err := n.run("ip", "netns", "exec", n.ns[i], "iptables", "-F", chain); err != nil {
			n.t.Fatal(err)
		}
	}
}

// startNetnsCluster starts three nodes, one per namespace of net.
func startNetnsCluster(t *testing.T, net *netnsNet) *procCluster {
	t.Helper()
	c := &procCluster{bin: builtBinary(t)}
	dir := t.TempDir()
	var seeds []string
	for i := range 3 {
		seeds = append(seeds, net.addr(i)+":7946")
	}
	for i := range 3 {
		nd := &procNode{id: fmt.Sprintf("node%d", i+1), ns: net.ns[i], mqtt: net.addr(i) + ":1883", http: net.addr(i) + ":8080"}
		nd.config = filepath.Join(dir, nd.id+".yaml")
		nd.log = filepath.Join(dir, nd.id+".log")
		yaml := fmt.Sprintf(`node: {id: %s, data_dir: %s}
mqtt: {tcp: "%s", websocket: ""}
http: {listen: "%s"}
storage: {min_free: 0}
cluster:
  name: netns
  gossip: %s:7946
  rpc: %s:7947
  seeds: [%s]
  bootstrap_expect: 3
  shards: %d
  replication_factor: 3
`, nd.id, filepath.Join(dir, nd.id), nd.mqtt, nd.http, net.addr(i), net.addr(i), strings.Join(seeds, ", "), procShards)
		if err := os.WriteFile(nd.config, []byte(yaml), 0o600); err != nil {
			t.Fatal(err)
		}
		c.nodes = append(c.nodes, nd)
	}
	t.Cleanup(func() { c.logsIfFailed(t) })
	t.Cleanup(func() { c.stopAll(t, 20*time.Second) })
	for _, nd := range c.nodes {
		c.start(t, nd)
	}
	c.waitReady(t, c.nodes, 40*time.Second)
	return c
}

// TestNetnsPartitionOfTheLeader cuts the leader of a stream's shard off
// from the two other nodes with a real network partition: the majority
// elects a leader and acknowledges writes, the isolated node acknowledges
// none; after the heal every node holds the same records with every
// acknowledged one once, and MQTT routes between the nodes work again.
func TestNetnsPartitionOfTheLeader(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-process partition test: skipped with -short")
	}
	net := newNetnsNet(t)
	c := startNetnsCluster(t, net)
	const stream = "part"
	acked := map[string]bool{}
	publishSeq(t, c.nodes[0], "before", stream+"/a", "before", 10, acked)

	leader := c.node(t, shardLeader(t, c.nodes, stream))
	li := 0
	for i, nd := range c.nodes {
		if nd == leader {
			li = i
		}
	}
	majority := c.nodes[(li+1)%3]
	// A subscriber on the majority side, to see routes work again later.
	var mu sync.Mutex
	var live []string
	sub := paho3.NewClient(paho3.NewClientOptions().AddBroker("tcp://" + majority.mqtt).SetClientID("watcher").SetAutoReconnect(false))
	if tok := sub.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	defer sub.Disconnect(0)
	if tok := sub.Subscribe("live/#", 1, func(_ paho3.Client, m paho3.Message) {
		mu.Lock()
		live = append(live, string(m.Payload()))
		mu.Unlock()
	}); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}

	net.isolate(li)
	cutAt := time.Now()
	t.Logf("isolated %s (leader of %s's shard) from the other nodes", leader.id, stream)

	// The majority takes writes again once it elected a leader.
	n := 0
	waitFor(t, 30*time.Second, "20 writes acknowledged by the majority", func() (bool, string) {
		c := paho3.NewClient(paho3.NewClientOptions().AddBroker("tcp://" + majority.mqtt).SetClientID("during").SetAutoReconnect(false))
		if tok := c.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
			return false, fmt.Sprint(tok.Error())
		}
		defer c.Disconnect(0)
		for ; n < 20; n++ {
			p := fmt.Sprintf("during-%d", n)
			if tok := c.Publish(stream+"/b", 1, false, p); !tok.WaitTimeout(3*time.Second) || tok.Error() != nil {
				return false, fmt.Sprintf("%d acknowledged; %v", n, tok.Error())
			}
			acked[p] = true
		}
		return true, ""
	})
	t.Logf("the majority acknowledged writes again %s after the cut", time.Since(cutAt).Round(time.Millisecond))

	// The isolated node acknowledges nothing stored (it may accept the
	// connection: MQTT admission does not need the others).
	iso := paho3.NewClient(paho3.NewClientOptions().AddBroker("tcp://" + leader.mqtt).SetClientID("isolated").SetAutoReconnect(false))
	if tok := iso.Connect(); tok.WaitTimeout(5*time.Second) && tok.Error() == nil {
		tok := iso.Publish(stream+"/c", 1, false, "isolated-0")
		if tok.WaitTimeout(5*time.Second) && tok.Error() == nil {
			t.Fatalf("%s, cut off from the majority, acknowledged a stored publish", leader.id)
		}
		iso.Disconnect(0)
	}

	net.heal(li)
	t.Logf("healed after %s", time.Since(cutAt).Round(time.Millisecond))
	// Memberlist may not carry the cut-off node's refutation to a node
	// that declared it failed; that node's serf then reaches it again on
	// its reconnect timer (5 s, taken with probability 1/2 each time).
	waitFor(t, 60*time.Second, "three alive members on every node", func() (bool, string) {
		for _, nd := range c.nodes {
			var cl struct {
				Members []struct{ ID, Status string } `json:"members"`
			}
			if _, err := nd.getJSON("/v1/cluster", &cl); err != nil {
				return false, err.Error()
			}
			alive := 0
			for _, m := range cl.Members {
				if m.Status == "alive" {
					alive++
				}
			}
			if alive != 3 {
				return false, fmt.Sprintf("%s sees %+v", nd.id, cl.Members)
			}
		}
		return true, ""
	})
	recs := sameStream(t, c.nodes, stream, acked, 30*time.Second)
	t.Logf("after the heal every node holds the same %d records of %s, all %d acknowledged among them", len(recs), stream, len(acked))

	// Routes: a message published on the once-isolated node reaches the
	// subscriber on the majority side (routes were dropped and re-synced).
	pub := paho3.NewClient(paho3.NewClientOptions().AddBroker("tcp://" + leader.mqtt).SetClientID("after").SetAutoReconnect(false))
	if tok := pub.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	defer pub.Disconnect(0)
	k := 0
	waitFor(t, 20*time.Second, "a message from the healed node reaches the majority's subscriber", func() (bool, string) {
		mu.Lock()
		got := len(live)
		mu.Unlock()
		if got > 0 {
			return true, ""
		}
		pub.Publish("live/after", 1, false, fmt.Sprintf("after-%d", k)).WaitTimeout(2 * time.Second)
		k++
		return false, fmt.Sprintf("%d published", k)
	})
}

package main

// Multi-process cluster tests: the mqstream binary, built once, runs as three
// `mqstream serve --config nodeN.yaml` processes on 127.0.0.1; the tests
// drive them over MQTT and REST, SIGKILL the leader of a stream's shard under
// load and restart it. Each node's stdout and stderr go to a file in the
// test's temp dir; when a test fails, the tail of every node's log is printed.

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	paho3 "github.com/eclipse/paho.mqtt.golang"

	"github.com/mqstream/mqstream/cluster/shards"
)

// procShards is the shard count of the process clusters.
const procShards = 4

// mqstreamBinary is the binary the process tests run, built once per test
// run in a temp dir that TestMain removes.
var mqstreamBinary struct {
	once sync.Once
	dir  string
	path string
	err  error
}

func TestMain(m *testing.M) {
	code := m.Run()
	if mqstreamBinary.dir != "" {
		_ = os.RemoveAll(mqstreamBinary.dir)
	}
	os.Exit(code)
}

// builtBinary builds ./cmd/mqstream once. It is built without the race
// detector, whatever the test binary was built with: the nodes are the
// system under test, and a race-instrumented build is several times slower
// to compile and to run.
func builtBinary(t *testing.T) string {
	t.Helper()
	b := &mqstreamBinary
	b.once.Do(func() {
		goTool, err := exec.LookPath("go")
		if err != nil {
			goTool = filepath.Join(runtime.GOROOT(), "bin", "go")
		}
		if b.dir, b.err = os.MkdirTemp("", "mqstream-bin-"); b.err != nil {
			return
		}
		b.path = filepath.Join(b.dir, "mqstream")
		start := time.Now()
		out, err := exec.Command(goTool, "build", "-o", b.path, ".").CombinedOutput()
		if err != nil {
			b.err = fmt.Errorf("%s build: %v\n%s", goTool, err, out)
			return
		}
		t.Logf("built %s in %s", b.path, time.Since(start).Round(time.Millisecond))
	})
	if b.err != nil {
		t.Fatal(b.err)
	}
	return b.path
}

// procNode is one `mqstream serve` process and what it keeps across
// restarts: its configuration file, data directory and log file.
type procNode struct {
	id, config, log string
	mqtt, http      string // addresses
	// ns, if set, is the network namespace the process runs in
	// (partition_test.go).
	ns string

	cmd     *exec.Cmd
	exited  chan struct{} // closed once cmd has been waited for
	waitErr error         // how cmd exited; set before exited is closed
	killed  bool          // the test SIGKILLed cmd
}

// procCluster is three nodes that found a cluster together.
type procCluster struct {
	dir   string // configurations, data dirs and logs
	bin   string
	nodes []*procNode
}

// freePorts returns n distinct ports free on 127.0.0.1 for TCP and UDP
// alike (gossip binds both on one port).
func freePorts(t *testing.T, n int) []int {
	t.Helper()
	var ports []int
	var closers []func() error
	defer func() {
		for _, c := range closers {
			_ = c()
		}
	}()
	for tries := 0; len(ports) < n; tries++ {
		if tries > 100 {
			t.Fatalf("found only %d free TCP+UDP ports in %d tries", len(ports), tries)
		}
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		closers = append(closers, l.Close)
		port := l.Addr().(*net.TCPAddr).Port
		u, err := net.ListenPacket("udp", fmt.Sprintf("127.0.0.1:%d", port))
		if err != nil {
			continue // UDP side taken: keep the TCP listener open so it is not picked again
		}
		closers = append(closers, u.Close)
		ports = append(ports, port)
	}
	return ports
}

// startProcCluster writes three configurations (distinct ports, temp data
// dirs), starts the three processes and waits until /readyz answers 200 on
// every node. Every process is stopped when the test ends: gracefully with
// SIGTERM, and a node that does not exit within 20 s fails the test.
func startProcCluster(t *testing.T) *procCluster {
	t.Helper()
	if testing.Short() {
		t.Skip("multi-process cluster test: skipped with -short")
	}
	c := &procCluster{bin: builtBinary(t), dir: t.TempDir()}
	dir := c.dir
	ports := freePorts(t, 12) // per node: MQTT, HTTP, gossip, RPC
	var seeds []string
	for i := range 3 {
		seeds = append(seeds, fmt.Sprintf("127.0.0.1:%d", ports[4*i+2]))
	}
	for i := range 3 {
		nd := &procNode{id: fmt.Sprintf("node%d", i+1),
			mqtt: fmt.Sprintf("127.0.0.1:%d", ports[4*i]), http: fmt.Sprintf("127.0.0.1:%d", ports[4*i+1])}
		writeProcConfig(t, nd, dir, seeds[i], ports[4*i+3], seeds)
		c.nodes = append(c.nodes, nd)
	}
	// Cleanups run last registered first: the logs are printed after the
	// processes stopped.
	t.Cleanup(func() { c.logsIfFailed(t) })
	t.Cleanup(func() {
		start := time.Now()
		c.stopAll(t, 20*time.Second)
		t.Logf("the nodes stopped (SIGTERM) in %s", time.Since(start).Round(time.Millisecond))
	})
	t.Cleanup(func() { c.stateIfFailed(t) })
	start := time.Now()
	for _, nd := range c.nodes {
		c.start(t, nd)
	}
	c.waitReady(t, c.nodes, 30*time.Second)
	t.Logf("three processes ready in %s", time.Since(start).Round(time.Millisecond))
	return c
}

// writeProcConfig writes nd's configuration (its data dir and log under
// dir) for a cluster member gossiping on gossip, with RPC on rpcPort.
func writeProcConfig(t *testing.T, nd *procNode, dir, gossip string, rpcPort int, seeds []string) {
	t.Helper()
	nd.config = filepath.Join(dir, nd.id+".yaml")
	nd.log = filepath.Join(dir, nd.id+".log")
	yaml := fmt.Sprintf(`node:
  id: %s
  data_dir: %s
mqtt:
  tcp: %s
  websocket: ""
http:
  listen: %s
  pprof: true
storage:
  min_free: 0
cluster:
  name: proctest
  gossip: %s
  rpc: 127.0.0.1:%d
  seeds: [%s]
  bootstrap_expect: 3
  shards: %d
  replication_factor: 3
`, nd.id, filepath.Join(dir, nd.id), nd.mqtt, nd.http, gossip, rpcPort, strings.Join(seeds, ", "), procShards)
	if err := os.WriteFile(nd.config, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
}

// logsIfFailed prints the end of every node's log when the test failed.
func (c *procCluster) logsIfFailed(t *testing.T) {
	if t.Failed() {
		for _, nd := range c.nodes {
			t.Logf("last lines of %s's log:\n%s", nd.id, tailLines(nd.log, 60))
		}
	}
}

// stateIfFailed, when the test failed, logs what every running node says
// of the cluster (GET /v1/cluster: leaders, terms, lags) and saves it,
// the node's goroutines and its whole log in a directory that outlives
// the test, so that a replica that did not catch up can be told from a
// stuck state machine afterwards.
func (c *procCluster) stateIfFailed(t *testing.T) {
	if !t.Failed() {
		return
	}
	dir, err := os.MkdirTemp("", "mqstream-failed-")
	if err != nil {
		t.Logf("no directory for the nodes' goroutines: %v", err)
		return
	}
	for _, nd := range c.nodes {
		if b, err := os.ReadFile(nd.log); err == nil {
			_ = os.WriteFile(filepath.Join(dir, nd.id+".log"), b, 0o600)
		}
		if !nd.running() {
			continue
		}
		for _, get := range []struct{ path, file string }{
			{"/v1/cluster", nd.id + "-cluster.json"},
			{"/v1/cluster/raft", nd.id + "-raft.json"},
			{"/debug/pprof/goroutine?debug=2", nd.id + "-goroutines.txt"},
		} {
			resp, err := procHTTP.Get("http://" + nd.http + get.path)
			if err != nil {
				t.Logf("%s: GET %s: %v", nd.id, get.path, err)
				continue
			}
			b, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err != nil {
				t.Logf("%s: GET %s: %v", nd.id, get.path, err)
				continue
			}
			if err := os.WriteFile(filepath.Join(dir, get.file), b, 0o600); err != nil {
				t.Logf("%s: %v", nd.id, err)
			}
			if strings.HasSuffix(get.file, ".json") {
				t.Logf("%s: GET %s:\n%s", nd.id, get.path, b)
			}
		}
	}
	t.Logf("the nodes' logs, cluster state and goroutines are in %s", dir)
}

// start runs nd's process, its output appended to nd's log file.
func (c *procCluster) start(t *testing.T, nd *procNode) {
	t.Helper()
	f, err := os.OpenFile(nd.log, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(f, "=== test: %s serve --config %s at %s\n", c.bin, nd.config, time.Now().Format(time.RFC3339Nano))
	nd.cmd = exec.Command(c.bin, "serve", "--config", nd.config)
	if nd.ns != "" {
		// ip execs the binary: the process (and its pid) is mqstream's.
		nd.cmd = exec.Command("ip", "netns", "exec", nd.ns, c.bin, "serve", "--config", nd.config)
	}
	nd.cmd.Stdout, nd.cmd.Stderr = f, f
	if err := nd.cmd.Start(); err != nil {
		f.Close()
		t.Fatal(err)
	}
	nd.exited, nd.waitErr, nd.killed = make(chan struct{}), nil, false
	go func(nd *procNode, cmd *exec.Cmd, exited chan struct{}) {
		err := cmd.Wait()
		fmt.Fprintf(f, "=== test: process exited: %v\n", err)
		f.Close()
		nd.waitErr = err
		close(exited)
	}(nd, nd.cmd, nd.exited)
}

// running reports whether nd's process was started and has not exited.
func (nd *procNode) running() bool {
	if nd.exited == nil {
		return false
	}
	select {
	case <-nd.exited:
		return false
	default:
		return true
	}
}

// kill SIGKILLs nd and waits until the process is gone.
func (nd *procNode) kill(t *testing.T) {
	t.Helper()
	nd.killed = true
	if err := nd.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatalf("SIGKILL %s: %v", nd.id, err)
	}
	<-nd.exited
}

// stop sends nd SIGTERM and waits until it exits, cleanly, within
// timeout.
func (nd *procNode) stop(t *testing.T, timeout time.Duration) {
	t.Helper()
	if err := nd.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatalf("SIGTERM %s: %v", nd.id, err)
	}
	select {
	case <-nd.exited:
		if nd.waitErr != nil {
			t.Fatalf("%s exited with %v after SIGTERM", nd.id, nd.waitErr)
		}
	case <-time.After(timeout):
		t.Fatalf("%s still running %s after SIGTERM", nd.id, timeout)
	}
}

// stopAll sends SIGTERM to every running node and waits for them to exit.
// A node that exited on its own before, that exits with an error, or that
// is still running after timeout (it is SIGKILLed then) fails the test.
func (c *procCluster) stopAll(t *testing.T, timeout time.Duration) {
	var stopping []*procNode
	for _, nd := range c.nodes {
		switch {
		case nd.running():
			_ = nd.cmd.Process.Signal(syscall.SIGTERM)
			stopping = append(stopping, nd)
		case nd.exited != nil && !nd.killed:
			t.Errorf("%s exited on its own: %v", nd.id, nd.waitErr)
		}
	}
	deadline := time.After(timeout)
	for _, nd := range stopping {
		select {
		case <-nd.exited:
			if nd.waitErr != nil {
				t.Errorf("%s exited with %v after SIGTERM", nd.id, nd.waitErr)
			}
		case <-deadline:
			t.Errorf("%s still running %s after SIGTERM; killing it", nd.id, timeout)
			_ = nd.cmd.Process.Signal(syscall.SIGKILL)
			<-nd.exited
		}
	}
}

// tailLines returns the last n lines of the file at path.
func tailLines(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

var procHTTP = &http.Client{Timeout: 5 * time.Second}

// getJSON fetches path from nd's HTTP API into out and returns the status.
func (nd *procNode) getJSON(path string, out any) (int, error) {
	resp, err := procHTTP.Get("http://" + nd.http + path)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if out == nil {
		return resp.StatusCode, nil
	}
	return resp.StatusCode, json.NewDecoder(resp.Body).Decode(out)
}

// waitFor polls cond every 20 ms until it holds; past timeout it fails the
// test with what, and the state cond last described.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ok, state := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s; last seen: %s", timeout, what, state)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (c *procCluster) waitReady(t *testing.T, nodes []*procNode, timeout time.Duration) {
	t.Helper()
	for _, nd := range nodes {
		waitFor(t, timeout, nd.id+" /readyz 200", func() (bool, string) {
			if !nd.running() {
				t.Fatalf("%s exited while starting", nd.id)
			}
			var body map[string]string
			code, err := nd.getJSON("/readyz", &body)
			return code == http.StatusOK, fmt.Sprintf("%d %v %v", code, body, err)
		})
	}
}

// shardLeader waits until every node of nodes names the same leader of
// stream's shard in GET /v1/cluster, and returns it.
func shardLeader(t *testing.T, nodes []*procNode, stream string) string {
	t.Helper()
	shard := shards.ShardOf(stream, procShards)
	var leader string
	waitFor(t, 20*time.Second, fmt.Sprintf("one leader of shard %d on %d nodes", shard, len(nodes)), func() (bool, string) {
		var seen []string
		for _, nd := range nodes {
			var cl struct {
				Shards []shards.ShardStatus `json:"shards"`
			}
			if code, err := nd.getJSON("/v1/cluster", &cl); code != http.StatusOK || err != nil || len(cl.Shards) != procShards {
				return false, fmt.Sprintf("%s: %d %v %+v", nd.id, code, err, cl.Shards)
			}
			seen = append(seen, nd.id+"->"+cl.Shards[shard].Leader)
			leader = cl.Shards[shard].Leader
		}
		for _, s := range seen {
			if !strings.HasSuffix(s, "->"+leader) || leader == "" {
				return false, strings.Join(seen, " ")
			}
		}
		return true, ""
	})
	return leader
}

func (c *procCluster) node(t *testing.T, id string) *procNode {
	t.Helper()
	for _, nd := range c.nodes {
		if nd.id == id {
			return nd
		}
	}
	t.Fatalf("no node %q", id)
	return nil
}

// storedRecord is a record as GET /v1/streams/{name}/records shows it.
type storedRecord struct {
	Offset  uint64
	Payload string
}

// readStream reads all of stream from nd over REST: the count from GET
// /v1/streams/{name}, the records page by page.
func readStream(nd *procNode, stream string) ([]storedRecord, error) {
	var info struct {
		FirstOffset uint64 `json:"first_offset"`
		NextOffset  uint64 `json:"next_offset"`
		Records     int64  `json:"records"`
	}
	if code, err := nd.getJSON("/v1/streams/"+stream, &info); code != http.StatusOK || err != nil {
		return nil, fmt.Errorf("%s: GET /v1/streams/%s: %d %v", nd.id, stream, code, err)
	}
	var out []storedRecord
	for from := info.FirstOffset; from < info.NextOffset; {
		var page struct {
			Records []struct {
				Offset   uint64          `json:"offset"`
				Payload  json.RawMessage `json:"payload"`
				Encoding string          `json:"encoding"`
			} `json:"records"`
			NextOffset uint64 `json:"next_offset"`
		}
		path := fmt.Sprintf("/v1/streams/%s/records?from_offset=%d&limit=10000", stream, from)
		if code, err := nd.getJSON(path, &page); code != http.StatusOK || err != nil {
			return nil, fmt.Errorf("%s: GET %s: %d %v", nd.id, path, code, err)
		}
		if len(page.Records) == 0 {
			break
		}
		for _, r := range page.Records {
			p := string(r.Payload)
			if r.Encoding == "text" {
				if err := json.Unmarshal(r.Payload, &p); err != nil {
					return nil, err
				}
			}
			out = append(out, storedRecord{r.Offset, p})
		}
		from = page.NextOffset
	}
	if int64(len(out)) != info.Records {
		return nil, fmt.Errorf("%s: %s lists %d records, %d read", nd.id, stream, info.Records, len(out))
	}
	return out, nil
}

// sameStream waits until every node of nodes holds the same records of
// stream (same payloads at the same offsets, offsets dense from 0), among
// them every payload of want, and returns them. A payload stored twice
// fails the test: the publishers never send one twice.
func sameStream(t *testing.T, nodes []*procNode, stream string, want map[string]bool, timeout time.Duration) []storedRecord {
	t.Helper()
	var ref []storedRecord
	waitFor(t, timeout, fmt.Sprintf("the same %s on %d nodes with all %d acknowledged payloads", stream, len(nodes), len(want)), func() (bool, string) {
		var counts []string
		ref = nil
		for i, nd := range nodes {
			recs, err := readStream(nd, stream)
			if err != nil {
				return false, err.Error()
			}
			counts = append(counts, fmt.Sprintf("%s:%d", nd.id, len(recs)))
			if i > 0 && !slices.Equal(recs, ref) {
				return false, strings.Join(counts, " ") + " (differ)"
			}
			ref = recs
		}
		present := map[string]bool{}
		for _, r := range ref {
			present[r.Payload] = true
		}
		for p := range want {
			if !present[p] {
				return false, fmt.Sprintf("%s; acknowledged %q missing", strings.Join(counts, " "), p)
			}
		}
		return true, ""
	})
	seen := map[string]uint64{}
	for i, r := range ref {
		if r.Offset != uint64(i) {
			t.Fatalf("%s: record %d has offset %d (offsets not dense from 0)", stream, i, r.Offset)
		}
		if o, dup := seen[r.Payload]; dup {
			t.Fatalf("%s: payload %q stored twice, at offsets %d and %d", stream, r.Payload, o, r.Offset)
		}
		seen[r.Payload] = r.Offset
	}
	return ref
}

// publishSeq publishes n QoS 1 messages through nd on topic, each
// acknowledged before the next, and adds their payloads to acked.
func publishSeq(t *testing.T, nd *procNode, clientID, topic, prefix string, n int, acked map[string]bool) {
	t.Helper()
	c := paho3.NewClient(paho3.NewClientOptions().AddBroker("tcp://" + nd.mqtt).SetClientID(clientID).SetAutoReconnect(false))
	if tok := c.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("connect to %s: %v", nd.id, tok.Error())
	}
	defer c.Disconnect(0)
	for i := range n {
		payload := fmt.Sprintf("%s-%d", prefix, i)
		if tok := c.Publish(topic, 1, false, payload); !tok.WaitTimeout(20*time.Second) || tok.Error() != nil {
			t.Fatalf("publish %s through %s: %v", payload, nd.id, tok.Error())
		}
		acked[payload] = true
	}
}

// loadAck is when a payload of the load was published and acknowledged.
type loadAck struct{ sent, acked time.Time }

// load is QoS 1 publishers, each with a window of messages in flight,
// recording the payloads whose PUBACK arrived. A publisher whose connection
// breaks connects again (a new clean session) and goes on with new
// payloads: it never sends a payload twice, so any duplicate in a stream
// is the server's.
type load struct {
	stop chan struct{}
	wg   sync.WaitGroup
	mu   struct {
		sync.Mutex
		acked       map[string]loadAck // payload -> times
		connections map[string]int     // publisher -> connections made
	}
}

func newLoad() *load {
	l := &load{stop: make(chan struct{})}
	l.mu.acked = map[string]loadAck{}
	l.mu.connections = map[string]int{}
	return l
}

// publish starts a publisher on nd, publishing to topic.
func (l *load) publish(nd *procNode, name, topic string, window int) {
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		for conn := 0; ; conn++ {
			select {
			case <-l.stop:
				return
			default:
			}
			if !l.connection(nd, name, conn, topic, window) {
				select { // not connected (the node is down): try again shortly
				case <-l.stop:
					return
				case <-time.After(100 * time.Millisecond):
				}
			}
		}
	}()
}

// connection publishes over one connection until it breaks or the load
// stops; it returns false when it could not connect.
func (l *load) connection(nd *procNode, name string, conn int, topic string, window int) bool {
	lost := make(chan struct{})
	o := paho3.NewClientOptions().AddBroker("tcp://" + nd.mqtt).SetClientID(name).
		SetAutoReconnect(false).SetConnectRetry(false).SetOrderMatters(false).
		SetConnectTimeout(2 * time.Second).SetWriteTimeout(2 * time.Second).
		SetConnectionLostHandler(func(paho3.Client, error) { close(lost) })
	c := paho3.NewClient(o)
	if tok := c.Connect(); !tok.WaitTimeout(3*time.Second) || tok.Error() != nil {
		return false
	}
	l.mu.Lock()
	l.mu.connections[name]++
	l.mu.Unlock()
	sem := make(chan struct{}, window)
	var inflight sync.WaitGroup
	defer func() {
		inflight.Wait()
		c.Disconnect(0)
	}()
	for i := 0; ; i++ {
		select {
		case <-l.stop:
			return true
		case <-lost:
			return true
		case sem <- struct{}{}:
		}
		payload := fmt.Sprintf("%s-c%d-%d", name, conn, i)
		sent := time.Now()
		tok := c.Publish(topic, 1, false, payload)
		inflight.Add(1)
		go func() {
			defer inflight.Done()
			defer func() { <-sem }()
			// Longer than the node's 10 s wait for a shard leader.
			if tok.WaitTimeout(20*time.Second) && tok.Error() == nil {
				l.mu.Lock()
				l.mu.acked[payload] = loadAck{sent: sent, acked: time.Now()}
				l.mu.Unlock()
			}
		}()
	}
}

// ackedSince counts the acknowledged payloads published after t.
func (l *load) ackedSince(t time.Time) (n int, first time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, a := range l.mu.acked {
		if a.sent.After(t) {
			n++
			if first.IsZero() || a.acked.Before(first) {
				first = a.acked
			}
		}
	}
	return n, first
}

// finish stops the publishers, waits for the messages in flight and
// returns the acknowledged payloads.
func (l *load) finish() (map[string]bool, map[string]int) {
	close(l.stop)
	l.wg.Wait()
	l.mu.Lock()
	defer l.mu.Unlock()
	acked := map[string]bool{}
	for p := range l.mu.acked {
		acked[p] = true
	}
	return acked, l.mu.connections
}

// TestProcessClusterSurvivesLeaderKill runs three mqstream processes: QoS 1
// publishes through every node are stored once on all of them at the same
// offsets; under load, the leader of the stream's shard is SIGKILLed and
// every acknowledged publish is stored exactly once on both survivors,
// writes resuming through the survivors; restarted with its configuration
// and data, the killed node catches up to the same stream and takes writes;
// then a rolling restart under load loses and duplicates nothing.
func TestProcessClusterSurvivesLeaderKill(t *testing.T) {
	c := startProcCluster(t)
	const stream = "crash"
	acked := map[string]bool{}

	if !t.Run("publish through every node", func(t *testing.T) {
		for _, nd := range c.nodes {
			publishSeq(t, nd, "seq-"+nd.id, stream+"/"+nd.id, "seq-"+nd.id, 20, acked)
		}
		recs := sameStream(t, c.nodes, stream, acked, 20*time.Second)
		if len(recs) != len(acked) {
			t.Fatalf("%d records stored for %d acknowledged publishes", len(recs), len(acked))
		}
	}) {
		return
	}

	var killed *procNode
	var survivors []*procNode
	if !t.Run("SIGKILL the shard leader under load", func(t *testing.T) {
		leader := c.node(t, shardLeader(t, c.nodes, stream))
		other := c.nodes[(slices.Index(c.nodes, leader)+1)%3]
		l := newLoad()
		for i := range 2 {
			for _, nd := range []*procNode{leader, other} {
				name := fmt.Sprintf("load-%s-%d", nd.id, i)
				l.publish(nd, name, stream+"/"+name, 16)
			}
		}
		t.Logf("publishers on %s (shard %d leader) and %s", leader.id, shards.ShardOf(stream, procShards), other.id)
		defer func() {
			select {
			case <-l.stop:
			default:
				l.finish()
			}
		}()
		waitFor(t, 15*time.Second, "300 acknowledged publishes before the kill", func() (bool, string) {
			n, _ := l.ackedSince(time.Time{})
			return n >= 300, fmt.Sprintf("%d acknowledged", n)
		})
		// The balancer may have moved the leadership meanwhile: kill the
		// leader of now.
		killed = c.node(t, shardLeader(t, c.nodes, stream))
		// A client with a will on the node about to die, a subscriber to
		// it on another node: the cluster publishes the will.
		wills := watchWills(t, c.nodes[(slices.Index(c.nodes, killed)+1)%3])
		dying := paho3.NewClient(paho3.NewClientOptions().AddBroker("tcp://"+killed.mqtt).SetClientID("dying").
			SetAutoReconnect(false).SetWill("wills/dying", "gone", 1, false))
		if tok := dying.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
			t.Fatalf("connect with a will to %s: %v", killed.id, tok.Error())
		}
		killed.kill(t)
		killedAt := time.Now()
		for _, nd := range c.nodes {
			if nd != killed {
				survivors = append(survivors, nd)
			}
		}
		before, _ := l.ackedSince(time.Time{})
		t.Logf("SIGKILLed %s, leader of shard %d, after %d acknowledged publishes", killed.id, shards.ShardOf(stream, procShards), before)
		var resumed time.Time
		waitFor(t, 30*time.Second, "100 publishes sent after the kill acknowledged", func() (bool, string) {
			n, first := l.ackedSince(killedAt)
			resumed = first
			return n >= 100, fmt.Sprintf("%d acknowledged", n)
		})
		t.Logf("writes resumed %s after the kill (first PUBACK of a publish sent after it)", resumed.Sub(killedAt).Round(time.Millisecond))
		newLeader := shardLeader(t, survivors, stream)
		loadAcked, connections := l.finish()
		t.Logf("load: %d publishes acknowledged; connections per publisher %v; new leader %s", len(loadAcked), connections, newLeader)
		for p := range loadAcked {
			acked[p] = true
		}
		recs := sameStream(t, survivors, stream, acked, 20*time.Second)
		t.Logf("survivors hold %d records (%d acknowledged, %d stored without a PUBACK seen)", len(recs), len(acked), len(recs)-len(acked))
		select {
		case w := <-wills:
			t.Logf("the will of a client of %s was published %s after the kill", killed.id, time.Since(killedAt).Round(time.Millisecond))
			if w != "wills/dying=gone" {
				t.Fatalf("will received as %q", w)
			}
		case <-time.After(30 * time.Second):
			t.Fatalf("the will of a client of the killed node was not published within 30 s")
		}
	}) {
		return
	}

	if !t.Run("restart the killed node", func(t *testing.T) {
		ref := sameStream(t, survivors, stream, acked, 10*time.Second)
		start := time.Now()
		c.start(t, killed)
		c.waitReady(t, []*procNode{killed}, 30*time.Second)
		t.Logf("%s ready %s after the restart", killed.id, time.Since(start).Round(time.Millisecond))
		recs := sameStream(t, c.nodes, stream, acked, 30*time.Second)
		if !slices.Equal(recs, ref) {
			t.Fatalf("the stream changed across the restart: %d records before, %d after", len(ref), len(recs))
		}
		t.Logf("%s caught up with %d records %s after the restart", killed.id, len(recs), time.Since(start).Round(time.Millisecond))
		publishSeq(t, killed, "after-restart", stream+"/after", "after-restart", 10, acked)
		recs = sameStream(t, c.nodes, stream, acked, 20*time.Second)
		if len(recs) != len(ref)+10 {
			t.Fatalf("%d records after 10 more publishes on %d", len(recs), len(ref))
		}
	}) {
		return
	}

	t.Run("rolling restart under load", func(t *testing.T) { rollingRestart(t, c, stream, acked) })
}

// rollingRestart restarts the nodes one after the other (SIGTERM, start,
// ready) while a publisher on each node keeps publishing to stream,
// reconnecting to its node when it is back: every acknowledged publish
// ends up stored once on every node, and writes flow through every node
// afterwards.
func rollingRestart(t *testing.T, c *procCluster, stream string, acked map[string]bool) {
	l := newLoad()
	for _, nd := range c.nodes {
		l.publish(nd, "roll-"+nd.id, stream+"/roll-"+nd.id, 8)
	}
	defer func() {
		select {
		case <-l.stop:
		default:
			l.finish()
		}
	}()
	for _, nd := range c.nodes {
		before, _ := l.ackedSince(time.Time{})
		waitFor(t, 20*time.Second, "writes flowing before "+nd.id+" restarts", func() (bool, string) {
			n, _ := l.ackedSince(time.Time{})
			return n >= before+100, fmt.Sprintf("%d acknowledged", n-before)
		})
		start := time.Now()
		nd.stop(t, 20*time.Second)
		c.start(t, nd)
		c.waitReady(t, []*procNode{nd}, 30*time.Second)
		t.Logf("%s stopped, restarted and ready in %s", nd.id, time.Since(start).Round(time.Millisecond))
	}
	after := time.Now()
	waitFor(t, 30*time.Second, "writes through every node after the rolling restart", func() (bool, string) {
		n, _ := l.ackedSince(after)
		l.mu.Lock()
		defer l.mu.Unlock()
		for name, conns := range l.mu.connections {
			if conns < 2 {
				return false, name + " has not reconnected"
			}
		}
		return n >= 300, fmt.Sprintf("%d acknowledged since", n)
	})
	loadAcked, connections := l.finish()
	for p := range loadAcked {
		acked[p] = true
	}
	// A stopping node hands its shard leaderships over and its peers
	// resend what it answered while closing: no publish is refused, so
	// each publisher lost its connection only when its own node stopped.
	for name, n := range connections {
		if n != 2 {
			t.Errorf("%s connected %d times, want 2 (once more after its node restarted)", name, n)
		}
	}
	recs := sameStream(t, c.nodes, stream, acked, 30*time.Second)
	t.Logf("rolling restart: %d publishes acknowledged during it, connections %v; %d records on every node for %d acknowledged",
		len(loadAcked), connections, len(recs), len(acked))
}

// watchWills subscribes to wills/# through nd and returns what arrives as
// "topic=payload".
func watchWills(t *testing.T, nd *procNode) <-chan string {
	t.Helper()
	got := make(chan string, 16)
	c := paho3.NewClient(paho3.NewClientOptions().AddBroker("tcp://" + nd.mqtt).SetClientID("will-watcher").SetAutoReconnect(false))
	if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("connect to %s: %v", nd.id, tok.Error())
	}
	t.Cleanup(func() { c.Disconnect(0) })
	tok := c.Subscribe("wills/#", 1, func(_ paho3.Client, m paho3.Message) {
		select {
		case got <- m.Topic() + "=" + string(m.Payload()):
		default:
		}
	})
	if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("subscribe through %s: %v", nd.id, tok.Error())
	}
	return got
}

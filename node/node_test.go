package node

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	paho3 "github.com/eclipse/paho.mqtt.golang"

	"github.com/mqstream/mqstream/config"
	"github.com/mqstream/mqstream/internal/testutil"
	"github.com/mqstream/mqstream/streams"
)

// childEnv names the data directory when the test binary runs as a server
// child process (crash tests).
const childEnv = "MQSTREAM_TEST_CHILD_DATA"

func TestMain(m *testing.M) {
	if dir := os.Getenv(childEnv); dir != "" {
		runChild(dir)
		return
	}
	os.Exit(m.Run())
}

// runChild runs a node until it is killed, printing its MQTT address.
func runChild(dir string) {
	cfg := testConfig(dir)
	n, err := Open(cfg, testutil.Logger())
	if err != nil {
		fmt.Println("ERROR", err)
		os.Exit(1)
	}
	var mu sync.Mutex
	n.OnGroupPersisted(func(name, filter string, acked int64) {
		mu.Lock()
		fmt.Printf("PERSISTED %s %s %d\n", name, filter, acked)
		mu.Unlock()
	})
	if err := n.Start(); err != nil {
		fmt.Println("ERROR", err)
		os.Exit(1)
	}
	fmt.Println("ADDR", n.MQTTAddr())
	select {}
}

func testConfig(dir string) config.Config {
	cfg := config.Default()
	cfg.Node.ID = "test"
	cfg.Node.DataDir = dir
	cfg.MQTT.TCP = "127.0.0.1:0"
	cfg.MQTT.WebSocket = ""
	cfg.HTTP.Listen = "127.0.0.1:0"
	cfg.Groups.AckTimeout = time.Hour
	cfg.Storage.MinFree = 0 // tests must not depend on the machine's free disk space
	cfg.Groups.FlushInterval = 20 * time.Millisecond
	return cfg
}

func startNode(t *testing.T, cfg config.Config) *Node {
	t.Helper()
	return startNodeLogged(t, cfg, testutil.Logger())
}

// startNodeLogged is startNode with the node logging to log.
func startNodeLogged(t *testing.T, cfg config.Config, log *slog.Logger) *Node {
	t.Helper()
	n, err := Open(cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = n.Close(context.Background()) })
	return n
}

// startChild starts the test binary as a server process on dir.
func startChild(t *testing.T, dir string) (*exec.Cmd, string) {
	cmd, addr, _ := startChildLines(t, dir)
	return cmd, addr
}

// startChildLines also returns the child's further stdout lines.
func startChildLines(t *testing.T, dir string) (*exec.Cmd, string, <-chan string) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"="+dir)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	r := bufio.NewReader(out)
	line, err := r.ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "ADDR ") {
		t.Fatalf("child did not start: %q %v", line, err)
	}
	lines := make(chan string, 1024)
	go func() {
		defer close(lines)
		for {
			l, err := r.ReadString('\n')
			if err != nil {
				return
			}
			select {
			case lines <- strings.TrimSpace(l):
			default: // nobody reads: drop
			}
		}
	}()
	return cmd, strings.TrimSpace(strings.TrimPrefix(line, "ADDR ")), lines
}

// publishUntil runs publishers with a window of QoS 1 messages in flight
// each, until stop is closed; it returns every payload whose PUBACK arrived.
func publishUntil(t *testing.T, addr string, publishers, window int, stop <-chan struct{}) map[string]bool {
	return publishTagged(t, addr, "", publishers, window, stop)
}

// publishTagged is publishUntil with payloads prefixed by tag.
func publishTagged(t *testing.T, addr, tag string, publishers, window int, stop <-chan struct{}) map[string]bool {
	var mu sync.Mutex
	acked := map[string]bool{}
	var wg sync.WaitGroup
	for p := 0; p < publishers; p++ {
		o := paho3.NewClientOptions().AddBroker("tcp://" + addr).SetClientID(fmt.Sprintf("crash-%d", p)).
			SetAutoReconnect(false).SetOrderMatters(false).SetWriteTimeout(500 * time.Millisecond)
		c := paho3.NewClient(o)
		if tok := c.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
			t.Fatalf("connect: %v", tok.Error())
		}
		wg.Add(1)
		go func(p int) {
			defer wg.Done()
			sem := make(chan struct{}, window)
			var inflight sync.WaitGroup
			for i := 0; ; i++ {
				select {
				case <-stop:
					inflight.Wait()
					return
				case sem <- struct{}{}:
				}
				payload := fmt.Sprintf("%sp%d-%d", tag, p, i)
				tok := c.Publish(fmt.Sprintf("crash/%d", p), 1, false, payload)
				inflight.Add(1)
				go func() {
					defer inflight.Done()
					defer func() { <-sem }()
					if tok.WaitTimeout(5*time.Second) && tok.Error() == nil {
						mu.Lock()
						acked[payload] = true
						mu.Unlock()
					}
				}()
			}
		}(p)
	}
	wg.Wait()
	return acked
}

func storedPayloads(t *testing.T, s *streams.Store) map[string]bool {
	t.Helper()
	got := map[string]bool{}
	err := s.Scan(context.Background(), "crash", 0, 0, func(r streams.Record) (bool, error) {
		if got[string(r.Payload)] {
			// A QoS 1 resend can legitimately store twice; these publishers never resend.
			return false, fmt.Errorf("payload %s stored twice", r.Payload)
		}
		got[string(r.Payload)] = true
		return true, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return got
}

// TestCrashLosesNoAcknowledgedPublish SIGKILLs a server process under QoS 1
// load and checks that every message whose PUBACK a client saw is stored,
// then restarts it and checks that offsets continue.
func TestCrashLosesNoAcknowledgedPublish(t *testing.T) {
	dir := t.TempDir()
	cmd, addr := startChild(t, dir)
	stop := make(chan struct{})
	var acked map[string]bool
	done := make(chan struct{})
	go func() { acked = publishUntil(t, addr, 4, 64, stop); close(done) }()
	// Let the load run, then kill the server mid-stream.
	time.Sleep(300 * time.Millisecond)
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	t0 := time.Now()
	close(stop)
	<-done
	t.Logf("publishers stopped in %s", time.Since(t0))
	if len(acked) < 100 {
		t.Fatalf("only %d messages acknowledged before the kill; the test proves little", len(acked))
	}

	s, err := streams.Open(streams.Options{Dir: dir, Logger: testutil.Logger()})
	if err != nil {
		t.Fatalf("reopen after SIGKILL: %v", err)
	}
	stored := storedPayloads(t, s)
	missing := 0
	for p := range acked {
		if !stored[p] {
			missing++
			if missing < 5 {
				t.Errorf("acknowledged %s is not stored", p)
			}
		}
	}
	if missing > 0 {
		t.Fatalf("%d of %d acknowledged messages lost", missing, len(acked))
	}
	before, err := s.DescribeStream("crash")
	if err != nil {
		t.Fatal(err)
	}
	if before.Records != int64(len(stored)) || before.NextOffset != uint64(len(stored)) {
		t.Fatalf("offsets not dense after recovery: %+v with %d records", before, len(stored))
	}
	s.Close()
	t.Logf("acked %d, stored %d (stored-but-unacked %d)", len(acked), len(stored), len(stored)-len(acked))

	// Restart: offsets continue where they were.
	cmd, addr = startChild(t, dir)
	c := paho3.NewClient(paho3.NewClientOptions().AddBroker("tcp://" + addr).SetClientID("after"))
	if tok := c.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	if tok := c.Publish("crash/after", 1, false, "after-restart"); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	c.Disconnect(10)
	_ = cmd.Process.Signal(syscall.SIGKILL)
	_ = cmd.Wait()
	s, err = streams.Open(streams.Options{Dir: dir, Logger: testutil.Logger()})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	recs, err := s.Read("crash", before.NextOffset, streams.ReadOptions{})
	if err != nil || len(recs) != 1 || string(recs[0].Payload) != "after-restart" || recs[0].Offset != before.NextOffset {
		t.Fatalf("after restart: %+v %v (want offset %d)", recs, err, before.NextOffset)
	}
}

// TestGracefulCloseCommitsEverythingReceived closes a node under load: every
// acknowledged message is stored and Close returns only after the store is
// consistent; a restart sees the same data.
func TestGracefulCloseCommitsEverythingReceived(t *testing.T) {
	dir := t.TempDir()
	n, err := Open(testConfig(dir), testutil.Logger())
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Start(); err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	var acked map[string]bool
	done := make(chan struct{})
	go func() { acked = publishUntil(t, n.MQTTAddr(), 2, 32, stop); close(done) }()
	time.Sleep(200 * time.Millisecond)
	if err := n.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	close(stop)
	<-done

	n2 := startNode(t, testConfig(dir))
	stored := storedPayloads(t, n2.Store())
	for p := range acked {
		if !stored[p] {
			t.Fatalf("acknowledged %s lost in a graceful shutdown", p)
		}
	}
	if len(acked) == 0 {
		t.Fatal("nothing was acknowledged")
	}
}

func TestHealthAndReadiness(t *testing.T) {
	n := startNode(t, testConfig(t.TempDir()))
	for _, path := range []string{"/healthz", "/readyz"} {
		resp, err := http.Get("http://" + n.HTTPAddr() + path)
		if err != nil {
			t.Fatal(err)
		}
		var body map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&body)
		resp.Body.Close()
		if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/json" {
			t.Fatalf("%s: %d %v", path, resp.StatusCode, body)
		}
	}
}

func TestDeclaredStreamsAreCreated(t *testing.T) {
	cfg := testConfig(t.TempDir())
	cfg.Streams.Definitions = []config.Definition{{Name: "temperatures", Retention: config.Retention{MaxRecords: 5}}}
	n := startNode(t, cfg)
	info, err := n.Store().DescribeStream("temperatures")
	if err != nil || info.Retention.MaxRecords != 5 {
		t.Fatalf("%+v %v", info, err)
	}
}

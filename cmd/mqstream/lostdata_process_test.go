package main

import (
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestProcessNodeThatLostItsDataIsRefused replays, with processes, the
// case that lost acknowledged records before data directories had
// incarnations (by hand, 20,000 acknowledged records came back as 64):
// node3 misses the writes (SIGSTOP), node1 and node2 acknowledge them,
// then node1 loses its data directory and node2 dies. The new node1 must
// not help the stale node3 elect itself: it waits, not ready, and once
// node2 is back it is refused, naming the remedy, and every acknowledged
// record is on node2 and node3.
func TestProcessNodeThatLostItsDataIsRefused(t *testing.T) {
	c := startProcCluster(t)
	n1, n2, n3 := c.node(t, "node1"), c.node(t, "node2"), c.node(t, "node3")
	for _, nd := range c.nodes {
		waitFor(t, 30*time.Second, nd.id+" registered its data directory", func() (bool, string) {
			b, _ := os.ReadFile(nd.log)
			return strings.Contains(string(b), "data directory registered with the metadata group"), "not yet"
		})
	}

	if err := n3.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	stopped := true
	defer func() {
		if stopped {
			_ = n3.cmd.Process.Signal(syscall.SIGCONT)
		}
	}()
	acked := map[string]bool{}
	publishSeq(t, n2, "writer", "lost/x", "w", 200, acked)

	n1.kill(t)
	n2.kill(t)
	if err := os.RemoveAll(filepath.Join(c.dir, "node1")); err != nil {
		t.Fatal(err)
	}
	c.start(t, n1)
	if err := n3.cmd.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	stopped = false

	// node2 away: the new node1 waits and is not ready.
	reason := ""
	deadline := time.Now().Add(8 * time.Second)
	for time.Now().Before(deadline) {
		if !n1.running() {
			t.Fatalf("node1 with a new data directory exited while node2 was down: %v", n1.waitErr)
		}
		var body map[string]string
		if code, _ := n1.getJSON("/readyz", &body); code == http.StatusOK {
			t.Fatal("node1 with a new data directory is ready while node2 is down")
		} else if code == http.StatusServiceUnavailable {
			reason = body["reason"]
		}
		time.Sleep(200 * time.Millisecond)
	}

	if !strings.Contains(reason, "waiting for the metadata group") {
		t.Errorf("node1's /readyz reason while it waits: %q, want it to say it waits for the metadata group", reason)
	}
	c.start(t, n2)
	select {
	case <-n1.exited:
		n1.killed = true // expected to exit: not "exited on its own"
	case <-time.After(60 * time.Second):
		t.Fatal("node1 with a new data directory was not refused once node2 was back")
	}
	b, _ := os.ReadFile(n1.log)
	if !strings.Contains(string(b), "mqstream node remove node1") || !strings.Contains(string(b), "is new: its data was lost") {
		t.Fatalf("node1's refusal does not say what happened and what to do; its log ends:\n%s", tailLines(n1.log, 10))
	}
	c.waitReady(t, []*procNode{n2, n3}, 30*time.Second)
	sameStream(t, []*procNode{n2, n3}, "lost", acked, 30*time.Second)
	t.Logf("node1 refused; %d acknowledged records on node2 and node3", len(acked))
}

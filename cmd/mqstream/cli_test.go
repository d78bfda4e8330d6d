package main

import (
	"context"
	"encoding/json"
	"io"
	"strings"
	"testing"
	"time"

	paho3 "github.com/eclipse/paho.mqtt.golang"

	"github.com/mqstream/mqstream/auth"
	"github.com/mqstream/mqstream/internal/testnode"
	"github.com/mqstream/mqstream/internal/testutil"
	"github.com/mqstream/mqstream/node"
)

// startTestNode runs a real node on 127.0.0.1 random ports.
func startTestNode(t *testing.T) *node.Node {
	t.Helper()
	return testnode.Start(t, testnode.Config(t.TempDir()))
}

func mustRun(t *testing.T, args ...string) string {
	t.Helper()
	out, err := runCmd(t, args...)
	if err != nil {
		t.Fatalf("mqstream %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

func TestStreamCommands(t *testing.T) {
	n := startTestNode(t)
	srv := "--server=" + n.HTTPAddr()
	if out := mustRun(t, "stream", "create", "temps", "--max-age", "24h", srv); !strings.Contains(out, "stream temps created (retention max_age=24h0m0s)") {
		t.Fatalf("create: %q", out)
	}
	out := mustRun(t, "stream", "append", "temps", `{"t":21}`, "plain text", "-t", "sensors/1", srv)
	if !strings.Contains(out, "appended 2 records to temps at offsets [0,1]") {
		t.Fatalf("append: %q", out)
	}
	out = mustRun(t, "stream", "ls", srv)
	if !strings.Contains(out, "NAME") || !strings.Contains(out, "temps") || !strings.Contains(out, "max_age=24h0m0s") {
		t.Fatalf("ls: %q", out)
	}
	var list []map[string]any
	if err := json.Unmarshal([]byte(mustRun(t, "stream", "ls", "-o", "json", srv)), &list); err != nil || len(list) != 1 || list[0]["records"].(float64) != 2 {
		t.Fatalf("ls -o json: %v %v", list, err)
	}
	out = mustRun(t, "stream", "describe", "temps", srv)
	if !strings.Contains(out, "records:") || !strings.Contains(out, "last offset:") {
		t.Fatalf("describe: %q", out)
	}
	out = mustRun(t, "stream", "read", "temps", srv)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 2 || !strings.Contains(lines[0], `"payload":{"t":21}`) || !strings.Contains(lines[1], `"payload":"plain text"`) || !strings.Contains(lines[1], `"topic":"sensors/1"`) {
		t.Fatalf("read: %q", out)
	}
	if out := mustRun(t, "stream", "read", "temps", "--from", "1", srv); strings.Count(out, "\n") != 1 {
		t.Fatalf("read --from 1: %q", out)
	}

	// --follow prints records published over MQTT while it runs.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	root := newRootCmd()
	pr, pw := io.Pipe()
	root.SetOut(pw)
	root.SetArgs([]string{"stream", "read", "temps", "--follow", "--from", "2", srv})
	done := make(chan error, 1)
	go func() { done <- root.ExecuteContext(ctx); pw.Close() }()
	c := paho3.NewClient(paho3.NewClientOptions().AddBroker("tcp://" + n.MQTTAddr()).SetClientID("p"))
	if tok := c.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	defer c.Disconnect(0)
	c.Publish("temps/x", 1, false, `{"t":99}`).WaitTimeout(5 * time.Second)
	line := make(chan string, 1)
	go func() {
		b := make([]byte, 4096)
		k, _ := pr.Read(b)
		line <- string(b[:k])
	}()
	select {
	case l := <-line:
		if !strings.Contains(l, `"payload":{"t":99}`) || !strings.Contains(l, `"offset":2`) {
			t.Fatalf("follow printed %q", l)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("follow printed nothing")
	}
	cancel()
	go func() { _, _ = io.Copy(io.Discard, pr) }()
	<-done

	if out := mustRun(t, "stream", "rm", "temps", srv); !strings.Contains(out, "deleted") {
		t.Fatalf("rm: %q", out)
	}
	if _, err := runCmd(t, "stream", "describe", "temps", srv); err == nil || !strings.Contains(err.Error(), `stream not found: "temps"`) {
		t.Fatalf("describe deleted: %v", err)
	}
	if _, err := runCmd(t, "stream", "create", "bad/name", srv); err == nil || !strings.Contains(err.Error(), "forbidden character") {
		t.Fatalf("bad name: %v", err)
	}
}

func TestGroupAndNodeCommands(t *testing.T) {
	n := startTestNode(t)
	srv := "--server=" + n.HTTPAddr()
	mustRun(t, "stream", "append", "jobs", "1", "2", "3", "-t", "jobs/a", srv)
	if out := mustRun(t, "group", "create", "workers", "jobs/#", "--start", "earliest", "--ack-timeout", "10s", srv); !strings.Contains(out, "group workers on jobs/# created (start earliest, lag 3)") {
		t.Fatalf("create: %q", out)
	}
	out := mustRun(t, "group", "ls", srv)
	if !strings.Contains(out, "workers") || !strings.Contains(out, "jobs/#") {
		t.Fatalf("ls: %q", out)
	}
	out = mustRun(t, "group", "describe", "workers", srv)
	if !strings.Contains(out, "lag:") || !strings.Contains(out, "STREAM") || !strings.Contains(out, "jobs") {
		t.Fatalf("describe: %q", out)
	}
	if out := mustRun(t, "group", "seek", "workers", "offset:2", srv); !strings.Contains(out, "moved to offset:2 (lag 1)") {
		t.Fatalf("seek: %q", out)
	}
	if _, err := runCmd(t, "group", "seek", "workers", "sometime", srv); err == nil || !strings.Contains(err.Error(), "position") {
		t.Fatalf("bad seek: %v", err)
	}
	if out := mustRun(t, "group", "rm", "workers", srv); !strings.Contains(out, "deleted") {
		t.Fatalf("rm: %q", out)
	}
	out = mustRun(t, "node", "status", srv)
	if !strings.Contains(out, "node:") || !strings.Contains(out, "listeners.mqtt:") || !strings.Contains(out, "counts.streams:") {
		t.Fatalf("node status: %q", out)
	}
}

func TestCLIExplainsUnreachableServer(t *testing.T) {
	_, err := runCmd(t, "stream", "ls", "--server", "127.0.0.1:1")
	if err == nil || !strings.Contains(err.Error(), "cannot reach http://127.0.0.1:1: is `mqstream serve` running?") {
		t.Fatalf("%v", err)
	}
	t.Setenv("MQSTREAM_SERVER", "http://127.0.0.1:2")
	_, err = runCmd(t, "node", "status")
	if err == nil || !strings.Contains(err.Error(), "127.0.0.1:2") {
		t.Fatalf("MQSTREAM_SERVER ignored: %v", err)
	}
	if _, err := runCmd(t, "stream", "ls", "-o", "yaml", "--server", "127.0.0.1:1"); err == nil || !strings.Contains(err.Error(), "--output") {
		t.Fatalf("bad output flag: %v", err)
	}
}

func TestUserCommands(t *testing.T) {
	file := t.TempDir() + "/users"
	root := newRootCmd()
	var out strings.Builder
	root.SetOut(&out)
	root.SetIn(strings.NewReader("s3cret\n"))
	root.SetArgs([]string{"user", "add", "alice", "--file", file})
	if err := root.Execute(); err != nil || !strings.Contains(out.String(), "user alice saved") {
		t.Fatalf("%v %q", err, out.String())
	}
	users, err := auth.LoadUsers(file)
	if err != nil || !users.Check("alice", []byte("s3cret")) {
		t.Fatalf("users file: %v", err)
	}
	if out := mustRun(t, "user", "hash", "--password", "x"); !strings.HasPrefix(out, "$2a$10$") {
		t.Fatalf("hash: %q", out)
	}
	if _, err := runCmd(t, "user", "add", "bob"); err == nil || !strings.Contains(err.Error(), "--file") {
		t.Fatalf("missing --file: %v", err)
	}
}

func TestQueryCommands(t *testing.T) {
	n := startTestNode(t)
	srv := "--server=" + n.HTTPAddr()
	mustRun(t, "stream", "create", "temps", srv)
	if out := mustRun(t, "sql", "-e", "CREATE STREAM hot AS SELECT count(*) AS n FROM temps GROUP BY TUMBLING(INTERVAL 1 SECOND)", srv); !strings.Contains(out, "query hot created") {
		t.Fatalf("create: %q", out)
	}
	// Created, the query is starting until its runner has read its input.
	testutil.Eventually(t, 10*time.Second, "the query running", func() bool {
		out := mustRun(t, "query", "ls", srv)
		return strings.Contains(out, "hot") && strings.Contains(out, "running") && strings.Contains(out, "temps")
	})
	if _, err := runCmd(t, "stream", "rm", "temps", srv); err == nil || !strings.Contains(err.Error(), "stream temps is in use: read by hot") {
		t.Fatalf("rm of a stream a query reads: %v", err)
	}
	if out := mustRun(t, "query", "describe", "hot", srv); !strings.Contains(out, "CREATE STREAM hot") || !strings.Contains(out, "sink:") {
		t.Fatalf("describe: %q", out)
	}
	if out := mustRun(t, "query", "pause", "hot", srv); out != "query hot paused: status paused\n" {
		t.Fatalf("pause: %q", out)
	}
	if out := mustRun(t, "query", "ls", srv); !strings.Contains(out, "paused") {
		t.Fatalf("ls after pause: %q", out)
	}
	if out := mustRun(t, "query", "resume", "hot", srv); !strings.HasPrefix(out, "query hot resumed: status ") || strings.Contains(out, "paused") {
		t.Fatalf("resume: %q", out)
	}
	if _, err := runCmd(t, "query", "pause", "nope", srv); err == nil || !strings.Contains(err.Error(), `query "nope"`) {
		t.Fatalf("pause of an unknown query: %v", err)
	}
	if out := mustRun(t, "query", "rm", "hot", srv); !strings.Contains(out, "query hot terminated") {
		t.Fatalf("rm: %q", out)
	}
	if _, err := runCmd(t, "query", "rm", "hot", srv); err == nil || !strings.Contains(err.Error(), `query "hot"`) {
		t.Fatalf("rm again: %v", err)
	}
}

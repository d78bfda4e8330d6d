package testnode

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mqstream/mqstream/internal/testutil"
	"github.com/mqstream/mqstream/node"
)

// childEnv names the data directory of a test binary started as a server
// by StartChild.
const childEnv = "MQSTREAM_TESTNODE_CHILD_DIR"

// ServeIfChild, called first in a package's TestMain, turns a test binary
// that StartChild started into a server over its data directory (Config):
// it prints "ADDR <MQTT address>" and serves until killed, never
// returning. Otherwise it returns at once.
func ServeIfChild() {
	dir := os.Getenv(childEnv)
	if dir == "" {
		return
	}
	n, err := node.Open(Config(dir), testutil.Logger())
	if err == nil {
		err = n.Start()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "child:", err)
		os.Exit(1)
	}
	fmt.Println("ADDR", n.MQTTAddr())
	select {}
}

// StartChild starts the test binary as a server over dir (its TestMain
// must call ServeIfChild) and returns the process and its MQTT address;
// the process is killed when the test ends.
func StartChild(t testing.TB, dir string) (*exec.Cmd, string) {
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
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "ADDR ") {
		t.Fatalf("child did not start: %q %v", line, err)
	}
	return cmd, strings.TrimSpace(strings.TrimPrefix(line, "ADDR "))
}

// KillRounds runs a server over dir (StartChild) rounds times, each time
// calling load with its MQTT address and a channel closed when, after
// life, the server has been sent SIGKILL; it waits for load and for the
// process to end.
func KillRounds(t testing.TB, dir string, rounds int, life time.Duration, load func(round int, addr string, stop <-chan struct{})) {
	t.Helper()
	for round := 0; round < rounds; round++ {
		cmd, addr := StartChild(t, dir)
		stop := make(chan struct{})
		time.AfterFunc(life, func() {
			_ = cmd.Process.Signal(syscall.SIGKILL)
			close(stop)
		})
		load(round, addr, stop)
		_ = cmd.Wait()
	}
}

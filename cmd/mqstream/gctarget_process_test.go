package main

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestServeCollectorTarget starts `mqstream serve` with runtime.gc_percent
// auto (the default) and with a number, and reads the target back from
// mqstream_runtime_gc_percent: auto starts at the high target and logs it
// at debug level; a number is the target and no controller runs. A process
// per case, since the target is the process's.
func TestServeCollectorTarget(t *testing.T) {
	bin := builtBinary(t)
	for _, c := range []struct {
		name, setting string
		want          []string // acceptable gauge values; none: no HTTP listener
		controller    bool
	}{
		// auto starts at 400; it goes to 100 after 30 calm seconds.
		{"auto", "auto", []string{"400"}, true},
		{"fixed", "250", []string{"250"}, false},
		{"auto without HTTP", "auto", nil, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			ports := freePorts(t, 2)
			httpAddr := fmt.Sprintf("127.0.0.1:%d", ports[1])
			if c.want == nil {
				httpAddr = ""
			}
			cfgPath := filepath.Join(dir, "mqstream.yaml")
			yaml := fmt.Sprintf("node: {data_dir: %s}\nmqtt: {tcp: \"127.0.0.1:%d\", websocket: \"\"}\nhttp: {listen: %q}\n"+
				"storage: {min_free: 0}\nlog: {level: debug}\nruntime: {gc_percent: %s}\n",
				filepath.Join(dir, "data"), ports[0], httpAddr, c.setting)
			if err := os.WriteFile(cfgPath, []byte(yaml), 0o600); err != nil {
				t.Fatal(err)
			}
			logPath := filepath.Join(dir, "serve.log")
			logFile, err := os.Create(logPath)
			if err != nil {
				t.Fatal(err)
			}
			defer logFile.Close()
			cmd := exec.Command(bin, "serve", "--config", cfgPath)
			cmd.Stdout, cmd.Stderr = logFile, logFile
			for _, kv := range os.Environ() {
				if !strings.HasPrefix(kv, "GOGC=") && !strings.HasPrefix(kv, "MQSTREAM_") {
					cmd.Env = append(cmd.Env, kv)
				}
			}
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			exited := make(chan error, 1)
			go func() { exited <- cmd.Wait() }()
			defer func() {
				_ = cmd.Process.Signal(syscall.SIGTERM)
				select {
				case <-exited:
				case <-time.After(15 * time.Second):
					_ = cmd.Process.Kill()
					<-exited
				}
				if t.Failed() {
					t.Logf("log:\n%s", tailLines(logPath, 40))
				}
			}()
			if c.want == nil {
				waitFor(t, 15*time.Second, "the node to start", func() (bool, string) {
					return strings.Contains(tailLines(logPath, 1000), "msg=\"gc target\" percent=400 reason=start"), ""
				})
				select {
				case err := <-exited:
					exited <- err // for the deferred stop
					t.Fatalf("serve exited: %v", err)
				default:
				}
				return
			}
			var got string
			waitFor(t, 15*time.Second, "the gauge", func() (bool, string) {
				v, err := gaugeValue("http://"+httpAddr+"/metrics", "mqstream_runtime_gc_percent")
				if err != nil {
					return false, err.Error()
				}
				got = v
				return true, ""
			})
			ok := false
			for _, w := range c.want {
				ok = ok || got == w
			}
			if !ok {
				t.Errorf("mqstream_runtime_gc_percent %s, want one of %v", got, c.want)
			}
			if c.controller {
				waitFor(t, 10*time.Second, "the controller's debug line", func() (bool, string) {
					return strings.Contains(tailLines(logPath, 1000), "msg=\"gc target\" percent=400 reason=start"), ""
				})
			} else if strings.Contains(tailLines(logPath, 1000), "gc target") {
				t.Errorf("a fixed target logged a controller's change")
			}
		})
	}
}

// gaugeValue reads one unlabelled metric from a Prometheus text page.
func gaugeValue(url, name string) (string, error) {
	resp, err := procHTTP.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), name+" "); ok {
			if _, err := strconv.ParseFloat(v, 64); err != nil {
				return "", fmt.Errorf("%s: %q", name, v)
			}
			return v, nil
		}
	}
	return "", fmt.Errorf("%s not in %s (%v)", name, url, sc.Err())
}

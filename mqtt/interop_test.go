package mqtt

import (
	"context"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// Interoperability smoke tests with client libraries independent of the Go
// ones used elsewhere. They are skipped when the client is not installed
// (.ci/run installs python3-paho-mqtt when it can; Debian:
// apt-get install python3-paho-mqtt mosquitto-clients).

// TestInteropPahoPython runs testdata/interop_paho.py (Eclipse paho-mqtt
// for Python): QoS levels, retained messages at the parent level of '#',
// No Local, a persistent session's queue, a shared subscription.
func TestInteropPahoPython(t *testing.T) {
	python := ""
	for _, p := range []string{"python3", "/usr/bin/python3"} {
		if exec.Command(p, "-c", "import paho.mqtt.client").Run() == nil {
			python = p
			break
		}
	}
	if python == "" {
		t.Skip("python3 with paho-mqtt not installed (apt-get install python3-paho-mqtt)")
	}
	n := startBrokerWithGroups(t, nil) // $share is served by consumer groups, as on a node
	host, port, _ := strings.Cut(n.addr, ":")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, python, "testdata/interop_paho.py", host, port).CombinedOutput()
	t.Logf("paho-mqtt (Python):\n%s", out)
	if err != nil {
		t.Fatalf("interop with paho-mqtt failed: %v", err)
	}
}

// TestInteropMosquittoClients uses mosquitto_pub and mosquitto_sub
// (libmosquitto, C): a retained message reaches a "#"-at-parent-level
// subscriber, over MQTT 3.1.1 and 5.
func TestInteropMosquittoClients(t *testing.T) {
	if _, err := exec.LookPath("mosquitto_sub"); err != nil {
		t.Skip("mosquitto-clients not installed")
	}
	n := startBroker(t, nil, nil, nil)
	host, port, _ := strings.Cut(n.addr, ":")
	run := func(name string, args ...string) string {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		out, err := exec.CommandContext(ctx, name, append([]string{"-h", host, "-p", port}, args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("%s %v: %v\n%s", name, args, err, out)
		}
		return string(out)
	}
	run("mosquitto_pub", "-t", "mq", "-m", "parent", "-r", "-q", "1")
	for _, v := range []string{"mqttv311", "mqttv5"} {
		got := run("mosquitto_sub", "-V", v, "-t", "mq/#", "-C", "1", "-W", "5", "-v")
		if strings.TrimSpace(got) != "mq parent" {
			t.Fatalf("%s: mosquitto_sub -t mq/# got %q, want the retained message on mq", v, got)
		}
	}
}

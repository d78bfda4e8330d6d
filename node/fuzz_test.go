package node

import (
	"context"
	"io"
	"net"
	"testing"
	"time"

	paho3 "github.com/eclipse/paho.mqtt.golang"

	"github.com/mqstream/mqstream/internal/testutil"
)

// FuzzRawMQTT writes arbitrary bytes to a live MQTT listener: the node keeps
// serving other clients and its store stays healthy, whatever arrives.
func FuzzRawMQTT(f *testing.F) {
	connect := []byte{0x10, 0x0c, 0, 4, 'M', 'Q', 'T', 'T', 4, 2, 0, 30, 0, 0}
	f.Add(connect)
	f.Add(append(append([]byte{}, connect...), 0x32, 0x08, 0, 3, 'a', '/', 'b', 0, 1, 'x'))           // QoS 1 publish
	f.Add(append(append([]byte{}, connect...), 0x82, 0x06, 0, 1, 0, 1, '#', 1))                       // subscribe #
	f.Add(append(append([]byte{}, connect...), 0x34, 0x07, 0, 1, 'a', 0, 7, 'y', 'z', 0x62, 2, 0, 7)) // QoS 2 + PUBREL
	f.Add([]byte{0x10, 0xff, 0xff, 0xff, 0xff, 0x7f})                                                 // malformed length
	f.Add([]byte{0x30, 0x02, 0, 0})
	f.Add([]byte("GET / HTTP/1.1\r\n\r\n"))
	cfg := testConfig(f.TempDir())
	n, err := Open(cfg, testutil.Logger())
	if err != nil {
		f.Fatal(err)
	}
	if err := n.Start(); err != nil {
		f.Fatal(err)
	}
	defer n.Close(context.Background())
	probe := paho3.NewClient(paho3.NewClientOptions().AddBroker("tcp://" + n.MQTTAddr()).SetClientID("probe").SetConnectRetry(false))
	if tok := probe.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		f.Fatal(tok.Error())
	}
	defer probe.Disconnect(0)
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := net.Dial("tcp", n.MQTTAddr())
		if err != nil {
			t.Fatal(err)
		}
		_, _ = c.Write(data)
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Millisecond))
		_, _ = io.Copy(io.Discard, c)
		c.Close()
		if tok := probe.Publish("fuzz/probe", 1, false, "alive"); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
			t.Fatalf("node stopped serving after %x: %v", data, tok.Error())
		}
		if err := n.Store().Healthy(); err != nil {
			t.Fatalf("store unhealthy after %x: %v", data, err)
		}
	})
}

package mqtt

import (
	"fmt"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/mqstream/mqstream/streams"
)

// TestCloseWhileClientsLeave: Close returns while clients disconnect.
// mochi's own way of disconnecting a listener's clients
// (Clients.GetByListener) read-locks the client map twice and deadlocks
// when a client is removed in between.
func TestCloseWhileClientsLeave(t *testing.T) {
	for round := 0; round < 20; round++ {
		n := startBroker(t, nil, nil, nil)
		var conns []net.Conn
		for i := 0; i < 30; i++ {
			conn, err := net.DialTimeout("tcp", n.addr, time.Second)
			if err != nil {
				t.Fatal(err)
			}
			conn.Write(rawConnect(fmt.Sprintf("leave-%d", i)))
			if _, err := readFull(conn, make([]byte, 4)); err != nil {
				t.Fatalf("connack: %v", err)
			}
			conns = append(conns, conn)
		}
		go func() {
			for _, c := range conns {
				c.Close()
			}
		}()
		done := make(chan struct{})
		go func() {
			n.broker.Close()
			close(done)
		}()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatalf("round %d: Close did not return", round)
		}
	}
}

// TestCloseAcknowledgesWhatItStored: a client keeps publishing QoS 1
// while the broker stops. The publishes the broker took are committed and
// acknowledged before it disconnects the client, and those arriving after
// it began stopping are neither stored nor acknowledged: the stream holds
// exactly the publishes the client saw acknowledged, so none needs to be
// sent again (and stored twice).
func TestCloseAcknowledgesWhatItStored(t *testing.T) {
	n := startBroker(t, nil, nil, func(o *streams.Options) { o.Sync = streams.SyncAlways })
	c := dialRaw(t, n.addr, 4)
	c.connect("drainer", true, packets.Properties{})

	const max = 30000
	writerDone := make(chan int)
	go func() {
		sent := 0
		for i := range max {
			if _, err := c.conn.Write(rawPublish(1, uint16(i+1), "drain/x", "p"+strconv.Itoa(i), false)); err != nil {
				break
			}
			sent++
		}
		writerDone <- sent
	}()

	acked := map[int]bool{}
	closed := make(chan struct{})
	for {
		pk, err := c.read(10 * time.Second)
		if err != nil {
			break // the broker disconnected the client (or the test timed out: checked below)
		}
		if pk.FixedHeader.Type == packets.Disconnect {
			break // the broker stopping
		}
		if pk.FixedHeader.Type != packets.Puback {
			t.Fatalf("unexpected packet type %d", pk.FixedHeader.Type)
		}
		acked[int(pk.PacketID)-1] = true
		if len(acked) == 200 {
			go func() {
				n.broker.Close()
				close(closed)
			}()
		}
	}
	select {
	case <-closed:
	case <-time.After(20 * time.Second):
		t.Fatal("the broker did not close")
	}
	c.conn.Close()
	sent := <-writerDone
	if len(acked) < 200 {
		t.Fatalf("only %d publishes acknowledged", len(acked))
	}

	recs, err := n.store.Read("drain", 0, streams.ReadOptions{MaxRecords: max})
	if err != nil {
		t.Fatal(err)
	}
	stored := map[int]bool{}
	for _, r := range recs {
		i, err := strconv.Atoi(strings.TrimPrefix(string(r.Payload), "p"))
		if err != nil {
			t.Fatalf("payload %q", r.Payload)
		}
		stored[i] = true
	}
	var unacked, lost []string
	for i := range stored {
		if !acked[i] {
			unacked = append(unacked, fmt.Sprint(i))
		}
	}
	for i := range acked {
		if !stored[i] {
			lost = append(lost, fmt.Sprint(i))
		}
	}
	if len(unacked) > 0 || len(lost) > 0 {
		t.Fatalf("%d sent, %d acknowledged, %d stored: stored without an ack %v, acknowledged but not stored %v",
			sent, len(acked), len(stored), unacked, lost)
	}
	t.Logf("%d sent, %d acknowledged and stored", sent, len(acked))
}

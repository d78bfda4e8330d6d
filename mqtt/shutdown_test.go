package mqtt

import (
	"fmt"
	"net"
	"testing"
	"time"
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

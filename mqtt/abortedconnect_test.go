package mqtt

import (
	"net"
	"slices"
	"testing"
	"time"

	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/mqstream/mqstream/internal/testutil"
)

// heldRecordingRemote holds claims as heldClaimRemote does and records
// what is broadcast.
type heldRecordingRemote struct {
	*heldClaimRemote
	rec broadcastRecorder
}

func (r *heldRecordingRemote) Broadcast(msg []byte) { r.rec.Broadcast(msg) }

// TestConnectionGoneBeforeItsConnackLeavesNothing: a client that sends its
// CONNECT (with a will) and resets the connection while its claim is out
// makes mochi fail the CONNACK and skip OnSessionEstablished and
// OnDisconnect. Its claim, its will on the other nodes and its place in
// the client list must go all the same.
func TestConnectionGoneBeforeItsConnackLeavesNothing(t *testing.T) {
	for _, clean := range []bool{true, false} {
		rem := &heldRecordingRemote{heldClaimRemote: &heldClaimRemote{entered: make(chan struct{}), release: make(chan struct{})}}
		n := startStateBroker(t, func(o *Options) { o.Remote, o.NodeID = rem, "n1" })
		id := "ghost"
		rem.hold.Store(&id)
		c := dialRaw(t, n.addr, 4)
		c.send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Connect},
			Connect: packets.ConnectParams{ProtocolName: []byte("MQTT"), ClientIdentifier: id, Keepalive: 30, Clean: clean,
				WillFlag: true, WillTopic: "wills/ghost", WillPayload: []byte("gone")}})
		<-rem.entered
		if err := c.conn.(*net.TCPConn).SetLinger(0); err != nil {
			t.Fatal(err)
		}
		c.drop() // a reset: the CONNACK cannot be written
		close(rem.release)
		testutil.Eventually(t, 5*time.Second, "the claim to go", func() bool {
			n.b.claims.mu.Lock()
			defer n.b.claims.mu.Unlock()
			return n.b.claims.claims[id] == nil && len(n.b.claims.byConn) == 0
		})
		testutil.Eventually(t, 5*time.Second, "the other nodes told to forget the will", func() bool {
			rem.rec.mu.Lock()
			defer rem.rec.mu.Unlock()
			return slices.ContainsFunc(rem.rec.sent, func(m []byte) bool { return m[0] == forwardWillClear })
		})
		left := 0
		n.b.catchUp.since.Range(func(any, any) bool { left++; return true })
		if left > 0 {
			t.Fatalf("clean %v: the catch-up hook holds %d connections", clean, left)
		}
		if clean {
			testutil.Eventually(t, 5*time.Second, "the clean session to end", func() bool {
				_, ok := n.b.server.Clients.Get(id)
				return !ok
			})
		} else if s, ok := sessionInfo(n.b, id); !ok || s.Connected {
			t.Fatalf("clean %v: the persistent session: %+v %v", clean, s, ok)
		}
	}
}

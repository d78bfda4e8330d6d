package mqtt

import (
	"fmt"
	"testing"

	"github.com/mochi-mqtt/server/v2/packets"
)

// TestStampsOfCleanSessionsAreForgotten: in cluster mode, clients with
// clean sessions (nothing kept on disk) leave no claim stamp behind (the
// stamp is settled before the CONNACK).
func TestStampsOfCleanSessionsAreForgotten(t *testing.T) {
	n := startStateBroker(t, func(o *Options) { o.Remote, o.NodeID = aloneRemote{}, "n1" })
	for i := range 20 {
		id := fmt.Sprintf("clean-%d", i)
		c := dialRaw(t, n.addr, 4)
		c.connect(id, true, packets.Properties{})
		c.drop()
		waitGone(t, n.b, id)
	}
	n.b.state.mu.Lock()
	left := len(n.b.state.mu.stamps)
	n.b.state.mu.Unlock()
	if left != 0 {
		t.Fatalf("%d claim stamps kept for clients that have no session", left)
	}
}

package shards

import (
	"testing"
	"time"
)

// TestStuckLayoutChangeDoesNotSpin: a layout change that cannot finish
// (its new replica is down) does not make the group's leader write a
// commit notice every retry for as long as it waits.
func TestStuckLayoutChangeDoesNotSpin(t *testing.T) {
	c := newCluster(t, 3, 1, 3)
	c.waitLeaders()
	n4 := c.addNode(Peer{ID: "n4", RPC: "n4:7947"})
	n4.stop() // down before it was ever added
	next := Layout{Version: c.layout.Version + 1, Shards: [][]Peer{{c.nodes[0].self, c.nodes[1].self, n4.self}}}
	c.update(next)
	notices := func() uint64 {
		var n uint64
		for _, nd := range c.nodeList() {
			if set, _ := nd.running(); set != nil {
				n += set.CommitNotices()
			}
		}
		return n
	}
	// Nothing to poll for: the test is that nothing happens over a few
	// seconds of waiting (a notice every manager pass, 300 ms with
	// LocalTimers, without the fix).
	time.Sleep(time.Second)
	before := notices()
	time.Sleep(3 * time.Second)
	if got := notices() - before; got > 2 {
		t.Fatalf("%d commit notices in 3 s on an idle cluster whose layout change waits for a down node", got)
	}
}

package shards

import (
	"context"
	"errors"
	"testing"
)

// TestMembershipCheckAnswers: a replica of the group says whether its
// configuration lists a node; only the leader says a node is removed; a
// node without a replica, a shard out of range and a garbled request
// get no such answer.
func TestMembershipCheckAnswers(t *testing.T) {
	c := newCluster(t, 3, 2, 2) // shard 0 on n1, n2; shard 1 on n2, n3
	leaders := c.waitLeaders()
	ctx := context.Background()
	ask := func(nd *testNode, shard int, node string) byte {
		t.Helper()
		resp, err := nd.set.HandleMembers(ctx, "", encodeMembersRequest(shard, node))
		if err != nil || len(resp) != 1 {
			t.Fatalf("%s, shard %d, node %s: %v %v", nd.self.ID, shard, node, resp, err)
		}
		return resp[0]
	}
	leader0 := c.nodes[leaders[0]]
	follower0 := c.nodes[0]
	if follower0 == leader0 {
		follower0 = c.nodes[1]
	}
	for _, nd := range []*testNode{leader0, follower0} {
		if got := ask(nd, 0, "n1"); got != memberListed {
			t.Errorf("%s: n1 in shard 0: %d, want listed", nd.self.ID, got)
		}
	}
	if got := ask(leader0, 0, "n3"); got != memberRemoved {
		t.Errorf("leader of shard 0: n3: %d, want removed", got)
	}
	if got := ask(follower0, 0, "n3"); got != memberUnknown {
		t.Errorf("follower of shard 0: n3: %d, want unknown", got)
	}
	if got := ask(c.nodes[2], 0, "n3"); got != memberUnknown {
		t.Errorf("n3, no replica of shard 0: %d, want unknown", got)
	}
	for _, req := range [][]byte{encodeMembersRequest(7, "n1"), {9, 0, 0}, append(encodeMembersRequest(0, "n1"), 1)} {
		if _, err := leader0.set.HandleMembers(ctx, "", req); !errors.Is(err, ErrBadEntry) {
			t.Errorf("request %v: %v, want ErrBadEntry", req, err)
		}
	}
}

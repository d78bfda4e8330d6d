package node

import (
	"slices"
	"testing"
)

// TestMergeUsersNamesAViewOnce: a view kept on every node is named once
// (as this node's); a query running on one other node is named with it.
func TestMergeUsersNamesAViewOnce(t *testing.T) {
	peers := map[string]queryUsers{
		"node2": {Readers: []string{"per_sensor (view)", "hot (query)"}},
		"node1": {Readers: []string{"per_sensor (view)"}, Writers: []string{"copy (query)"}},
	}
	r, w := mergeUsers([]string{"per_sensor (view)"}, nil, peers)
	if want := []string{"per_sensor (view)", "hot (query) (on node2)"}; !slices.Equal(r, want) {
		t.Fatalf("readers %q, want %q", r, want)
	}
	if want := []string{"copy (query) (on node1)"}; !slices.Equal(w, want) {
		t.Fatalf("writers %q, want %q", w, want)
	}
}

package node

import (
	"slices"
	"testing"

	"github.com/mqstream/mqstream/cluster"
)

// TestStreamIDsOnlyWhenEveryMemberDecodesThem: creations and deletions
// get ids (shards.Options.AdminIDs) only when every member listed, down
// or gone ones included, announces featureAdminIDs: a member of an
// earlier version could not decode such an entry.
func TestStreamIDsOnlyWhenEveryMemberDecodesThem(t *testing.T) {
	for _, f := range []string{featureAdminIDs, featureDedupeFloors} {
		if !slices.Contains(clusterFeatures(), f) {
			t.Fatalf("this node announces %v, without %s", clusterFeatures(), f)
		}
	}
	now := []string{featureAppends, featureAdminIDs}
	cases := []struct {
		name    string
		members []cluster.Member
		want    bool
	}{
		{"none known", nil, false},
		{"all announce it", []cluster.Member{{ID: "a", Status: "alive", Features: now}, {ID: "b", Status: "suspect", Features: now}}, true},
		{"an earlier version alive", []cluster.Member{{ID: "a", Status: "alive", Features: now}, {ID: "b", Status: "alive", Features: []string{featureAppends}}}, false},
		{"an earlier version failed", []cluster.Member{{ID: "a", Status: "alive", Features: now}, {ID: "b", Status: "failed"}}, false},
		{"an earlier version left", []cluster.Member{{ID: "a", Status: "alive", Features: now}, {ID: "b", Status: "left"}}, false},
	}
	for _, c := range cases {
		if got := allAnnounce(c.members, featureAdminIDs); got != c.want {
			t.Errorf("%s: %v, want %v", c.name, got, c.want)
		}
	}
}

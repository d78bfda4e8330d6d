package node

import (
	"errors"
	"fmt"
	"testing"

	"github.com/mqstream/mqstream/query"
	"github.com/mqstream/mqstream/shared"
	"github.com/mqstream/mqstream/streams"
)

// TestForwardedAdministrationKeepsTheErrorsCause: query and group
// administration carried to another node brings its refusals back with
// the sentinel they wrap, so the API answers as it does for the same
// refusal on this node (503 for a store or shard refusing writes, not
// 500).
func TestForwardedAdministrationKeepsTheErrorsCause(t *testing.T) {
	for _, sentinel := range []error{streams.ErrUnavailable, query.ErrQueryNotFound, query.ErrStreamInUse} {
		back := toWire(fmt.Errorf("pausing q1: %w", sentinel)).err("n2")
		if !errors.Is(back, sentinel) {
			t.Errorf("query administration: %v came back as %v", sentinel, back)
		}
	}
	for _, sentinel := range []error{streams.ErrUnavailable, shared.ErrGroupNotFound, shared.ErrNotOwner} {
		if got := adminSentinel(adminKind(fmt.Errorf("deleting g: %w", sentinel))); got != sentinel {
			t.Errorf("group administration: %v came back as %v", sentinel, got)
		}
	}
}

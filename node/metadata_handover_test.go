package node

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/mqstream/mqstream/cluster/meta"
	"github.com/mqstream/mqstream/internal/testutil"
)

// TestMetadataLeaderHandsOverOnClose: the node leading the metadata
// group, closed gracefully, hands the group to another node while its
// transport is still up (its log says so), and a layout change through
// a remaining node then succeeds.
func TestMetadataLeaderHandsOverOnClose(t *testing.T) {
	logs := map[string]*testutil.Buffer{"n1": {}, "n2": {}, "n3": {}}
	nodes, _ := startClusterLogged(t, nil, func(id string) *slog.Logger {
		return slog.New(slog.NewTextHandler(logs[id], nil))
	})
	var leader *Node
	var rest []*Node
	testutil.Eventually(t, 20*time.Second, "a leader of the metadata group", func() bool {
		leader, rest = nil, nil
		for _, n := range nodes {
			if n.repl.meta.IsLeader() {
				leader = n
			} else {
				rest = append(rest, n)
			}
		}
		return leader != nil
	})
	if err := leader.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if log := logs[leader.ID()].String(); !strings.Contains(log, "handed the metadata group's leadership over before stopping") {
		var about []string
		for _, line := range strings.Split(log, "\n") {
			if strings.Contains(line, "group=meta") || strings.Contains(line, "metadata") {
				about = append(about, line)
			}
		}
		t.Fatalf("%s stopped without handing the metadata group over; its log about it:\n%s", leader.ID(), strings.Join(about, "\n"))
	}
	testutil.Eventually(t, 20*time.Second, "another node to lead the metadata group", func() bool {
		return rest[0].repl.meta.IsLeader() || rest[1].repl.meta.IsLeader()
	})
	m := rest[0].repl.meta
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	testutil.Eventually(t, 20*time.Second, "a layout change through "+rest[0].ID(), func() bool {
		st := m.State()
		next := st.Layout
		next.Version++
		err := m.SetLayout(ctx, st.Layout.Version, next)
		if err != nil && !errors.Is(err, meta.ErrStale) { // stale: the planner came first
			t.Fatalf("layout change: %v", err)
		}
		return err == nil
	})
}

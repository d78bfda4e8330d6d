package meta

import (
	"bytes"
	"context"
	"errors"
	"io"
	"testing"
	"time"

	"github.com/mqstream/mqstream/internal/testutil"
)

// TestIncarnationsAreRegisteredOnce: the group records each node's data
// directory the first time, accepts it again, and refuses another one
// for the same node (ErrLostData), through a member that forwards to the
// leader (Vouch, for a node not yet a member) as through a member (Register);
// a removed node cannot register; the record survives in snapshots.
func TestIncarnationsAreRegisteredOnce(t *testing.T) {
	n, ms := newNet(t, "n1", "n2", "n3")
	f := follower(t, ms)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	for _, m := range ms {
		if err := m.Register(ctx, m.self.ID, "dir-"+m.self.ID); err != nil {
			t.Fatalf("register %s: %v", m.self.ID, err)
		}
	}
	if err := f.Register(ctx, "n1", "dir-n1"); err != nil {
		t.Fatalf("registering the same directory again: %v", err)
	}
	err := Vouch(ctx, n, f.self.RPC, "n1", "new-dir")
	if !errors.Is(err, ErrLostData) {
		t.Fatalf("another directory for n1: %v, want ErrLostData", err)
	}
	if err := Vouch(ctx, n, f.self.RPC, "n4", "dir-n4"); err != nil {
		t.Fatalf("a new node: %v", err)
	}
	if err := Vouch(ctx, n, f.self.RPC, "n4", "other"); !errors.Is(err, ErrLostData) {
		t.Fatalf("another directory for n4: %v, want ErrLostData", err)
	}
	if err := ms[0].Remove(ctx, "n4"); err != nil {
		t.Fatal(err)
	}
	if err := Vouch(ctx, n, f.self.RPC, "n4", "dir-n4"); !errors.Is(err, ErrRemoved) {
		t.Fatalf("a removed node: %v, want ErrRemoved", err)
	}
	if err := Vouch(ctx, n, "nowhere:1", "n5", "x"); err == nil || errors.Is(err, ErrLostData) {
		t.Fatalf("through an unreachable member: %v, want a plain error", err)
	}

	want := map[string]string{"n1": "dir-n1", "n2": "dir-n2", "n3": "dir-n3", "n4": "dir-n4"}
	testutil.Eventually(t, 10*time.Second, "every member to apply the registrations", func() bool {
		for _, m := range ms {
			got := m.State().Incarnations
			if len(got) != len(want) {
				return false
			}
			for k, v := range want {
				if got[k] != v {
					return false
				}
			}
		}
		return true
	})
	// A snapshot carries them.
	snap, err := f.fsm.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	var restored fsm
	if err := restored.Restore(io.NopCloser(bytes.NewReader(snap.(snapshot)))); err != nil {
		t.Fatal(err)
	}
	if got := restored.state().Incarnations; got["n2"] != "dir-n2" || len(got) != len(want) {
		t.Fatalf("restored incarnations %v, want %v", got, want)
	}
}

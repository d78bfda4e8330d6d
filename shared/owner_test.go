package shared

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/mqstream/mqstream/internal/testutil"
	"github.com/mqstream/mqstream/streams"
)

// ownership is a test's Options.Owner: whether this node runs groups, in
// which epoch.
type ownership struct {
	mu    sync.Mutex
	owned bool
	epoch uint64
}

func (o *ownership) set(owned bool, epoch uint64) {
	o.mu.Lock()
	o.owned, o.epoch = owned, epoch
	o.mu.Unlock()
}

func (o *ownership) owner(string, string) (uint64, bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.epoch, o.owned
}

// TestOwnershipMovesGroups: a group this node does not own is neither
// joined nor shown; Refresh stops a group whose ownership went and starts
// it again, from its persisted progress, when ownership comes back in a
// new epoch.
func TestOwnershipMovesGroups(t *testing.T) {
	own := &ownership{}
	e := startEnv(t, envOptions{owner: own.owner})
	if _, err := e.groups.Join("g", "jobs/#", nil); !errors.Is(err, ErrNotOwner) {
		t.Fatalf("join of a group owned elsewhere: %v, want ErrNotOwner", err)
	}
	if _, err := e.groups.Group(context.Background(), "g", "jobs/#"); !errors.Is(err, ErrNotOwner) {
		t.Fatalf("stats of a group owned elsewhere: %v, want ErrNotOwner", err)
	}

	own.set(true, 1)
	if err := e.groups.Refresh(); err != nil {
		t.Fatal(err)
	}
	first := e.consumer("first", "$share/g/jobs/#", 1, false)
	e.publish(constTopic("jobs/a"), "a", 0, 10)
	testutil.Eventually(t, 10*time.Second, "10 delivered and acked", func() bool {
		return first.count() == 10 && e.stats("g", "jobs/#").Acked == 10
	})

	own.set(false, 0)
	if err := e.groups.Refresh(); err != nil {
		t.Fatal(err)
	}
	if got := e.groups.Groups(context.Background()); len(got) != 0 {
		t.Fatalf("groups after ownership went: %+v", got)
	}
	e.publish(constTopic("jobs/a"), "b", 0, 10)

	own.set(true, 2)
	if err := e.groups.Refresh(); err != nil {
		t.Fatal(err)
	}
	// The member joined the stopped instance; a new subscription joins the
	// running one.
	second := e.consumer("second", "$share/g/jobs/#", 1, false)
	testutil.Eventually(t, 10*time.Second, "the 10 new records", func() bool { return second.count() >= 10 })
	testutil.Eventually(t, 10*time.Second, "lag 0", func() bool { return e.stats("g", "jobs/#").Lag == 0 })
	got := second.payloads()
	sort.Strings(got)
	var want []string
	for i := range 10 {
		want = append(want, fmt.Sprintf("b-%d", i))
	}
	sort.Strings(want)
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("after the hand-back got %v, want only the records published meanwhile %v", got, want)
	}
}

// epochRecorder is a progress store that counts the writes made through
// it by the epoch they were made in (0: not through InEpoch).
type epochRecorder struct {
	ProgressStore
	mu     sync.Mutex // guards epochs
	epochs map[uint64]int
}

func (r *epochRecorder) note(epoch uint64) {
	r.mu.Lock()
	r.epochs[epoch]++
	r.mu.Unlock()
}

func (r *epochRecorder) counts() map[uint64]int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return maps.Clone(r.epochs)
}

func (r *epochRecorder) Write(ctx context.Context, writes ...streams.KVWrite) error {
	r.note(0)
	return r.ProgressStore.Write(ctx, writes...)
}

func (r *epochRecorder) Submit(writes []streams.KVWrite, noSync bool, done func(error)) error {
	r.note(0)
	return r.ProgressStore.Submit(writes, noSync, done)
}

func (r *epochRecorder) InEpoch(epoch uint64) ProgressStore { return epochWrites{r: r, epoch: epoch} }

type epochWrites struct {
	r     *epochRecorder
	epoch uint64
}

func (w epochWrites) Scan(prefix []byte, fn func(key, value []byte) error) error {
	return w.r.ProgressStore.Scan(prefix, fn)
}

func (w epochWrites) Write(ctx context.Context, writes ...streams.KVWrite) error {
	w.r.note(w.epoch)
	return w.r.ProgressStore.Write(ctx, writes...)
}

func (w epochWrites) Submit(writes []streams.KVWrite, noSync bool, done func(error)) error {
	w.r.note(w.epoch)
	return w.r.ProgressStore.Submit(writes, noSync, done)
}

// TestGroupWritesInItsEpoch: with a progress store that fences writes by
// epoch (a cluster's: the group's shard term), a group's creation and
// its progress are written in the epoch it runs under, so that a group
// of an earlier epoch still running here can never overwrite what was
// written since.
func TestGroupWritesInItsEpoch(t *testing.T) {
	rec := &epochRecorder{epochs: map[uint64]int{}}
	e := startEnv(t, envOptions{
		owner:       func(string, string) (uint64, bool) { return 7, true },
		progressVia: func(p ProgressStore) ProgressStore { rec.ProgressStore = p; return rec },
	})
	e.consumer("w", "$share/g/jobs/#", 1, false)
	e.publish(constTopic("jobs/a"), "job", 0, 10)
	testutil.Eventually(t, 10*time.Second, "10 acknowledged", func() bool { return e.stats("g", "jobs/#").Acked == 10 })
	testutil.Eventually(t, 10*time.Second, "progress written in epoch 7", func() bool { return rec.counts()[7] >= 2 })
	if got := rec.counts(); len(got) != 1 {
		t.Fatalf("progress writes by epoch: %v, want all in epoch 7", got)
	}
}

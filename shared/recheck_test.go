package shared

import (
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mqstream/mqstream/internal/testutil"
	"github.com/mqstream/mqstream/streams"
)

// missingOnce answers one Notify with "not found" once armed, as a reader
// in cluster mode could when a replica leaving the shard answered.
type missingOnce struct {
	*streams.Store
	armed atomic.Bool
}

func (m *missingOnce) Notify(name string) (<-chan struct{}, uint64, error) {
	if m.armed.CompareAndSwap(true, false) {
		return nil, 0, fmt.Errorf("%w: %q", streams.ErrStreamNotFound, name)
	}
	return m.Store.Notify(name)
}

// TestSourceReportedMissingOnceKeepsItsProgress: one "not found" for a
// source stream that is still there (the same stream: its creation time)
// does not make the group drop its progress and start the stream over,
// which redelivered every acknowledged record.
func TestSourceReportedMissingOnceKeepsItsProgress(t *testing.T) {
	var via *missingOnce
	e := startEnv(t, envOptions{readVia: func(s *streams.Store) Store {
		via = &missingOnce{Store: s}
		return via
	}})
	c := e.consumer("w", "$share/g/jobs/#", 1, false)
	e.publish(constTopic("jobs/a"), "job", 0, 10)
	testutil.Eventually(t, 10*time.Second, "10 acknowledged", func() bool { return e.stats("g", "jobs/#").Acked == 10 })
	via.armed.Store(true)
	e.publish(constTopic("jobs/a"), "job", 10, 1) // the watcher asks Notify again
	e.publish(constTopic("other/x"), "o", 0, 1)   // a stream created: the group lists its sources again
	testutil.Eventually(t, 10*time.Second, "the eleventh record", func() bool {
		seen := map[string]bool{}
		for _, p := range c.payloads() {
			seen[p] = true
		}
		return len(seen) == 11
	})
	seen := map[string]int{}
	for _, p := range c.payloads() {
		if seen[p]++; seen[p] > 1 {
			t.Errorf("%s delivered again after a transient not-found", p)
		}
	}
}

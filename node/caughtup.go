package node

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mqstream/mqstream/cluster/shards"
)

// Caught up. Once the shards run and every shard this node holds has a
// leader, /readyz still waits until each replica here has applied what
// its shard's leader had applied when this node first asked: a node
// restarted after missing writes reports ready only once it has them,
// so a rolling restart that waits for readiness never stops the next
// node while the last one still lacks the records. MQTT clients are
// admitted before that (their writes go to the shards' leaders).

// caughtUp is the replication's catch-up latch.
type caughtUp struct {
	done   atomic.Bool
	mu     sync.Mutex // guards reason
	reason string
}

func (c *caughtUp) set(reason string) {
	c.mu.Lock()
	c.reason = reason
	c.mu.Unlock()
}

// state reports whether the node has caught up, or what it waits for.
func (c *caughtUp) state() (bool, string) {
	if c.done.Load() {
		return true, ""
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.reason == "" {
		return false, "catching up with the shards' leaders"
	}
	return false, c.reason
}

// catchUpPoll is how often awaitCaughtUp looks again.
const catchUpPoll = 100 * time.Millisecond

// awaitCaughtUp latches r.caught once every replica this node holds has
// applied its target: the applied index its shard's leader reported when
// first asked (0 for the shards this node leads).
func (r *replication) awaitCaughtUp() {
	defer r.wg.Done()
	targets := map[int]uint64{}
	tick := time.NewTicker(catchUpPoll)
	defer tick.Stop()
	for {
		done, reason := r.catchUpStep(targets)
		if done {
			r.caught.done.Store(true)
			r.n.log.Info("caught up with the shards' leaders", "shards", len(targets))
			return
		}
		r.caught.set(reason)
		select {
		case <-r.done:
			return
		case <-tick.C:
		}
	}
}

// catchUpStep asks the leaders of the shards without a target for their
// applied indexes and reports whether every replica here reached its
// target, or the first that has not.
func (r *replication) catchUpStep(targets map[int]uint64) (bool, string) {
	list := r.n.Shards()
	if list == nil {
		return false, "starting the shards"
	}
	return catchUpCheck(list, r.n.id, targets, func() map[string]map[string]uint64 {
		ctx, cancel := context.WithTimeout(context.Background(), figuresTimeout)
		defer cancel()
		return fromPeers[map[string]uint64](ctx, r.n, appliedService, nil)
	})
}

// catchUpCheck is catchUpStep over list, the shards as node self sees
// them; ask returns the other nodes' applied indexes (by node, then by
// shard id), and is called only when a shard led elsewhere has no target
// yet.
func catchUpCheck(list []shards.ShardStatus, self string, targets map[int]uint64, ask func() map[string]map[string]uint64) (bool, string) {
	var asking bool
	for _, st := range list {
		if _, ok := targets[st.ID]; !ok && st.Local && st.Leader != "" {
			if st.Leader == self {
				targets[st.ID] = 0
			} else {
				asking = true
			}
		}
	}
	if asking {
		byNode := ask()
		for _, st := range list {
			if _, ok := targets[st.ID]; ok || !st.Local || st.Leader == "" {
				continue
			}
			if applied, ok := byNode[st.Leader][strconv.Itoa(st.ID)]; ok {
				targets[st.ID] = applied
			}
		}
	}
	for _, st := range list {
		if !st.Local {
			continue
		}
		target, ok := targets[st.ID]
		switch {
		case !ok && st.Leader == "":
			return false, fmt.Sprintf("catching up: shard %d has no leader", st.ID)
		case !ok:
			return false, fmt.Sprintf("catching up: waiting for %s, the leader of shard %d, to tell its applied index", st.Leader, st.ID)
		case st.Applied < target:
			return false, fmt.Sprintf("catching up: shard %d has applied %d of the %d its leader had", st.ID, st.Applied, target)
		}
	}
	return true, ""
}

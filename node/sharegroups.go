package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mqstream/mqstream/cluster/groups"
	"github.com/mqstream/mqstream/cluster/shards"
	"github.com/mqstream/mqstream/shared"
	"github.com/mqstream/mqstream/streams"
)

// Consumer groups in cluster mode: the leader of the shard a group's key
// hashes to runs the group (shared.Options.Owner), its progress goes
// through that shard's replicated key-value namespace (groupProgress), and
// members connected to other nodes reach it through the relay (package
// cluster/groups). See docs/design.md "Consumer groups across nodes".

// groupShardKey is what a group's shard is the hash of.
func groupShardKey(name, filter string) string { return "$share/" + name + "/" + filter }

// leaders is a snapshot of who leads each shard, and in which term.
type leaders struct {
	self  string
	nodes []string // by shard; "" while none is known
	terms []uint64
}

// groupPlacement says which node runs each consumer group: the leader of
// its shard, as last seen (refresh).
type groupPlacement struct {
	n    *Node
	snap atomic.Pointer[leaders]
	// elsewhere is the other members' view of the leaders of the shards
	// they hold (leadersService), by node then shard, as last fetched
	// (followLeadersElsewhere): only a shard's replicas know its leader,
	// and a node that holds no replica of a group's shard still
	// administers the group and relays its members there.
	elsewhere atomic.Pointer[map[string]map[string]shardLeader]
}

// refresh takes a new snapshot of the shards' leaders; it reports
// whether anything changed.
func (p *groupPlacement) refresh(set *shards.Set) bool {
	st := set.Status()
	if v := p.elsewhere.Load(); v != nil && holdsNotAll(st) {
		st = withLeaders(st, *v)
	}
	next := &leaders{self: p.n.id, nodes: make([]string, len(st)), terms: make([]uint64, len(st))}
	for i, s := range st {
		next.nodes[i] = s.Leader
		if s.Leader == p.n.id {
			// Our own leadership's term comes from Raft itself: the
			// term progress writes are fenced with.
			if term, ok := set.Lead(i); ok {
				next.terms[i] = term
				continue
			}
			next.nodes[i] = ""
		}
		next.terms[i] = s.Term
	}
	old := p.snap.Swap(next)
	return old == nil || !slicesEqual(old.nodes, next.nodes) || !slicesEqual(old.terms, next.terms)
}

func slicesEqual[T comparable](a, b []T) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// Dispatcher implements groups.Placement.
func (p *groupPlacement) Dispatcher(name, filter string) (string, uint64, bool) {
	s := p.snap.Load()
	if s == nil || len(s.nodes) == 0 {
		return "", 0, false
	}
	i := shards.ShardOf(groupShardKey(name, filter), len(s.nodes))
	return s.nodes[i], s.terms[i], s.nodes[i] != ""
}

// owner implements shared.Options.Owner.
func (p *groupPlacement) owner(name, filter string) (uint64, bool) {
	node, term, ok := p.Dispatcher(name, filter)
	return term, ok && node == p.n.id
}

// groupProgress is shared.ProgressStore over the shards' replicated
// key-value namespaces: a group's definition and cursors live in its
// shard's, written by that shard's leader only, fenced by its term.
type groupProgress struct {
	r    *replicated
	self string // this node's id
	// term fences the writes (InEpoch); 0: the term this node leads the
	// group's shard in when it writes.
	term uint64
}

var _ shared.EpochProgress = groupProgress{}

// InEpoch implements shared.EpochProgress: a group's writes under the
// shard term it was started in (its ownership epoch), refused once the
// shard has moved on to another term, even if this node leads it again.
func (g groupProgress) InEpoch(epoch uint64) shared.ProgressStore {
	g.term = epoch
	return g
}

// errGroupsNotFormed: group progress was written before the shards started.
var errGroupsNotFormed = errors.New("consumer groups: the cluster has not formed yet")

// Scan reads every shard's namespace (nothing before the cluster formed:
// no group runs here then).
func (g groupProgress) Scan(prefix []byte, fn func(key, value []byte) error) error {
	set := g.r.set.Load()
	if set == nil {
		return nil
	}
	layout := set.Layout()
	for i := range layout.Shards {
		if !layout.Holds(i, g.self) {
			continue // no replica here (more nodes than the replication factor): nor a group it leads
		}
		if err := set.ScanKV(i, prefix, fn); err != nil {
			return err
		}
	}
	return nil
}

// Write replicates writes through the shard of their group, as its
// leader in the current term.
func (g groupProgress) Write(ctx context.Context, writes ...streams.KVWrite) error {
	set := g.r.set.Load()
	if set == nil {
		return errGroupsNotFormed
	}
	if len(writes) == 0 {
		return nil
	}
	shard := -1
	for _, w := range writes {
		name, filter, err := groupOfKey(w.Key)
		if err != nil {
			return err
		}
		s := shards.ShardOf(groupShardKey(name, filter), len(set.Layout().Shards))
		if shard >= 0 && s != shard {
			return fmt.Errorf("consumer groups: one progress write spans two shards (%d, %d)", shard, s)
		}
		shard = s
	}
	term, ok := set.Lead(shard)
	if !ok {
		return fmt.Errorf("%w: shard %d is led by another node", shared.ErrNotOwner, shard)
	}
	if g.term != 0 && g.term != term {
		return fmt.Errorf("%w: shard %d is led here in term %d, the group runs under term %d", shared.ErrNotOwner, shard, term, g.term)
	}
	return set.WriteKV(ctx, shard, term, writes)
}

// Submit writes in the background; done gets the outcome.
func (g groupProgress) Submit(writes []streams.KVWrite, _ bool, done func(error)) error {
	writeInBackground(g.Write, writes, done)
	return nil
}

// writeInBackground runs write(writes) on a goroutine of its own, for at
// most 10 s, and passes its outcome to done (if not nil): the Submit of a
// key/value namespace replicated through a shard, whose writes wait for
// their commit.
func writeInBackground(write func(context.Context, ...streams.KVWrite) error, writes []streams.KVWrite, done func(error)) {
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		err := write(ctx, writes...)
		if done != nil {
			done(err)
		}
	}()
}

// groupOfKey returns the group a progress key belongs to: package
// shared's keys are "m/" name 0 filter and "c/" name 0 filter 0 stream.
func groupOfKey(key []byte) (name, filter string, err error) {
	k := string(key)
	if !strings.HasPrefix(k, "m/") && !strings.HasPrefix(k, "c/") {
		return "", "", fmt.Errorf("consumer groups: unknown progress key %q", k)
	}
	name, rest, ok := strings.Cut(k[2:], "\x00")
	if !ok {
		return "", "", fmt.Errorf("consumer groups: progress key %q names no filter", k)
	}
	filter, _, _ = strings.Cut(rest, "\x00")
	return name, filter, nil
}

// relayTransport reaches other nodes for the relay: calls over the RPC
// mux, frames over the routes' ordered per-peer channel.
type relayTransport struct{ n *Node }

func (t relayTransport) Call(ctx context.Context, node, service string, req []byte) ([]byte, error) {
	if t.n.members == nil {
		return nil, errGroupsNotFormed
	}
	for _, m := range t.n.members.Members() {
		if m.ID == node && m.RPC != "" {
			return t.n.repl.mux.Call(ctx, m.RPC, service, req)
		}
	}
	return nil, fmt.Errorf("node %s is not a known member", node)
}

func (t relayTransport) Send(node string, msg []byte) { t.n.routes.SendTo(node, msg) }

// openGroupRelay makes the relay MQTT clients' shared subscriptions go
// through (cluster mode, after the routes it sends frames over).
func (n *Node) openGroupRelay() {
	n.relay = groups.New(groups.Options{Self: n.id, Local: n.groups, Placement: n.groupPlace,
		Transport: relayTransport{n}, Logger: n.log})
	n.onClose("group relay", func(context.Context) error { n.relay.Close(); return nil })
	n.repl.mux.Handle(groups.JoinService, n.relay.HandleJoin)
	n.repl.mux.Handle(groups.LeaveService, n.relay.HandleLeave)
}

// followGroupLeaders runs consumer groups where their shards are led:
// once the shards started, at every leadership change (and every second,
// in case a term moved without one), groups this node now leads start
// from their replicated progress, groups it no longer leads stop, and the
// relay moves memberships to the new dispatchers.
func (n *Node) followGroupLeaders() {
	failed := false
	n.followLeaders("group leaders", func(set *shards.Set) {
		if n.groupPlace.refresh(set) || failed {
			err := n.groups.Refresh()
			if failed = err != nil; failed {
				// A shard without a leader here, or one this node no
				// longer holds, is the usual passing state while a
				// layout changes: a warning; anything else an error.
				level := slog.LevelError
				if errors.Is(err, shards.ErrNoLeader) || errors.Is(err, shards.ErrNotHeld) {
					level = slog.LevelWarn
				}
				n.log.Log(context.Background(), level, "consumer groups: applying a change of shard leaders failed; retrying", "error", err)
			}
			n.relay.Reconcile()
		}
	})
}

// followLeadersElsewhere fetches, every second while this node holds no
// replica of some shards, the other members' view of those shards'
// leaders for the group placement; on a goroutine of its own, each fetch
// bounded by figuresTimeout, so that a hung peer does not hold up the
// placement's own changes.
func (n *Node) followLeadersElsewhere() {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	n.onClose("group leaders elsewhere", func(context.Context) error { cancel(); wg.Wait(); return nil })
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			if set := n.repl.store.set.Load(); set != nil && holdsNotAll(set.Status()) {
				fetch, done := context.WithTimeout(ctx, figuresTimeout)
				v := fromPeers[map[string]shardLeader](fetch, n, leadersService, nil)
				done()
				n.groupPlace.elsewhere.Store(&v)
			}
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	}()
}

// followLeaders calls step once the shards started, then at every change
// of their leaders and every second, on a goroutine of its own, until the
// node closes (name is its part in the node's shutdown).
func (n *Node) followLeaders(name string, step func(set *shards.Set)) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	n.onClose(name, func(context.Context) error { close(done); wg.Wait(); return nil })
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(time.Second)
		defer t.Stop()
		var set *shards.Set
		for set == nil {
			if set = n.repl.store.set.Load(); set != nil {
				break
			}
			select {
			case <-done:
				return
			case <-time.After(50 * time.Millisecond):
			}
		}
		for {
			ch := set.LeadershipChanged()
			step(set)
			select {
			case <-done:
				return
			case <-ch:
			case <-t.C:
			}
		}
	}()
}

package node

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/mqstream/mqstream/cluster"
	"github.com/mqstream/mqstream/cluster/meta"
	"github.com/mqstream/mqstream/cluster/raftlog"
	"github.com/mqstream/mqstream/cluster/shards"
	"github.com/mqstream/mqstream/streams"
)

// The metadata group at work on a node (cluster/meta): every node follows
// the layout it keeps (hands each new one to the shards and keeps it in
// the data directory), and the group's leader plans the layout when the
// members change: a node that joins is given its share of the replicas
// and preferred leaders, a node down for longer than
// cluster.dead_node_timeout has its replicas recreated on the others
// (while enough others are up), a removed node loses its replicas. A
// node that meets a formed cluster joins the group, which refuses it when
// it was removed for good, and starts its shards once the group has told
// it the layout.

// ErrNodeRemoved: a node removed for good with `mqstream node remove`
// cannot come back with its data.
var ErrNodeRemoved = errors.New("this node was removed from the cluster")

// openMeta opens this node's member of the metadata group.
// A member opened after close began is closed again (errStopped).
func (r *replication) openMeta() error {
	deps, err := r.openGroup(meta.Group)
	if err != nil {
		return err
	}
	m, err := meta.Open(meta.Options{Self: shards.Peer{ID: r.n.id, RPC: r.rpcAddr()}, Deps: deps, Call: r.mux,
		Logger: r.n.log, LogLimit: r.logLimit, Alive: r.alive})
	if err != nil {
		return err
	}
	r.metaMu.Lock()
	shut := r.metaShut
	if !shut {
		r.meta = m
		r.metaOpen.Store(m)
	}
	r.metaMu.Unlock()
	if shut {
		_ = m.Close()
		return errStopped
	}
	r.mux.Handle(meta.Service, m.Handle)
	r.serveLoad()
	return nil
}

// joinFormed makes this node, not a founder, a member of a formed
// cluster: it joins the metadata group through any member, waits until
// the group has told it the layout, keeps the layout and returns it.
func (r *replication) joinFormed() (shards.Layout, error) {
	logged := false
	for {
		err := r.tryJoin()
		switch {
		case err == nil:
			return r.awaitMetaLayout()
		case errors.Is(err, meta.ErrRemoved):
			return shards.Layout{}, r.removedErr()
		}
		if !logged {
			r.n.log.Info("joining the formed cluster: waiting for its metadata group", "error", err)
			logged = true
		}
		select {
		case <-r.done:
			return shards.Layout{}, errStopped
		case <-time.After(time.Second):
		}
	}
}

// tryJoin asks the alive members in turn to take this node in.
func (r *replication) tryJoin() error {
	var last error = errors.New("no other member is alive")
	for _, m := range r.n.members.Members() {
		if m.ID == r.n.id || !m.Up() || m.RPC == "" {
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err := r.meta.Join(ctx, m.RPC)
		cancel()
		if err == nil || errors.Is(err, meta.ErrRemoved) {
			return err
		}
		last = err
	}
	return last
}

func (r *replication) removedErr() error {
	r.n.refused.Store(true)
	if !r.n.holdsData() && !r.n.holdsLayout() {
		// Started afresh: the data directory is not what stops it.
		return fmt.Errorf("%w: node %q was removed from cluster %q with `mqstream node remove`, and a removed node.id is never used again; "+
			"start this node with a new node.id (its data directory %s holds nothing yet)", ErrNodeRemoved, r.n.id, r.n.cfg.Cluster.Name, r.n.cfg.Node.DataDir)
	}
	return fmt.Errorf("%w: node %q was removed from cluster %q with `mqstream node remove` and cannot come back with its data; "+
		"delete its data directory (%s) and start it with a new node.id", ErrNodeRemoved, r.n.id, r.n.cfg.Cluster.Name, r.n.cfg.Node.DataDir)
}

// awaitMetaLayout waits until the metadata group has told this node a
// layout, and keeps it.
func (r *replication) awaitMetaLayout() (shards.Layout, error) {
	for {
		ch := r.meta.Changed()
		st := r.meta.State()
		if st.IsRemoved(r.n.id) {
			return shards.Layout{}, r.removedErr()
		}
		if len(st.Layout.Shards) > 0 {
			if err := r.keepLayout(st.Layout); err != nil {
				return shards.Layout{}, err
			}
			return st.Layout, nil
		}
		select {
		case <-r.done:
			return shards.Layout{}, errStopped
		case <-ch:
		case <-time.After(time.Second):
		}
	}
}

// keepLayout writes the layout to the data directory, so that a restart
// starts the shards with it before the metadata group has a leader.
func (r *replication) keepLayout(l shards.Layout) error {
	b, err := l.Marshal()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := r.n.store.KV("cluster").Write(ctx, streams.KVWrite{Key: layoutKey, Value: b}); err != nil {
		return fmt.Errorf("keep the shard layout: %w", err)
	}
	return nil
}

// checkNotRemoved asks the metadata group, in the background, whether
// this node (restarted with its data) was removed meanwhile; it stops the
// node if so.
func (r *replication) checkNotRemoved() {
	defer r.wg.Done()
	for {
		err := r.tryJoin()
		if err == nil {
			return
		}
		if errors.Is(err, meta.ErrRemoved) {
			r.n.fail(r.removedErr())
			return
		}
		select {
		case <-r.done:
			return
		case <-time.After(2 * time.Second):
		}
	}
}

// follow hands every new layout of the metadata group to the shards and
// keeps it (a write that fails is tried again every second: a node that
// restarted with an older layout than its shards followed would serve
// and bootstrap by that one); it stops the node when the group says it
// was removed.
func (r *replication) follow(set *shards.Set) {
	defer r.wg.Done()
	kept := set.Layout().Version
	for {
		ch := r.meta.Changed()
		st := r.meta.State()
		if st.IsRemoved(r.n.id) {
			r.n.fail(r.removedErr())
			return
		}
		if cur := set.Layout(); len(st.Layout.Shards) > 0 && st.Layout.Version > cur.Version {
			if err := set.Update(st.Layout); err != nil {
				r.n.log.Warn("cannot follow the new shard layout", "version", st.Layout.Version, "error", err)
			} else {
				r.n.log.Info("following a new shard layout", "version", st.Layout.Version, "held", heldCount(st.Layout, r.n.id))
			}
		}
		wait := 10 * time.Second // a missed signal, at worst
		if cur := set.Layout(); cur.Version > kept {
			if err := r.keepLayout(cur); err != nil {
				r.n.log.Warn("cannot keep the shard layout; retrying", "version", cur.Version, "error", err)
				wait = time.Second
			} else {
				kept = cur.Version
			}
		}
		select {
		case <-r.done:
			return
		case <-ch:
		case <-time.After(wait):
		}
	}
}

// plan runs on every node and acts while it leads the metadata group:
// it gives the group the layout the cluster formed with, then replans
// when members join, fail or stay away (candidates), at least once a
// second; a node that does not lead looks every 5 s whether it does now
// (an idle cluster wakes little).
func (r *replication) plan(founding shards.Layout) {
	defer r.wg.Done()
	var meter loadMeter
	var measured time.Time
	for {
		changed := r.n.members.Changed()
		mc := r.meta.Changed()
		every := 5 * time.Second
		if r.meta.IsLeader() {
			every = time.Second
			if time.Since(measured) >= loadEvery {
				measured = time.Now()
				rates := meter.measure(r)
				r.load.Store(&rates)
			}
			if err := r.planOnce(founding); err != nil && !errors.Is(err, meta.ErrStale) && !errors.Is(err, meta.ErrClosed) {
				r.n.log.Warn("cannot plan the shard layout", "error", err)
			}
			timeout := r.n.cfg.Cluster.DeadNodeTimeout
			if err := r.meta.KeepVoters(r.alive, func(id string) bool { return r.down.dead(id, timeout) }); err != nil {
				r.n.log.Warn("cannot hand a dead node's metadata vote to a live one", "error", err)
			}
		} else {
			measured = time.Time{}
			meter = loadMeter{}
			// Whoever leads next starts every node's timer from its own
			// first sighting: a node seen down in an earlier leadership
			// may have been up since, unseen here.
			r.down.forget()
		}
		select {
		case <-r.done:
			return
		case <-changed:
		case <-mc:
		case <-time.After(every):
		}
	}
}

// loadRates returns the shards' measured appends per second (nil when
// unknown).
func (r *replication) loadRates() []float64 {
	if p := r.load.Load(); p != nil {
		return *p
	}
	return nil
}

func (r *replication) planOnce(founding shards.Layout) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st := r.meta.State()
	if len(st.Layout.Shards) == 0 {
		layout := founding
		if len(st.Removed) > 0 {
			// A node the founding layout places was removed before the
			// group recorded any layout (the cluster formed, then lost
			// it at once): the group refuses a layout placing it for
			// good, so record the founding one replanned without it.
			layout = shards.Replan(founding, r.candidates(meta.State{Layout: founding, Removed: st.Removed}), r.n.cfg.Cluster.ReplicationFactor, r.loadRates())
			r.n.log.Info("recording the founding shard layout without the removed nodes", "version", layout.Version, "nodes", layoutMembers(layout), "removed", st.Removed)
		}
		return r.meta.SetLayout(ctx, 0, layout)
	}
	next := shards.Replan(st.Layout, r.candidates(st), r.n.cfg.Cluster.ReplicationFactor, r.loadRates())
	if next.Version == st.Layout.Version {
		return nil
	}
	r.n.log.Info("new shard layout", "version", next.Version, "nodes", layoutMembers(next))
	return r.meta.SetLayout(ctx, st.Layout.Version, next)
}

// candidates are the nodes the layout may use: the alive members of the
// metadata group that were not removed, and the nodes the layout places
// that are down (they keep their replicas but are given none), except
// those down for longer than cluster.dead_node_timeout while at least
// replication_factor nodes are up: their replicas are recreated on the
// others.
func (r *replication) candidates(st meta.State) []shards.Candidate {
	members := map[string]shards.Peer{}
	alive := map[string]bool{}
	for _, m := range r.n.members.Members() {
		members[m.ID] = shards.Peer{ID: m.ID, RPC: m.RPC}
		alive[m.ID] = m.Up() && m.RPC != ""
	}
	var ids []string
	for _, id := range append(layoutMembers(st.Layout), r.meta.Servers()...) {
		if !slices.Contains(ids, id) && !st.IsRemoved(id) {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	up := 0
	for _, id := range ids {
		if alive[id] {
			up++
		}
	}
	dead := r.down.deadFor(ids, alive, r.n.cfg.Cluster.DeadNodeTimeout)
	placed := layoutMembers(st.Layout)
	var out []shards.Candidate
	for _, id := range ids {
		switch {
		case alive[id]:
			out = append(out, shards.Candidate{Peer: members[id], Place: true})
		case !slices.Contains(placed, id):
			// Joined the metadata group, not up: nothing to keep.
		case dead[id] && up >= r.n.cfg.Cluster.ReplicationFactor:
			// Given up for dead: its replicas go to the others.
		default:
			out = append(out, shards.Candidate{Peer: peerIn(st.Layout, id), Place: false})
		}
	}
	return out
}

// downSince tracks since when each node has been seen down, for
// dead_node_timeout; safe for concurrent use (the planner and node
// removals ask).
type downSince struct {
	mu    sync.Mutex // guards since
	since map[string]time.Time
}

// dead reports whether node id has been seen down (deadFor) for longer
// than timeout (never when timeout is 0).
func (d *downSince) dead(id string, timeout time.Duration) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	first, ok := d.since[id]
	return ok && timeout > 0 && time.Since(first) > timeout
}

// forget drops every sighting: the planner calls it while it does not
// lead, when it cannot see nodes come back.
func (d *downSince) forget() {
	d.mu.Lock()
	defer d.mu.Unlock()
	clear(d.since)
}

// deadFor notes which of ids are down now and returns those down for
// longer than timeout (none when timeout is 0).
func (d *downSince) deadFor(ids []string, alive map[string]bool, timeout time.Duration) map[string]bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.since == nil {
		d.since = map[string]time.Time{}
	}
	now := time.Now()
	dead := map[string]bool{}
	for _, id := range ids {
		if alive[id] {
			delete(d.since, id)
			continue
		}
		first, ok := d.since[id]
		if !ok {
			d.since[id] = now
			continue
		}
		if timeout > 0 && now.Sub(first) > timeout {
			dead[id] = true
		}
	}
	return dead
}

// memberViewService answers the status of every member as the node
// asked sees it (RemoveNode).
const memberViewService = "cluster.view"

// serveMemberView registers memberViewService.
func (n *Node) serveMemberView() {
	n.repl.mux.Handle(memberViewService, func(context.Context, string, []byte) ([]byte, error) {
		view := map[string]string{}
		for _, m := range n.members.Members() {
			view[m.ID] = m.Status
		}
		return json.Marshal(view)
	})
}

// needsNode says which shards of layout l that node id replicates have
// fewer than a majority of their other replicas up (alive): "" if none.
// Removing id then could leave such a shard without a majority for good,
// where id coming back would have restored it.
func needsNode(l shards.Layout, id string, alive func(string) bool) string {
	var why []string
	for i, peers := range l.Shards {
		if !slices.ContainsFunc(peers, func(p shards.Peer) bool { return p.ID == id }) {
			continue
		}
		var up []string
		for _, p := range peers {
			if p.ID != id && alive(p.ID) {
				up = append(up, p.ID)
			}
		}
		if len(up) < len(peers)/2+1 {
			why = append(why, fmt.Sprintf("shard %d has %d of its %d replicas up besides %s %v", i, len(up), len(peers), id, up))
		}
	}
	return strings.Join(why, "; ")
}

// peerIn returns node id as layout l places it.
func peerIn(l shards.Layout, id string) shards.Peer {
	for _, peers := range l.Shards {
		for _, p := range peers {
			if p.ID == id {
				return p
			}
		}
	}
	return shards.Peer{ID: id}
}

// RemoveNode removes node id from the cluster for good: the layout no
// longer places it (its shards keep their other replicas, and a node that
// joins later takes its place), it leaves the metadata group, and it can
// never come back with its data. The node must be down, and, unless
// force, every shard it replicates must have a majority of its other
// replicas up (needsNode).
func (n *Node) RemoveNode(ctx context.Context, id string, force bool) error {
	if n.repl == nil || n.repl.metaOpen.Load() == nil {
		return cluster.ErrStandalone
	}
	r := n.repl
	if id == n.id {
		return fmt.Errorf("%w: ask another node to remove %s", cluster.ErrRemoveSelf, id)
	}
	known := false
	for _, m := range n.members.Members() {
		if m.ID == id {
			known = true
			if m.Up() {
				return fmt.Errorf("%w (%s): stop %s before removing it", cluster.ErrNodeAlive, m.Status, id)
			}
		}
	}
	// This node may be cut off from one that runs: the others must see
	// it down too.
	for peer, view := range fromPeers[map[string]string](ctx, n, memberViewService, nil) {
		if st := view[id]; st == "alive" || st == "suspect" {
			return fmt.Errorf("%w (%s as %s sees it): stop %s before removing it", cluster.ErrNodeAlive, st, peer, id)
		}
	}
	for {
		st := r.meta.State()
		if st.IsRemoved(id) {
			// Removed before, perhaps cut short between its steps:
			// finished again (each is idempotent), so that the node
			// leaves the group's configuration and membership.
			if err := r.meta.Remove(ctx, id); err != nil {
				return err
			}
			if err := n.members.Forget(id); err != nil {
				n.log.Warn("membership still lists the removed node", "node", id, "error", err)
			}
			return nil
		}
		placed := slices.Contains(layoutMembers(st.Layout), id)
		if !known && !placed && !slices.Contains(r.meta.Servers(), id) {
			return fmt.Errorf("%w: %q", cluster.ErrUnknownNode, id)
		}
		if why := needsNode(st.Layout, id, r.alive); why != "" && !force {
			return fmt.Errorf("%w: %s; bring them back first, or force the removal (their records on %s are then lost to them for good)",
				cluster.ErrNeededForMajority, why, id)
		}
		cands := slices.DeleteFunc(r.candidates(st), func(c shards.Candidate) bool { return c.ID == id })
		next := shards.Replan(st.Layout, cands, n.cfg.Cluster.ReplicationFactor, r.loadRates())
		if next.Version != st.Layout.Version {
			err := r.meta.SetLayout(ctx, st.Layout.Version, next)
			if errors.Is(err, meta.ErrStale) {
				continue // another change came first: plan again
			}
			if err != nil {
				return err
			}
		}
		if err := r.meta.Remove(ctx, id); err != nil {
			return err
		}
		if err := n.members.Forget(id); err != nil {
			n.log.Warn("membership still lists the removed node", "node", id, "error", err)
		}
		n.log.Info("node removed from the cluster", "node", id)
		return nil
	}
}

// Metadata returns the shard layout's version the metadata group has
// applied here and the group's leader; ok is false when standalone or
// before the group has a layout.
func (n *Node) Metadata() (layoutVersion uint64, leader string, ok bool) {
	if n.repl == nil || n.repl.metaOpen.Load() == nil {
		return 0, "", false
	}
	m := n.repl.metaOpen.Load()
	st := m.State()
	if len(st.Layout.Shards) == 0 {
		return 0, "", false
	}
	l, _ := m.Leader()
	return st.Layout.Version, l.ID, true
}

// hasRaftState reports whether a shard's Raft group has a log, a term or
// a vote on this node (shards.Options.HasRaftState); a read error counts
// as state (dropping it still waits for the group's leader to confirm).
func (r *replication) hasRaftState(group string) bool {
	st := r.logs.Group(group)
	if last, err := st.LastIndex(); err != nil || last > 0 {
		return true
	}
	_, err := st.GetUint64([]byte("CurrentTerm"))
	return !errors.Is(err, raftlog.ErrKeyNotFound)
}

// dropGroup deletes what a shard's Raft group keeps on this node (its log
// and stable state in the shared Raft log, its snapshots) once the
// shard's replica moved away from it (shards.Options.Drop).
func (r *replication) dropGroup(group string) error {
	if err := r.logs.DeleteGroup(group); err != nil {
		return fmt.Errorf("drop the Raft log of %s: %w", group, err)
	}
	if err := os.RemoveAll(filepath.Join(r.dir, "snapshots", group)); err != nil {
		return fmt.Errorf("drop the snapshots of %s: %w", group, err)
	}
	return nil
}

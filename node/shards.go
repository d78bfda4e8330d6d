package node

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"

	"github.com/mqstream/mqstream/cluster"
	"github.com/mqstream/mqstream/cluster/appends"
	"github.com/mqstream/mqstream/cluster/heartbeat"
	"github.com/mqstream/mqstream/cluster/meta"
	"github.com/mqstream/mqstream/cluster/raftlog"
	"github.com/mqstream/mqstream/cluster/reads"
	"github.com/mqstream/mqstream/cluster/rpcmux"
	"github.com/mqstream/mqstream/cluster/shards"
	"github.com/mqstream/mqstream/streams"
)

// errNotFormed: a write reached a cluster node before its shards started.
var errNotFormed = fmt.Errorf("%w: the cluster has not formed yet", streams.ErrUnavailable)

// replicated is the stream store as its users see it in cluster mode:
// appends, creations and deletions go through the shards (once the
// cluster has formed); reads are served by the local store for the
// shards this node holds and by another node for the others (reads.go).
type replicated struct {
	*streams.Store
	set   atomic.Pointer[shards.Set] // nil until the cluster formed
	reads *reads.Reader              // set once by serveReads
	// kept is the layout the data directory kept (the node ran in the
	// formed cluster; nil: it did not), set once at open: while the
	// shards start, reads go by it to the other replicas (reads.go).
	kept *shards.Layout
}

func (r *replicated) shards() (*shards.Set, error) {
	if s := r.set.Load(); s != nil {
		return s, nil
	}
	return nil, errNotFormed
}

func (r *replicated) Submit(req streams.AppendRequest) error {
	s, err := r.shards()
	if err != nil {
		return err
	}
	return s.Submit(req)
}

func (r *replicated) Append(ctx context.Context, stream string, records ...streams.Record) (uint64, error) {
	s, err := r.shards()
	if err != nil {
		return 0, err
	}
	return s.Append(ctx, stream, records...)
}

func (r *replicated) CreateStream(ctx context.Context, name string, ret streams.Retention) (streams.StreamInfo, error) {
	s, err := r.shards()
	if err != nil {
		return streams.StreamInfo{}, err
	}
	return s.CreateStream(ctx, name, ret)
}

func (r *replicated) DeleteStream(ctx context.Context, name string) error {
	s, err := r.shards()
	if err != nil {
		return err
	}
	return s.DeleteStream(ctx, name)
}

// replication is a cluster node's replication machinery: the RPC mux
// (Raft traffic and forwards), the Raft log shared by every shard group,
// and the shards once the cluster has formed.
type replication struct {
	n   *Node
	mux *rpcmux.Mux
	// holdShards, when a test sets it before the node starts, holds the
	// shards' start until it is closed.
	holdShards chan struct{}
	beats      *heartbeat.Coalescer // the shard groups' heartbeats, batched per peer node
	// appends carries the shard groups' AppendEntries, batched per peer
	// node over one connection; nil unless batchAppends.
	appends *appends.Batcher
	logs    *raftlog.DB
	dir     string // <data_dir>/raft
	store   *replicated
	// meta is the metadata group's member here (metadata.go): opened
	// with the replication when the data directory has cluster state,
	// else once the cluster vouched for the new directory (awaitLayout).
	// Written once (under metaMu), before the loops that use it start;
	// metaOpen publishes it to the API.
	meta     *meta.Meta
	metaMu   sync.Mutex // guards metaShut and the write of meta
	metaShut bool       // close has run: meta must not open any more
	metaOpen atomic.Pointer[meta.Meta]
	// vouching: a new data directory waits for the metadata group (vouch).
	vouching atomic.Bool
	down     downSince // since when nodes are down (metadata.go)
	// load is the shards' appends per second as the metadata leader
	// last measured them (load.go); nil until measured.
	load atomic.Pointer[[]float64]
	// logLimit holds back repeated Raft log lines of every group.
	logLimit *shards.LogLimit
	// caught latches once this node's replicas have caught up with their
	// leaders (caughtup.go); /readyz waits for it.
	caught caughtUp
	done   chan struct{}
	wg     sync.WaitGroup
	closed sync.Once
	// floors caches whether every member knows entries of version 5.
	floors featureCache
}

// layoutKey is where the shard layout is kept in the store's "cluster"
// key-value namespace.
var layoutKey = []byte("layout")

// openReplication binds the RPC address and opens the Raft log. The
// shards start once the cluster forms (start).
func (n *Node) openReplication() error {
	cl := n.cfg.Cluster
	mux, err := rpcmux.Listen(cl.RPC, rpcmux.Options{NodeID: n.id, Logger: n.log})
	if err != nil {
		return fmt.Errorf("cluster.rpc: %w", err)
	}
	r := &replication{n: n, mux: mux, dir: filepath.Join(n.cfg.Node.DataDir, "raft"), store: &replicated{Store: n.store},
		logLimit: shards.NewLogLimit(), done: make(chan struct{})}
	n.onClose("rpc", func(context.Context) error { return mux.Close() })
	// In proportion to the groups' heartbeat timeout: see heartbeat.Options.
	hbOpts := heartbeat.ForHeartbeatTimeout(shards.DefaultTimers().Heartbeat)
	hbOpts.Logger = n.log
	r.beats = heartbeat.New(mux, hbOpts)
	mux.Handle(heartbeat.Service, r.beats.Serve)
	n.onClose("heartbeats", func(context.Context) error { return r.beats.Close() })
	if batchAppends {
		r.appends = appends.New(mux.StreamLayer(appends.Channel), appends.Options{Logger: n.log, Supports: n.peerTakesBatchedAppends})
		n.onClose("appends", func(context.Context) error { return r.appends.Close() })
	}
	if r.logs, err = raftlog.Open(filepath.Join(r.dir, "log"), raftlog.Options{Logger: n.log}); err != nil {
		return fmt.Errorf("raft log: %w", err)
	}
	n.onClose("raft log", func(context.Context) error { return r.logs.Close() })
	if err := r.checkRaftDir(); err != nil {
		return err
	}
	n.onClose("shards", r.close)
	// A new data directory opens its member of the metadata group only
	// once the cluster has vouched for it (awaitLayout): a member with no
	// state votes for any candidate.
	if kept, err := r.loadKeptLayout(); err != nil {
		return err
	} else if r.store.kept = kept; kept != nil || r.hasRaftState(meta.Group) {
		if err := r.openMeta(); err != nil {
			return fmt.Errorf("metadata group: %w", err)
		}
	}
	mux.Handle(shards.ForwardService, r.handleForward)
	mux.Handle(shards.MembersService, func(ctx context.Context, from string, req []byte) ([]byte, error) {
		s := r.store.set.Load()
		if s == nil {
			return nil, errNotFormed
		}
		return s.HandleMembers(ctx, from, req)
	})
	r.serveReads()
	// Peers catching up fetch records from this node's store, also
	// while its own shards start.
	mux.Handle(shards.FetchService, func(ctx context.Context, _ string, req []byte) ([]byte, error) {
		return shards.ServeFetch(ctx, n.store, req)
	})
	n.repl = r
	return nil
}

// RPCAddr is the bound RPC address peers dial (host of the configured
// address, or the advertised host, and the bound port).
func (r *replication) rpcAddr() string {
	addr := r.mux.Addr().String()
	if adv := r.n.cfg.Cluster.Advertise; adv != "" {
		_, port, _ := net.SplitHostPort(addr)
		return net.JoinHostPort(adv, port)
	}
	return addr
}

func (r *replication) handleForward(ctx context.Context, from string, req []byte) ([]byte, error) {
	s := r.store.set.Load()
	if s == nil {
		return nil, errNotFormed
	}
	return s.HandleForward(ctx, from, req)
}

// start waits (in the background) for the cluster to form, then starts
// this node's shards with the layout kept in the data directory, or lays
// them out over the founding members and keeps that, or (a node meeting
// a formed cluster) joins the metadata group and takes its layout. Then
// it follows the metadata group's layouts (metadata.go).
func (r *replication) start() {
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		layout, err := r.awaitLayout()
		if err != nil {
			if !errors.Is(err, errStopped) {
				r.n.fail(fmt.Errorf("cluster: %w", err))
			}
			return
		}
		if r.holdShards != nil {
			select {
			case <-r.holdShards:
			case <-r.done:
				return
			}
		}
		cl := r.n.cfg.Cluster
		set, err := shards.Start(shards.Options{
			Self: shards.Peer{ID: r.n.id, RPC: r.rpcAddr()}, Shards: cl.Shards, Store: r.n.store,
			Open: r.openGroup, Drop: r.dropGroup, HasRaftState: r.hasRaftState, Forward: r.mux, Alive: r.alive, Down: r.isDown, Logger: r.n.log, LogLimit: r.logLimit,
			AdminIDs:     func() bool { return r.everyMemberHas(featureAdminIDs) },
			DedupeFloors: r.floors.has(r.n.members, featureDedupeFloors),
		}, layout)
		if err != nil {
			r.n.fail(fmt.Errorf("cluster: start shards: %w", err))
			return
		}
		select {
		case <-r.done:
			_ = set.Close()
			return
		default:
		}
		r.store.set.Store(set)
		r.n.log.Info("shards started", "shards", cl.Shards, "held", heldCount(layout, r.n.id), "layout", layout.Version)
		r.wg.Add(1)
		go r.register()
		if err := r.n.members.MarkFormed(layoutMembers(layout)); err != nil {
			r.n.log.Warn("could not announce the formed cluster", "error", err)
		}
		r.wg.Add(3)
		go r.follow(set)
		go r.plan(layout)
		go r.awaitCaughtUp()
	}()
}

var errStopped = errors.New("stopped")

// founders returns the founding members to lay the shards out over: those
// a member that formed the cluster announced (an error if this node is not
// among them: it came too late), or else the first bootstrap_expect alive
// members by id (fewer while fewer are alive).
func (r *replication) founders() ([]shards.Peer, error) {
	members := r.n.members.Members() // sorted by id
	for _, m := range members {
		if m.ID == r.n.id || !m.Up() || len(m.Founders) == 0 {
			continue
		}
		if !slices.Contains(m.Founders, r.n.id) {
			return nil, fmt.Errorf("%w: cluster %q was formed by %s", errFormed, r.n.cfg.Cluster.Name, strings.Join(m.Founders, ", "))
		}
		var peers []shards.Peer
		for _, id := range m.Founders {
			i := slices.IndexFunc(members, func(x cluster.Member) bool { return x.ID == id })
			if i < 0 || members[i].RPC == "" {
				return nil, nil // not seen yet: wait
			}
			peers = append(peers, shards.Peer{ID: id, RPC: members[i].RPC})
		}
		return peers, nil
	}
	var peers []shards.Peer
	for _, m := range members {
		if m.Up() && m.RPC != "" && len(peers) < r.n.cfg.Cluster.BootstrapExpect {
			peers = append(peers, shards.Peer{ID: m.ID, RPC: m.RPC})
		}
	}
	if len(peers) == r.n.cfg.Cluster.BootstrapExpect && !slices.ContainsFunc(peers, func(p shards.Peer) bool { return p.ID == r.n.id }) {
		return nil, fmt.Errorf("%w: this node is not among the %d founding members (the first by id: %v)",
			errFormed, r.n.cfg.Cluster.BootstrapExpect, peers)
	}
	return peers, nil
}

// layoutMembers lists the nodes a layout places replicas on, by id.
func layoutMembers(l shards.Layout) []string {
	var ids []string
	for _, peers := range l.Shards {
		for _, p := range peers {
			if !slices.Contains(ids, p.ID) {
				ids = append(ids, p.ID)
			}
		}
	}
	slices.Sort(ids)
	return ids
}

// errFormed: a new node met a cluster that has formed already.
var errFormed = errors.New("the cluster has formed already")

func heldCount(l shards.Layout, id string) int {
	n := 0
	for i := range l.Shards {
		if l.Holds(i, id) {
			n++
		}
	}
	return n
}

// awaitLayout returns the layout kept in the data directory (checking
// that the node was not removed meanwhile) or, once the cluster has
// formed, plans one over the founding members (the first
// bootstrap_expect alive members by id) and keeps it, or joins the
// formed cluster and takes the metadata group's layout.
func (r *replication) awaitLayout() (shards.Layout, error) {
	if kept, err := r.loadKeptLayout(); err != nil {
		return shards.Layout{}, err
	} else if kept != nil {
		return *kept, r.restarted(*kept)
	}
	cl := r.n.cfg.Cluster
	for {
		ch := r.n.members.Changed()
		if ok, _ := r.n.members.Ready(); ok {
			if r.meta == nil {
				if err := r.vouch(); err != nil {
					return shards.Layout{}, err
				}
				if err := r.openMeta(); err != nil {
					return shards.Layout{}, fmt.Errorf("metadata group: %w", err)
				}
			}
			peers, err := r.founders()
			if errors.Is(err, errFormed) {
				r.n.log.Info("the cluster has formed already: joining it", "reason", err)
				return r.joinFormed()
			}
			if err != nil {
				return shards.Layout{}, err
			}
			if len(peers) >= cl.BootstrapExpect {
				if cl.ReplicationFactor > len(peers) {
					r.n.log.Warn("fewer nodes than the replication factor: shards have fewer replicas", "nodes", len(peers), "replication_factor", cl.ReplicationFactor)
				}
				layout, err := shards.Plan(peers, cl.Shards, cl.ReplicationFactor)
				if err != nil {
					return shards.Layout{}, err
				}
				if err := r.keepLayout(layout); err != nil {
					return shards.Layout{}, err
				}
				if err := r.meta.Bootstrap(peers); err != nil {
					return shards.Layout{}, err
				}
				ids := make([]string, len(peers))
				for i, p := range peers {
					ids[i] = p.ID
				}
				if err := r.n.members.MarkFormed(ids); err != nil {
					r.n.log.Warn("could not announce the formed cluster", "error", err)
				}
				return layout, nil
			}
		}
		select {
		case <-r.done:
			return shards.Layout{}, errStopped
		case <-ch:
		case <-time.After(time.Second):
		}
	}
}

// restarted prepares the metadata group of a node that starts with a
// layout in its data directory: a founder of a cluster formed before the
// group existed bootstraps it with the layout's nodes; then the node asks
// the group whether it was removed meanwhile: once now, and on in the
// background when no member answers (after a full restart the group has
// no leader until enough nodes are up, and the shards must not wait).
func (r *replication) restarted(layout shards.Layout) error {
	if !r.meta.Bootstrapped() {
		var peers []shards.Peer
		for _, id := range layoutMembers(layout) {
			peers = append(peers, peerIn(layout, id))
		}
		if err := r.meta.Bootstrap(peers); err != nil {
			return err
		}
	}
	switch err := r.tryJoin(); {
	case err == nil:
		return nil
	case errors.Is(err, meta.ErrRemoved):
		return r.removedErr()
	}
	r.wg.Add(1)
	go r.checkNotRemoved()
	return nil
}

// openGroup gives a shard's Raft group its log (in the shared Raft log),
// its snapshots (a directory of its own) and its transport (a channel of
// the RPC mux, with its heartbeats batched with the other groups' per
// peer node, and its appends too when batchAppends is on).
func (r *replication) openGroup(group string) (shards.GroupDeps, error) {
	store := r.logs.Group(group)
	dir := filepath.Join(r.dir, "snapshots", group)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return shards.GroupDeps{}, err
	}
	logger := shards.RaftLogger(r.n.log, group, r.logLimit) // as the group's own lines (set.go)
	snaps, err := raft.NewFileSnapshotStoreWithLogger(dir, 2, logger)
	if err != nil {
		return shards.GroupDeps{}, fmt.Errorf("snapshots of %s: %w", group, err)
	}
	tr := groupTransport(r.mux.StreamLayer(group), logger)
	// The cache keeps the group's latest entries in memory: the leader
	// reads each entry back to replicate it, and without the cache every
	// read was a Pebble lookup (5% of the cluster's CPU at 10k msg/s).
	logs, err := raft.NewLogCache(logCacheEntries, store)
	if err != nil {
		return shards.GroupDeps{}, fmt.Errorf("log cache of %s: %w", group, err)
	}
	deps := shards.GroupDeps{Logs: logs, Stable: store, Snapshots: snaps}
	var trans raft.Transport = tr
	if r.appends != nil {
		trans = r.appends.Wrap(group, tr)
		deps.Release = func() { appends.Release(trans) }
	}
	deps.Transport = r.beats.Wrap(group, trans)
	return deps, nil
}

// groupTransport is a group's own Raft transport, over its channel of the
// RPC mux. It keeps no idle connections: with the appends and heartbeats
// carried by cluster/appends and cluster/heartbeat, what is left for it
// is rare (votes, leadership transfers' TimeoutNow, snapshots), and an
// idle connection kept for those is dead by the time it is used if the
// peer restarted meanwhile (raft's NetworkTransport does not retry: the
// call fails with EOF, and a leadership handover or a vote with it).
func groupTransport(layer raft.StreamLayer, logger hclog.Logger) *raft.NetworkTransport {
	return raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
		Stream: layer, MaxPool: 0, Timeout: 10 * time.Second, Logger: logger,
	})
}

// batchAppends sends the shard groups' AppendEntries through
// cluster/appends (to each peer node over one connection, several groups'
// requests in one frame, no msgpack) rather than over each group's own
// connections: in-process it saves 20 to 25 us of CPU per replicated
// entry, three nodes on a quiet two-core machine about 7% of the CPU per
// acknowledged publish at full load (docs/performance.md, "AppendEntries
// batched per peer node"). Only to peers that announce featureAppends:
// a node of an earlier version, which does not take batched appends,
// gets each group's own transport, so a rolling upgrade keeps
// replicating.
const batchAppends = true

// featureAppends is the cluster feature a node announces when it takes
// batched appends (cluster.Options.Features).
const featureAppends = "appends1"

// featureAdminIDs is the cluster feature a node announces when its
// shards decode stream creations and deletions that carry an id
// (shards.Options.AdminIDs).
const featureAdminIDs = "adminids1"

// featureDedupeFloors is the cluster feature a node announces when its
// shards know entries of version 5, which refuse a retry older than the
// shard's window of append ids (shards.Options.DedupeFloors).
const featureDedupeFloors = "dedupefloors1"

// clusterFeatures are the features this node announces to its peers.
func clusterFeatures() []string {
	if batchAppends {
		return []string{featureAppends, featureAdminIDs, featureDedupeFloors}
	}
	return []string{featureAdminIDs, featureDedupeFloors}
}

// featureCache remembers whether every member announces a feature until
// the membership changes: asked for each Raft entry a leader proposes
// (shards.Options.DedupeFloors), the members' list is too dear to build
// each time.
type featureCache struct {
	mu      sync.Mutex // guards changed and ok
	changed <-chan struct{}
	ok      bool
}

// has returns the func that reports whether every member of m announces
// f (allAnnounce), looked up again only once m changed.
func (c *featureCache) has(m *cluster.Membership, f string) func() bool {
	return func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		if c.changed != nil {
			select {
			case <-c.changed:
			default:
				return c.ok
			}
		}
		c.changed = m.Changed() // before the list: a change after it is seen next time
		c.ok = allAnnounce(m.Members(), f)
		return c.ok
	}
}

// everyMemberHas reports whether every member the membership lists,
// whatever its status (one failed or left may come back), announces
// feature f.
func (r *replication) everyMemberHas(f string) bool {
	return allAnnounce(r.n.members.Members(), f)
}

// allAnnounce reports whether ms is not empty and each of its members
// announces feature f.
func allAnnounce(ms []cluster.Member, f string) bool {
	for _, m := range ms {
		if !slices.Contains(m.Features, f) {
			return false
		}
	}
	return len(ms) > 0
}

// peerTakesBatchedAppends tells whether the member at RPC address target
// announces featureAppends.
func (n *Node) peerTakesBatchedAppends(target string) bool {
	if n.members == nil {
		return false
	}
	for _, m := range n.members.Members() {
		if m.RPC == target {
			return slices.Contains(m.Features, featureAppends)
		}
	}
	return false
}

// logCacheEntries is how many of a group's latest Raft entries stay in
// memory for replication: one AppendEntries carries at most 64 (raft's
// MaxAppendEntries), so a follower a request or so behind is served
// from memory. An entry holds at most 1 MiB of appends.
const logCacheEntries = 64

// alive reports whether member id is alive: not failed or left, and not
// suspect either, since a suspect may be dead too. The router's Alive (a
// node acting for a failed one does not wait for a suspect) and the
// shards' (a leader hands leadership over to, and adds as a replica,
// only a member that is alive).
func (r *replication) alive(id string) bool {
	if r.n.members == nil {
		return false
	}
	for _, m := range r.n.members.Members() {
		if m.ID == id {
			return m.Status == "alive"
		}
	}
	return false
}

// isDown reports whether member id is known to be down: failed, left, or
// no longer listed (the shards' Down: a replica the layout dropped is
// removed from its group at once only then, not while it is suspect,
// which a busy host's missed pings make it for a few seconds).
func (r *replication) isDown(id string) bool {
	if r.n.members == nil {
		return false
	}
	for _, m := range r.n.members.Members() {
		if m.ID == id {
			return m.Status == "failed" || m.Status == "left"
		}
	}
	return true
}

func (r *replication) close(context.Context) error {
	var err error
	r.closed.Do(func() {
		close(r.done)
		// The metadata member first: a layout change waiting for its
		// commit then fails at once, and the loops (follow, plan) end.
		r.metaMu.Lock()
		r.metaShut = true
		m := r.meta
		r.metaMu.Unlock()
		if m != nil {
			err = m.Close()
		}
		r.wg.Wait()
		if s := r.store.set.Load(); s != nil {
			err = errors.Join(err, s.Close())
		}
	})
	return err
}

// Shards lists the cluster's shards as this node sees them (nil when
// standalone or before the cluster formed).
func (n *Node) Shards() []shards.ShardStatus {
	if n.repl == nil {
		return nil
	}
	if s := n.repl.store.set.Load(); s != nil {
		return s.Status()
	}
	return nil
}

// shardsReady reports whether the node's shards serve (always in
// standalone mode).
func (n *Node) shardsReady() (bool, string) {
	if n.repl == nil {
		return true, ""
	}
	s := n.repl.store.set.Load()
	if s == nil && n.repl.vouching.Load() {
		return false, "new data directory: waiting for the metadata group to register it (is another node down?)"
	}
	if s == nil {
		return false, "starting the shards"
	}
	return s.Ready()
}

// RaftStats returns hashicorp/raft's own figures of every Raft group this
// node holds a member of (its shards' and the metadata group's), by group
// name; nil in standalone mode.
func (n *Node) RaftStats() map[string]map[string]string {
	if n.repl == nil {
		return nil
	}
	out := map[string]map[string]string{}
	if s := n.repl.store.set.Load(); s != nil {
		out = s.RaftStats()
	}
	if m := n.repl.metaOpen.Load(); m != nil {
		out[meta.Group] = m.RaftStats()
	}
	return out
}

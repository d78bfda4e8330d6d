package node

import (
	"context"
	"fmt"
	"time"

	"github.com/mqstream/mqstream/cluster/reads"
	"github.com/mqstream/mqstream/cluster/shards"
	"github.com/mqstream/mqstream/query"
	"github.com/mqstream/mqstream/streams"
)

// Reads in cluster mode: a stream whose shard this node replicates is
// read from the local store, any other from a node that replicates it
// (cluster/reads). The API, SQL, continuous queries and the consumer
// groups read through replicated, so they see every stream from any node.

// shardPlacement tells the reads where the shards are, from the layout
// the node's shards follow (reads.Placement).
type shardPlacement struct {
	r    *replicated
	self string
	// alive reports whether membership has a node up (nil: all are).
	alive func(id string) bool
}

// layout returns the layout reads go by: the running shards' (s), or,
// while they start on a node that ran in the formed cluster, the one its
// data directory kept (s nil: none of its replicas serves reads yet, and
// its store may be behind, or halfway through a catch-up); ok is false
// before the cluster formed, when there is nothing elsewhere to read.
func (p shardPlacement) layout() (l shards.Layout, s *shards.Set, ok bool) {
	if s := p.r.set.Load(); s != nil {
		return s.Layout(), s, true
	}
	if p.r.kept != nil {
		return *p.r.kept, nil, true
	}
	return shards.Layout{}, nil, false
}

func (p shardPlacement) Shards() int {
	l, _, _ := p.layout()
	return len(l.Shards)
}

func (p shardPlacement) ShardOf(stream string) int {
	n := p.Shards()
	if n == 0 {
		return 0
	}
	return shards.ShardOf(stream, n)
}

// Holders: local when the layout places shard i here and this node's
// replica of it serves reads (open and caught up with its group);
// otherwise the layout's other replicas, those membership has up first,
// then the preferred leader (most often the leader) first. A replica the layout moved away still serves until
// its group removes it, but gets no new entries once it has: its reads
// would stall.
func (p shardPlacement) Holders(i int) (bool, []string) {
	l, s, ok := p.layout()
	if !ok || i >= len(l.Shards) || (s != nil && l.Holds(i, p.self) && s.Serves(i)) {
		return true, nil
	}
	addrs := make([]string, 0, len(l.Shards[i]))
	var down []string // suspect, failed or left: asked last
	// Membership only once the shards run: while they start (the kept
	// layout), the node may not have joined yet.
	alive := p.alive
	if s == nil {
		alive = nil
	}
	for _, peer := range l.Shards[i] {
		switch {
		case peer.ID == p.self:
		case alive != nil && !alive(peer.ID):
			down = append(down, peer.RPC)
		default:
			addrs = append(addrs, peer.RPC)
		}
	}
	return false, append(addrs, down...)
}

// serves reports whether this node serves reads of shard i to others
// (reads.Serve): as Holders says it reads it locally.
func (p shardPlacement) serves(i int) bool {
	if p.r.set.Load() == nil {
		return false // the shards have not started
	}
	local, _ := p.Holders(i)
	return local
}

// serveReads answers the other nodes' reads of this node's replicas.
func (r *replication) serveReads() {
	place := shardPlacement{r: r.store, self: r.n.id, alive: r.alive}
	r.store.reads = reads.New(r.n.store, place, r.mux, r.n.log)
	r.mux.Handle(reads.Service, func(ctx context.Context, _ string, req []byte) ([]byte, error) {
		return reads.Serve(ctx, r.n.store, place.ShardOf, place.serves, req)
	})
}

func (r *replicated) ListStreams() []streams.StreamInfo { return r.reads.ListStreams() }

// Listing lists every stream, and the shards none of whose holders
// answered (their streams left out).
func (r *replicated) Listing() ([]streams.StreamInfo, []int) { return r.reads.Listing() }

// LocalStreams lists the streams this node's store holds (its replicas):
// what its metrics cover.
func (r *replicated) LocalStreams() []streams.StreamInfo { return r.Store.ListStreams() }

// ListStreamsContext lists the streams for the SQL streams table: the
// shards none of whose holders answered are left out and warned of in the
// query's result (query.ContextLister).
func (r *replicated) ListStreamsContext(ctx context.Context) []streams.StreamInfo {
	infos, unlisted := r.reads.Listing()
	for _, shard := range unlisted {
		query.Warn(ctx, fmt.Sprintf("no replica of shard %d answered: its streams are left out", shard))
	}
	return infos
}

func (r *replicated) DescribeStream(name string) (streams.StreamInfo, error) {
	return r.reads.DescribeStream(name)
}

func (r *replicated) Read(name string, from uint64, opts streams.ReadOptions) ([]streams.Record, error) {
	return r.reads.Read(name, from, opts)
}

func (r *replicated) Scan(ctx context.Context, name string, from, to uint64, fn func(streams.Record) (bool, error)) error {
	return r.reads.Scan(ctx, name, from, to, fn)
}

func (r *replicated) Notify(name string) (<-chan struct{}, uint64, error) {
	return r.reads.Notify(name)
}

func (r *replicated) OffsetAt(name string, t time.Time) (uint64, error) {
	return r.reads.OffsetAt(name, t)
}

func (r *replicated) StreamsChanged() <-chan struct{} { return r.reads.StreamsChanged() }

package node

import (
	"bytes"
	"context"
	"errors"
	"fmt"

	"github.com/mqstream/mqstream/cluster/shards"
	"github.com/mqstream/mqstream/cq"
	"github.com/mqstream/mqstream/streams"
)

// Continuous queries in cluster mode: each runs on the leader of its home
// stream's shard (its output stream; a view's source), keeps its
// definition and progress in that shard's replicated key/value
// namespace, and appends its output fenced by the leadership's term; when
// the leadership moves, the query moves with it (cq/homes.go). Requests
// about a query that reach another node are carried to it
// (queryadmin.go).

// errQueriesNotFormed: a query's state was asked for before the shards
// started.
var errQueriesNotFormed = errors.New("continuous queries: the cluster has not formed yet")

// queryKeys prefixes the continuous queries' keys in a shard's key/value
// namespace, which the consumer groups' progress shares (their keys start
// "m/" and "c/", as some of the queries' do).
const queryKeys = "cq/"

func queryKey(key []byte) []byte { return append([]byte(queryKeys), key...) }

// scanQueryKeys calls fn for the queries' keys starting with prefix in
// shard's namespace, without their queryKeys prefix.
func scanQueryKeys(set *shards.Set, shard int, prefix []byte, fn func(key, value []byte) error) error {
	return set.ScanKV(shard, queryKey(prefix), func(k, v []byte) error { return fn(k[len(queryKeys):], v) })
}

// queryHomes is cq.Homes over the node's shards.
type queryHomes struct{ n *Node }

func (h queryHomes) set() *shards.Set { return h.n.repl.store.set.Load() }

func (h queryHomes) Lead(stream string) (uint64, bool) {
	set := h.set()
	if set == nil {
		return 0, false
	}
	return set.Lead(shards.ShardOf(stream, len(set.Layout().Shards)))
}

func (h queryHomes) Holds(stream string) bool {
	set := h.set()
	if set == nil {
		return false
	}
	i := shards.ShardOf(stream, len(set.Layout().Shards))
	return set.Layout().Holds(i, h.n.id) && set.Serves(i)
}

func (h queryHomes) KV(stream string, term uint64) cq.KV {
	return shardKV{h: h, stream: stream, term: term}
}

func (h queryHomes) Writer(term uint64) cq.Writer { return fencedWriter{h.n.repl.store, term} }

// shardKV is one shard's key/value namespace (the shard of stream) as
// this node's replica holds it, written as its leader in term.
type shardKV struct {
	h      queryHomes
	stream string
	term   uint64
}

func (k shardKV) shard() (*shards.Set, int, error) {
	set := k.h.set()
	if set == nil {
		return nil, 0, errQueriesNotFormed
	}
	return set, shards.ShardOf(k.stream, len(set.Layout().Shards)), nil
}

func (k shardKV) Get(key []byte) ([]byte, bool, error) {
	set, i, err := k.shard()
	if err != nil {
		return nil, false, err
	}
	var value []byte
	found := false
	err = scanQueryKeys(set, i, key, func(k, v []byte) error {
		if bytes.Equal(k, key) {
			value, found = bytes.Clone(v), true
		}
		return nil
	})
	return value, found, err
}

func (k shardKV) Scan(prefix []byte, fn func(key, value []byte) error) error {
	set, i, err := k.shard()
	if err != nil {
		return err
	}
	return scanQueryKeys(set, i, prefix, fn)
}

func (k shardKV) Write(ctx context.Context, writes ...streams.KVWrite) error {
	set, i, err := k.shard()
	if err != nil {
		return err
	}
	if k.term == 0 {
		return fmt.Errorf("continuous queries: shard %d is led by another node (%w)", i, shards.ErrNoLeader)
	}
	prefixed := make([]streams.KVWrite, len(writes))
	for j, w := range writes {
		w.Key = queryKey(w.Key)
		prefixed[j] = w
	}
	return set.WriteKV(ctx, i, k.term, prefixed)
}

// Submit writes in the background; done gets the outcome.
func (k shardKV) Submit(writes []streams.KVWrite, _ bool, done func(error)) error {
	writeInBackground(k.Write, writes, done)
	return nil
}

// fencedWriter appends fenced by term (shards.Set.SubmitFenced).
type fencedWriter struct {
	*replicated
	term uint64
}

func (w fencedWriter) Submit(req streams.AppendRequest) error {
	set, err := w.shards()
	if err != nil {
		return err
	}
	return set.SubmitFenced(req, w.term)
}

// heldDefinitions is the queries' cq.Options.KV in a cluster: Scan reads
// every shard namespace this node's serving replicas hold, and those of
// the shards it leads (the definitions Reconcile goes through); every
// other access goes through a query's home (queryHomes.KV).
type heldDefinitions struct{ h queryHomes }

var errNotHome = errors.New("continuous queries: a cluster keeps a query's state in its home shard")

func (d heldDefinitions) Scan(prefix []byte, fn func(key, value []byte) error) error {
	set := d.h.set()
	if set == nil {
		return nil
	}
	layout := set.Layout()
	for i := range layout.Shards {
		_, leads := set.Lead(i)
		if !leads && (!layout.Holds(i, d.h.n.id) || !set.Serves(i)) {
			// Not here, or not open and caught up yet: nothing of it
			// runs here. A leader's replica serves, and one the layout
			// moved away still leads until it hands the shard over,
			// once the new replica caught up: its queries run on until
			// then.
			continue
		}
		if err := scanQueryKeys(set, i, prefix, fn); err != nil {
			return err
		}
	}
	return nil
}

func (heldDefinitions) Get([]byte) ([]byte, bool, error)                { return nil, false, errNotHome }
func (heldDefinitions) Write(context.Context, ...streams.KVWrite) error { return errNotHome }
func (heldDefinitions) Submit([]streams.KVWrite, bool, func(error)) error {
	return errNotHome
}

// followQueryHomes runs the continuous queries whose homes this node
// leads: once the shards started, at every change of their leaders, and
// every second (definitions other nodes wrote: views run on every node
// holding their source).
func (n *Node) followQueryHomes() {
	n.followLeaders("query homes", func(*shards.Set) {
		if err := n.queries.Reconcile(); err != nil {
			n.log.Error("continuous queries: following the shards' leaders failed; retrying", "error", err)
		}
	})
}

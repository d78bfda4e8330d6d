package node

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"time"

	"github.com/mqstream/mqstream/cluster/meta"
	"github.com/mqstream/mqstream/cluster/raftlog"
	"github.com/mqstream/mqstream/cluster/shards"
	"github.com/mqstream/mqstream/streams"
)

// A node that lost its data directory must not rejoin under its old id.
//
// Raft's safety rests on every voter remembering what it acknowledged. A
// node that comes back with an empty directory is still a voter of its
// groups (the metadata group's and its shards'), and a member with no log
// grants its vote to any candidate: with one other node down, it can help
// elect a leader that lacks acknowledged entries, which the group then
// overwrites on every replica.
//
// So every data directory has an incarnation (identity.go), and the
// metadata group records each node's (register, once its shards run). A
// node with a new directory opens no Raft group before the group has
// vouched for it (vouch): when any alive member announces that its own
// directory is registered (the cluster has run), the new node asks the
// group's leader, which refuses an id registered with another directory
// (meta.ErrLostData). Until the group has a leader the new node waits:
// a cluster that lost a node's data and another node is unavailable
// rather than wrong. The operator removes the lost node (`mqstream node
// remove`) and starts it again with a new node.id.
//
// The Raft log (<data_dir>/raft) carries the incarnation too
// (checkRaftDir): a node whose Raft log was lost while its store stayed,
// or the other way round, is refused at start, before it opens anything.
//
// Not covered: a node whose data is lost in the seconds between the
// cluster forming and its registration, and clusters whose members all
// run versions from before incarnations (they announce none).

// vouchedKey marks, in the store's "cluster" namespace, that the metadata
// group has registered this data directory.
var vouchedKey = []byte("vouched")

// raftIncarnationKey is where the Raft log keeps the incarnation of the
// data directory it belongs to (the metadata group's stable keys).
var raftIncarnationKey = []byte("mqstream-incarnation")

// checkRaftDir refuses a Raft log that does not go with the store: one
// emptied while the store holds the node's shard layout (its votes and
// acknowledged entries are gone), or one of another incarnation (the
// store was replaced). A Raft log without the mark gets it.
func (r *replication) checkRaftDir() error {
	st := r.logs.Group(meta.Group)
	mark, err := st.Get(raftIncarnationKey)
	raftDir := filepath.Join(r.dir, "log")
	switch {
	case err == nil && string(mark) == r.n.incarnation:
		return nil
	case err == nil:
		return fmt.Errorf("%w: node %q: the Raft log in %s belongs to data directory %s, the store in %s to %s: part of the data directory was replaced. "+
			"Restore the matching parts, or run `mqstream node remove %s` on another node and start this one with a new node.id and an empty node.data_dir",
			ErrLostData, r.n.id, raftDir, mark, r.n.cfg.Node.DataDir, r.n.incarnation, r.n.id)
	case !errors.Is(err, raftlog.ErrKeyNotFound):
		return fmt.Errorf("cluster: read the Raft log's incarnation: %w", err)
	}
	kept, err := r.loadKeptLayout()
	if err != nil {
		return err
	}
	if kept != nil && !r.hasRaftState(meta.Group) {
		return fmt.Errorf("%w: node %q: the store in %s holds the node's shard layout, but the Raft log in %s is empty: its Raft state was lost. "+
			"Taking part without it could undo acknowledged writes. Restore it, or run `mqstream node remove %s` on another node and start this one with a new node.id and an empty node.data_dir",
			ErrLostData, r.n.id, r.n.cfg.Node.DataDir, raftDir, r.n.id)
	}
	if err := st.Set(raftIncarnationKey, []byte(r.n.incarnation)); err != nil {
		return fmt.Errorf("cluster: mark the Raft log's incarnation: %w", err)
	}
	return nil
}

// loadKeptLayout returns the shard layout the data directory holds (the
// node has run in a formed cluster), nil if none.
func (r *replication) loadKeptLayout() (*shards.Layout, error) {
	b, ok, err := r.n.store.KV("cluster").Get(layoutKey)
	if err != nil {
		return nil, fmt.Errorf("cluster: read the kept shard layout: %w", err)
	}
	if !ok {
		return nil, nil
	}
	l, err := shards.UnmarshalLayout(b)
	if err != nil {
		return nil, fmt.Errorf("cluster: the kept shard layout: %w", err)
	}
	return &l, nil
}

// vouched reports whether the metadata group registered this data
// directory before (it is announced from the start).
func (r *replication) vouched() bool {
	_, ok, err := r.n.store.KV("cluster").Get(vouchedKey)
	return ok && err == nil
}

// vouch runs before a node with a new data directory opens any Raft
// group: if an alive member announces a registered directory, it asks
// the metadata group to register this one, waiting while the group has no
// leader. It fails for an id the group knows with another directory, or
// removed for good.
func (r *replication) vouch() error {
	logged := false
	for {
		var vias []string
		for _, m := range r.n.members.Members() {
			if m.ID != r.n.id && m.Up() && m.RPC != "" && m.Vouched {
				vias = append(vias, m.RPC)
			}
		}
		if len(vias) == 0 {
			return nil // a cluster forming now (or of earlier versions)
		}
		var last error
		for _, via := range vias {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			err := meta.Vouch(ctx, r.mux, via, r.n.id, r.n.incarnation)
			cancel()
			switch {
			case err == nil:
				r.n.log.Info("the metadata group registered this node's new data directory", "incarnation", r.n.incarnation)
				return nil
			case errors.Is(err, meta.ErrLostData):
				return r.lostDataErr(err)
			case errors.Is(err, meta.ErrRemoved):
				return r.removedErr()
			}
			last = err
		}
		if !logged {
			r.n.log.Warn("new data directory: waiting for the metadata group to register it before taking part", "error", last)
			logged = true
			r.vouching.Store(true)
			defer r.vouching.Store(false)
		}
		select {
		case <-r.done:
			return errStopped
		case <-time.After(time.Second):
		}
	}
}

// ErrLostData: the node came back with a new data directory under an id
// the cluster knows with another one.
var ErrLostData = errors.New("this node's data directory is not the one the cluster knows")

func (r *replication) lostDataErr(err error) error {
	r.n.refused.Store(true)
	return fmt.Errorf("%w: node %q of cluster %q ran with another data directory, and %s is new: its data was lost, or node.data_dir points to the wrong place. "+
		"Taking part with it could undo acknowledged writes. If the data is elsewhere, set node.data_dir to it; if it is gone, run `mqstream node remove %s` on another node "+
		"and start this one with a new node.id (%v)", ErrLostData, r.n.id, r.n.cfg.Cluster.Name, r.n.cfg.Node.DataDir, r.n.id, err)
}

// register records this node's data directory with the metadata group
// once its shards run, retrying until the group answers, then marks it in
// the directory and announces it (Membership.MarkVouched).
func (r *replication) register() {
	defer r.wg.Done()
	logged := false
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err := r.meta.Register(ctx, r.n.id, r.n.incarnation)
		cancel()
		switch {
		case err == nil:
			r.n.log.Info("data directory registered with the metadata group", "incarnation", r.n.incarnation)
			if !r.vouched() {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				werr := r.n.store.KV("cluster").Write(ctx, streams.KVWrite{Key: vouchedKey, Value: []byte(r.n.incarnation)})
				cancel()
				if werr != nil {
					r.n.log.Warn("cannot mark the registered data directory", "error", werr)
				}
			}
			if err := r.n.members.MarkVouched(); err != nil {
				r.n.log.Warn("cannot announce the registered data directory", "error", err)
			}
			return
		case errors.Is(err, meta.ErrLostData):
			r.n.fail(r.lostDataErr(err))
			return
		case errors.Is(err, meta.ErrRemoved), errors.Is(err, meta.ErrClosed):
			return // follow stops a removed node
		}
		if !logged {
			r.n.log.Debug("cannot register the data directory yet; retrying", "error", err)
			logged = true
		}
		select {
		case <-r.done:
			return
		case <-time.After(2 * time.Second):
		}
	}
}

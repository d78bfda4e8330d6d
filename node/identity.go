package node

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/mqstream/mqstream/streams"
)

// ErrDataDirMismatch: the data directory belongs to another node, another
// cluster, or the other mode (standalone or cluster).
var ErrDataDirMismatch = errors.New("data directory belongs elsewhere")

// identity is whom a data directory belongs to, written on first start.
type identity struct {
	Cluster string `json:"cluster"` // "" = standalone
	NodeID  string `json:"node_id"`
	// Incarnation names this data directory (random, drawn when it is
	// created, or by the first version that knew it). In cluster mode the
	// metadata group records it, so that a node that comes back with an
	// empty data directory is recognised (replication.vouch).
	Incarnation string `json:"incarnation,omitempty"`
}

// newIncarnation draws a data directory's incarnation.
func newIncarnation() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // never fails (crypto/rand)
	return hex.EncodeToString(b[:])
}

var identityKey = []byte("identity")

// checkIdentity refuses a data directory that holds another node's,
// another cluster's, or the other mode's data, and records the identity in
// a new one. A directory with data but no identity (written by an earlier
// version) is a standalone node's.
func (n *Node) checkIdentity() error {
	kv := n.store.KV("node")
	want := identity{Cluster: n.cfg.Cluster.Name}
	if want.Cluster != "" {
		want.NodeID = n.cfg.Node.ID
	}
	raw, ok, err := kv.Get(identityKey)
	if err != nil {
		return fmt.Errorf("data dir identity: %w", err)
	}
	var have identity
	switch {
	case ok:
		if err := json.Unmarshal(raw, &have); err != nil {
			return fmt.Errorf("data dir identity: %w", err)
		}
	case n.holdsData():
		have = identity{} // an earlier version's standalone data
	default:
		want.Incarnation = newIncarnation()
		return n.writeIdentity(want)
	}
	dir := n.cfg.Node.DataDir
	// empty notes a directory of another identity that holds nothing: a
	// start that was refused (a duplicate node.id, say) stamps it all
	// the same.
	empty := ""
	if !n.holdsData() && !n.holdsLayout() {
		empty = " (it holds no records, state or shard layout: deleting it is safe)"
	}
	switch {
	case have.Cluster == want.Cluster && have.NodeID == want.NodeID:
		if have.Incarnation == "" {
			// Written by an earlier version: this directory's incarnation
			// starts now.
			have.Incarnation = newIncarnation()
			return n.writeIdentity(have)
		}
		n.incarnation = have.Incarnation
		return nil
	case have.Cluster == "":
		return fmt.Errorf("%w: %s holds a standalone node's data; cluster mode (cluster.name %q) starts from an empty node.data_dir: "+
			"move it away, or run without cluster.name", ErrDataDirMismatch, dir, want.Cluster)
	case want.Cluster == "":
		return fmt.Errorf("%w: %s holds the data of node %q of cluster %q; start it with that cluster's configuration, or give this standalone node an empty node.data_dir",
			ErrDataDirMismatch, dir, have.NodeID, have.Cluster)
	case have.Cluster != want.Cluster:
		return fmt.Errorf("%w: %s holds the data of node %q of cluster %q, not of cluster %q; use an empty node.data_dir to join %q%s",
			ErrDataDirMismatch, dir, have.NodeID, have.Cluster, want.Cluster, want.Cluster, empty)
	default:
		return fmt.Errorf("%w: %s holds the data of node %q of cluster %q, not of node %q; set node.id: %s, or use an empty node.data_dir%s",
			ErrDataDirMismatch, dir, have.NodeID, have.Cluster, want.NodeID, have.NodeID, empty)
	}
}

// holdsLayout reports whether the store keeps a cluster's shard layout
// (the node ran in a formed cluster).
func (n *Node) holdsLayout() bool {
	_, ok, err := n.store.KV("cluster").Get(layoutKey)
	return ok || err != nil
}

// writeIdentity records id in the data directory.
func (n *Node) writeIdentity(id identity) error {
	b, _ := json.Marshal(id)
	if err := n.store.KV("node").Write(context.Background(), streams.KVWrite{Key: identityKey, Value: b}); err != nil {
		return fmt.Errorf("data dir identity: %w", err)
	}
	n.incarnation = id.Incarnation
	return nil
}

// holdsData reports whether the store has streams or broker or group state.
func (n *Node) holdsData() bool {
	if len(n.store.ListStreams()) > 0 {
		return true
	}
	found := errors.New("found")
	for _, ns := range []string{"mqtt", "groups"} {
		if err := n.store.KV(ns).Scan(nil, func(_, _ []byte) error { return found }); errors.Is(err, found) {
			return true
		}
	}
	return false
}

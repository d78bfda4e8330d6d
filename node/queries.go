package node

import (
	"context"

	"github.com/mqstream/mqstream/cq"
)

// openQueries starts the continuous queries kept in the store. They read
// the local store and write through writer (the shards in cluster mode),
// like every other writer of the node.
func (n *Node) openQueries(writer cq.Writer) error {
	m, err := cq.New(cq.Options{Reader: n.store, Writer: writer, KV: n.store.KV("queries"), Logger: n.log})
	if err != nil {
		return err
	}
	n.onClose("queries", func(context.Context) error { return m.Close() })
	if err := m.Start(); err != nil {
		return err
	}
	n.queries = m
	return nil
}

// Queries returns the node's continuous queries.
func (n *Node) Queries() *cq.Manager { return n.queries }

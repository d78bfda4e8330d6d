package node

import (
	"context"

	"github.com/mqstream/mqstream/cq"
	"github.com/mqstream/mqstream/mqtt"
	"github.com/mqstream/mqstream/topic"
)

// openQueries starts the continuous queries kept in the store. They read
// the local store and write through writer (the shards in cluster mode,
// where they read every stream wherever it is held), like every other
// writer of the node, and publish through the broker.
func (n *Node) openQueries(writer cq.Writer) error {
	mapper, err := n.cfg.Mapper()
	if err != nil {
		return err
	}
	opts := cq.Options{Reader: n.store, Writer: writer, KV: n.store.KV("queries"),
		Publisher: queryPublisher{n.broker, mapper}, MaxStateBytes: int64(n.cfg.Queries.MaxStateBytes), Logger: n.log}
	if n.repl != nil {
		// Each query runs on the leader of its home shard (queryhomes.go)
		// and reads its inputs wherever they are held: locally when this
		// node holds their shard (as the leader does its output's, where
		// it finds its progress), from another replica otherwise.
		homes := queryHomes{n}
		opts.Homes, opts.KV, opts.Reader = homes, heldDefinitions{homes}, n.repl.store
	}
	m, err := cq.New(opts)
	if err != nil {
		return err
	}
	n.onClose("queries", func(context.Context) error { return m.Close() })
	if err := m.Start(); err != nil {
		return err
	}
	n.queries = m
	if n.repl != nil {
		n.serveQueryUsers() // they read n.queries: registered once it is set
		n.serveQueryAdmin()
	}
	return nil
}

// endPushQueries ends the push queries when the HTTP server shuts down:
// their answers end (with an end message) instead of holding the shutdown
// until its deadline.
func (n *Node) endPushQueries() {
	if n.queries != nil {
		n.queries.EndPushes()
	}
}

// Queries returns the node's continuous queries.
func (n *Node) Queries() *cq.Manager { return n.queries }

// queryPublisher publishes the output of continuous queries through the
// broker, as POST /v1/publish does, but without storing it again: the
// query stores it (cq.Publisher).
type queryPublisher struct {
	broker *mqtt.Broker
	mapper *topic.Mapper
}

func (p queryPublisher) Deliver(ctx context.Context, m cq.Message) error {
	_, err := p.broker.Publish(ctx, mqtt.Message{Topic: m.Topic, Payload: m.Payload, QoS: m.QoS, Retain: m.Retain,
		ContentType: m.ContentType, UserProperties: m.UserProperties, NoStore: true})
	return err
}

func (p queryPublisher) StreamFor(topic string) (string, bool) { return p.mapper.StreamFor(topic) }

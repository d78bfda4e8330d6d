package api

import (
	"context"
	"time"

	"github.com/mqstream/mqstream/internal/pebblestats"
	"github.com/mqstream/mqstream/mqtt"
	"github.com/mqstream/mqstream/shared"
	"github.com/mqstream/mqstream/streams"
)

// What the API needs from the rest of the node, declared here so that a
// remote shard, a cluster-wide view or a test double can stand behind the
// same handlers. *streams.Store, *mqtt.Broker and *shared.Manager
// implement them.

// Streams is the stream store: streams, records, tails and counters.
type Streams interface {
	ListStreams() []streams.StreamInfo
	DescribeStream(name string) (streams.StreamInfo, error)
	CreateStream(ctx context.Context, name string, r streams.Retention) (streams.StreamInfo, error)
	DeleteStream(ctx context.Context, name string) error
	Append(ctx context.Context, stream string, records ...streams.Record) (uint64, error)
	Read(name string, from uint64, opts streams.ReadOptions) ([]streams.Record, error)
	// Notify returns a channel closed when the stream grows past next.
	Notify(name string) (ch <-chan struct{}, next uint64, err error)
	OffsetAt(name string, t time.Time) (uint64, error)
	Counters() map[string]streams.StreamCounters
	StoreCounters() streams.StoreCounters
}

// Engines are the node's storage engines (Pebble databases): their
// figures by database name ("store", "raftlog").
type Engines interface {
	EngineStats() map[string]pebblestats.Stats
}

// Broker is the MQTT broker: REST publishes and its counters.
type Broker interface {
	Publish(ctx context.Context, m mqtt.Message) (mqtt.PublishResult, error)
	Traffic() mqtt.Traffic
	SessionCounters() mqtt.SessionCounters
	Stats() mqtt.Stats
}

// Groups are the node's consumer groups.
type Groups interface {
	Groups(ctx context.Context) []shared.GroupStats
	Group(ctx context.Context, name, filter string) (shared.GroupStats, error)
	Declare(ctx context.Context, d shared.Declaration) error
	Delete(ctx context.Context, name, filter string) error
	Seek(ctx context.Context, name, filter, stream string, p shared.Position) error
	Defaults() shared.GroupOptions
}

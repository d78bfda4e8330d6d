package config

import (
	"log/slog"
	"os"
	"strings"

	"github.com/mqstream/mqstream/streams"
	"github.com/mqstream/mqstream/topic"
)

func (r Retention) streams() streams.Retention {
	return streams.Retention{MaxAge: r.MaxAge, MaxBytes: int64(r.MaxBytes), MaxRecords: r.MaxRecords}
}

func (c Config) mqttRules() []topic.Rule {
	rules := make([]topic.Rule, len(c.Streams.Rules))
	for i, r := range c.Streams.Rules {
		rules[i] = topic.Rule{Filter: r.Filter, Stream: r.Stream}
	}
	return rules
}

// StoreOptions returns the stream store's options (Dir is the data dir).
func (c Config) StoreOptions(logger *slog.Logger) streams.Options {
	sync, _ := streams.ParseSyncPolicy(c.Storage.Sync) // validated
	return streams.Options{
		Dir:               c.Node.DataDir,
		Sync:              sync,
		SyncInterval:      c.Storage.SyncInterval,
		CommitDelay:       c.Storage.CommitDelay,
		AutoCreate:        c.Streams.AutoCreate,
		DefaultRetention:  c.Streams.DefaultRetention.streams(),
		RetentionInterval: c.Storage.RetentionInterval,
		CacheBytes:        int64(c.Storage.CacheSize),
		MinFreeBytes:      int64(c.Storage.MinFree),
		Logger:            logger,
	}
}

// Mapper returns the topic-to-stream mapper.
func (c Config) Mapper() (*topic.Mapper, error) {
	def, err := topic.ParseDefaultRule(c.Streams.DefaultRule)
	if err != nil {
		return nil, err
	}
	return topic.NewMapper(c.mqttRules(), def)
}

// StreamDefinitions returns the streams declared in the configuration.
func (c Config) StreamDefinitions() map[string]streams.Retention {
	out := make(map[string]streams.Retention, len(c.Streams.Definitions))
	for _, d := range c.Streams.Definitions {
		out[d.Name] = d.Retention.streams()
	}
	return out
}

// NodeID returns the configured node id or the host name.
func (c Config) NodeID() string {
	if c.Node.ID != "" {
		return c.Node.ID
	}
	if h, err := os.Hostname(); err == nil {
		return h
	}
	return "mqstream"
}

// Logger builds the logger the configuration asks for, writing to stderr.
func (c Config) Logger() *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(strings.ToUpper(c.Log.Level)))
	opts := &slog.HandlerOptions{Level: level}
	if c.Log.Format == "json" {
		return slog.New(slog.NewJSONHandler(os.Stderr, opts))
	}
	return slog.New(slog.NewTextHandler(os.Stderr, opts))
}

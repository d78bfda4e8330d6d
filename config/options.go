package config

import (
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

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
	delay, auto, _ := c.Storage.commitDelay()          // validated
	return streams.Options{
		Dir:               c.Node.DataDir,
		Sync:              sync,
		SyncInterval:      c.Storage.SyncInterval,
		CommitDelay:       delay,
		CommitDelayAuto:   auto,
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

// AutoCommitDelay is the first step of the delays storage.commit_delay:
// auto applies while the store finds they pay (twice and four times it are
// the next steps; docs/performance.md, "Commit delay").
const AutoCommitDelay = 500 * time.Microsecond

// commitDelay parses storage.commit_delay: "auto", or a duration from 0
// (off) to 100ms.
func (s Storage) commitDelay() (d time.Duration, auto bool, err error) {
	if strings.EqualFold(strings.TrimSpace(s.CommitDelay), "auto") {
		return AutoCommitDelay, true, nil
	}
	d, err = time.ParseDuration(strings.TrimSpace(s.CommitDelay))
	if err != nil {
		return 0, false, fmt.Errorf("%q: want auto or a duration from 0s (off) to 100ms", s.CommitDelay)
	}
	if d < 0 || d > 100*time.Millisecond {
		return 0, false, fmt.Errorf("%s: want auto or a duration from 0s (off) to 100ms", d)
	}
	return d, false, nil
}

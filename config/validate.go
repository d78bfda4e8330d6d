package config

import (
	"errors"
	"fmt"
	"math"
	"net"
	"strings"
	"time"

	"github.com/mqstream/mqstream/shared"
	"github.com/mqstream/mqstream/streams"
	"github.com/mqstream/mqstream/topic"
)

// Validate reports every invalid value at once, each naming its key.
func (c Config) Validate() error {
	var errs []error
	bad := func(key, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", key, fmt.Sprintf(format, args...)))
	}
	if c.Node.DataDir == "" {
		bad("node.data_dir", "must not be empty")
	}
	switch strings.ToLower(c.Log.Level) {
	case "debug", "info", "warn", "error":
	default:
		bad("log.level", "%q is not one of debug, info, warn, error", c.Log.Level)
	}
	switch c.Log.Format {
	case "text", "json":
	default:
		bad("log.format", "%q is not one of text, json", c.Log.Format)
	}
	for key, addr := range map[string]string{"mqtt.tcp": c.MQTT.TCP, "mqtt.websocket": c.MQTT.WebSocket, "http.listen": c.HTTP.Listen} {
		if addr == "" {
			continue
		}
		if _, _, err := net.SplitHostPort(addr); err != nil {
			bad(key, "%q is not a host:port address", addr)
		}
	}
	if c.MQTT.TCP == "" && c.MQTT.WebSocket == "" {
		bad("mqtt.tcp", "no MQTT listener: set mqtt.tcp or mqtt.websocket")
	}
	if c.HTTP.MaxBody < 1024 {
		bad("http.max_body", "%d is below 1KiB", c.HTTP.MaxBody)
	}
	if c.HTTP.MaxBatch < 1 {
		bad("http.max_batch", "must be at least 1")
	}
	if c.HTTP.ReadTimeout <= 0 || c.HTTP.IdleTimeout <= 0 {
		bad("http.read_timeout", "read_timeout and idle_timeout must be positive")
	}
	if c.MQTT.MaxPayload < 0 || c.MQTT.MaxPayload > 256<<20 {
		bad("mqtt.max_payload", "%d is outside 0..256MiB (MQTT's packet limit)", c.MQTT.MaxPayload)
	}
	if c.MQTT.MaxClients < 0 {
		bad("mqtt.max_clients", "must not be negative")
	}
	if c.MQTT.ReceiveMaximum < 1 || c.MQTT.ReceiveMaximum > math.MaxUint16 {
		bad("mqtt.receive_maximum", "%d is outside 1..65535", c.MQTT.ReceiveMaximum)
	}
	if c.MQTT.MaxInflight < 1 || c.MQTT.MaxInflight > math.MaxUint16 {
		bad("mqtt.max_inflight", "%d is outside 1..65535", c.MQTT.MaxInflight)
	}
	if c.MQTT.MaxQueued < 1 {
		bad("mqtt.max_queued", "must be at least 1")
	}
	if c.MQTT.MaxQueuedBytes < 0 {
		bad("mqtt.max_queued_bytes", "must not be negative (0 = no bound)")
	}
	if c.MQTT.KeepaliveMax < 0 || c.MQTT.KeepaliveMax > math.MaxUint16 {
		bad("mqtt.keepalive_max", "%d is outside 0..65535", c.MQTT.KeepaliveMax)
	}
	if c.MQTT.Fanout != "immediate" && c.MQTT.Fanout != "after-store" {
		bad("mqtt.fanout", "%q is not one of immediate, after-store", c.MQTT.Fanout)
	}
	if _, err := streams.ParseSyncPolicy(c.Storage.Sync); err != nil {
		bad("storage.sync", "%v", err)
	}
	if c.Storage.SyncInterval <= 0 {
		bad("storage.sync_interval", "must be positive")
	}
	if _, _, err := c.Storage.commitDelay(); err != nil {
		bad("storage.commit_delay", "%v", err)
	}
	if c.Storage.RetentionInterval <= 0 {
		bad("storage.retention_interval", "must be positive")
	}
	if c.Storage.MinFree < 0 {
		bad("storage.min_free", "must not be negative")
	}
	if c.Storage.CacheSize < 0 {
		bad("storage.cache_size", "must not be negative")
	}
	if _, _, err := c.Runtime.GCPercent.Parse(); err != nil {
		bad("runtime.gc_percent", "%v", err)
	}
	if c.Runtime.MemoryLimit < 0 {
		bad("runtime.memory_limit", "must not be negative")
	}
	if _, err := shared.ParseStrategy(c.Groups.Strategy); err != nil {
		bad("groups.strategy", "%v", err)
	} else if err := c.GroupDefaults().Validate(); err != nil {
		for _, e := range unjoin(err) {
			bad("groups", "%v", e)
		}
	}
	if c.Groups.FlushInterval <= 0 {
		bad("groups.flush_interval", "must be positive")
	}
	if _, err := c.GroupDeclarations(); err != nil {
		errs = append(errs, err)
	}
	seenGroups := map[string]bool{}
	for i, d := range c.Groups.Declare {
		key := fmt.Sprintf("groups.declare[%d]", i)
		if d.Name == "" || strings.ContainsAny(d.Name, "/+#") {
			bad(key+".name", "%q: want a non-empty name without '/', '+' or '#'", d.Name)
		}
		if err := topic.ValidateFilter(d.Filter); err != nil {
			bad(key+".filter", "%v", err)
		}
		if seenGroups[d.Name+"\x00"+d.Filter] {
			bad(key, "group %s with filter %s is declared twice", d.Name, d.Filter)
		}
		seenGroups[d.Name+"\x00"+d.Filter] = true
	}
	c.validateSecurity(bad)
	c.validateCluster(bad)
	if c.Queries.MaxStateBytes < 0 {
		bad("queries.max_state_bytes", "must not be negative (0 = no limit)")
	}
	if c.SQL.MaxRowsScanned < 1 {
		bad("sql.max_rows_scanned", "must be at least 1")
	}
	if c.SQL.Timeout <= 0 {
		bad("sql.timeout", "must be positive")
	}
	if c.SQL.StatsInterval < 100*time.Millisecond || c.SQL.StatsInterval > time.Minute {
		bad("sql.stats_interval", "%s is outside 100ms..1m", c.SQL.StatsInterval)
	}
	validateRetention := func(key string, r Retention) {
		if err := r.streams().Validate(); err != nil {
			bad(key, "%v", err)
		}
	}
	validateRetention("streams.default_retention", c.Streams.DefaultRetention)
	if _, err := topic.ParseDefaultRule(c.Streams.DefaultRule); err != nil {
		bad("streams.default_rule", "%v", err)
	}
	if _, err := topic.NewMapper(c.mqttRules(), topic.DefaultRule{Kind: topic.DefaultNone}); err != nil {
		for _, e := range unjoin(err) {
			errs = append(errs, fmt.Errorf("streams.%w", e))
		}
	}
	seen := map[string]bool{}
	for i, d := range c.Streams.Definitions {
		key := fmt.Sprintf("streams.definitions[%d]", i)
		if err := streams.ValidateName(d.Name); err != nil {
			bad(key+".name", "%v", err)
		}
		if seen[d.Name] {
			bad(key+".name", "stream %q is defined twice", d.Name)
		}
		seen[d.Name] = true
		validateRetention(key+".retention", d.Retention)
	}
	return errors.Join(errs...)
}

// unjoin splits an errors.Join result into its parts.
func unjoin(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}

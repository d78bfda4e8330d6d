// Package config loads mqstream's configuration from a YAML file, MQSTREAM_*
// environment variables and command-line flags (in increasing precedence),
// validates it and hands typed structs to the other packages. It is the only
// package besides cmd that knows viper.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"reflect"
	"sort"
	"strings"
	"time"

	"github.com/go-viper/mapstructure/v2"
	"github.com/spf13/pflag"
	"github.com/spf13/viper"
	"go.yaml.in/yaml/v3"
)

// Config is the whole node configuration.
type Config struct {
	Node    Node    `mapstructure:"node" yaml:"node"`
	Log     Log     `mapstructure:"log" yaml:"log"`
	MQTT    MQTT    `mapstructure:"mqtt" yaml:"mqtt"`
	HTTP    HTTP    `mapstructure:"http" yaml:"http"`
	Storage Storage `mapstructure:"storage" yaml:"storage"`
	Streams Streams `mapstructure:"streams" yaml:"streams"`
	Groups  Groups  `mapstructure:"groups" yaml:"groups"`
	Auth    Auth    `mapstructure:"auth" yaml:"auth"`
	SQL     SQL     `mapstructure:"sql" yaml:"sql"`
	Queries Queries `mapstructure:"queries" yaml:"queries"`
	Runtime Runtime `mapstructure:"runtime" yaml:"runtime"`
	Cluster Cluster `mapstructure:"cluster" yaml:"cluster"`
}

// Cluster makes the node a member of a cluster; without a name the node
// runs standalone.
type Cluster struct {
	// Name is the cluster's name, the same on every node ("" = standalone).
	Name string `mapstructure:"name" yaml:"name"`
	// Gossip is the membership and failure-detection address (TCP and UDP).
	Gossip string `mapstructure:"gossip" yaml:"gossip"`
	// RPC is the address for replication and forwarding between nodes.
	RPC string `mapstructure:"rpc" yaml:"rpc"`
	// Advertise is the host peers dial, when not the bind addresses' host.
	Advertise string `mapstructure:"advertise" yaml:"advertise"`
	// Seeds are gossip addresses of some members to join through.
	Seeds []string `mapstructure:"seeds" yaml:"seeds"`
	// BootstrapExpect is how many nodes must have met before the cluster forms.
	BootstrapExpect int `mapstructure:"bootstrap_expect" yaml:"bootstrap_expect"`
	// Shards is the number of shards streams are hashed into (fixed when the cluster forms).
	Shards int `mapstructure:"shards" yaml:"shards"`
	// ReplicationFactor is the number of nodes holding each shard.
	ReplicationFactor int `mapstructure:"replication_factor" yaml:"replication_factor"`
	// DeadNodeTimeout is how long a failed node may stay away before its
	// replicas are recreated elsewhere.
	DeadNodeTimeout time.Duration `mapstructure:"dead_node_timeout" yaml:"dead_node_timeout"`
}

// Enabled reports whether the node runs in cluster mode.
func (c Cluster) Enabled() bool { return c.Name != "" }

// SQL configures the query engine and the statistics it reads.
type SQL struct {
	// MaxRowsScanned stops a query that reads more rows.
	MaxRowsScanned int64 `mapstructure:"max_rows_scanned" yaml:"max_rows_scanned"`
	// Timeout stops a query that runs longer.
	Timeout time.Duration `mapstructure:"timeout" yaml:"timeout"`
	// StatsInterval is how often the node samples its counters for the
	// throughput and latency tables.
	StatsInterval time.Duration `mapstructure:"stats_interval" yaml:"stats_interval"`
}

// Queries configures the continuous queries (CREATE STREAM ... AS SELECT,
// CREATE VIEW).
type Queries struct {
	// MaxStateBytes pauses a query whose state (the accumulators of its
	// open windows, sessions or view groups, estimated) grows past it; 0
	// means no limit.
	MaxStateBytes ByteSize `mapstructure:"max_state_bytes" yaml:"max_state_bytes"`
}

// Auth configures who may connect over MQTT and what they may do.
type Auth struct {
	// Anonymous lets clients without a username connect.
	Anonymous bool `mapstructure:"anonymous" yaml:"anonymous"`
	// UsersFile holds "username:bcrypt-hash" lines (mqstream user add).
	UsersFile string `mapstructure:"users_file" yaml:"users_file"`
	// ClientIDPattern, a regular expression, must match every client id.
	ClientIDPattern string `mapstructure:"client_id_pattern" yaml:"client_id_pattern"`
	// CertCNAsUsername uses a verified client certificate's common name as
	// the username on TLS listeners.
	CertCNAsUsername bool `mapstructure:"cert_cn_as_username" yaml:"cert_cn_as_username"`
	// ACLDefault decides when no ACL rule matches: allow or deny.
	ACLDefault string `mapstructure:"acl_default" yaml:"acl_default"`
	// ACL rules, first match wins.
	ACL []ACLRule `mapstructure:"acl" yaml:"acl"`
	// HideDenialReason answers MQTT 5 subscriptions and publishes the ACL
	// refuses with reason 0x80 (unspecified error) instead of 0x87 (not
	// authorized), not telling the client why.
	HideDenialReason bool `mapstructure:"hide_denial_reason" yaml:"hide_denial_reason"`
}

// ACLRule is one access rule (see the auth package).
type ACLRule struct {
	User       string   `mapstructure:"user" yaml:"user,omitempty"`
	ClientID   string   `mapstructure:"client_id" yaml:"client_id,omitempty"`
	Action     string   `mapstructure:"action" yaml:"action"` // publish, subscribe, all
	Filter     string   `mapstructure:"filter" yaml:"filter"` // %u, %c substituted
	Groups     []string `mapstructure:"groups" yaml:"groups,omitempty"`
	Permission string   `mapstructure:"permission" yaml:"permission"` // allow, deny
}

// TLS is a certificate and key, and optionally client certificates to verify.
type TLS struct {
	Cert string `mapstructure:"cert" yaml:"cert"`
	Key  string `mapstructure:"key" yaml:"key"`
	// ClientCA, if set, verifies client certificates against these CAs.
	ClientCA string `mapstructure:"client_ca" yaml:"client_ca"`
	// RequireClientCert refuses clients without a valid certificate.
	RequireClientCert bool `mapstructure:"require_client_cert" yaml:"require_client_cert"`
}

// Enabled reports whether a certificate is configured.
func (t TLS) Enabled() bool { return t.Cert != "" || t.Key != "" }

// Groups configures $share consumer groups: defaults for every group, and
// groups declared ahead of their members.
type Groups struct {
	Strategy       string        `mapstructure:"strategy" yaml:"strategy"`
	AckTimeout     time.Duration `mapstructure:"ack_timeout" yaml:"ack_timeout"`
	MaxDeliveries  int           `mapstructure:"max_deliveries" yaml:"max_deliveries"`
	DeadLetter     string        `mapstructure:"dead_letter" yaml:"dead_letter"`
	Window         int           `mapstructure:"window" yaml:"window"`
	MaxWindow      int           `mapstructure:"max_window" yaml:"max_window"`
	ReadAhead      int           `mapstructure:"read_ahead" yaml:"read_ahead"`
	MaxUnackedSpan int           `mapstructure:"max_unacked_span" yaml:"max_unacked_span"`
	FlushInterval  time.Duration `mapstructure:"flush_interval" yaml:"flush_interval"`
	Declare        []GroupDecl   `mapstructure:"declare" yaml:"declare"`
}

// GroupDecl declares one group; unset options take the group defaults.
type GroupDecl struct {
	Name          string         `mapstructure:"name" yaml:"name"`
	Filter        string         `mapstructure:"filter" yaml:"filter"`
	Start         string         `mapstructure:"start" yaml:"start"` // earliest, latest, offset:N, time:RFC3339
	Strategy      string         `mapstructure:"strategy" yaml:"strategy,omitempty"`
	AckTimeout    *time.Duration `mapstructure:"ack_timeout" yaml:"ack_timeout,omitempty"`
	MaxDeliveries *int           `mapstructure:"max_deliveries" yaml:"max_deliveries,omitempty"`
	DeadLetter    string         `mapstructure:"dead_letter" yaml:"dead_letter,omitempty"`
	Window        *int           `mapstructure:"window" yaml:"window,omitempty"`
}

// Runtime tunes the Go runtime of the serve process. The GOGC and
// GOMEMLIMIT environment variables, when set, take precedence.
type Runtime struct {
	// GCPercent is the garbage collector target (GOGC): "auto" (the
	// default) uses 100 while the process allocates slowly, as with idle
	// connections, and 400 under load, where ingest's short-lived objects
	// make a higher target save CPU; a number fixes it.
	GCPercent GCTarget `mapstructure:"gc_percent" yaml:"gc_percent"`
	// MemoryLimit is a soft limit on the Go heap (GOMEMLIMIT); near it the
	// collector runs more often whatever GCPercent says. 0 = no limit.
	MemoryLimit ByteSize `mapstructure:"memory_limit" yaml:"memory_limit"`
}

// Node identifies the node and where it keeps its data.
type Node struct {
	// ID names the node in logs and APIs; empty means the host name.
	ID string `mapstructure:"id" yaml:"id"`
	// DataDir holds the Pebble database.
	DataDir string `mapstructure:"data_dir" yaml:"data_dir"`
}

// Log configures logging.
type Log struct {
	Level  string `mapstructure:"level" yaml:"level"`   // debug, info, warn, error
	Format string `mapstructure:"format" yaml:"format"` // text, json
}

// MQTT configures the broker.
type MQTT struct {
	TCP            string   `mapstructure:"tcp" yaml:"tcp"`             // "" disables
	WebSocket      string   `mapstructure:"websocket" yaml:"websocket"` // "" disables
	MaxPayload     ByteSize `mapstructure:"max_payload" yaml:"max_payload"`
	MaxClients     int64    `mapstructure:"max_clients" yaml:"max_clients"`
	ReceiveMaximum int      `mapstructure:"receive_maximum" yaml:"receive_maximum"`
	MaxInflight    int      `mapstructure:"max_inflight" yaml:"max_inflight"`
	// MaxQueued is how many deliveries one session holds beyond its
	// in-flight window (for a slow or offline subscriber) before dropping
	// and counting them.
	MaxQueued int `mapstructure:"max_queued" yaml:"max_queued"`
	// MaxQueuedBytes bounds the topic and payload bytes of those
	// deliveries per session (0 = no bound).
	MaxQueuedBytes ByteSize `mapstructure:"max_queued_bytes" yaml:"max_queued_bytes"`
	// Persistence keeps retained messages and persistent sessions (their
	// subscriptions and queued messages) in the store across restarts.
	Persistence  bool `mapstructure:"persistence" yaml:"persistence"`
	KeepaliveMax int  `mapstructure:"keepalive_max" yaml:"keepalive_max"`
	// TLSListen is the MQTT over TLS address (used when TLS is configured).
	TLSListen string `mapstructure:"tls_listen" yaml:"tls_listen"`
	// WSSListen is the MQTT over secure WebSocket address ("" disables).
	WSSListen string `mapstructure:"wss_listen" yaml:"wss_listen"`
	// TLS is the certificate of the TLS and WSS listeners.
	TLS TLS `mapstructure:"tls" yaml:"tls"`
	// MaxSubscriptions caps the subscriptions of one client (0 = no cap).
	MaxSubscriptions int `mapstructure:"max_subscriptions" yaml:"max_subscriptions"`
	// Fanout says when stored QoS 0/1 messages reach ordinary subscribers:
	// "immediate" (on arrival, like any broker) or "after-store" (once
	// durable). QoS 2 is always delivered after storing.
	Fanout string `mapstructure:"fanout" yaml:"fanout"`
}

// HTTP configures the HTTP listener (health, REST, metrics).
type HTTP struct {
	Listen string `mapstructure:"listen" yaml:"listen"` // "" disables
	// MaxBody bounds request bodies (413 beyond).
	MaxBody ByteSize `mapstructure:"max_body" yaml:"max_body"`
	// MaxBatch bounds the records of one REST write (413 beyond).
	MaxBatch int `mapstructure:"max_batch" yaml:"max_batch"`
	// ReadTimeout bounds reading a request (headers and body).
	ReadTimeout time.Duration `mapstructure:"read_timeout" yaml:"read_timeout"`
	// IdleTimeout closes idle keep-alive connections.
	IdleTimeout time.Duration `mapstructure:"idle_timeout" yaml:"idle_timeout"`
	// TLS serves HTTPS instead of HTTP when a certificate is set.
	TLS TLS `mapstructure:"tls" yaml:"tls"`
	// Tokens, if any, are required as bearer tokens; without them the API
	// is open.
	Tokens []HTTPToken `mapstructure:"tokens" yaml:"tokens"`
	// Pprof serves Go's profiler under /debug/pprof/ (off by default: it
	// exposes internals and costs CPU while profiling).
	Pprof bool `mapstructure:"pprof" yaml:"pprof"`
}

// HTTPToken grants a role (read, write, admin) to a bearer token.
type HTTPToken struct {
	Token string `mapstructure:"token" yaml:"token"`
	Role  string `mapstructure:"role" yaml:"role"`
}

// Storage configures the stream store.
type Storage struct {
	Sync         string        `mapstructure:"sync" yaml:"sync"` // always, interval, none
	SyncInterval time.Duration `mapstructure:"sync_interval" yaml:"sync_interval"`
	// CommitDelay (sync: always) spaces synced commits at least this far
	// apart, so that publishes arriving meanwhile share one fsync: a
	// duration (0s: off), or "auto" (AutoCommitDelay while the store
	// finds it pays: streams.Options.CommitDelayAuto).
	CommitDelay       string        `mapstructure:"commit_delay" yaml:"commit_delay"`
	RetentionInterval time.Duration `mapstructure:"retention_interval" yaml:"retention_interval"`
	CacheSize         ByteSize      `mapstructure:"cache_size" yaml:"cache_size"`
	// MinFree refuses writes (MQTT 0x97, HTTP 503) while the data disk has
	// less free space, so the store never runs out mid-write.
	MinFree ByteSize `mapstructure:"min_free" yaml:"min_free"`
}

// Streams configures streams and the topic-to-stream mapping.
type Streams struct {
	AutoCreate       bool         `mapstructure:"auto_create" yaml:"auto_create"`
	DefaultRetention Retention    `mapstructure:"default_retention" yaml:"default_retention"`
	DefaultRule      string       `mapstructure:"default_rule" yaml:"default_rule"` // first-level, none, stream:<name>
	Rules            []Rule       `mapstructure:"rules" yaml:"rules"`
	Definitions      []Definition `mapstructure:"definitions" yaml:"definitions"`
}

// Retention limits a stream; zero means no limit.
type Retention struct {
	MaxAge     time.Duration `mapstructure:"max_age" yaml:"max_age"`
	MaxBytes   ByteSize      `mapstructure:"max_bytes" yaml:"max_bytes"`
	MaxRecords int64         `mapstructure:"max_records" yaml:"max_records"`
}

// Rule maps topics matching Filter to Stream.
type Rule struct {
	Filter string `mapstructure:"filter" yaml:"filter"`
	Stream string `mapstructure:"stream" yaml:"stream"`
}

// Definition declares a stream created at start-up if missing.
type Definition struct {
	Name      string    `mapstructure:"name" yaml:"name"`
	Retention Retention `mapstructure:"retention" yaml:"retention"`
}

// Default returns the embedded defaults: everything a node needs to run
// with no file.
func Default() Config {
	return Config{
		Node: Node{DataDir: "./data"},
		Log:  Log{Level: "info", Format: "text"},
		MQTT: MQTT{
			TCP:            ":1883",
			WebSocket:      ":8083",
			MaxPayload:     1 << 20,
			ReceiveMaximum: 1024,
			MaxInflight:    8192,
			MaxQueued:      65536,
			MaxQueuedBytes: 64 << 20,
			Persistence:    true,
			Fanout:         "immediate",
			TLSListen:      ":8883",
		},
		HTTP: HTTP{Listen: ":8080", MaxBody: 8 << 20, MaxBatch: 10_000, ReadTimeout: time.Minute, IdleTimeout: 2 * time.Minute},
		Storage: Storage{
			Sync:              "always",
			SyncInterval:      5 * time.Millisecond,
			CommitDelay:       "auto",
			RetentionInterval: time.Minute,
			CacheSize:         64 << 20,
			MinFree:           128 << 20,
		},
		Streams: Streams{AutoCreate: true, DefaultRule: "first-level"},
		Groups:  defaultGroups(),
		Auth:    Auth{Anonymous: true, ACLDefault: "allow"},
		SQL:     SQL{MaxRowsScanned: 1_000_000, Timeout: 30 * time.Second, StatsInterval: 5 * time.Second},
		Queries: Queries{MaxStateBytes: 256 << 20},
		Runtime: Runtime{GCPercent: GCAuto},
		Cluster: Cluster{Gossip: "127.0.0.1:7946", RPC: "127.0.0.1:7947", Seeds: []string{}, BootstrapExpect: 1,
			Shards: 12, ReplicationFactor: 3, DeadNodeTimeout: 10 * time.Minute},
	}
}

// EnvPrefix prefixes every environment variable: node.data_dir is
// MQSTREAM_NODE_DATA_DIR.
const EnvPrefix = "MQSTREAM"

// Load reads the configuration: defaults, then the YAML file at path (if
// not empty), then MQSTREAM_* variables from env, then the flags of fs that
// were set and are bound with BindFlag. Unknown keys are errors.
func Load(path string, env []string, flags map[string]*pflag.Flag) (Config, error) {
	v := viper.New()
	v.SetConfigType("yaml")
	def := Default()
	for key, val := range flatten(def) {
		v.SetDefault(key, val)
	}
	if path != "" {
		data, err := os.ReadFile(path)
		if err != nil {
			return Config{}, fmt.Errorf("config file: %w", err)
		}
		var raw map[string]any
		if err := yaml.Unmarshal(data, &raw); err != nil {
			return Config{}, fmt.Errorf("config file %s: %w", path, err)
		}
		if err := unknownKeys(raw, "", flatten(def)); err != nil {
			return Config{}, fmt.Errorf("config file %s: %w", path, err)
		}
		if err := v.ReadConfig(bytes.NewReader(data)); err != nil {
			return Config{}, fmt.Errorf("config file %s: %w", path, err)
		}
	}
	for _, kv := range env {
		name, val, ok := strings.Cut(kv, "=")
		if !ok || !strings.HasPrefix(name, EnvPrefix+"_") {
			continue
		}
		key, known := envKey(v, strings.TrimPrefix(name, EnvPrefix+"_"))
		if !known {
			return Config{}, fmt.Errorf("environment variable %s: no configuration key %s", name, key)
		}
		v.Set(key, val)
	}
	for key, f := range flags {
		if f.Changed {
			v.Set(key, f.Value.String())
		}
	}
	var cfg Config
	err := v.UnmarshalExact(&cfg, viper.DecodeHook(mapstructure.ComposeDecodeHookFunc(
		byteSizeHook,
		gcTargetHook,
		mapstructure.StringToTimeDurationHookFunc(),
		mapstructure.StringToSliceHookFunc(","),
	)))
	if err != nil {
		return Config{}, fmt.Errorf("config: %w", cleanDecodeError(err))
	}
	if err := cfg.Validate(); err != nil {
		return Config{}, err
	}
	return cfg, nil
}

// envKey maps an environment variable suffix (NODE_DATA_DIR) to a known
// configuration key (node.data_dir).
func envKey(v *viper.Viper, suffix string) (string, bool) {
	want := strings.ToLower(suffix)
	for _, k := range v.AllKeys() {
		if strings.ReplaceAll(k, ".", "_") == want {
			return k, true
		}
	}
	return strings.ReplaceAll(want, "_", "."), false
}

// YAML renders the configuration as YAML (for --print-config).
func (c Config) YAML() ([]byte, error) { return yaml.Marshal(c) }

// flatten lists the leaf keys of a config value as viper keys.
func flatten(c Config) map[string]any {
	out := map[string]any{}
	var walk func(prefix string, v reflect.Value)
	walk = func(prefix string, v reflect.Value) {
		t := v.Type()
		for i := 0; i < t.NumField(); i++ {
			key := t.Field(i).Tag.Get("mapstructure")
			if prefix != "" {
				key = prefix + "." + key
			}
			f := v.Field(i)
			if f.Kind() == reflect.Struct && f.Type() != reflect.TypeOf(time.Duration(0)) {
				walk(key, f)
				continue
			}
			out[key] = f.Interface()
		}
	}
	walk("", reflect.ValueOf(c))
	return out
}

// cleanDecodeError rewords mapstructure's errors a little: they already name
// the key ("'mqtt.max_payload' ...") and list unknown keys.
func cleanDecodeError(err error) error {
	msg := err.Error()
	msg = strings.ReplaceAll(msg, "decoding failed due to the following error(s):\n\n", "")
	return errors.New(msg)
}

// unknownKeys reports every key in settings (nested maps, as read from a
// file) that is neither a known key nor a section holding known keys.
func unknownKeys(settings map[string]any, prefix string, known map[string]any) error {
	var errs []error
	keys := make([]string, 0, len(settings))
	for k := range settings {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		key := strings.ToLower(k)
		if prefix != "" {
			key = prefix + "." + strings.ToLower(k)
		}
		if _, ok := known[key]; ok {
			continue
		}
		section := false
		for kk := range known {
			if strings.HasPrefix(kk, key+".") {
				section = true
				break
			}
		}
		sub, isMap := settings[k].(map[string]any)
		if !section {
			errs = append(errs, fmt.Errorf("%s: unknown key", key))
			continue
		}
		if !isMap {
			errs = append(errs, fmt.Errorf("%s: is a section, not a value", key))
			continue
		}
		if err := unknownKeys(sub, key, known); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

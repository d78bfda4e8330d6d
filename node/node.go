// Package node assembles one mqstream node from its parts: the stream store,
// the MQTT broker with its hooks and the HTTP listener, and runs their
// start-up and graceful shutdown in the right order.
package node

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/mqstream/mqstream/api"
	"github.com/mqstream/mqstream/cluster"
	"github.com/mqstream/mqstream/cluster/groups"
	"github.com/mqstream/mqstream/cluster/routes"
	"github.com/mqstream/mqstream/config"
	"github.com/mqstream/mqstream/cq"
	"github.com/mqstream/mqstream/internal/pebblesched"
	"github.com/mqstream/mqstream/internal/pebblestats"
	"github.com/mqstream/mqstream/mqtt"
	"github.com/mqstream/mqstream/query"
	"github.com/mqstream/mqstream/shared"
	"github.com/mqstream/mqstream/stats"
	"github.com/mqstream/mqstream/streams"
	"github.com/mqstream/mqstream/web"
)

// Version is the mqstream version, set at build time with
// -ldflags "-X github.com/mqstream/mqstream/node.Version=v1.2.3".
var Version = "dev"

// Node is one running mqstream node.
type Node struct {
	cfg   config.Config
	id    string
	log   *slog.Logger
	store *streams.Store
	// incarnation names the data directory (identity.go); set before the
	// cluster parts open.
	incarnation string
	// storeStalls counts the store's write stalls (set before it opens).
	storeStalls *pebblestats.Stalls
	broker      *mqtt.Broker
	groups      *shared.Manager
	sampler     *stats.Sampler
	engine      *query.Engine
	queries     *cq.Manager // continuous queries (queries.go)
	api         *api.Server
	httpSrv     *http.Server
	httpLn      net.Listener
	members     *cluster.Membership // nil when standalone
	repl        *replication        // nil when standalone
	// relay and groupPlace run consumer groups across nodes (nil when
	// standalone).
	relay      *groups.Relay
	groupPlace *groupPlacement
	routes     *routes.Router // nil when standalone
	started    time.Time
	// refused is set when the cluster refused this node's identity (a
	// removed node.id, a lost data directory): the node then stops
	// without leaving gracefully, since peers would show the node whose
	// id it carries (crashed, or removed) as left rather than failed.
	refused atomic.Bool

	// groupPersisted, if set, is called whenever a consumer group's
	// progress has been made durable (crash tests use it).
	groupPersisted atomic.Pointer[func(name, filter string, acked int64)]

	// httpScheme is http or https.
	httpScheme string

	ready       atomic.Bool
	httpServing atomic.Bool   // Start began serving HTTP
	httpDone    chan struct{} // closed when HTTP serving ends
	fatal       chan error    // the first fatal error while running (Run)

	// closers undo Open, in reverse order (Close).
	closers   []closer
	closeOnce sync.Once
	closeErr  error
}

// closer is one part of the node to close.
type closer struct {
	name string
	fn   func(context.Context) error
}

// Option adjusts how Open builds a node (tests).
type Option func(*streams.Options)

// WithFS makes the store use fs (tests inject disk faults with it).
func WithFS(fs vfs.FS) Option { return func(o *streams.Options) { o.FS = fs } }

// Open opens the store, creates the streams the configuration declares and
// binds every listener. Nothing is served until Start. On an error, what
// was opened is closed again, in reverse order.
func Open(cfg config.Config, logger *slog.Logger, options ...Option) (_ *Node, err error) {
	if logger == nil {
		logger = cfg.Logger()
	}
	n := &Node{cfg: cfg, id: cfg.NodeID(), httpDone: make(chan struct{}), httpScheme: "http", fatal: make(chan error, 1)}
	n.log = logger.With("node", n.id)
	defer func() {
		if err != nil {
			_ = n.closeAll(context.Background())
		}
	}()
	mapper, err := cfg.Mapper()
	if err != nil {
		return nil, fmt.Errorf("mapping rules: %w", err)
	}
	if err := n.openStore(options); err != nil {
		return nil, err
	}
	// writer is where appends, stream creations and deletions go: the
	// store, or in cluster mode the shards in front of it.
	var writer interface {
		shared.Store
		api.Streams
		query.Store
	} = n.store
	if cfg.Cluster.Enabled() {
		if err := n.openReplication(); err != nil {
			return nil, err
		}
		writer = n.repl.store
	}
	decls, err := cfg.GroupDeclarations()
	if err != nil {
		return nil, err
	}
	var progress shared.ProgressStore = n.store.KV("groups")
	var owner func(name, filter string) (uint64, bool)
	if cfg.Cluster.Enabled() {
		n.groupPlace = &groupPlacement{n: n}
		progress, owner = groupProgress{r: n.repl.store, self: n.id}, n.groupPlace.owner
	}
	n.groups, err = shared.New(shared.Options{
		Store:         writer,
		Progress:      progress,
		Owner:         owner,
		Mapper:        mapper,
		Defaults:      cfg.GroupDefaults(),
		Declared:      decls,
		FlushInterval: cfg.Groups.FlushInterval,
		Logger:        n.log,
		OnPersist:     n.onGroupPersist,
	})
	if err != nil {
		return nil, err
	}
	// Registered before Start: a Start that fails half way may have
	// started some groups already.
	n.onClose("groups", func(context.Context) error { return n.groups.Close() })
	if err := n.groups.Start(); err != nil {
		return nil, err
	}
	bopts, err := brokerOptions(cfg, n.log)
	if err != nil {
		return nil, err
	}
	bopts.Mapper, bopts.Store, bopts.Groups = mapper, writer, n.groups
	if cfg.Cluster.Enabled() {
		// Until the cluster has formed and the shards serve, MQTT clients
		// are told the server is unavailable.
		bopts.Admit = func() error {
			if n.members == nil {
				return errors.New("joining the cluster")
			}
			if ok, reason := n.members.Ready(); !ok {
				return errors.New(reason)
			}
			if ok, reason := n.shardsReady(); !ok {
				return errors.New(reason)
			}
			return nil
		}
	}
	if cfg.MQTT.Persistence {
		bopts.State = n.store.KV("mqtt")
	}
	if cfg.Cluster.Enabled() {
		n.openRoutes()
		n.openGroupRelay()
		bopts.Remote, bopts.NodeID, bopts.Groups = n.routes, n.id, n.relay
	}
	if n.broker, err = mqtt.New(bopts); err != nil {
		return nil, err
	}
	n.onClose("broker", func(context.Context) error { return n.broker.Close() })
	// Before serveStats: the other nodes ask for its figures.
	if n.sampler, err = stats.New(stats.Options{Source: n.store, Interval: cfg.SQL.StatsInterval, Logger: n.log}); err != nil {
		return nil, err
	}
	n.onClose("stats", func(context.Context) error { n.sampler.Close(); return nil })
	if n.routes != nil {
		n.serveRoutes()
		n.servePing()
		n.serveStats()
		n.serveApplied()
		n.serveMemberView()
		n.serveLeaders()
		n.serveGroupAdmin()
	}
	if err := n.openQueries(writer); err != nil {
		return nil, err
	}
	n.engine, err = query.New(query.Options{Store: writer, Groups: clusterGroups{n}, Stats: clusterStats{n}, Sessions: clusterSessions{n}, Nodes: nodeRows{n}, Shards: shardRows{n}, Queries: n.queriesFront(), QueryTable: queryTable{n},
		MaxRowsScanned: cfg.SQL.MaxRowsScanned, Timeout: cfg.SQL.Timeout, Logger: n.log})
	if err != nil {
		return nil, err
	}
	if cfg.HTTP.Listen != "" {
		if err := n.openHTTP(writer); err != nil {
			return nil, err
		}
	}
	if cfg.Cluster.Enabled() {
		if err := n.joinCluster(); err != nil {
			return nil, err
		}
	}
	return n, nil
}

// leaveDrainTimeout bounds how long a stopping node waits for the
// messages it forwards to other nodes to be sent before it leaves.
const leaveDrainTimeout = 2 * time.Second

// handOverTimeout bounds how long a stopping node hands its persistent
// sessions over to the other nodes; those left keep on its disk.
const handOverTimeout = 10 * time.Second

// settingParts are cfg's cluster-wide settings made of several keys, as
// membership announces them.
func settingParts(cfg config.Config) map[string][]cluster.SettingPart {
	out := map[string][]cluster.SettingPart{}
	for k, parts := range cfg.ClusterWideParts() {
		for _, p := range parts {
			out[k] = append(out[k], cluster.SettingPart{Key: p.Key, Print: p.Print})
		}
	}
	return out
}

// joinCluster starts the node's cluster membership (last: it advertises the
// bound addresses; first to close: the node leaves gracefully).
func (n *Node) joinCluster() error {
	cl := n.cfg.Cluster
	m, err := cluster.Start(cluster.Options{
		NodeID: n.cfg.Node.ID, Cluster: cl.Name, Gossip: cl.Gossip, Advertise: cl.Advertise,
		RPC: n.repl.rpcAddr(), MQTT: n.broker.TCPAddr(), HTTP: n.HTTPAddr(), Version: Version, Features: clusterFeatures(),
		Seeds: cl.Seeds, BootstrapExpect: cl.BootstrapExpect, Settings: n.cfg.ClusterWide(), SettingParts: settingParts(n.cfg), Vouched: n.repl.vouched(),
		Formed:       n.holdsLayout(),
		PingFallback: n.answersOverTCP,
		OnFatal:      func(err error) { n.fail(fmt.Errorf("cluster: %w", err)) },
		Logger:       n.log,
	})
	if err != nil {
		return err // says "cluster: ..." or "refused by the cluster: ..." already
	}
	n.members = m
	n.followMembers()
	n.onClose("cluster", func(context.Context) error {
		if n.refused.Load() {
			n.broker.EndMoves()
			return m.Abandon()
		}
		// Before leaving: the broker disconnects its clients while the
		// shards still store and the other nodes are still peers, so
		// their wills are stored and reach the subscribers elsewhere (a
		// node that left is not acted for, as a failed one is).
		if err := n.broker.Close(); err != nil {
			n.log.Warn("closing the broker before leaving the cluster", "error", err)
		}
		// Its clients reconnect to other nodes: their persistent
		// sessions wait for them there, not on this node's disk.
		n.broker.HandOverSessions(handOverTimeout)
		if !n.routes.Drain(leaveDrainTimeout) {
			n.log.Warn("messages for other nodes still queued when leaving the cluster", "after", leaveDrainTimeout)
		}
		return m.Close()
	})
	n.repl.start()
	n.followGroupLeaders()
	n.followLeadersElsewhere()
	n.followQueryHomes()
	return nil
}

// openStore opens the stream store and creates the declared streams.
func (n *Node) openStore(options []Option) error {
	sopts := n.cfg.StoreOptions(n.log)
	if n.cfg.Cluster.Enabled() {
		sopts.CompactionScheduler = pebblesched.New() // an idle cluster node wakes less
	}
	n.storeStalls = pebblestats.NewStalls(n.log, "store")
	sopts.EngineEvents = n.storeStalls.Listener()
	for _, o := range options {
		o(&sopts)
	}
	var err error
	if n.store, err = streams.Open(sopts); err != nil {
		return err
	}
	n.onClose("store", func(context.Context) error { return n.store.Close() })
	if err := n.checkIdentity(); err != nil {
		return err
	}
	for name, ret := range n.cfg.StreamDefinitions() {
		if _, err := n.store.CreateStream(context.Background(), name, ret); err != nil && !errors.Is(err, streams.ErrStreamExists) {
			return fmt.Errorf("stream %q: %w", name, err)
		}
	}
	return nil
}

// openHTTP binds the HTTP listener and builds the API server.
func (n *Node) openHTTP(writer api.Streams) error {
	cfg := n.cfg
	ln, err := net.Listen("tcp", cfg.HTTP.Listen)
	if err != nil {
		return fmt.Errorf("http: listen %s: %w", cfg.HTTP.Listen, err)
	}
	n.httpLn = ln
	n.onClose("http", n.closeHTTP)
	tokens, err := apiTokens(cfg)
	if err != nil {
		return err
	}
	ui, err := web.New()
	if err != nil {
		return err
	}
	n.api = api.New(api.Options{
		Store: writer, Broker: n.broker, Groups: n.apiGroups(), Node: n, Version: Version,
		MaxBodyBytes: int64(cfg.HTTP.MaxBody), MaxBatch: cfg.HTTP.MaxBatch, MaxPayload: int(cfg.MQTT.MaxPayload),
		Pprof: cfg.HTTP.Pprof, Tokens: tokens, Logger: n.log, Query: query.Handler(n.engine), Queries: n.queriesFront(),
		UI: ui, Clients: clusterClients{n}, Figures: nodesFigures{n}, Engines: n,
	})
	n.onClose("api", func(context.Context) error { return n.api.Close() })
	if len(cfg.HTTP.Tokens) == 0 {
		n.log.Warn("HTTP API authentication is off: anyone who reaches " + cfg.HTTP.Listen + " may use it (set http.tokens to require bearer tokens)")
	}
	if cfg.HTTP.TLS.Enabled() {
		tcfg, err := cfg.HTTP.TLS.Config()
		if err != nil {
			return fmt.Errorf("http.tls: %w", err)
		}
		n.httpLn = tls.NewListener(n.httpLn, tcfg)
		n.httpScheme = "https"
	}
	n.httpSrv = &http.Server{
		Handler:           n.api.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       cfg.HTTP.ReadTimeout,
		IdleTimeout:       cfg.HTTP.IdleTimeout,
		// No write timeout: Server-Sent Events responses are long-lived.
	}
	n.httpSrv.RegisterOnShutdown(n.endPushQueries) // queries.go
	return nil
}

// closeHTTP stops the HTTP server gracefully (or only its listener, if it
// never served).
func (n *Node) closeHTTP(ctx context.Context) error {
	if !n.httpServing.Load() {
		return n.httpLn.Close()
	}
	if err := n.httpSrv.Shutdown(ctx); err != nil {
		n.httpSrv.Close()
	}
	<-n.httpDone
	return nil
}

// onClose registers what Close undoes, in reverse order of registration.
func (n *Node) onClose(name string, fn func(context.Context) error) {
	n.closers = append(n.closers, closer{name, fn})
}

// closeAll runs the closers in reverse order and returns the first error.
func (n *Node) closeAll(ctx context.Context) error {
	var first error
	for i := len(n.closers) - 1; i >= 0; i-- {
		c := n.closers[i]
		if err := c.fn(ctx); err != nil {
			n.log.Error("closing failed", "part", c.name, "error", err)
			if first == nil {
				first = fmt.Errorf("%s: %w", c.name, err)
			}
		}
	}
	n.closers = nil
	return first
}

// Start serves MQTT and HTTP.
func (n *Node) Start() error {
	n.started = time.Now()
	n.sampler.Start()
	if err := n.broker.Start(); err != nil {
		return fmt.Errorf("mqtt: %w", err)
	}
	if n.httpSrv != nil {
		n.httpServing.Store(true)
		go func() {
			defer close(n.httpDone)
			if err := n.httpSrv.Serve(n.httpLn); err != nil && !errors.Is(err, http.ErrServerClosed) {
				n.log.Error("http listener stopped", "error", err)
				n.fail(fmt.Errorf("http: %w", err))
			}
		}()
	}
	n.ready.Store(true)
	n.log.Info("mqstream node started", "version", Version, "mqtt", n.broker.TCPAddr(), "websocket", n.broker.WSAddr(),
		"http", n.HTTPAddr(), "data_dir", n.cfg.Node.DataDir, "sync", n.cfg.Storage.Sync)
	return nil
}

// fail reports a fatal error to Run (the first one wins).
func (n *Node) fail(err error) {
	select {
	case n.fatal <- err:
	default:
	}
}

// Run starts the node and serves until ctx is done or a part fails; then
// it closes the node gracefully, within shutdownTimeout. It returns the
// first fatal error (nil after a clean stop on ctx).
func (n *Node) Run(ctx context.Context, shutdownTimeout time.Duration) error {
	if err := n.Start(); err != nil {
		_ = n.Close(context.Background())
		return err
	}
	var runErr error
	select {
	case <-ctx.Done():
	case runErr = <-n.fatal:
		n.log.Error("fatal error, shutting down", "error", runErr)
	}
	cctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	if err := n.Close(cctx); runErr == nil {
		runErr = err
	}
	return runErr
}

// Close shuts the node down gracefully: it stops accepting connections,
// disconnects clients, lets every publish already received commit (and be
// acknowledged if its client is still there), then closes the store: what
// Open opened, in reverse order. It is idempotent.
func (n *Node) Close(ctx context.Context) error {
	n.closeOnce.Do(func() {
		n.ready.Store(false)
		n.log.Info("shutting down")
		n.closeErr = n.closeAll(ctx)
		n.log.Info("stopped", "error", n.closeErr)
	})
	return n.closeErr
}

// Query returns the node's SQL engine.
func (n *Node) Query() *query.Engine { return n.engine }

// Groups returns the node's consumer groups.
func (n *Node) Groups() *shared.Manager { return n.groups }

// OnGroupPersisted sets a function called (on the group's goroutine; it
// must not block) whenever a consumer group's progress is durable, with the
// number of acks that progress includes.
func (n *Node) OnGroupPersisted(f func(name, filter string, acked int64)) { n.groupPersisted.Store(&f) }

func (n *Node) onGroupPersist(name, filter string, acked int64) {
	if f := n.groupPersisted.Load(); f != nil {
		(*f)(name, filter, acked)
	}
}

// ID returns the node id.
func (n *Node) ID() string { return n.id }

// Store returns the node's stream store.
func (n *Node) Store() *streams.Store { return n.store }

// EngineStats gives the storage engines' figures by database: the stream
// store's ("store") and, in cluster mode, the Raft log's ("raftlog").
func (n *Node) EngineStats() map[string]pebblestats.Stats {
	out := make(map[string]pebblestats.Stats, 2)
	if m, ok := n.store.EngineMetrics(); ok {
		out["store"] = pebblestats.From(m, n.storeStalls)
	}
	if n.repl != nil && n.repl.logs != nil {
		if st, ok := n.repl.logs.EngineStats(); ok {
			out["raftlog"] = st
		}
	}
	return out
}

// Metrics is the Prometheus registry served at /metrics, for collectors
// owned by the serving process (the collector target, package gctune).
// Without an HTTP listener nothing is served: collectors registered then
// are never read.
func (n *Node) Metrics() prometheus.Registerer {
	if n.api == nil {
		return prometheus.NewRegistry()
	}
	return n.api.Registry()
}

// Broker returns the node's MQTT broker.
func (n *Node) Broker() *mqtt.Broker { return n.broker }

// MQTTAddr returns the bound MQTT/TCP address.
func (n *Node) MQTTAddr() string { return n.broker.TCPAddr() }

// WSAddr returns the bound WebSocket address.
func (n *Node) WSAddr() string { return n.broker.WSAddr() }

// HTTPAddr returns the bound HTTP address ("" if disabled).
func (n *Node) HTTPAddr() string {
	if n.httpLn == nil {
		return ""
	}
	return n.httpLn.Addr().String()
}

// Ready reports whether the node serves: false while starting or stopping,
// while the store refuses writes (a disk fault or a full disk) and, in
// cluster mode, until the cluster has formed and this node's replicas
// have caught up with their leaders (caughtup.go).
func (n *Node) Ready() bool {
	ok, _ := n.Readiness()
	return ok
}

// Readiness is Ready with the reason when not ready.
func (n *Node) Readiness() (bool, string) {
	if !n.ready.Load() {
		return false, "starting or stopping"
	}
	if err := n.store.Healthy(); err != nil {
		return false, "store: " + err.Error()
	}
	if n.members != nil {
		if ok, reason := n.members.Ready(); !ok {
			return false, reason
		}
	}
	if ok, reason := n.shardsReady(); !ok {
		return false, reason
	}
	if n.repl != nil {
		return n.repl.caught.state()
	}
	return true, ""
}

// ClusterName is the cluster's name ("" when standalone).
func (n *Node) ClusterName() string { return n.cfg.Cluster.Name }

// Members lists the cluster's members; a standalone node lists itself.
func (n *Node) Members() []cluster.Member {
	if n.members != nil {
		return n.withoutRemoved(n.members.Members())
	}
	return []cluster.Member{{ID: n.id, Status: "alive", MQTT: n.broker.TCPAddr(), HTTP: n.HTTPAddr(), Version: Version}}
}

// withoutRemoved drops from members the nodes removed for good (`mqstream
// node remove`) that are not up: gossip keeps a member that left for a
// while (a removed node's refused restart joins it briefly, then leaves),
// and the metadata group knows it is gone. An up removed node stays
// listed while it runs.
func (n *Node) withoutRemoved(members []cluster.Member) []cluster.Member {
	if n.repl == nil {
		return members
	}
	m := n.repl.metaOpen.Load()
	if m == nil {
		return members
	}
	st := m.State()
	return slices.DeleteFunc(members, func(mem cluster.Member) bool {
		return st.IsRemoved(mem.ID) && !mem.Up()
	})
}

// StartedAt is when Start was called.
func (n *Node) StartedAt() time.Time { return n.started }

// Listeners names the bound listener addresses.
func (n *Node) Listeners() map[string]string {
	out := map[string]string{}
	names := map[string]string{"tcp": "mqtt", "ws": "websocket", "tls": "mqtt_tls", "wss": "websocket_tls"}
	for id, addr := range n.broker.Addrs() {
		out[names[id]] = addr
	}
	if a := n.HTTPAddr(); a != "" {
		out[n.httpScheme] = a
	}
	return out
}

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
	"sync"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/mqstream/mqstream/api"
	"github.com/mqstream/mqstream/auth"
	"github.com/mqstream/mqstream/config"
	"github.com/mqstream/mqstream/mqtt"
	"github.com/mqstream/mqstream/query"
	"github.com/mqstream/mqstream/shared"
	"github.com/mqstream/mqstream/stats"
	"github.com/mqstream/mqstream/streams"
)

// Version is the mqstream version, set at build time with
// -ldflags "-X github.com/mqstream/mqstream/node.Version=v1.2.3".
var Version = "dev"

// Node is one running mqstream node.
type Node struct {
	cfg     config.Config
	id      string
	log     *slog.Logger
	store   *streams.Store
	broker  *mqtt.Broker
	groups  *shared.Manager
	sampler *stats.Sampler
	engine  *query.Engine
	api     *api.Server
	httpSrv *http.Server
	httpLn  net.Listener
	started time.Time

	// groupPersisted, if set, is called whenever a consumer group's
	// progress has been made durable (crash tests use it).
	groupPersisted atomic.Pointer[func(name, filter string, acked int64)]

	// httpScheme is http or https.
	httpScheme string

	ready     atomic.Bool
	closeOnce sync.Once
	closeErr  error
	httpDone  chan struct{}
}

// Option adjusts how Open builds a node (tests).
type Option func(*streams.Options)

// WithFS makes the store use fs (tests inject disk faults with it).
func WithFS(fs vfs.FS) Option { return func(o *streams.Options) { o.FS = fs } }

// Open opens the store, creates the streams the configuration declares and
// binds every listener. Nothing is served until Start.
func Open(cfg config.Config, logger *slog.Logger, options ...Option) (*Node, error) {
	if logger == nil {
		logger = cfg.Logger()
	}
	n := &Node{cfg: cfg, id: cfg.NodeID(), httpDone: make(chan struct{}), httpScheme: "http"}
	n.log = logger.With("node", n.id)
	mapper, err := cfg.Mapper()
	if err != nil {
		return nil, fmt.Errorf("mapping rules: %w", err)
	}
	sopts := cfg.StoreOptions(n.log)
	for _, o := range options {
		o(&sopts)
	}
	n.store, err = streams.Open(sopts)
	if err != nil {
		return nil, err
	}
	ctx := context.Background()
	for name, ret := range cfg.StreamDefinitions() {
		if _, err := n.store.CreateStream(ctx, name, ret); err != nil && !errors.Is(err, streams.ErrStreamExists) {
			n.store.Close()
			return nil, fmt.Errorf("stream %q: %w", name, err)
		}
	}
	bopts := cfg.BrokerOptions(n.log)
	bopts.Mapper, bopts.Store = mapper, n.store
	if cfg.MQTT.Persistence {
		bopts.State = n.store.KV("mqtt")
	}
	if cfg.MQTT.TLS.Enabled() {
		if bopts.TLSConfig, err = cfg.MQTT.TLS.Config(); err != nil {
			n.store.Close()
			return nil, fmt.Errorf("mqtt.tls: %w", err)
		}
		bopts.TLSAddr, bopts.WSSAddr = cfg.MQTT.TLSListen, cfg.MQTT.WSSListen
	}
	if cfg.AuthEnabled() {
		aopts, err := cfg.AuthOptions()
		if err != nil {
			n.store.Close()
			return nil, err
		}
		aopts.Logger = n.log
		if bopts.Access, err = auth.NewHook(aopts); err != nil {
			n.store.Close()
			return nil, fmt.Errorf("auth: %w", err)
		}
	} else {
		n.log.Warn("MQTT authentication is off: any client may connect, publish and subscribe (set auth.* to restrict)")
	}
	decls, err := cfg.GroupDeclarations()
	if err != nil {
		n.store.Close()
		return nil, err
	}
	n.groups, err = shared.New(shared.Options{
		Store:         n.store,
		Progress:      n.store.KV("groups"),
		Mapper:        mapper,
		Defaults:      cfg.GroupDefaults(),
		Declared:      decls,
		FlushInterval: cfg.Groups.FlushInterval,
		Logger:        n.log,
		OnPersist:     n.onGroupPersist,
	})
	if err == nil {
		err = n.groups.Start()
	}
	if err != nil {
		n.store.Close()
		return nil, err
	}
	bopts.Groups = n.groups
	n.broker, err = mqtt.New(bopts)
	if err != nil {
		n.groups.Close()
		n.store.Close()
		return nil, err
	}
	n.sampler, err = stats.New(stats.Options{Source: n.store, Interval: cfg.SQL.StatsInterval, Logger: n.log})
	if err == nil {
		n.engine, err = query.New(query.Options{Store: n.store, Groups: n.groups, Stats: n.sampler, Sessions: n.broker,
			MaxRowsScanned: cfg.SQL.MaxRowsScanned, Timeout: cfg.SQL.Timeout, Logger: n.log})
	}
	if err != nil {
		n.broker.Close()
		n.groups.Close()
		n.store.Close()
		return nil, err
	}
	if cfg.HTTP.Listen != "" {
		n.httpLn, err = net.Listen("tcp", cfg.HTTP.Listen)
		if err != nil {
			n.broker.Close()
			n.groups.Close()
			n.store.Close()
			return nil, fmt.Errorf("http: listen %s: %w", cfg.HTTP.Listen, err)
		}
		n.api = api.New(api.Options{
			Store: n.store, Broker: n.broker, Groups: n.groups, Node: n, Version: Version,
			MaxBodyBytes: int64(cfg.HTTP.MaxBody), MaxBatch: cfg.HTTP.MaxBatch, MaxPayload: int(cfg.MQTT.MaxPayload),
			Pprof: cfg.HTTP.Pprof, Tokens: cfg.APITokens(), Logger: n.log, Query: query.Handler(n.engine),
		})
		if len(cfg.HTTP.Tokens) == 0 {
			n.log.Warn("HTTP API authentication is off: anyone who reaches " + cfg.HTTP.Listen + " may use it (set http.tokens to require bearer tokens)")
		}
		if cfg.HTTP.TLS.Enabled() {
			tcfg, err := cfg.HTTP.TLS.Config()
			if err != nil {
				n.httpLn.Close()
				n.broker.Close()
				n.groups.Close()
				n.store.Close()
				return nil, fmt.Errorf("http.tls: %w", err)
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
	}
	return n, nil
}

// Start serves MQTT and HTTP.
func (n *Node) Start() error {
	n.started = time.Now()
	n.sampler.Start()
	if err := n.broker.Start(); err != nil {
		return fmt.Errorf("mqtt: %w", err)
	}
	if n.httpSrv != nil {
		go func() {
			defer close(n.httpDone)
			if err := n.httpSrv.Serve(n.httpLn); err != nil && !errors.Is(err, http.ErrServerClosed) {
				n.log.Error("http listener stopped", "error", err)
			}
		}()
	} else {
		close(n.httpDone)
	}
	n.ready.Store(true)
	n.log.Info("mqstream node started", "version", Version, "mqtt", n.broker.TCPAddr(), "websocket", n.broker.WSAddr(),
		"http", n.HTTPAddr(), "data_dir", n.cfg.Node.DataDir, "sync", n.cfg.Storage.Sync)
	return nil
}

// Close shuts the node down gracefully: it stops accepting connections,
// disconnects clients, lets every publish already received commit (and be
// acknowledged if its client is still there), then closes the store. It is
// idempotent.
func (n *Node) Close(ctx context.Context) error {
	n.closeOnce.Do(func() {
		n.ready.Store(false)
		n.log.Info("shutting down")
		if n.httpSrv != nil {
			if err := n.httpSrv.Shutdown(ctx); err != nil {
				n.httpSrv.Close()
			}
			<-n.httpDone
		}
		n.broker.Close()
		n.groups.Close()
		n.sampler.Close()
		n.closeErr = n.store.Close()
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
// and while the store refuses writes (a disk fault or a full disk).
func (n *Node) Ready() bool { return n.ready.Load() && n.store.Healthy() == nil }

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

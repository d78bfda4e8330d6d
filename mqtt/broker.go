package mqtt

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"sync"
	"sync/atomic"
	"time"

	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/listeners"
	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/mqstream/mqstream/topic"
)

// Options configure the embedded broker.
type Options struct {
	// TCPAddr is the MQTT/TCP listen address ("" disables it).
	TCPAddr string
	// WSAddr is the MQTT over WebSocket listen address ("" disables it).
	WSAddr string
	// Mapper decides which topics are stored in which stream.
	Mapper *topic.Mapper
	// Store receives the records.
	Store Appender
	// MaxPayload refuses (reason 0x95) publishes with a larger payload; 0 = no limit.
	MaxPayload int
	// MaxClients refuses connections beyond this many; 0 = no limit.
	MaxClients int64
	// ReceiveMaximum is the number of QoS 1/2 publishes a client may have
	// unacknowledged (advertised to MQTT 5 clients; enforced by back-pressure
	// for all clients: the connection is not read while it is exceeded).
	ReceiveMaximum uint16
	// MaxInflight is the number of QoS 1/2 deliveries to a client that may
	// wait for its ack (capped by an MQTT 5 client's Receive Maximum);
	// 0 = 8192.
	MaxInflight uint16
	// MaxQueued is the number of deliveries a session holds beyond its
	// in-flight window (for a slow or absent client); more are dropped and
	// counted ($SYS/broker/publish/messages/dropped). 0 = 65536.
	MaxQueued int
	// MaxQueuedBytes bounds the topic and payload bytes of those
	// deliveries per session (0 = no bound).
	MaxQueuedBytes int64
	// State keeps retained messages and persistent sessions across
	// restarts (state.go); nil keeps them in memory only.
	State StateKV
	// KeepaliveMax caps the keepalive an MQTT 5 client may ask for (sent back
	// as Server Keep Alive); 0 = no cap.
	KeepaliveMax uint16
	// FanoutAfterStore delivers stored QoS 0/1 messages to ordinary
	// subscribers only once they are durable. By default they are delivered
	// as soon as they arrive, like any broker does, and only their PUBACK
	// waits for the disk. QoS 2 messages are always delivered after storing.
	FanoutAfterStore bool
	// TLSAddr and WSSAddr are the MQTT over TLS and secure WebSocket
	// addresses ("" disables); they use TLSConfig.
	TLSAddr, WSSAddr string
	TLSConfig        *tls.Config
	// Access authenticates clients and checks publishes, subscriptions and
	// deliveries; nil lets everyone do everything.
	Access mochi.Hook
	// HideDenialReason answers what Access refuses with reason 0x80
	// (unspecified error) instead of 0x87 (not authorized) in MQTT 5
	// SUBACK, PUBACK and PUBREC: a server that does not wish to reveal why
	// may [MQTT-3.9.3]. MQTT 3.1.1 is unchanged (SUBACK 0x80, and a refused
	// QoS 1/2 publish disconnects).
	HideDenialReason bool
	// MaxSubscriptions caps one client's subscriptions (0 = no cap); more
	// are refused in SUBACK.
	MaxSubscriptions int
	// Groups serves $share/<group>/<filter> subscriptions as durable
	// consumer groups over the streams (package shared); nil: shared
	// subscriptions are accepted but receive nothing.
	Groups Groups
	// Admit, if set, is asked on every CONNECT; an error refuses the
	// client with "server unavailable" (MQTT 5 0x88, MQTT 3.1.1 return
	// code 3), e.g. while a cluster node has not joined yet.
	Admit func() error
	// CatchUpWindow: a new subscription also gets the messages other
	// clients published this long before it took effect (catchup.go);
	// 0 = 20 ms, negative = off.
	CatchUpWindow time.Duration
	// Remote links the broker to the other nodes of a cluster: their
	// subscribers get the messages published here (remote.go) and
	// retained messages are the same on every node (retainsync.go); nil
	// when standalone.
	Remote Remote
	// NodeID names this node among the others (cluster mode: it breaks
	// ties between retained messages set at the same instant).
	NodeID string
	// SysTopicInterval is the $SYS publish period in seconds; 0 = 1.
	SysTopicInterval int64
	// Logger receives the broker's logs; nil means slog.Default().
	Logger *slog.Logger
}

// Broker is the embedded MQTT broker with mqstream's hooks.
type Broker struct {
	opts   Options
	server *mochi.Server
	ingest *ingestHook
	log    *slog.Logger
	tcp    *tcpListener
	ws     *wsListener
	// listeners are all bound listeners (tcp, ws, tls, wss).
	listeners []listeners.Listener
	// apiClient re-publishes API publishes to subscribers (an inline client
	// on the fan-out listener, so ingest does not store them twice).
	apiClient *mochi.Client
	// acl holds the hooks that check access (OnACLCheck): deliveries ask
	// them as mochi would.
	acl []mochi.Hook
	// delivery sends to ordinary subscribers; sel corrects selections.
	delivery *deliveryHook
	sel      *selector
	// routing is the fence a session's move waits at for the messages
	// already routed to it (routingfence.go); nil in standalone mode.
	routing *routingFence
	// state writes broker state to disk (nil without Options.State).
	state *stateStore
	// willsMu guards wills (restored wills waiting for their delay) and
	// willsClosed (Close stopped them).
	willsMu     sync.Mutex
	wills       []*time.Timer
	willsClosed bool
	// takeover orders takeovers of a session on this node; claims orders
	// them across the cluster (nil: standalone).
	takeover *takeoverHook
	claims   *claimHook
	// departing are the sessions handed over to a claiming node and kept
	// here until it settles the move (sessiondepart.go).
	departing departures
	// peerWills holds other nodes' clients' wills (nil: standalone).
	peerWills *clusterWills
	// droppedWills publishes the wills mochi drops (droppedwills.go).
	droppedWills *droppedWillsHook
	// catchUp (nil: none) notes per connection where its catch-ups start.
	catchUp *catchUpHook
	// subscribed, if set (tests), is called by restoreSessions once the
	// subscriptions it restored are in the topic index.
	subscribed func()
	// badForwards counts messages from other nodes that did not decode.
	badForwards atomic.Int64
	// restored is closed once Start restored the broker state (or Close
	// ran first).
	restored     chan struct{}
	restoredOnce sync.Once

	closeOnce sync.Once
	// closing is set when Close starts: sessions other nodes hand over
	// are refused from then on.
	closing atomic.Bool
	// sweepStop ends the retained-tombstone sweep (cluster mode) and
	// sweepDone says it ended; set by Start.
	sweepStop, sweepDone chan struct{}
}

// New builds a broker and binds its listeners (so their addresses are
// known); Start begins serving.
func New(opts Options) (*Broker, error) {
	if opts.Mapper == nil || opts.Store == nil {
		return nil, errors.New("mqtt: Mapper and Store are required")
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.ReceiveMaximum == 0 {
		opts.ReceiveMaximum = 1024
	}
	caps := mochi.NewDefaultServerCapabilities()
	caps.ReceiveMaximum = opts.ReceiveMaximum
	// mochi's per-client outbound channel carries only what mochi's own
	// publishToClient sends, and every delivery (messages, retained
	// messages on SUBSCRIBE, wills, $SYS) goes through our session queues
	// instead (delivery.go, retained.go); mochi writes CONNACK, SUBACK and
	// PINGRESP directly. 8192 slots (mochi's default) cost 64 KiB per
	// connection, 256 cost 2 KiB: a tenth of an idle connection's budget.
	caps.MaximumClientWritesPending = 16
	if opts.MaxInflight > 0 {
		caps.MaximumInflight = opts.MaxInflight
	}
	if opts.MaxClients > 0 {
		caps.MaximumClients = opts.MaxClients
	} else {
		caps.MaximumClients = math.MaxInt64
	}
	// mochi expires in-flight and retained messages after 24 h by default,
	// even for sessions that never expire; 0 keeps them until their own
	// (MQTT 5) message expiry.
	caps.MaximumMessageExpiryInterval = 0
	// The broker never echoes a publish's user properties on its ack.
	caps.Compatibilities.NoInheritedPropertiesOnAck = true
	// SUBACK of a subscription Access refuses: 0x80 instead of 0x87.
	caps.Compatibilities.ObscureNotAuthorized = opts.HideDenialReason
	if opts.MaxPayload > 0 {
		// A hard cap on the whole packet protects memory; payloads between
		// MaxPayload and this get a clean 0x95 ack instead of a disconnect.
		caps.MaximumPacketSize = uint32(min(int64(opts.MaxPayload)+64<<10, math.MaxUint32))
	}
	server := mochi.New(&mochi.Options{
		Capabilities:           caps,
		Logger:                 slog.New(infoFloor{opts.Logger.Handler()}).With("component", "mqtt"),
		SysTopicResendInterval: opts.SysTopicInterval,
		InlineClient:           true,
		// Small: busy connections read in pooled bursts (readburst.go).
		ClientNetReadBufferSize: mochiReadBuffer,
	})
	b := &Broker{opts: opts, server: server, log: opts.Logger, restored: make(chan struct{})}
	b.apiClient = server.NewClient(nil, fanoutListener, apiClientID, true)
	b.apiClient.Properties.ProtocolVersion = 5
	if opts.Remote != nil {
		b.routing = &routingFence{}
		// First: a will's routing holds the fence from before mochi
		// looks its subscribers up, and lets go before the other hooks'
		// OnWillSent (ingest stores the will).
		if err := server.AddHook(&willFenceHook{f: b.routing}, nil); err != nil {
			return nil, fmt.Errorf("mqtt: add will fence hook: %w", err)
		}
	}
	sel := newSelector(server)
	// First: subscription changes take their place in arrival order as
	// soon as they are read (order.go).
	order := newSubscriptionOrder()
	if err := server.AddHook(order, nil); err != nil {
		return nil, fmt.Errorf("mqtt: add subscription order hook: %w", err)
	}
	// Before the delivery hook, which looks for the connection a new one
	// takes over; after the order hook, whose OnDisconnect returns the
	// leaving connection's ticket without waiting (takeover.go).
	takeover := newTakeoverHook()
	if err := server.AddHook(takeover, nil); err != nil {
		return nil, fmt.Errorf("mqtt: add takeover hook: %w", err)
	}
	b.takeover = takeover
	takeover.aborted = b.establishAborted
	if opts.Remote != nil {
		// After the takeover hook: a client id is claimed from the other
		// nodes once a connection with it leaving here is gone.
		b.claims = newClaimHook(b, opts.Remote, opts.NodeID)
		if err := server.AddHook(b.claims, nil); err != nil {
			return nil, fmt.Errorf("mqtt: add claim hook: %w", err)
		}
		b.peerWills = newClusterWills(b, opts.NodeID)
		if err := server.AddHook(&willHook{w: b.peerWills}, nil); err != nil {
			return nil, fmt.Errorf("mqtt: add cluster will hook: %w", err)
		}
	}
	// Then: the selector's indexes ("+/#" filters, routes) are updated
	// before the other hooks' OnSubscribed (the catch-up's reads the
	// routes' new state).
	if err := server.AddHook(&selectionHook{sel: sel}, nil); err != nil {
		return nil, fmt.Errorf("mqtt: add selection hook: %w", err)
	}
	if opts.MaxQueued <= 0 {
		opts.MaxQueued = 65536
	}
	b.opts.MaxQueued = opts.MaxQueued
	out := newOutbound(server, int(caps.MaximumInflight), opts.MaxQueued, opts.Logger)
	out.maxQueuedBytes = opts.MaxQueuedBytes
	if opts.State != nil {
		b.state = newStateStore(opts.State, opts.Logger)
		out.st = b.state
	}
	delivery := &deliveryHook{
		server:   server,
		sel:      sel,
		out:      out,
		st:       b.state,
		log:      opts.Logger,
		acl:      b.aclCheck,
		sys:      server.NewClient(nil, fanoutListener, "mqstream-sys", true),
		retained: &retainer{server: server, st: b.state},
		recent:   newRecentPublishes(opts.CatchUpWindow),
		remote:   opts.Remote,
	}
	// After the selection hook: it delivers what the selection corrected.
	if err := server.AddHook(delivery, nil); err != nil {
		return nil, fmt.Errorf("mqtt: add delivery hook: %w", err)
	}
	// Before the state hook, which writes a delayed will it hands back
	// into the session's record (droppedwills.go).
	b.droppedWills = newDroppedWillsHook(b)
	if err := server.AddHook(b.droppedWills, nil); err != nil {
		return nil, fmt.Errorf("mqtt: add dropped wills hook: %w", err)
	}
	if b.state != nil {
		// After the delivery hook: a session is saved once its queue
		// has been handed over or ended.
		state := &stateHook{st: b.state, retained: delivery.retained, log: opts.Logger}
		if err := server.AddHook(state, nil); err != nil {
			return nil, fmt.Errorf("mqtt: add state hook: %w", err)
		}
	}
	if opts.Remote != nil {
		delivery.retained.sync = newRetainedSync(opts.Remote, opts.NodeID)
	}
	b.delivery, b.sel = delivery, sel
	b.ingest = &ingestHook{
		server:     server,
		store:      opts.Store,
		mapper:     opts.Mapper,
		maxPayload: opts.MaxPayload,
		maxPending: int(opts.ReceiveMaximum),
		early:      !opts.FanoutAfterStore,
		log:        opts.Logger,
		subs:       sel.routes,
		order:      order,
		publish:    delivery.publish,
		recent:     delivery.recent,
		routing:    b.routing,
		st:         b.state,
	}
	if err := server.AddHook(b.ingest, nil); err != nil {
		return nil, fmt.Errorf("mqtt: add ingest hook: %w", err)
	}
	if delivery.recent != nil {
		// After the delivery and ingest hooks' OnSubscribed.
		b.catchUp = &catchUpHook{recent: delivery.recent, subs: b.ingest.subs, delivery: delivery}
		if err := server.AddHook(b.catchUp, nil); err != nil {
			return nil, fmt.Errorf("mqtt: add catch-up hook: %w", err)
		}
	}
	if opts.Remote != nil {
		// Last of the OnSubscribed hooks before the SUBACK: it waits for
		// the other nodes to learn the new filters.
		if err := server.AddHook(&routeHook{remote: opts.Remote}, nil); err != nil {
			return nil, fmt.Errorf("mqtt: add route hook: %w", err)
		}
	}
	// Exactly one hook decides access: mochi allows what any hook allows.
	var access mochi.Hook = &openAccessHook{}
	if opts.Access != nil {
		access = opts.Access
		b.ingest.aclMayRefuse = true
		b.ingest.denied = packets.ErrNotAuthorized
		if opts.HideDenialReason {
			b.ingest.denied = packets.ErrUnspecifiedError
		}
	}
	if err := b.AddHook(access); err != nil {
		return nil, fmt.Errorf("mqtt: add access hook: %w", err)
	}
	if err := server.AddHook(&connectHook{maxPacketSize: caps.MaximumPacketSize, log: opts.Logger}, nil); err != nil {
		return nil, fmt.Errorf("mqtt: add connect hook: %w", err)
	}
	if err := server.AddHook(&lingerHook{}, nil); err != nil {
		return nil, fmt.Errorf("mqtt: add linger hook: %w", err)
	}
	if err := server.AddHook(&limitsHook{server: server, admit: opts.Admit, keepaliveMax: opts.KeepaliveMax, maxSubscriptions: opts.MaxSubscriptions, log: opts.Logger}, nil); err != nil {
		return nil, fmt.Errorf("mqtt: add limits hook: %w", err)
	}
	if opts.Groups != nil {
		// After the delivery hook: a resumed session is attached to its
		// connection before its members rejoin.
		groups := &groupsHook{server: server, groups: opts.Groups, out: out, log: opts.Logger}
		if err := server.AddHook(groups, nil); err != nil {
			return nil, fmt.Errorf("mqtt: add groups hook: %w", err)
		}
	}
	// Last of the hooks that handle OnSessionEstablished: a connection
	// with the same client id waits until they all ran (takeover.go).
	if err := server.AddHook(&takeoverSettledHook{h: takeover}, nil); err != nil {
		return nil, fmt.Errorf("mqtt: add takeover settled hook: %w", err)
	}
	if err := b.listen(); err != nil {
		b.closeListeners()
		return nil, err
	}
	for _, l := range b.listeners {
		switch l := l.(type) {
		case *tcpListener:
			l.disconnect, l.open = b.disconnectListener, takeover.open
		case *wsListener:
			l.disconnect, l.open = b.disconnectListener, takeover.open
		}
	}
	return b, nil
}

// disconnectListener disconnects the clients of one listener when the
// broker closes. mochi's own way (Clients.GetByListener) read-locks its
// client map twice, and a client leaving in between deadlocks the
// shutdown; this takes one snapshot.
func (b *Broker) disconnectListener(id string) {
	for _, cl := range b.server.Clients.GetAll() {
		if cl.Net.Listener == id && !cl.Closed() {
			unblockWrites(cl)
			_ = b.server.DisconnectClient(cl, packets.ErrServerShuttingDown)
		}
	}
}

// listen binds the configured listeners.
func (b *Broker) listen() error {
	o := b.opts
	for _, l := range []struct {
		id, addr string
		tls      bool
		ws       bool
	}{{"tcp", o.TCPAddr, false, false}, {"ws", o.WSAddr, false, true}, {"tls", o.TLSAddr, true, false}, {"wss", o.WSSAddr, true, true}} {
		if l.addr == "" {
			continue
		}
		var cfg *tls.Config
		if l.tls {
			if o.TLSConfig == nil {
				return fmt.Errorf("mqtt: listener %s on %s needs a TLS configuration", l.id, l.addr)
			}
			cfg = o.TLSConfig
		}
		var ln listeners.Listener
		var err error
		if l.ws {
			var wl *wsListener
			wl, err = newWSListener(l.id, l.addr, cfg)
			ln = wl
			if err == nil && !l.tls {
				b.ws = wl
			}
		} else {
			var tl *tcpListener
			tl, err = newTCPListener(l.id, l.addr, cfg)
			ln = tl
			if err == nil && !l.tls {
				b.tcp = tl
			}
		}
		if err != nil {
			return fmt.Errorf("mqtt: listen %s %s: %w", l.id, l.addr, err)
		}
		b.listeners = append(b.listeners, ln)
		if err := b.server.AddListener(ln); err != nil {
			return err
		}
	}
	return nil
}

// Addrs returns the bound address of every listener by id (tcp, ws, tls, wss).
func (b *Broker) Addrs() map[string]string {
	out := map[string]string{}
	for _, l := range b.listeners {
		out[l.ID()] = l.Address()
	}
	return out
}

// AddHook adds another hook (consumer groups, auth) before Start.
func (b *Broker) AddHook(h mochi.Hook) error {
	if err := b.server.AddHook(h, nil); err != nil {
		return err
	}
	if h.Provides(mochi.OnACLCheck) {
		b.acl = append(b.acl, h)
	}
	return nil
}

// aclCheck says whether cl may receive messages on topic: as for mochi,
// when any access hook allows it.
func (b *Broker) aclCheck(cl *mochi.Client, topic string) bool {
	for _, h := range b.acl {
		if h.OnACLCheck(cl, topic, false) {
			return true
		}
	}
	return false
}

// Server returns the embedded mochi server (for hooks that deliver messages).
func (b *Broker) Server() *mochi.Server { return b.server }

// Start restores the broker state kept on disk (retained messages,
// persistent sessions) and begins accepting connections.
func (b *Broker) Start() error {
	if b.state != nil {
		if err := b.restore(); err != nil {
			return err
		}
	}
	b.restoredOnce.Do(func() { close(b.restored) })
	if b.opts.Remote != nil {
		b.syncRoutes()
	}
	if b.delivery.retained.sync != nil {
		b.sweepStop, b.sweepDone = make(chan struct{}), make(chan struct{})
		go b.sweepLoop(b.sweepStop, b.sweepDone)
	}
	return b.server.Serve()
}

// TCPAddr returns the bound MQTT/TCP address ("" if disabled).
func (b *Broker) TCPAddr() string {
	if b.tcp == nil {
		return ""
	}
	return b.tcp.Address()
}

// WSAddr returns the bound WebSocket address ("" if disabled).
func (b *Broker) WSAddr() string {
	if b.ws == nil {
		return ""
	}
	return b.ws.Address()
}

// Stats are ingest counters.
type Stats struct {
	Stored  int64 // publishes stored and acknowledged
	Refused int64 // publishes refused (not stored)
}

// Stats returns the ingest counters.
func (b *Broker) Stats() Stats {
	return Stats{Stored: b.ingest.stored.Load(), Refused: b.ingest.refused.Load()}
}

// Close stops the listeners, disconnects every client and waits until every
// publish already received has been committed (or failed). It does not close
// the store. It is idempotent.
func (b *Broker) Close() error {
	b.closing.Store(true)
	b.restoredOnce.Do(func() { close(b.restored) })
	if b.peerWills != nil {
		b.peerWills.close()
	}
	b.closeOnce.Do(func() {
		if b.sweepStop != nil {
			close(b.sweepStop)
			<-b.sweepDone
		}
		b.willsMu.Lock()
		b.willsClosed = true
		for _, t := range b.wills {
			t.Stop()
		}
		b.willsMu.Unlock()
		// Publishes already taken are acknowledged before their clients
		// are disconnected (drain); new ones are turned away.
		if !b.ingest.drain(drainTimeout) {
			b.log.Warn("publishes still not committed when stopping: their clients get no acknowledgement", "after", drainTimeout)
		}
		_ = b.server.Close()
		// Every client goroutine ends (so no more publishes are queued)
		// before we wait for the queued ones to commit.
		b.server.Listeners.ClientsWg.Wait()
		b.ingest.Wait()
		if b.state != nil {
			b.state.wait()
		}
	})
	return nil
}

func (b *Broker) closeListeners() {
	noop := func(string) {}
	for _, l := range b.listeners {
		l.Close(noop)
	}
}

// drainTimeout bounds how long a stopping broker waits for the publishes
// it took to be committed and acknowledged before it disconnects their
// clients (ingestHook.drain).
const drainTimeout = 5 * time.Second

// departuresWait bounds how long a stopping broker waits for the moves of
// sessions it handed over to be settled.
const departuresWait = 3 * time.Second

// limitsHook applies connection limits mochi has no option for.
type limitsHook struct {
	mochi.HookBase
	server           *mochi.Server
	admit            func() error
	refusing         atomic.Bool // the last CONNECT was refused by admit (logged once per spell)
	keepaliveMax     uint16
	maxSubscriptions int
	log              *slog.Logger
}

func (h *limitsHook) ID() string { return "mqstream-limits" }

func (h *limitsHook) Provides(b byte) bool {
	return b == mochi.OnConnect || (b == mochi.OnSubscribe && h.maxSubscriptions > 0)
}

// limitFilter makes mochi refuse a filter (0x8F; 0x80 for MQTT 3.1.1):
// '#' must be the last level.
const limitFilter = "#/mqstream-subscription-limit"

// OnSubscribe refuses subscriptions beyond the per-client cap. Filters the
// client already holds are replaced, not added, so they always pass.
func (h *limitsHook) OnSubscribe(cl *mochi.Client, pk packets.Packet) packets.Packet {
	have := cl.State.Subscriptions.GetAll()
	n := len(have)
	for i, sub := range pk.Filters {
		if _, ok := have[sub.Filter]; ok {
			continue
		}
		if n >= h.maxSubscriptions {
			h.log.Warn("subscription refused: limit reached", "client", cl.ID, "filter", sub.Filter, "limit", h.maxSubscriptions)
			pk.Filters[i].Filter = limitFilter
			continue
		}
		n++
	}
	return pk
}

// OnConnect caps an MQTT 5 client's keepalive; the CONNACK tells the client
// the value to use [MQTT-3.2.2-21]. MQTT 3.1.1 has no way to tell a client,
// so its keepalive is left alone.
func (h *limitsHook) OnConnect(cl *mochi.Client, pk packets.Packet) error {
	if h.admit != nil {
		if err := h.admit(); err != nil {
			if !h.refusing.Swap(true) {
				h.log.Warn("refusing MQTT connections: server unavailable", "reason", err.Error(), "client", cl.ID)
			}
			_ = h.server.SendConnack(cl, packets.ErrServerUnavailable, false, nil)
			return packets.ErrServerUnavailable
		}
		if h.refusing.Swap(false) {
			h.log.Info("accepting MQTT connections again")
		}
	}
	if h.keepaliveMax > 0 && cl.Properties.ProtocolVersion == 5 &&
		(cl.State.Keepalive == 0 || cl.State.Keepalive > h.keepaliveMax) {
		cl.State.Keepalive = h.keepaliveMax
		cl.State.ServerKeepalive = true
	}
	return nil
}

// openAccessHook lets every client connect, publish and subscribe: the
// default until authentication and ACLs are configured.
type openAccessHook struct{ mochi.HookBase }

func (h *openAccessHook) ID() string { return "mqstream-open-access" }

func (h *openAccessHook) Provides(b byte) bool {
	return b == mochi.OnConnectAuthenticate || b == mochi.OnACLCheck
}

func (h *openAccessHook) OnConnectAuthenticate(*mochi.Client, packets.Packet) bool { return true }

func (h *openAccessHook) OnACLCheck(*mochi.Client, string, bool) bool { return true }

// infoFloor drops mochi's debug records: it logs every rejected packet in
// full at debug level, which would drown ours.
type infoFloor struct{ slog.Handler }

func (h infoFloor) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= slog.LevelInfo && h.Handler.Enabled(ctx, l)
}
func (h infoFloor) WithAttrs(a []slog.Attr) slog.Handler { return infoFloor{h.Handler.WithAttrs(a)} }
func (h infoFloor) WithGroup(n string) slog.Handler      { return infoFloor{h.Handler.WithGroup(n)} }

package node

import (
	"context"

	"github.com/mqstream/mqstream/cluster/groups"
	"github.com/mqstream/mqstream/cluster/routes"
)

// openRoutes makes the router that carries messages to subscribers on
// other nodes (cluster mode; before the broker, which tells it its
// clients' subscriptions).
func (n *Node) openRoutes() {
	var r *routes.Router
	r = routes.New(routes.Options{Self: n.id, Caller: n.repl.mux, Deliver: forwardedTo{n}, Claims: forwardedTo{n}, Logger: n.log,
		// A node that joins or restarted learns this broker's process, the
		// wills of the clients connected here and every retained message.
		Joined: func(peer string) {
			// A restarted node's consumer-group members (and the
			// groups it ran) are those of its new process.
			n.relay.NodeReset(peer)
			send := func(msg []byte) { r.SendTo(peer, msg) }
			send(n.broker.Hello())
			n.broker.Wills(send)
			// Paced: a retained set larger than the peer's queue
			// must not drop its own start (and start the repair
			// that sends it all again, for ever). Each state
			// carries its version, so a newer one sent meanwhile
			// wins whatever the order.
			n.broker.SendRetained(func(msg []byte) { r.SendPaced(peer, msg) })
		},
		// Only a live node acts for a failed one (a suspect may be dead too).
		Alive: func(peer string) bool { return n.repl.alive(peer) }})
	n.routes = r
	n.onClose("routes", func(context.Context) error { r.Close(); return nil })
}

// serveRoutes registers the router's services (once the broker it
// delivers to exists, and before the node joins, so peers find them).
func (n *Node) serveRoutes() {
	n.repl.mux.Handle(routes.SyncService, n.routes.HandleSync)
	n.repl.mux.Handle(routes.DeliverService, n.routes.HandleDeliver)
	n.repl.mux.Handle(routes.ClaimService, n.routes.HandleClaim)
	n.repl.mux.Handle(routes.SettleService, n.routes.HandleSettle)
	n.repl.mux.Handle(routes.FlushService, n.routes.HandleFlush)
	n.repl.mux.Handle(routes.HandOverService, n.routes.HandleHandOver)
}

// forwardedTo hands the node's broker what other nodes send: messages for
// its subscribers and claims of client ids.
type forwardedTo struct{ n *Node }

func (f forwardedTo) DeliverForwarded(msg []byte) {
	if groups.IsFrame(msg) {
		f.n.relay.HandleFrame(msg)
		return
	}
	f.n.broker.DeliverForwarded(msg)
}

func (f forwardedTo) HandleClaim(req []byte) ([]byte, error)  { return f.n.broker.HandleClaim(req) }
func (f forwardedTo) HandleSettle(req []byte) ([]byte, error) { return f.n.broker.HandleSettle(req) }
func (f forwardedTo) HandleHandOver(req []byte) ([]byte, error) {
	return f.n.broker.HandleHandOver(req)
}

// followMembers keeps the router's peers the members that are up (alive
// or suspect: a suspect may come back; failed and left members are
// dropped), and tells the broker of members that went (the wills of a
// failed one's clients are published), until the node closes.
func (n *Node) followMembers() {
	done := make(chan struct{})
	stopped := make(chan struct{})
	n.onClose("route peers", func(context.Context) error { close(done); <-stopped; return nil })
	go func() {
		defer close(stopped)
		up := map[string]bool{}
		for {
			ch := n.members.Changed()
			var peers []routes.Peer
			now := map[string]bool{}
			status := map[string]string{}
			for _, m := range n.members.Members() {
				status[m.ID] = m.Status
				if m.ID != n.id && m.RPC != "" && m.Up() {
					peers = append(peers, routes.Peer{ID: m.ID, Addr: m.RPC})
					now[m.ID] = true
				}
			}
			n.routes.SetPeers(peers)
			for id := range up {
				if !now[id] {
					n.broker.NodeGone(id, status[id] != "left")
					n.relay.NodeGone(id)
				}
			}
			up = now
			select {
			case <-ch:
			case <-done:
				return
			}
		}
	}()
}

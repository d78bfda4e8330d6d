package node

import (
	"context"

	"github.com/mqstream/mqstream/cluster/routes"
)

// openRoutes makes the router that carries messages to subscribers on
// other nodes (cluster mode; before the broker, which tells it its
// clients' subscriptions).
func (n *Node) openRoutes() {
	var r *routes.Router
	r = routes.New(routes.Options{Self: n.id, Caller: n.repl.mux, Deliver: forwardedTo{n}, Claims: forwardedTo{n}, Logger: n.log,
		// A node that joins or restarted gets every retained message.
		Joined: func(peer string) { n.broker.SendRetained(func(msg []byte) { r.SendTo(peer, msg) }) }})
	n.routes = r
	n.onClose("routes", func(context.Context) error { r.Close(); return nil })
}

// serveRoutes registers the router's services (once the broker it
// delivers to exists, and before the node joins, so peers find them).
func (n *Node) serveRoutes() {
	n.repl.mux.Handle(routes.SyncService, n.routes.HandleSync)
	n.repl.mux.Handle(routes.DeliverService, n.routes.HandleDeliver)
	n.repl.mux.Handle(routes.ClaimService, n.routes.HandleClaim)
}

// forwardedTo hands the node's broker what other nodes send: messages for
// its subscribers and claims of client ids.
type forwardedTo struct{ n *Node }

func (f forwardedTo) DeliverForwarded(msg []byte) { f.n.broker.DeliverForwarded(msg) }

func (f forwardedTo) HandleClaim(req []byte) ([]byte, error) { return f.n.broker.HandleClaim(req) }

// followMembers keeps the router's peers the members that are up (alive
// or suspect: a suspect may come back; failed and left members are
// dropped), until the node closes.
func (n *Node) followMembers() {
	done := make(chan struct{})
	stopped := make(chan struct{})
	n.onClose("route peers", func(context.Context) error { close(done); <-stopped; return nil })
	go func() {
		defer close(stopped)
		for {
			ch := n.members.Changed()
			var peers []routes.Peer
			for _, m := range n.members.Members() {
				if m.ID != n.id && m.RPC != "" && (m.Status == "alive" || m.Status == "suspect") {
					peers = append(peers, routes.Peer{ID: m.ID, Addr: m.RPC})
				}
			}
			n.routes.SetPeers(peers)
			select {
			case <-ch:
			case <-done:
				return
			}
		}
	}()
}

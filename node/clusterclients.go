package node

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/mqstream/mqstream/api"
)

// The API's client views cover the cluster: every node holds its own
// clients' sessions, so GET /v1/clients, DELETE /v1/clients/{id} and the
// overview's connections and subscriptions ask every other member that is
// up (fromPeers: at once, each answer within a short timeout; a node that
// does not answer is left out and logged). Standalone, they are this
// node's.

// Services the node answers for the client views of others.
const (
	clientsService      = "clients.list"
	clientTotalsService = "clients.totals"
	// disconnectService takes a client id and answers true when the client
	// was connected to this node (and is now disconnected), false when not.
	disconnectService = "clients.disconnect"
)

// totalsTimeout bounds the overview's wait for the other nodes' figures
// (the page receives the overview once a second).
const totalsTimeout = time.Second

// serveClients registers the client services (cluster mode).
func (n *Node) serveClients() {
	local := brokerClients{n.broker, n.id}
	n.repl.mux.Handle(clientsService, func(context.Context, string, []byte) ([]byte, error) {
		return json.Marshal(local.Clients())
	})
	n.repl.mux.Handle(clientTotalsService, func(context.Context, string, []byte) ([]byte, error) {
		return json.Marshal(local.totals())
	})
	n.repl.mux.Handle(disconnectService, func(_ context.Context, _ string, id []byte) ([]byte, error) {
		err := local.Disconnect(string(id))
		if errors.Is(err, api.ErrClientNotFound) {
			return json.Marshal(false)
		}
		if err != nil {
			return nil, fmt.Errorf("disconnecting client %q: %w", id, err)
		}
		return json.Marshal(true)
	})
}

// clusterClients serves the API's client views.
type clusterClients struct{ n *Node }

func (c clusterClients) local() brokerClients { return brokerClients{c.n.broker, c.n.id} }

// Clients lists every node's sessions, by client id, each with its node.
func (c clusterClients) Clients(ctx context.Context) []api.ClientInfo {
	out := c.local().Clients()
	for node, list := range fromPeers[[]api.ClientInfo](ctx, c.n, clientsService, nil) {
		for _, ci := range list {
			ci.Node = node
			out = append(out, ci)
		}
	}
	slices.SortFunc(out, func(a, b api.ClientInfo) int {
		return cmp.Or(strings.Compare(a.ClientID, b.ClientID), strings.Compare(a.Node, b.Node))
	})
	return out
}

// Disconnect disconnects client id here, or else asks the other nodes to.
func (c clusterClients) Disconnect(ctx context.Context, id string) error {
	err := c.local().Disconnect(id)
	if !errors.Is(err, api.ErrClientNotFound) {
		return err
	}
	for _, done := range fromPeers[bool](ctx, c.n, disconnectService, []byte(id)) {
		if done {
			return nil
		}
	}
	return err
}

// Totals sums the connected clients and their subscriptions over the
// nodes that answer within totalsTimeout.
func (c clusterClients) Totals(ctx context.Context) api.ClientTotals {
	ctx, cancel := context.WithTimeout(ctx, totalsTimeout)
	defer cancel()
	tot := c.local().totals()
	for _, t := range fromPeers[api.ClientTotals](ctx, c.n, clientTotalsService, nil) {
		tot.Connections += t.Connections
		tot.Subscriptions += t.Subscriptions
		tot.Nodes += t.Nodes
	}
	return tot
}

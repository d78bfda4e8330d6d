package node

import (
	"fmt"

	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/mqstream/mqstream/api"
	"github.com/mqstream/mqstream/mqtt"
)

// brokerClients adapts the broker to the API's client list, its
// disconnect action and the overview's client figures (the dashboard's
// Clients view), for this node's clients.
type brokerClients struct {
	b    *mqtt.Broker
	node string
}

func (c brokerClients) Clients() []api.ClientInfo {
	sessions := c.b.Sessions()
	all := c.b.Server().Clients.GetAll()
	out := make([]api.ClientInfo, 0, len(sessions))
	for _, s := range sessions {
		ci := api.ClientInfo{ClientID: s.ClientID, ProtocolVersion: s.ProtocolVersion, Connected: s.Connected,
			Persistent: s.Persistent, Subscriptions: s.Subscriptions, InFlight: s.InFlight, Queued: s.Queued,
			DisconnectedAt: s.DisconnectedAt, Node: c.node}
		if cl, ok := all[s.ClientID]; ok {
			ci.Username, ci.Address, ci.KeepAlive = string(cl.Properties.Username), cl.Net.Remote, int(cl.State.Keepalive)
		}
		out = append(out, ci)
	}
	return out
}

// Disconnect closes a connected client's connection; an MQTT 5 client is
// told why first (DISCONNECT 0x98, administrative action).
func (c brokerClients) Disconnect(id string) error {
	cl, ok := c.b.Server().Clients.Get(id)
	if !ok || cl.Net.Inline || cl.Closed() {
		return fmt.Errorf("%w: %q", api.ErrClientNotFound, id)
	}
	if cl.Properties.ProtocolVersion == 5 {
		// Writes the DISCONNECT and stops the client; it returns the reason
		// code as an error, which is no failure here.
		_ = c.b.Server().DisconnectClient(cl, packets.ErrAdministrativeAction)
	}
	cl.Stop(packets.ErrAdministrativeAction) // MQTT 3.1.1 has no server DISCONNECT [MQTT-3.14.0]; idempotent
	return nil
}

// totals counts the node's connected clients and their subscriptions.
func (c brokerClients) totals() api.ClientTotals {
	t := c.b.Traffic()
	return api.ClientTotals{Connections: t.ClientsConnected, Subscriptions: t.Subscriptions, Nodes: 1}
}

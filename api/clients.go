package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"
)

// ClientInfo is one MQTT session: a connected client or a session kept
// for an absent one.
type ClientInfo struct {
	ClientID        string `json:"client_id"`
	Username        string `json:"username"`
	Address         string `json:"address"`
	ProtocolVersion byte   `json:"protocol_version"`
	KeepAlive       int    `json:"keep_alive"`
	Connected       bool   `json:"connected"`
	Persistent      bool   `json:"persistent"`
	Subscriptions   int    `json:"subscriptions"`
	InFlight        int    `json:"in_flight"`
	Queued          int    `json:"queued"`
	// Node is the id of the node holding the session: the one the client
	// is connected to, or was last.
	Node string `json:"node"`
	// DisconnectedAt is when an absent client left (zero while connected).
	DisconnectedAt time.Time `json:"disconnected_at,omitzero"`
}

// ErrClientNotFound is returned by Clients.Disconnect for an unknown or
// already disconnected client.
var ErrClientNotFound = errors.New("client not found")

// Clients are the MQTT sessions: in a cluster, those of every node.
type Clients interface {
	// Clients lists the sessions (in a cluster, of every node that
	// answers in time).
	Clients(ctx context.Context) []ClientInfo
	// Disconnect closes a connected client's connection, on whichever
	// node it is connected to (its session stays, as after any
	// disconnect); ErrClientNotFound if no node that answered has it
	// connected.
	Disconnect(ctx context.Context, id string) error
	// Totals counts the connected clients and their subscriptions (in a
	// cluster, summed over the nodes that answer in time).
	Totals(ctx context.Context) ClientTotals
}

// ClientTotals are the overview's client figures.
type ClientTotals struct {
	Connections   int64
	Subscriptions int64
	// Nodes is how many nodes the figures cover.
	Nodes int
}

func (s *Server) listClients(w http.ResponseWriter, r *http.Request) (int, any, error) {
	if s.opts.Clients == nil {
		return 0, nil, fmt.Errorf("%w: no MQTT broker on this node", errNotReady)
	}
	list := s.opts.Clients.Clients(r.Context())
	if list == nil {
		list = []ClientInfo{}
	}
	return http.StatusOK, map[string]any{"clients": list}, nil
}

// disconnectClient is DELETE /v1/clients/{id}: the client's connection is
// closed, on whichever node holds it, as if the network dropped it (its
// will is sent, its persistent session stays).
func (s *Server) disconnectClient(w http.ResponseWriter, r *http.Request) (int, any, error) {
	if s.opts.Clients == nil {
		return 0, nil, fmt.Errorf("%w: no MQTT broker on this node", errNotReady)
	}
	id := r.PathValue("id")
	if err := s.opts.Clients.Disconnect(r.Context(), id); err != nil {
		if errors.Is(err, ErrClientNotFound) {
			return 0, nil, fmt.Errorf("%w: client %q is not connected to any node that answered", errNotFound, id)
		}
		return 0, nil, fmt.Errorf("disconnecting client %q: %w", id, err)
	}
	return http.StatusNoContent, nil, nil
}

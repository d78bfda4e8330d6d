package api

import (
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
	// Node is the id of the node the client is connected to.
	Node string `json:"node"`
	// DisconnectedAt is when an absent client left (zero while connected).
	DisconnectedAt time.Time `json:"disconnected_at,omitzero"`
}

// ErrClientNotFound is returned by Clients.Disconnect for an unknown or
// already disconnected client.
var ErrClientNotFound = errors.New("client not found")

// Clients are the node's MQTT sessions.
type Clients interface {
	// Clients lists the sessions, by client id.
	Clients() []ClientInfo
	// Disconnect closes a connected client's connection (its session
	// stays, as after any disconnect); ErrClientNotFound if it is not
	// connected.
	Disconnect(id string) error
}

func (s *Server) listClients(w http.ResponseWriter, r *http.Request) (int, any, error) {
	if s.opts.Clients == nil {
		return 0, nil, fmt.Errorf("%w: no MQTT broker on this node", errNotReady)
	}
	list := s.opts.Clients.Clients()
	if list == nil {
		list = []ClientInfo{}
	}
	return http.StatusOK, map[string]any{"clients": list}, nil
}

// disconnectClient is DELETE /v1/clients/{id}: the client's connection is
// closed, as if the network dropped it (its will is sent, its persistent
// session stays).
func (s *Server) disconnectClient(w http.ResponseWriter, r *http.Request) (int, any, error) {
	if s.opts.Clients == nil {
		return 0, nil, fmt.Errorf("%w: no MQTT broker on this node", errNotReady)
	}
	id := r.PathValue("id")
	if err := s.opts.Clients.Disconnect(id); err != nil {
		if errors.Is(err, ErrClientNotFound) {
			return 0, nil, fmt.Errorf("%w: client %q is not connected to this node", errNotFound, id)
		}
		return 0, nil, fmt.Errorf("disconnecting client %q: %w", id, err)
	}
	return http.StatusNoContent, nil, nil
}

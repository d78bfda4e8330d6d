package node

import (
	"context"
	"fmt"
	"log/slog"
	"slices"

	"github.com/mqstream/mqstream/api"
	"github.com/mqstream/mqstream/auth"
	"github.com/mqstream/mqstream/config"
	"github.com/mqstream/mqstream/mqtt"
	"github.com/mqstream/mqstream/query"
)

// brokerOptions builds the broker's options from the configuration, without
// Mapper, Store, Groups and State.
func brokerOptions(cfg config.Config, logger *slog.Logger) (mqtt.Options, error) {
	o := mqtt.Options{
		TCPAddr:          cfg.MQTT.TCP,
		WSAddr:           cfg.MQTT.WebSocket,
		MaxPayload:       int(cfg.MQTT.MaxPayload),
		MaxClients:       cfg.MQTT.MaxClients,
		ReceiveMaximum:   uint16(cfg.MQTT.ReceiveMaximum),
		MaxInflight:      uint16(cfg.MQTT.MaxInflight),
		MaxQueued:        cfg.MQTT.MaxQueued,
		MaxQueuedBytes:   int64(cfg.MQTT.MaxQueuedBytes),
		KeepaliveMax:     uint16(cfg.MQTT.KeepaliveMax),
		FanoutAfterStore: cfg.MQTT.Fanout == "after-store",
		MaxSubscriptions: cfg.MQTT.MaxSubscriptions,
		HideDenialReason: cfg.Auth.HideDenialReason,
		Logger:           logger,
	}
	if cfg.MQTT.TLS.Enabled() {
		tcfg, err := cfg.MQTT.TLS.Config()
		if err != nil {
			return o, fmt.Errorf("mqtt.tls: %w", err)
		}
		o.TLSConfig, o.TLSAddr, o.WSSAddr = tcfg, cfg.MQTT.TLSListen, cfg.MQTT.WSSListen
	}
	if cfg.AuthEnabled() {
		aopts, err := cfg.AuthOptions()
		if err != nil {
			return o, err
		}
		aopts.Logger = logger
		if o.Access, err = auth.NewHook(aopts); err != nil {
			return o, fmt.Errorf("auth: %w", err)
		}
	} else {
		logger.Warn("MQTT authentication is off: any client may connect, publish and subscribe (set auth.* to restrict)")
	}
	return o, nil
}

// apiTokens builds the HTTP API's bearer tokens from http.tokens.
func apiTokens(cfg config.Config) ([]api.Token, error) {
	var out []api.Token
	for i, t := range cfg.HTTP.Tokens {
		role, err := api.ParseRole(t.Role)
		if err != nil {
			return nil, fmt.Errorf("http.tokens[%d].role: %w", i, err)
		}
		out = append(out, api.Token{Token: t.Token, Role: role})
	}
	return out, nil
}

// nodeRows adapts the node's member list to the SQL engine's nodes table.
type nodeRows struct{ n *Node }

// Each row carries the member's disk space when it answers in time; the
// query's result warns of a member that did not.
func (r nodeRows) Nodes(ctx context.Context) []query.NodeRow {
	members := r.n.Members()
	figures := nodesFigures{r.n}.NodeFigures(ctx)
	list := r.n.ClusterShards(ctx)
	out := make([]query.NodeRow, len(members))
	for i, m := range members {
		out[i] = query.NodeRow{ID: m.ID, Status: m.Status, Gossip: m.Gossip, RPC: m.RPC, MQTT: m.MQTT, HTTP: m.HTTP, Version: m.Version}
		if f, ok := figures[m.ID]; ok {
			out[i].DiskFreeBytes, out[i].DiskTotalBytes = f.DiskFreeBytes, f.DiskTotalBytes
		}
		if len(list) > 0 {
			var led, held int64
			for _, st := range list {
				if st.Leader == m.ID {
					led++
				}
				if slices.Contains(st.Replicas, m.ID) {
					held++
				}
			}
			out[i].ShardsLed, out[i].ShardsHeld = &led, &held
		}
	}
	return out
}

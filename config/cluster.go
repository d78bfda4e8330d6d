package config

import (
	"encoding/json"
	"fmt"
	"hash/fnv"
	"net"
	"strconv"
)

// MaxClusterPayload bounds mqtt.max_payload in cluster mode: a message
// travels between nodes whole (cluster/shards takes no append past 32 MiB).
const MaxClusterPayload = 32 << 20

// validateCluster checks the cluster section (only in cluster mode): a
// node id, parsable addresses that no two listeners share, no wildcard bind
// address without an advertised host, sane sizes.
func (c Config) validateCluster(bad func(key, format string, args ...any)) {
	cl := c.Cluster
	if !cl.Enabled() {
		return
	}
	if c.Node.ID == "" {
		bad("node.id", "required in cluster mode (cluster.name is set): every node needs a unique id")
	}
	ports := map[string]string{} // "host:port" -> key
	listen := func(key, addr string) {
		if addr == "" {
			return
		}
		host, port, err := net.SplitHostPort(addr)
		if err != nil {
			bad(key, "%q is not a host:port address", addr)
			return
		}
		if p, err := strconv.Atoi(port); err != nil || p < 0 || p > 65535 {
			bad(key, "%q: port %q is not a number from 0 to 65535", addr, port)
			return
		}
		if port != "0" {
			for other, otherKey := range ports {
				oh, op, _ := net.SplitHostPort(other)
				if op == port && (oh == host || oh == "" || host == "" || oh == "0.0.0.0" || host == "0.0.0.0") {
					bad(key, "%q uses the port of %s (%q)", addr, otherKey, other)
				}
			}
			ports[addr] = key
		}
	}
	listen("cluster.gossip", cl.Gossip)
	listen("cluster.rpc", cl.RPC)
	listen("mqtt.tcp", c.MQTT.TCP)
	listen("mqtt.websocket", c.MQTT.WebSocket)
	listen("http.listen", c.HTTP.Listen)
	if cl.Gossip == "" {
		bad("cluster.gossip", "required in cluster mode")
	}
	if cl.RPC == "" {
		bad("cluster.rpc", "required in cluster mode")
	}
	for _, key := range []string{"cluster.gossip", "cluster.rpc"} {
		addr := cl.Gossip
		if key == "cluster.rpc" {
			addr = cl.RPC
		}
		if host, _, err := net.SplitHostPort(addr); err == nil && cl.Advertise == "" {
			if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
				bad(key, "%q binds every interface: set cluster.advertise to the address peers dial", addr)
			}
		}
	}
	if cl.Advertise != "" {
		if ip := net.ParseIP(cl.Advertise); ip == nil || ip.IsUnspecified() {
			bad("cluster.advertise", "%q is not an IP address peers can dial", cl.Advertise)
		}
	}
	for i, s := range cl.Seeds {
		if _, _, err := net.SplitHostPort(s); err != nil {
			bad("cluster.seeds["+strconv.Itoa(i)+"]", "%q is not a host:port address", s)
		}
	}
	switch {
	case c.MQTT.MaxPayload > MaxClusterPayload:
		bad("mqtt.max_payload", "%d is over 32MiB, the most one message may be in cluster mode (it travels between nodes whole)", c.MQTT.MaxPayload)
	case c.MQTT.MaxPayload == 0:
		bad("mqtt.max_payload", "0 (no limit) is not allowed in cluster mode: one message may be at most 32MiB (it travels between nodes whole)")
	}
	if cl.BootstrapExpect < 1 {
		bad("cluster.bootstrap_expect", "must be at least 1")
	}
	if cl.Shards < 1 || cl.Shards > 4096 {
		bad("cluster.shards", "%d is outside 1..4096", cl.Shards)
	}
	if cl.ReplicationFactor < 1 || cl.ReplicationFactor > 7 {
		bad("cluster.replication_factor", "%d is outside 1..7", cl.ReplicationFactor)
	}
	if cl.DeadNodeTimeout < 0 {
		bad("cluster.dead_node_timeout", "must not be negative")
	}
}

// ClusterWide returns a fingerprint of each setting every member of a
// cluster must share, by key; members compare them when they meet.
func (c Config) ClusterWide() map[string]string {
	out := map[string]string{}
	for key, v := range map[string]any{
		"cluster.shards":             c.Cluster.Shards,
		"cluster.replication_factor": c.Cluster.ReplicationFactor,
		"streams.rules":              c.Streams.Rules,
		"streams.default_rule":       c.Streams.DefaultRule,
		"streams.auto_create":        c.Streams.AutoCreate,
		"streams.default_retention":  c.Streams.DefaultRetention,
		"groups":                     c.GroupDefaults(),
	} {
		out[key] = fmt.Sprintf("%08x", fingerprint(v))
	}
	return out
}

// SettingPart is the fingerprint of one key of a cluster-wide setting
// made of several.
type SettingPart struct{ Key, Print string }

// ClusterWideParts breaks the cluster-wide settings that ClusterWide
// fingerprints as one (the group defaults, "groups") into their keys, in
// an order every version that sends them shares, so that a node refused
// for differing group defaults is told which keys differ. Each part's
// fingerprint is three hex digits: short, since members carry them in
// their gossip tags, which are limited to 512 bytes.
func (c Config) ClusterWideParts() map[string][]SettingPart {
	g := c.GroupDefaults()
	var parts []SettingPart
	for _, kv := range []struct {
		key string
		v   any
	}{
		{"groups.strategy", g.Strategy}, {"groups.ack_timeout", g.AckTimeout},
		{"groups.max_deliveries", g.MaxDeliveries}, {"groups.dead_letter", g.DeadLetter},
		{"groups.window", g.Window}, {"groups.max_window", g.MaxWindow},
		{"groups.read_ahead", g.ReadAhead}, {"groups.max_unacked_span", g.MaxUnackedSpan},
	} {
		parts = append(parts, SettingPart{Key: kv.key, Print: fmt.Sprintf("%03x", fingerprint(kv.v)&0xfff)})
	}
	return map[string][]SettingPart{"groups": parts}
}

// fingerprint hashes v's JSON form.
func fingerprint(v any) uint32 {
	b, _ := json.Marshal(v) // plain values and structs: cannot fail
	h := fnv.New32a()
	_, _ = h.Write(b)
	return h.Sum32()
}

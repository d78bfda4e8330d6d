package cluster

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"time"
)

// Options configure a node's membership.
type Options struct {
	// NodeID names the node; unique in the cluster.
	NodeID string
	// Cluster is the cluster's name; nodes of another cluster are refused.
	Cluster string
	// Gossip is the bind address for membership gossip (TCP and UDP).
	Gossip string
	// Advertise is the host peers dial ("" = the bind host).
	Advertise string
	// RPC, MQTT and HTTP are the addresses this node tells its peers.
	RPC, MQTT, HTTP string
	// Version is this node's mqstream version.
	Version string
	// Features name what this node's RPC side understands beyond the
	// base protocol (e.g. batched appends), so that a peer uses a feature
	// only with members that announce it: nodes of different versions
	// keep working together during a rolling upgrade.
	Features []string
	// Vouched announces from the start that the metadata group has
	// registered this node's data directory (Membership.MarkVouched).
	Vouched bool
	// Settings are fingerprints of the settings every member must share
	// (configuration key -> fingerprint); a member whose fingerprint of a
	// key differs is refused, the key named.
	Settings map[string]string
	// SettingParts break a setting of Settings made of several keys into
	// those keys' fingerprints, in an order the members share, so that a
	// refusal names the keys that differ rather than the setting. They
	// travel in the tags only while the tags fit memberlist's limit.
	SettingParts map[string][]SettingPart
	// Seeds are gossip addresses of members to join through.
	Seeds []string
	// BootstrapExpect is how many alive members make the cluster ready.
	BootstrapExpect int
	// Formed: this node was a member of the cluster once it had formed
	// (its data dir keeps the shard layout), so it is ready as soon as it
	// joined, however few members are alive: a restart while another
	// node is down must not wait for that node.
	Formed bool
	// Timers are the gossip and retry timings; zero means DefaultTimers.
	Timers Timers
	// PingFallback, if set, is asked whether the member whose RPC
	// address is rpc answers over TCP when it missed a UDP ping (the
	// node calls it over the cluster's RPC connections); it must return
	// by ctx's deadline. Without it a member whose UDP is blocked would
	// be suspect for as long as it runs.
	PingFallback func(ctx context.Context, rpc string) bool
	// OnFatal, if set, is called once when the node is refused by the
	// cluster after it started (a seed reached later belongs to another
	// cluster, or holds this node's id). It must not block.
	OnFatal func(error)
	Logger  *slog.Logger
}

// SettingPart is the fingerprint of one key of a cluster-wide setting.
// Print must not contain '.'.
type SettingPart struct{ Key, Print string }

// Timers are the timings of gossip, failure detection and join retries.
type Timers struct {
	Probe, ProbeTimeout time.Duration // failure detection: probe one member every Probe
	SuspicionMult       int           // a suspect is failed after SuspicionMult*log(N+1)*Probe
	Gossip              time.Duration // gossip round
	PushPull            time.Duration // full state sync
	Reap                time.Duration // how often failed and left members are reaped
	Coalesce, Quiescent time.Duration // member events are coalesced over these
	JoinRetryMin        time.Duration // first wait before retrying unreachable seeds
	JoinRetryMax        time.Duration // cap of the doubling wait
}

// DefaultTimers are memberlist's LAN timings (every default there carries
// its reason), with member events coalesced over a second and seeds
// retried from 1 s to 30 s.
func DefaultTimers() Timers {
	return Timers{Probe: time.Second, ProbeTimeout: 500 * time.Millisecond, SuspicionMult: 4,
		Gossip: 200 * time.Millisecond, PushPull: 30 * time.Second, Reap: 15 * time.Second,
		Coalesce: time.Second, Quiescent: 200 * time.Millisecond,
		JoinRetryMin: time.Second, JoinRetryMax: 30 * time.Second}
}

// LocalTimers are fast timings for nodes on one machine (tests): failures
// are detected within a second or so.
func LocalTimers() Timers {
	return Timers{Probe: 100 * time.Millisecond, ProbeTimeout: 50 * time.Millisecond, SuspicionMult: 2,
		Gossip: 20 * time.Millisecond, PushPull: 500 * time.Millisecond, Reap: 200 * time.Millisecond,
		Coalesce: 50 * time.Millisecond, Quiescent: 20 * time.Millisecond,
		JoinRetryMin: 50 * time.Millisecond, JoinRetryMax: 500 * time.Millisecond}
}

// splitAddr parses host:port.
func splitAddr(key, addr string) (string, int, error) {
	host, p, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, fmt.Errorf("%s: %q: %w", key, addr, err)
	}
	port, err := strconv.Atoi(p)
	if err != nil || port < 0 || port > 65535 {
		return "", 0, fmt.Errorf("%s: %q: bad port", key, addr)
	}
	return host, port, nil
}

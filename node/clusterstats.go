package node

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/mqstream/mqstream/api"
	"github.com/mqstream/mqstream/cluster/rpcmux"
	"github.com/mqstream/mqstream/mqtt"
	"github.com/mqstream/mqstream/query"
	"github.com/mqstream/mqstream/shared"
)

// Cluster-wide statistics tables: in a cluster every node holds its own
// clients' sessions, runs the consumer groups whose shards it leads
// (sharegroups.go) and the continuous queries created on it, so the
// sessions, groups, consumers and queries tables of any node list this
// node's rows and every other node's, asked over RPC (each row says its
// node). The rate and latency tables gather every node's figures too
// (clusterrates.go). A node that does not answer within statsTimeout is
// left out and logged. The same way, GET /v1/cluster and the nodes table
// show each node's own figures (disk space of its data directory,
// uptime), waiting at most figuresTimeout.

// Services the node answers for the statistics tables of others.
const (
	sessionsService = "stats.sessions"
	groupsService   = "stats.groups"
	// queriesService answers the node's continuous queries (the queries
	// table).
	queriesService = "stats.queries"
	// figuresService answers the node's api.NodeFigures (disk space,
	// uptime) for GET /v1/cluster and the nodes table.
	figuresService = "stats.node"
)

const statsTimeout = 2 * time.Second

// serveStats registers the statistics services, and those of the API's
// client views (cluster mode).
func (n *Node) serveStats() {
	n.serveClients()
	n.serveRates()
	n.repl.mux.Handle(sessionsService, func(context.Context, string, []byte) ([]byte, error) {
		return json.Marshal(n.broker.Sessions())
	})
	n.repl.mux.Handle(groupsService, func(ctx context.Context, _ string, _ []byte) ([]byte, error) {
		return json.Marshal(n.groups.Groups(ctx))
	})
	n.repl.mux.Handle(queriesService, func(context.Context, string, []byte) ([]byte, error) {
		return json.Marshal(n.queries.List())
	})
	n.repl.mux.Handle(figuresService, func(context.Context, string, []byte) ([]byte, error) {
		return json.Marshal(n.figures())
	})
}

// figures are this node's own figures: the space of its data directory's
// filesystem (left out, and logged, when the filesystem reports none) and
// its uptime.
func (n *Node) figures() api.NodeFigures {
	f := api.NodeFigures{UptimeSeconds: int64(time.Since(n.started).Seconds())}
	u, err := n.store.DiskUsage()
	if err != nil {
		n.log.Debug("no disk figures", "error", err)
		return f
	}
	f.DiskFreeBytes, f.DiskTotalBytes = &u.FreeBytes, &u.TotalBytes
	return f
}

// figuresTimeout bounds the wait for the other nodes' figures: GET
// /v1/cluster and the nodes table answer within it even while a member
// that looks up does not answer.
const figuresTimeout = time.Second

// nodesFigures serves the nodes' figures: this node's and every other
// member's that answers within figuresTimeout (standalone, this node's).
type nodesFigures struct{ n *Node }

func (f nodesFigures) NodeFigures(ctx context.Context) map[string]api.NodeFigures {
	ctx, cancel := context.WithTimeout(ctx, figuresTimeout)
	defer cancel()
	out := fromPeers[api.NodeFigures](ctx, f.n, figuresService, nil)
	out[f.n.id] = f.n.figures()
	return out
}

// fromPeers calls service with req on every other member that is alive,
// at once, and decodes each JSON answer into a new T; it returns them by
// node id. A member that fails or does not answer within statsTimeout (or
// ctx) is left out and logged (once every 10 s per member and service),
// and so is a failed or suspect member, without being asked: a suspect
// (it missed its last pings: hung, or dead and not yet failed) would only
// hold every caller for the whole timeout. When ctx is a SQL query's, its
// result says so (query.Warn).
func fromPeers[T any](ctx context.Context, n *Node, service string, req []byte) map[string]T {
	out := map[string]T{}
	if n.members == nil || n.repl == nil {
		return out
	}
	ctx, cancel := context.WithTimeout(ctx, statsTimeout)
	defer cancel()
	var mu sync.Mutex // guards out
	var wg sync.WaitGroup
	for _, m := range n.members.Members() {
		if m.Status == "failed" || m.Status == "suspect" {
			if ok, held := n.repl.logLimit.Allow("left out\x00" + m.ID + "\x00" + service); ok {
				n.log.Warn("a "+m.Status+" node's answer is left out", "peer", m.ID, "service", service, "repeats_held_back", held)
			}
			if m.Status == "suspect" {
				query.WarnPartial(ctx, fmt.Sprintf("node %s is %s: its figures are left out", m.ID, m.Status))
			} else {
				query.Warn(ctx, fmt.Sprintf("node %s is %s: its figures are left out", m.ID, m.Status)) // it runs nothing
			}
		}
		if m.ID == n.id || m.RPC == "" || m.Status != "alive" {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := n.repl.mux.Call(ctx, m.RPC, service, req)
			var v T
			if err == nil {
				err = json.Unmarshal(resp, &v)
			}
			if err != nil {
				if ok, held := n.repl.logLimit.Allow("no answer\x00" + m.ID + "\x00" + service); ok {
					n.log.Warn("a node's answer is left out", "peer", m.ID, "service", service, "error", err, "repeats_held_back", held)
				}
				query.WarnPartial(ctx, fmt.Sprintf("node %s did not answer (%s): its figures are left out", m.ID, whyNoAnswer(err)))
				return
			}
			mu.Lock()
			out[m.ID] = v
			mu.Unlock()
		}()
	}
	wg.Wait()
	return out
}

// clusterSessions serves the sessions table.
type clusterSessions struct{ n *Node }

func (s clusterSessions) Sessions(ctx context.Context) []query.Session {
	rows := sessionRows(s.n.broker.Sessions(), s.n.id)
	for node, infos := range fromPeers[[]mqtt.SessionInfo](ctx, s.n, sessionsService, nil) {
		rows = append(rows, sessionRows(infos, node)...)
	}
	return rows
}

func sessionRows(infos []mqtt.SessionInfo, node string) []query.Session {
	out := make([]query.Session, len(infos))
	for i, s := range infos {
		out[i] = query.Session{ClientID: s.ClientID, Connected: s.Connected, Persistent: s.Persistent,
			ProtocolVersion: s.ProtocolVersion, Expiry: s.Expiry, NeverExpires: s.NeverExpires,
			DisconnectedAt: s.DisconnectedAt, Subscriptions: s.Subscriptions, Queued: s.Queued, InFlight: s.InFlight, Node: node}
	}
	return out
}

// clusterGroups serves the groups and consumers tables.
type clusterGroups struct{ n *Node }

func (g clusterGroups) Groups(ctx context.Context) []shared.GroupStats {
	warnLeaderless(ctx, g.n, "groups")
	out := g.LocalGroups(ctx)
	for node, groups := range fromPeers[[]shared.GroupStats](ctx, g.n, groupsService, nil) {
		for _, gs := range groups {
			gs.Node = node
			out = append(out, gs)
		}
	}
	return out
}

// LocalGroups returns the groups this node runs: what its metrics cover.
func (g clusterGroups) LocalGroups(ctx context.Context) []shared.GroupStats {
	out := g.n.groups.Groups(ctx)
	for i := range out {
		out[i].Node = g.n.id
	}
	return out
}

// warnLeaderless warns (query.Warn) of each shard without a leader, or
// whose leader, as this node last heard, is not up: what runs on a
// shard's leader (its consumer groups, its continuous queries) runs
// nowhere during its election, and a list of them lacks those.
func warnLeaderless(ctx context.Context, n *Node, what string) {
	if n.repl == nil || n.members == nil {
		return
	}
	status := map[string]string{}
	for _, m := range n.members.Members() {
		status[m.ID] = m.Status
	}
	for _, st := range n.ClusterShards(ctx) {
		switch {
		case st.Leader == "":
			query.WarnPartial(ctx, fmt.Sprintf("shard %d has no leader (an election, or no majority): the %s it runs are left out", st.ID, what))
		case st.Leader != n.id && status[st.Leader] != "alive":
			query.WarnPartial(ctx, fmt.Sprintf("shard %d's leader %s is not up (%s): the %s it runs are left out", st.ID, st.Leader, cmp.Or(status[st.Leader], "gone"), what))
		}
	}
}

// queryTable serves the queries table: this node's continuous queries
// and every other node's (a query runs on the leader of its home shard).
type queryTable struct{ n *Node }

func (q queryTable) QueryRows(ctx context.Context) []query.NodeQuery {
	warnLeaderless(ctx, q.n, "continuous queries")
	all := fromPeers[[]query.QueryInfo](ctx, q.n, queriesService, nil)
	all[q.n.id] = q.n.queries.List()
	var out []query.NodeQuery
	for node, list := range all {
		for _, qi := range list {
			out = append(out, query.NodeQuery{Node: node, QueryInfo: qi})
		}
	}
	slices.SortFunc(out, func(a, b query.NodeQuery) int {
		return cmp.Or(strings.Compare(a.ID, b.ID), strings.Compare(a.Node, b.Node))
	})
	return out
}

// whyNoAnswer says why a member did not answer, in words that do not name
// the service asked: a query asking a member for several figures warns
// of it once (query.Warn drops repeats).
func whyNoAnswer(err error) string {
	switch {
	case errors.Is(err, rpcmux.ErrUnreachable):
		return "unreachable"
	case errors.Is(err, context.DeadlineExceeded):
		return "no answer in time"
	case errors.Is(err, context.Canceled):
		return "the query was cancelled"
	}
	return err.Error()
}

package api

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/mqstream/mqstream/cluster"
	"github.com/mqstream/mqstream/cluster/shards"
)

func (s *Server) getNode(w http.ResponseWriter, r *http.Request) (int, any, error) {
	var records, bytes int64
	list := s.opts.Store.ListStreams()
	for _, info := range list {
		records += info.Records
		bytes += info.Bytes
	}
	traffic := s.opts.Broker.Traffic()
	ingest := s.opts.Broker.Stats()
	out := map[string]any{
		"version": s.opts.Version,
		"counts": map[string]any{
			"streams":       len(list),
			"records":       records,
			"bytes":         bytes,
			"groups":        len(s.opts.Groups.Groups(r.Context())),
			"clients":       traffic.ClientsConnected,
			"subscriptions": traffic.Subscriptions,
			"retained":      traffic.Retained,
		},
		"ingest": map[string]int64{"stored": ingest.Stored, "refused": ingest.Refused},
	}
	if n := s.opts.Node; n != nil {
		out["id"] = n.ID()
		out["ready"], _ = n.Readiness()
		out["started_at"] = n.StartedAt().UTC().Format(time.RFC3339)
		out["uptime_seconds"] = int64(time.Since(n.StartedAt()).Seconds())
		out["listeners"] = n.Listeners()
	}
	return http.StatusOK, out, nil
}

// NodeFigures are a node's own figures that membership does not carry,
// shown in the dashboard's nodes table.
type NodeFigures struct {
	// DiskFreeBytes and DiskTotalBytes are the space available to the
	// store and the size of the filesystem holding the node's data
	// directory; absent where the filesystem reports none.
	DiskFreeBytes  *int64 `json:"disk_free_bytes,omitempty"`
	DiskTotalBytes *int64 `json:"disk_total_bytes,omitempty"`
	UptimeSeconds  int64  `json:"uptime_seconds"`
}

// NodesFigures gathers every node's figures.
type NodesFigures interface {
	// NodeFigures returns the figures by node id: this node's and, in a
	// cluster, those of every other member that answers in time.
	NodeFigures(ctx context.Context) map[string]NodeFigures
}

// memberJSON is a member with the shards it leads and holds, as this
// node sees them (absent while the node runs no shards: standalone, or
// before the cluster formed), and its figures (absent for a member that
// did not answer, or without Options.Figures).
type memberJSON struct {
	cluster.Member
	ShardsLed  *int `json:"shards_led,omitempty"`
	ShardsHeld *int `json:"shards_held,omitempty"`
	*NodeFigures
}

// getCluster lists the cluster's members and shards (none when standalone
// or before the cluster formed).
func (s *Server) getCluster(w http.ResponseWriter, r *http.Request) (int, any, error) {
	if s.opts.Node == nil {
		return 0, nil, fmt.Errorf("%w: no node information", errNotReady)
	}
	shardList := s.opts.Node.Shards()
	if cs, ok := s.opts.Node.(ClusterShards); ok {
		shardList = cs.ClusterShards(r.Context())
	}
	var lags map[int]uint64
	if sl, ok := s.opts.Node.(ShardLags); ok && len(shardList) > 0 {
		lags = sl.ShardLags(r.Context())
	}
	shardOut := make([]shardJSON, len(shardList))
	for i, st := range shardList {
		shardOut[i].ShardStatus = st
		if lag, ok := lags[st.ID]; ok {
			shardOut[i].Lag = &lag
		}
	}
	var figures map[string]NodeFigures
	if s.opts.Figures != nil {
		figures = s.opts.Figures.NodeFigures(r.Context())
	}
	members := []memberJSON{}
	for _, m := range s.opts.Node.Members() {
		mj := memberJSON{Member: m}
		if f, ok := figures[m.ID]; ok {
			mj.NodeFigures = &f
		}
		if len(shardList) > 0 {
			led, held := shardCounts(shardList, m.ID)
			mj.ShardsLed, mj.ShardsHeld = &led, &held
		}
		members = append(members, mj)
	}
	out := map[string]any{
		"name":    s.opts.Node.ClusterName(),
		"members": members,
		"shards":  shardOut,
	}
	if s.opts.Node.ClusterName() != "" {
		out["routes"] = s.opts.Node.Routes()
	}
	if md, ok := s.opts.Node.(Metadata); ok {
		if version, leader, ok := md.Metadata(); ok {
			out["metadata"] = map[string]any{"layout_version": version, "leader": leader}
		}
	}
	return http.StatusOK, out, nil
}

// shardCounts counts the shards node id leads and those it holds a
// replica of, from the leaders the list knows (the node's ClusterShards:
// every shard's but those none of whose replicas answered).
func shardCounts(list []shards.ShardStatus, id string) (led, held int) {
	for _, st := range list {
		if st.Leader == id {
			led++
		}
		if slices.Contains(st.Replicas, id) {
			held++
		}
	}
	return led, held
}

// Metadata tells the metadata group's view (the node, in cluster mode):
// the shard layout's version and the group's leader ("" while none);
// ok is false before the node has joined the group.
type Metadata interface {
	Metadata() (layoutVersion uint64, leader string, ok bool)
}

// ClusterShards gives the shards with the leader of each, also of those
// this node holds no replica of, as their replicas see it (the node, in
// cluster mode); without it GET /v1/cluster shows Node.Shards.
type ClusterShards interface {
	ClusterShards(ctx context.Context) []shards.ShardStatus
}

// ShardLags gives each shard's replication lag: how many entries its
// slowest replica has applied fewer than its most advanced one, among
// the replicas that answered (the node, in cluster mode).
type ShardLags interface {
	ShardLags(ctx context.Context) map[int]uint64
}

// RaftStats gives hashicorp/raft's own figures of each Raft group the
// node holds a member of, by group name (the node, in cluster mode).
type RaftStats interface {
	RaftStats() map[string]map[string]string
}

// getRaftStats answers GET /v1/cluster/raft: the Raft groups this node
// holds a member of, each with raft's figures (state, term, last log,
// commit and applied index, last contact, configuration). 404 when
// standalone.
func (s *Server) getRaftStats(w http.ResponseWriter, r *http.Request) (int, any, error) {
	rs, ok := s.opts.Node.(RaftStats)
	var groups map[string]map[string]string
	if ok {
		groups = rs.RaftStats()
	}
	if groups == nil {
		return 0, nil, fmt.Errorf("%w: a standalone node has no Raft groups", errNotFound)
	}
	return http.StatusOK, map[string]any{"groups": groups}, nil
}

// shardJSON is a shard as GET /v1/cluster shows it: its status as this
// node sees it and its replication lag (absent when fewer than two of
// its replicas answered).
type shardJSON struct {
	shards.ShardStatus
	Lag *uint64 `json:"lag,omitempty"`
}

// NodeRemover removes a node from the cluster for good (the node, in
// cluster mode).
type NodeRemover interface {
	RemoveNode(ctx context.Context, id string, force bool) error
}

// removeNode removes a node that is down from the cluster for good
// (`mqstream node remove`).
func (s *Server) removeNode(w http.ResponseWriter, r *http.Request) (int, any, error) {
	rm, ok := s.opts.Node.(NodeRemover)
	if !ok || s.opts.Node.ClusterName() == "" {
		return 0, nil, cluster.ErrStandalone
	}
	id := r.PathValue("id")
	force := false
	if v := r.URL.Query().Get("force"); v != "" {
		var err error
		if force, err = strconv.ParseBool(v); err != nil {
			return 0, nil, fmt.Errorf("%w: force: %q is not a boolean", errBadRequest, v)
		}
	}
	ctx, cancel := context.WithTimeout(r.Context(), 30*time.Second)
	defer cancel()
	if err := rm.RemoveNode(ctx, id, force); err != nil {
		return 0, nil, err
	}
	return http.StatusOK, map[string]string{"removed": id}, nil
}

package api

import (
	"context"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/mqstream/mqstream/cluster/shards"
)

var (
	descMembers       = desc("cluster_members", "Cluster members by status, as this node sees them.", "status")
	descShardLeader   = desc("shard_leader", "1 when this node leads the shard, else 0.", "shard")
	descShardTerm     = desc("shard_term", "Raft term of this node's replica of the shard.", "shard")
	descShardApplied  = desc("shard_applied_index", "Last Raft entry this node's replica of the shard applied.", "shard")
	descLeaderChanges = desc("shard_leader_changes_total", "Leader changes of the shard seen by this node at scrape time (a new leader or a new term since the previous scrape).", "shard")
	descForwards      = desc("forwards_total", "Forward requests (batches of writes for one shard) sent to another node (retries included) or served for one (received).", "direction")
	descHandoffs      = desc("shard_leader_handoffs_total", "Shard leaderships this node handed to their preferred leader (leaders spread by count, or moved by measured load); each is also a leader change.")
	descNotices       = desc("shard_commit_notices_total", "Commit notices this node's shard leaders sent: empty barrier entries that tell the followers the commit index once a leader's last entries are applied and nothing more is queued.")
	descLag           = desc("shard_replication_lag_entries", "For each shard this node leads: how many Raft entries its slowest replica has applied fewer than its most advanced one (replicas that do not answer within 1 s are left out).", "shard")
	descForwardsFail  = desc("forwards_failed_total", "Forward requests that did not get through (then retried).")
	descRouteFilters  = desc("route_filters", "Topic filters in the MQTT route table: this node's clients' (local) and every other node's (remote, per node).", "scope", "peer")
	descLayoutVersion = desc("cluster_layout_version", "Version of the shard layout this node's metadata group member has applied (it grows with each change: a node joined, was removed or given up for dead, leaders moved by load).")
	descRouted        = desc("routed_messages_total", "MQTT messages carried between nodes: queued for other nodes (forwarded), delivered here from them (received), dropped (a peer's queue was full, or it left).", "direction")
)

// memberStatuses are always reported, at 0 when no member has them, so
// that alerts on failed members need no absent().
var memberStatuses = []string{"alive", "suspect", "failed", "left"}

// clusterCollector reports the cluster as this node sees it; nothing when
// standalone. Leader changes are counted from successive scrapes: the
// Raft groups are not watched between them.
type clusterCollector struct {
	node Node
	mu   struct {
		sync.Mutex // guards seen and changes
		// seen is each local shard's leader and term at the last scrape
		// that knew its leader.
		seen    map[int]leadership
		changes map[int]uint64
	}
}

type leadership struct {
	leader string
	term   uint64
}

func newClusterCollector(n Node) *clusterCollector {
	c := &clusterCollector{node: n}
	c.mu.seen, c.mu.changes = map[int]leadership{}, map[int]uint64{}
	return c
}

func (c *clusterCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descMembers, descShardLeader, descShardTerm, descShardApplied, descLeaderChanges,
		descForwards, descForwardsFail, descHandoffs, descNotices, descLag, descRouteFilters, descRouted, descLayoutVersion} {
		ch <- d
	}
}

func (c *clusterCollector) Collect(ch chan<- prometheus.Metric) {
	n := c.node
	if n == nil || n.ClusterName() == "" {
		return
	}
	byStatus := map[string]int{}
	for _, s := range memberStatuses {
		byStatus[s] = 0
	}
	for _, m := range n.Members() {
		byStatus[m.Status]++
	}
	for status, count := range byStatus {
		ch <- prometheus.MustNewConstMetric(descMembers, prometheus.GaugeValue, float64(count), status)
	}
	if md, ok := n.(Metadata); ok {
		if version, _, ok := md.Metadata(); ok {
			ch <- prometheus.MustNewConstMetric(descLayoutVersion, prometheus.GaugeValue, float64(version))
		}
	}
	rs := n.Routes()
	ch <- prometheus.MustNewConstMetric(descRouteFilters, prometheus.GaugeValue, float64(rs.LocalFilters), "local", "")
	for peer, count := range rs.RemoteFilters {
		ch <- prometheus.MustNewConstMetric(descRouteFilters, prometheus.GaugeValue, float64(count), "remote", peer)
	}
	ch <- prometheus.MustNewConstMetric(descRouted, prometheus.CounterValue, float64(rs.Forwarded), "forwarded")
	ch <- prometheus.MustNewConstMetric(descRouted, prometheus.CounterValue, float64(rs.Received), "received")
	ch <- prometheus.MustNewConstMetric(descRouted, prometheus.CounterValue, float64(rs.Dropped), "dropped")
	list := n.Shards()
	if len(list) == 0 {
		return // the shards have not started yet
	}
	changes := c.leaderChanges(list)
	var lags map[int]uint64
	if sl, ok := n.(ShardLags); ok && slices.ContainsFunc(list, func(st shards.ShardStatus) bool { return st.Leader == n.ID() }) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		lags = sl.ShardLags(ctx)
		cancel()
	}
	for _, st := range list {
		shard := strconv.Itoa(st.ID)
		leads := 0.0
		if st.Leader == n.ID() {
			leads = 1
		}
		ch <- prometheus.MustNewConstMetric(descShardLeader, prometheus.GaugeValue, leads, shard)
		if lag, ok := lags[st.ID]; ok && leads == 1 {
			ch <- prometheus.MustNewConstMetric(descLag, prometheus.GaugeValue, float64(lag), shard)
		}
		if !st.Local {
			continue // this node knows no term, index or leader of it
		}
		ch <- prometheus.MustNewConstMetric(descShardTerm, prometheus.GaugeValue, float64(st.Term), shard)
		ch <- prometheus.MustNewConstMetric(descShardApplied, prometheus.GaugeValue, float64(st.Applied), shard)
		ch <- prometheus.MustNewConstMetric(descLeaderChanges, prometheus.CounterValue, float64(changes[st.ID]), shard)
	}
	fc := n.ForwardCounters()
	ch <- prometheus.MustNewConstMetric(descForwards, prometheus.CounterValue, float64(fc.Sent), "sent")
	ch <- prometheus.MustNewConstMetric(descForwards, prometheus.CounterValue, float64(fc.Received), "received")
	ch <- prometheus.MustNewConstMetric(descForwardsFail, prometheus.CounterValue, float64(fc.Failed))
	ch <- prometheus.MustNewConstMetric(descHandoffs, prometheus.CounterValue, float64(n.LeaderHandoffs()))
	ch <- prometheus.MustNewConstMetric(descNotices, prometheus.CounterValue, float64(n.CommitNotices()))
}

// leaderChanges counts, for each local shard whose leader is known, a
// change when its leader or term differs from the last scrape that knew
// one (the first sight counts none), and returns the counts.
func (c *clusterCollector) leaderChanges(list []shards.ShardStatus) map[int]uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, st := range list {
		if !st.Local || st.Leader == "" {
			continue
		}
		now := leadership{st.Leader, st.Term}
		if prev, ok := c.mu.seen[st.ID]; ok && prev != now {
			c.mu.changes[st.ID]++
		}
		c.mu.seen[st.ID] = now
	}
	out := make(map[int]uint64, len(c.mu.changes))
	for id, n := range c.mu.changes {
		out[id] = n
	}
	return out
}

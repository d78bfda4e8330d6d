package node

import (
	"context"
	"encoding/json"
	"time"

	"github.com/mqstream/mqstream/cluster/shards"
)

// Placement by measured load: the metadata group's leader asks every node
// now and then how many records each shard it holds has appended, turns
// the totals into rates, and plans the preferred leaders by them
// (shards.Replan), so that a node leads a near-equal share of the
// appends however the streams hash into shards.

// loadService answers a node's appended records per shard (JSON, one
// number per shard, -1 for shards it does not hold).
const loadService = "meta.load"

// loadEvery is how often the metadata leader measures the load.
const loadEvery = 10 * time.Second

// shardTotals sums the records appended to this node's replicas, per
// shard, since the node started.
func (r *replication) shardTotals() []int64 {
	set := r.store.set.Load()
	if set == nil {
		return nil
	}
	l := set.Layout()
	out := make([]int64, len(l.Shards))
	for i := range out {
		if !l.Holds(i, r.n.id) {
			out[i] = -1
		}
	}
	for name, c := range r.n.store.Counters() {
		if i := shards.ShardOf(name, len(out)); out[i] >= 0 {
			out[i] += c.AppendedRecords
		}
	}
	return out
}

func (r *replication) serveLoad() {
	r.mux.Handle(loadService, func(context.Context, string, []byte) ([]byte, error) {
		return json.Marshal(r.shardTotals())
	})
}

// loadMeter turns the shards' appended totals into rates; owned by the
// plan loop.
type loadMeter struct {
	at    time.Time
	total []int64
	rates []float64
}

// measure asks every node for its totals (each shard's from the replica
// that appended the most: counters start at 0 when a node starts) and
// updates the rates, smoothed; it returns them (nil until two
// measurements).
func (m *loadMeter) measure(r *replication) []float64 {
	now := time.Now()
	total := r.shardTotals()
	if total == nil {
		return m.rates
	}
	for _, t := range fromPeers[[]int64](context.Background(), r.n, loadService, nil) {
		for i := range min(len(t), len(total)) {
			total[i] = max(total[i], t[i])
		}
	}
	if m.total != nil && len(m.total) == len(total) {
		secs := now.Sub(m.at).Seconds()
		rates := make([]float64, len(total))
		for i := range total {
			rate := max(float64(total[i]-m.total[i]), 0) / secs
			if m.rates != nil {
				rate = (rate + m.rates[i]) / 2
			}
			rates[i] = rate
		}
		m.rates = rates
	}
	m.at, m.total = now, total
	return m.rates
}

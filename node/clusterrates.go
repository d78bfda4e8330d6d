package node

import (
	"context"
	"encoding/json"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/mqstream/mqstream/cluster/shards"
	"github.com/mqstream/mqstream/query"
	"github.com/mqstream/mqstream/stats"
)

// The rate and latency tables in a cluster: each node samples its own
// store (package stats), which counts the records it appends as it applies
// its replicas' logs and the records it reads for anyone (its own clients,
// and the other nodes' reads of its replicas, cluster/reads). A node asked
// for append_throughput, read_throughput or append_latency gathers every
// node's figures (service stats.rates, fromPeers: a node that does not
// answer within statsTimeout is left out and logged) and
//   - counts a stream's appends once, from one replica that serves the
//     stream's shard, the same whichever node is asked: the one whose
//     sampler has run the longest (its 10-minute window the widest, in
//     steps of spanStep), then the shard's leader, then the smallest node
//     id. A node that restarted has counted the records it caught up on
//     as appends, and its windows are short: its peers' figures are the
//     stream's. A stream no serving replica answered for has no row;
//   - sums a stream's reads over the nodes, each read being counted by the
//     one store that served it;
//   - lists append latencies one row per node, with its node.

// ratesService answers the node's rateReport.
const ratesService = "stats.rates"

// rateReport is one node's figures for the rate and latency tables.
type rateReport struct {
	Streams []streamRates `json:"streams"`
	Latency stats.Latency `json:"latency"`
}

// streamRates are one stream's rates on one node, and where the node
// stands in the stream's shard.
type streamRates struct {
	stats.StreamRates
	// Serves: the node's replica of the stream's shard serves reads (it
	// applied every record the others did), so its append counts are the
	// stream's; always true standalone. Leads: it leads the shard.
	Serves bool `json:"serves"`
	Leads  bool `json:"leads"`
}

// serveRates registers ratesService (cluster mode).
func (n *Node) serveRates() {
	n.repl.mux.Handle(ratesService, func(context.Context, string, []byte) ([]byte, error) {
		return json.Marshal(n.rateReport())
	})
}

// rateReport is this node's figures, from its sampler.
func (n *Node) rateReport() rateReport {
	set := n.shardSet()
	led := map[int]bool{}
	if set != nil {
		for _, s := range set.Status() {
			led[s.ID] = s.Local && s.Leader == n.id
		}
	}
	rates := n.sampler.StreamRates()
	out := rateReport{Streams: make([]streamRates, len(rates)), Latency: n.sampler.AppendLatency()}
	for i, r := range rates {
		out.Streams[i] = streamRates{StreamRates: r, Serves: true}
		if set != nil {
			shard := shards.ShardOf(r.Stream, len(set.Layout().Shards))
			out.Streams[i].Serves, out.Streams[i].Leads = set.Serves(shard), led[shard]
		}
	}
	return out
}

// shardSet is the node's shards: nil standalone and until the cluster
// formed.
func (n *Node) shardSet() *shards.Set {
	if n.repl == nil {
		return nil
	}
	if s := n.repl.store.set.Load(); s != nil && len(s.Layout().Shards) > 0 {
		return s
	}
	return nil
}

// servesStream reports whether this node's replica of the stream's shard
// serves (always standalone and until the cluster formed).
func (n *Node) servesStream(name string) bool {
	set := n.shardSet()
	return set == nil || set.Serves(shards.ShardOf(name, len(set.Layout().Shards)))
}

// clusterStats serves the rate and latency tables: every node's figures
// when clustered, this node's alone when standalone (query.Stats).
type clusterStats struct{ n *Node }

func (c clusterStats) reports(ctx context.Context) map[string]rateReport {
	out := fromPeers[rateReport](ctx, c.n, ratesService, nil)
	out[c.n.id] = c.n.rateReport()
	return out
}

func (c clusterStats) StreamRates(ctx context.Context) []stats.StreamRates {
	return mergeRates(c.reports(ctx))
}

func (c clusterStats) AppendLatencies(ctx context.Context) []query.NodeLatency {
	var out []query.NodeLatency
	for node, r := range c.reports(ctx) {
		out = append(out, query.NodeLatency{Node: node, Latency: r.Latency})
	}
	slices.SortFunc(out, func(a, b query.NodeLatency) int { return strings.Compare(a.Node, b.Node) })
	return out
}

// spanStep is how much longer one replica's sampler must have run than
// another's for mergeRates to prefer it regardless of leadership (the
// nodes sample at their own moments).
const spanStep = 30 * time.Second

// mergeRates makes one row per stream from the nodes' reports, as the
// comment at the top of this file says.
func mergeRates(reports map[string]rateReport) []stats.StreamRates {
	type pick struct {
		node  string
		steps time.Duration // the sampler's 10-minute span, in spanSteps
		leads bool
		rates stats.StreamRates
	}
	better := func(a, b pick) bool {
		if a.steps != b.steps {
			return a.steps > b.steps
		}
		if a.leads != b.leads {
			return a.leads
		}
		return a.node < b.node
	}
	picked := map[string]pick{}
	reads := map[string]stats.Rates{}
	for node, rep := range reports {
		for _, s := range rep.Streams {
			reads[s.Stream] = addRates(reads[s.Stream], s.Read)
			if !s.Serves {
				continue
			}
			// Within a step of the whole window counts as whole.
			steps := min(s.Append.M10.Span, stats.Window10m-spanStep) / spanStep
			c := pick{node: node, steps: steps, leads: s.Leads, rates: s.StreamRates}
			if p, ok := picked[s.Stream]; !ok || better(c, p) {
				picked[s.Stream] = c
			}
		}
	}
	out := make([]stats.StreamRates, 0, len(picked))
	for name, p := range picked {
		r := p.rates
		r.Read = reads[name]
		out = append(out, r)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Stream < out[j].Stream })
	return out
}

// addRates sums two nodes' rates of a stream; the span is the longer one.
func addRates(a, b stats.Rates) stats.Rates {
	add := func(x, y stats.Rate) stats.Rate {
		return stats.Rate{RecordsPerSec: x.RecordsPerSec + y.RecordsPerSec, BytesPerSec: x.BytesPerSec + y.BytesPerSec,
			Span: max(x.Span, y.Span)}
	}
	return stats.Rates{M1: add(a.M1, b.M1), M5: add(a.M5, b.M5), M10: add(a.M10, b.M10)}
}

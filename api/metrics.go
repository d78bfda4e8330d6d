package api

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/mqstream/mqstream/shared"
	"github.com/mqstream/mqstream/streams"
)

// registerMetrics registers the Go runtime and process collectors and our
// collectors, which read the node's counters at scrape time (the hot paths
// only bump atomics). Labels are per stream, per group and per shard, never
// per client or topic, so cardinality stays bounded by configuration.
func (s *Server) registerMetrics() {
	s.registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	s.registry.MustRegister(&collector{s: s}, newClusterCollector(s.opts.Node), queryCollector{s.opts.Queries}, engineCollector{s.opts.Engines})
}

var (
	descConnections     = desc("mqtt_connections", "Connected MQTT clients.")
	descMsgsReceived    = desc("mqtt_messages_received_total", "PUBLISH packets received from clients.")
	descMsgsSent        = desc("mqtt_messages_sent_total", "PUBLISH packets sent to clients.")
	descBytesReceived   = desc("mqtt_received_bytes_total", "Bytes received from MQTT clients.")
	descBytesSent       = desc("mqtt_sent_bytes_total", "Bytes sent to MQTT clients.")
	descSubscriptions   = desc("mqtt_subscriptions", "Active subscriptions.")
	descRetained        = desc("mqtt_retained_messages", "Retained messages.")
	descInflightDropped = desc("mqtt_inflight_dropped_total", "QoS 1/2 deliveries dropped by the broker because a client's in-flight store was full.")
	descSessionsAbsent  = desc("mqtt_sessions_absent", "Sessions kept for clients that are away (persistent sessions).")
	descSessionsStored  = desc("mqtt_sessions_persisted", "Persistent sessions kept on disk across restarts.")
	descQueued          = desc("mqtt_queued_messages", "Deliveries to ordinary subscribers waiting beyond a client's in-flight window or, for absent clients, on disk.")
	descQueueDropped    = desc("mqtt_queue_dropped_total", "Deliveries dropped because a session's queue was full (mqtt.max_queued, mqtt.max_queued_bytes).")
	descStored          = desc("ingest_stored_total", "Publishes stored in a stream and acknowledged.")
	descRefused         = desc("ingest_refused_total", "Publishes refused (not stored, not acknowledged as a success).")
	descCommits         = desc("store_commits_total", "Batches committed to the store (group commit).")
	descSyncs           = desc("store_fsync_batches_total", "Committed batches that were fsynced.")
	descCommitDelays    = desc("store_commit_delays_total", "Commits held back by storage.commit_delay so that more publishes share their fsync.")
	descCommitDelayOn   = desc("store_commit_delay_on", "1 while storage.commit_delay: auto holds commits back, 0 otherwise.")
	descCommitDelay     = desc("store_commit_delay_seconds", "How long storage.commit_delay: auto holds commits back now (a step of its ladder; 0 while off).")
	descDelaySwitches   = desc("store_commit_delay_switches_total", "Changes of decision of storage.commit_delay: auto.")
	descCommitRecords   = desc("store_committed_records_total", "Records committed.")
	descCommitErrors    = desc("store_commit_errors_total", "Batches that failed to commit.")
	descAppendLatency   = desc("store_append_latency_seconds", "Time from submitting an append to its durable completion.")
	descStreamRecords   = desc("stream_records", "Records kept in the stream.", "stream")
	descStreamBytes     = desc("stream_bytes", "Encoded bytes kept in the stream.", "stream")
	descStreamAppended  = desc("stream_appended_records_total", "Records appended to the stream since the node started.", "stream")
	descStreamAppendedB = desc("stream_appended_bytes_total", "Bytes appended to the stream since the node started.", "stream")
	descStreamRead      = desc("stream_read_records_total", "Records read from the stream since the node started.", "stream")
	descGroupLag        = desc("group_lag_records", "Records of the group's streams not yet acknowledged.", "group", "filter")
	descGroupInflight   = desc("group_in_flight", "Deliveries awaiting an ack.", "group", "filter")
	descGroupMembers    = desc("group_members", "Connected members.", "group", "filter")
	descGroupDelivered  = desc("group_delivered_total", "Deliveries, redeliveries included.", "group", "filter")
	descGroupAcked      = desc("group_acked_total", "Records acknowledged.", "group", "filter")
	descGroupRedeliv    = desc("group_redelivered_total", "Redeliveries (after an ack timeout, a disconnect or a rejection).", "group", "filter")
	descGroupDead       = desc("group_dead_lettered_total", "Records sent to the dead-letter stream.", "group", "filter")
	descGroupOldest     = desc("group_oldest_unacked_age_seconds", "Age of the oldest delivery awaiting an ack.", "group", "filter")
)

func desc(name, help string, labels ...string) *prometheus.Desc {
	return prometheus.NewDesc("mqstream_"+name, help, labels, nil)
}

// latencyBuckets are the Prometheus buckets the store's fine-grained
// latency histogram is folded into.
var latencyBuckets = []float64{50e-6, 100e-6, 200e-6, 500e-6, 1e-3, 2e-3, 5e-3, 10e-3, 20e-3, 50e-3, 100e-3, 250e-3, 500e-3, 1, 2.5, 5, 10}

type collector struct{ s *Server }

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descConnections, descMsgsReceived, descMsgsSent, descBytesReceived, descBytesSent,
		descSubscriptions, descRetained, descInflightDropped, descSessionsAbsent, descSessionsStored, descQueued, descQueueDropped, descStored, descRefused, descCommits, descSyncs, descCommitDelays, descCommitDelayOn, descCommitDelay, descDelaySwitches, descCommitRecords,
		descCommitErrors, descAppendLatency, descStreamRecords, descStreamBytes, descStreamAppended, descStreamAppendedB,
		descStreamRead, descGroupLag, descGroupInflight, descGroupMembers, descGroupDelivered, descGroupAcked, descGroupRedeliv,
		descGroupDead, descGroupOldest} {
		ch <- d
	}
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	s := c.s
	gauge := func(d *prometheus.Desc, v float64, l ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, l...)
	}
	counter := func(d *prometheus.Desc, v float64, l ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v, l...)
	}
	if b := s.opts.Broker; b != nil {
		t := b.Traffic()
		gauge(descConnections, float64(t.ClientsConnected))
		counter(descMsgsReceived, float64(t.MessagesReceived))
		counter(descMsgsSent, float64(t.MessagesSent))
		counter(descBytesReceived, float64(t.BytesReceived))
		counter(descBytesSent, float64(t.BytesSent))
		gauge(descSubscriptions, float64(t.Subscriptions))
		gauge(descRetained, float64(t.Retained))
		counter(descInflightDropped, float64(t.InflightDropped))
		sc := b.SessionCounters()
		gauge(descSessionsAbsent, float64(sc.Absent))
		gauge(descSessionsStored, float64(sc.Persistent))
		gauge(descQueued, float64(sc.Queued))
		counter(descQueueDropped, float64(sc.QueueDropped))
		st := b.Stats()
		counter(descStored, float64(st.Stored))
		counter(descRefused, float64(st.Refused))
	}
	if store := s.opts.Store; store != nil {
		sc := store.StoreCounters()
		counter(descCommits, float64(sc.Commits))
		counter(descSyncs, float64(sc.Syncs))
		counter(descCommitDelays, float64(sc.Delays))
		on := 0.0
		if sc.DelayOn {
			on = 1
		}
		gauge(descCommitDelayOn, on)
		gauge(descCommitDelay, sc.Delay.Seconds())
		counter(descDelaySwitches, float64(sc.DelaySwitches))
		counter(descCommitRecords, float64(sc.Records))
		counter(descCommitErrors, float64(sc.CommitErrors))
		ch <- latencyHistogram(sc.AppendLatency)
		counters := store.Counters()
		list := store.ListStreams
		if l, ok := store.(localStreams); ok {
			list = l.LocalStreams
		}
		for _, info := range list() {
			gauge(descStreamRecords, float64(info.Records), info.Name)
			gauge(descStreamBytes, float64(info.Bytes), info.Name)
			cs := counters[info.Name]
			counter(descStreamAppended, float64(cs.AppendedRecords), info.Name)
			counter(descStreamAppendedB, float64(cs.AppendedBytes), info.Name)
			counter(descStreamRead, float64(cs.ReadRecords), info.Name)
		}
	}
	if groups := s.opts.Groups; groups != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		list := groups.Groups
		if l, ok := groups.(localGroups); ok {
			list = l.LocalGroups
		}
		for _, g := range list(ctx) {
			l := []string{g.Name, g.Filter}
			gauge(descGroupLag, float64(g.Lag), l...)
			gauge(descGroupInflight, float64(g.InFlight), l...)
			gauge(descGroupMembers, float64(len(g.Members)), l...)
			counter(descGroupDelivered, float64(g.Delivered), l...)
			counter(descGroupAcked, float64(g.Acked), l...)
			counter(descGroupRedeliv, float64(g.Redelivered), l...)
			counter(descGroupDead, float64(g.DeadLettered), l...)
			gauge(descGroupOldest, g.OldestUnackedAge.Seconds(), l...)
		}
	}
}

// localStreams is what a Streams spanning the cluster also offers: the
// streams this node holds a replica of. A node's metrics cover those
// only, so that a sum over the nodes' series counts each replica once,
// not every stream once per node.
type localStreams interface {
	LocalStreams() []streams.StreamInfo
}

// localGroups is what a Groups spanning the cluster also offers: the
// groups this node runs. A node's metrics cover those only, so that a sum
// over the nodes' series counts each group once.
type localGroups interface {
	LocalGroups(ctx context.Context) []shared.GroupStats
}

// latencyHistogram folds the store's histogram into Prometheus buckets; a
// fine bucket counts in the first Prometheus bucket whose bound is at or
// above the fine bucket's upper bound.
func latencyHistogram(h streams.Histogram) prometheus.Metric {
	cum := make(map[float64]uint64, len(latencyBuckets))
	counts := make([]uint64, len(latencyBuckets))
	for i, n := range h.Counts {
		if n == 0 {
			continue
		}
		upper := streams.BucketUpper(i).Seconds()
		for j, b := range latencyBuckets {
			if upper <= b {
				counts[j] += uint64(n)
				break
			}
		}
	}
	var run uint64
	for j, b := range latencyBuckets {
		run += counts[j]
		cum[b] = run
	}
	return prometheus.MustNewConstHistogram(descAppendLatency, uint64(h.Count), h.Sum.Seconds(), cum)
}

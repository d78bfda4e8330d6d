package api

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/mqstream/mqstream/query"
)

// Continuous queries' figures, one series per query (labelled with its
// id: bounded by the queries users create), read from Queries.List at
// scrape time. Counters count since the query (re)started on this node.
var (
	descQueryRunning   = desc("query_running", "1 if the continuous query runs, 0 if it is failing (it restarts from its progress) or paused.", "query")
	descQueryPaused    = desc("query_paused", "1 while the continuous query is paused (PAUSE QUERY), else 0.", "query")
	descQueryIn        = desc("query_records_in_total", "Input records the continuous query read.", "query")
	descQueryOut       = desc("query_rows_out_total", "Rows the continuous query wrote to its output stream.", "query")
	descQueryLate      = desc("query_late_records_total", "Input records for windows already closed (counted, not added).", "query")
	descQuerySkipped   = desc("query_skipped_records_total", "Input records whose evaluation failed.", "query")
	descQueryPublished = desc("query_published_total", "Output records published on MQTT (WITH (topic = ...)).", "query")
	descQueryLag       = desc("query_lag_records", "Input records not read yet.", "query")
	descQueryLagSecs   = desc("query_lag_seconds", "While input records wait, the age of the last one read.", "query")
	descQueryWatermark = desc("query_watermark_seconds", "The query's watermark (Unix time): windows ending at or before it are closed.", "query")
	descQueryGroups    = desc("query_groups", "Groups held in memory: keys times panes of the open windows.", "query")
	descQueryState     = desc("query_state_bytes", "Estimated memory of the groups the continuous query holds (queries.max_state_bytes pauses it past the limit).", "query")
	descQueryStateKeys = desc("query_state_keys", "Keys the groups the continuous query holds belong to.", "query")
	descQueryStateStop = desc("query_state_limit_pauses_total", "Times the continuous query was paused because its state passed queries.max_state_bytes.", "query")
)

type queryCollector struct{ qs Queries }

// localLister is a cluster's queries: List covers every node's, LocalList
// the queries this node runs, the ones its metrics report (each query's
// series come from one node).
type localLister interface{ LocalList() []query.QueryInfo }

func (c queryCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descQueryRunning, descQueryPaused, descQueryIn, descQueryOut, descQueryLate, descQuerySkipped, descQueryPublished,
		descQueryLag, descQueryLagSecs, descQueryWatermark, descQueryGroups, descQueryState, descQueryStateKeys, descQueryStateStop} {
		ch <- d
	}
}

func (c queryCollector) Collect(ch chan<- prometheus.Metric) {
	if c.qs == nil {
		return
	}
	list := c.qs.List
	if l, ok := c.qs.(localLister); ok {
		list = l.LocalList
	}
	for _, q := range list() {
		metric := func(d *prometheus.Desc, t prometheus.ValueType, v float64) {
			ch <- prometheus.MustNewConstMetric(d, t, v, q.ID)
		}
		running := 0.0
		if q.Status == "running" {
			running = 1
		}
		metric(descQueryRunning, prometheus.GaugeValue, running)
		paused := 0.0
		if q.Status == "paused" {
			paused = 1
		}
		metric(descQueryPaused, prometheus.GaugeValue, paused)
		metric(descQueryIn, prometheus.CounterValue, float64(q.RecordsIn))
		metric(descQueryOut, prometheus.CounterValue, float64(q.RowsOut))
		metric(descQueryLate, prometheus.CounterValue, float64(q.Late))
		metric(descQuerySkipped, prometheus.CounterValue, float64(q.Skipped))
		metric(descQueryPublished, prometheus.CounterValue, float64(q.Published))
		metric(descQueryLag, prometheus.GaugeValue, float64(q.Lag))
		metric(descQueryLagSecs, prometheus.GaugeValue, q.LagSeconds)
		if !q.Watermark.IsZero() {
			metric(descQueryWatermark, prometheus.GaugeValue, float64(q.Watermark.UnixNano())/1e9)
		}
		metric(descQueryGroups, prometheus.GaugeValue, float64(q.Groups))
		metric(descQueryState, prometheus.GaugeValue, float64(q.StateBytes))
		metric(descQueryStateKeys, prometheus.GaugeValue, float64(q.StateKeys))
		metric(descQueryStateStop, prometheus.CounterValue, float64(q.StateLimitPauses))
	}
}

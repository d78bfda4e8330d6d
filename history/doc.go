// Package history records a node's overview figures over time for the
// dashboard: messages in, out and dropped per second, records stored per
// second, append p99, total group lag, connections, and per consumer group
// its lag and acknowledgements.
//
// # Rings
//
// A Recorder reads its Source every Interval (1 s) and keeps two rings in
// memory: fine points, one per Interval, for 15 minutes (900 points), and
// coarse points, one per 10 Intervals, for 24 hours (8640 points). Memory is
// bounded: about 64 bytes a point, plus per group 16 bytes a point, so
// under 1 MiB for the node and about 150 KiB per group.
//
// # Points
//
// The Source gives cumulative counters (messages received since start, an
// append-latency histogram since start) and gauges (connections, lag). A
// point's rates are the difference of two readings divided by the time
// between them, so every message is counted once whatever the timer does.
// A coarse point compares the reading at its end with the reading at the
// start of its 10-interval bucket (not an average of fine points), and its
// p99 is the quantile of the appends completed in the whole bucket.
//
// # Gaps
//
// Nothing is recorded while the node is down, and a loop delayed by a
// stalled machine records late. When two consecutive points are more than
// one and a half periods apart, the series a client gets carries a null
// point between them, so a chart breaks the line instead of drawing a
// straight segment over the hole. A rate point after a gap is the average
// over the whole gap.
//
// # Group trends
//
// Trend compares a group's lag now with its lag TrendWindow ago (10 s) in
// the fine ring: "no_members" with no member connected, "caught_up" at lag
// 0, "growing" when the lag rose, "draining" when it fell, "steady" when it
// stayed the same while acknowledgements went on, "stalled" otherwise.
package history

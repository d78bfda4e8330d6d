// Package stats samples a node's cumulative counters and turns them into
// moving averages: per-stream append and read rates over 1, 5 and 10 minutes
// and append-latency percentiles over the last minute. The SQL statistics
// tables (package query) read them.
//
// # Sampling
//
// The store keeps cumulative counters since it opened: per stream, records
// and bytes appended and read; store-wide, a histogram of append latencies.
// The Sampler copies them every Interval (5 s by default) into a ring that
// holds just over 10 minutes of samples (the longest window), so memory is
// bounded: about 10m/Interval samples, each a map of per-stream counters
// and one histogram.
//
// # Rates
//
// A rate over a window W is computed at the time it is asked for, from two
// readings of the same counters: the live counters now, and the oldest sample
// in the ring taken at or after now-W (so the span covered is between
// W-Interval and W). rate = (now - then) / span. This is a true average over
// the span, not an estimate: every record appended in it is counted once.
//
// A node younger than W has no sample that old; its oldest sample is the one
// taken when the sampler was created, so the rate is the average since then
// (Rate.Span says over how long). Just after start the span is 0 and the rate
// is 0. A stream created inside the window counts from 0; a stream deleted
// and recreated (its counters restart) counts from 0 too.
//
// # Latency
//
// Append-latency percentiles over the last minute are the quantiles of the
// live histogram minus the histogram of the same base sample, i.e. the
// appends completed in the span. The histogram has 8 buckets per power of
// two, so a percentile is the upper bound of its bucket (at most ~9% high).
package stats

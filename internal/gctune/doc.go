// Package gctune sets the Go collector's target (GOGC) of the serving
// process from its allocation rate: runtime.gc_percent: auto.
//
// # Why
//
// The collector starts a cycle when the heap has grown by GOGC percent of
// what the last cycle found live. Under ingest the process allocates a few
// short-lived objects per message, hundreds of MB/s, and a high target
// (400) saves much of the collector's CPU. With many idle connections the
// process allocates slowly (mochi's event loop copies its client map twice
// a second), but the same target lets the heap grow to five times its live
// size before a cycle: 56-65 KiB of RSS per idle connection against 42 KiB
// at 100 (docs/performance.md). At a slow allocation rate a low target costs
// next to no CPU, since cycles are rare either way.
//
// # The decision
//
// Every Interval the Controller reads two runtime/metrics counters: bytes
// allocated since start (/gc/heap/allocs:bytes) and the heap the last cycle
// found live (/gc/heap/live:bytes). The allocation rate divided by the live
// heap (at least MinLive) is the turnover: how many live heaps the process
// allocates per second, which is how many cycles per second the Low target
// would run (at 100, a cycle each time the heap doubles). So the threshold
// scales with the heap: 10,000 idle connections and 100,000 both turn over
// their heap slowly, and a small node under a modest load is not mistaken
// for an idle one.
//
//   - It starts at High: a node that just started often takes its
//     clients' reconnections at once (a connect storm), and the low target
//     would slow it down; an idle node is at Low DownAfter readings later.
//   - At Low, one reading with a turnover of Up or more switches to High at
//     once: a burst of ingest gets the cheap collector within an Interval.
//   - At High, DownAfter consecutive readings below Down switch back to Low.
//     Between Down and Up nothing changes (hysteresis), and a short pause in
//     the load does not flip the target back and forth.
//   - Going down to Low, the process has turned idle: the Controller runs a
//     collection at once and returns the free pages to the OS
//     (debug.FreeOSMemory). Left alone, the heap a connect storm or a busy
//     spell grew would be collected only when allocation resumes (or by
//     the runtime's forced collection, every two minutes), and its pages
//     returned slowly; the goroutine stacks that grew during the spell
//     (every MQTT connection's reader needs 32 KiB for mochi's SUBSCRIBE
//     handling) shrink only in a collection.
//
// The Policy holds the decision alone and takes readings as arguments, so
// tests feed it rates; the Controller owns the ticker, the runtime reads and
// debug.SetGCPercent, and logs each change at debug level. The current
// target, whoever set it (auto, a fixed runtime.gc_percent or GOGC), is the
// gauge mqstream_runtime_gc_percent (Collector).
package gctune

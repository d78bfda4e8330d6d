// Package cq runs continuous queries: CREATE STREAM name AS SELECT ...
// FROM source ... GROUP BY keys, TUMBLING(size), compiled by package query
// (query.CompileContinuous) and run here, one goroutine per query, for as
// long as the query exists, across restarts.
//
// # Windows
//
// Windows are half-open [start, start + size) and aligned to the Unix
// epoch (plus an optional offset): tumbling, or hopping (starting every
// slide, overlapping). A record's time is its _timestamp, the time it
// was appended, which never decreases within a stream, unless the query
// runs on event time (below). The state is one
// accumulator set per key and pane (query.Group), never the records
// themselves: panes are gcd(size, slide) long, a window is made of whole
// panes, and closing it combines them (window.go explains how, at a cost
// independent of size/slide).
//
// The watermark says which windows are complete. A record at time ts
// raises it to ts: no later record of the stream can be older. When the
// query has read every record of its input, it also rises to
// now - IdleTimeout, so windows close when input stops instead of waiting
// for the next record. This never changes what a window holds, only when
// it closes: a record appended later is stamped later than now. A window
// closes once the watermark reaches its end; it then outputs one record
// per key (EMIT FINAL), unless HAVING drops it, and its state is freed. A
// record whose window the watermark has already passed is late: it is
// counted (SHOW QUERIES), never silently dropped. With _timestamp as event
// time this only happens if the clock of whoever stamps records goes
// backwards.
//
// # Exactly once
//
// The output of a query is a function of its input: the same records
// give the same windows, the same rows in the same order. What must not
// happen is output lost or written twice across a crash. The query's
// progress is therefore carried by its output itself:
//
//   - all the rows of the windows one watermark closes are appended as one
//     request, which the store commits whole or not at all (one Pebble
//     batch; in cluster mode one replicated entry), and every record
//     carries the query's id and that watermark in its user properties
//     (mqstream-query, mqstream-watermark);
//   - the runner waits until that request is durable before it goes on, so
//     output requests are durable in watermark order;
//   - at start, the progress is the watermark of the newest output record
//     of the query, or a newer hint from the key/value namespace (written
//     after the output it covers was durable, and every second while the
//     watermark moves without closing windows that have rows). Every
//     window ending at or before it has been output; the first one that
//     has not starts at Window.FirstOpen(watermark). The runner reads the
//     input again from the first record at or after that instant
//     (OffsetAt: timestamps never decrease, so this is a bisection) and
//     rebuilds the open windows from it.
//
// A crash before an output request is durable leaves none of it, and the
// windows are rebuilt and output again; a crash after it leaves its marker,
// and they are not. There is no moment where output and progress disagree,
// so there is no separate checkpoint to keep in step with the output, and
// the state that must survive a restart is just one number. The cost is
// re-reading the input of the open windows at start-up (at most one window
// of input, plus the idle time).
//
// # Publication on MQTT
//
// With WITH (topic = ...), a second loop of the query publishes its
// output records through Options.Publisher (publish.go). It follows the
// output stream rather than the windows, from an offset kept in the
// key/value namespace and written after each delivered batch: the stream
// gets each row exactly once, MQTT at least once.
//
// # Changes and push queries
//
// A query with EMIT CHANGES, or without a window (a filter), outputs the
// updated rows of each input record instead (changes.go); its progress is
// the last input offset it has processed, carried by its output the same
// way. A push query (push.go) runs the same machinery for one caller, from
// the end of its input, keeping nothing. EMIT_INTERVAL rate-limits the
// updates per group in record time (limit.go), so that they too are a
// function of the input. On event time (eventchanges.go) a record within
// the grace of an older open window outputs its corrected row, late
// records are handled as with EMIT FINAL, and progress is the event-time
// progress below, with the time up to which held updates were output.
//
// # Sessions
//
// Session windows (session.go) keep one accumulator set per key and open
// session. A session query's output also carries mqstream-resume, the
// start of the oldest session open at its watermark (and so does its
// hint, under its own key): a restart reads the input again from there.
// Sessions are cut at every multiple of their maximum length on the
// epoch's grid, never at their start plus the maximum, so that whether two
// records share a session depends on those two records only: reading from
// any instant rebuilds every session starting after it whole, and those
// it rebuilds in part had ended at or before the watermark (output
// already, they close without output). Sessions close in order of their
// ends, so the rows do not depend on how the watermark moved. With EMIT
// CHANGES each record outputs its session's row and a persistent query
// carries the event-time progress below, on _timestamp too
// (sessionchanges.go).
//
// # Pausing, INSERT INTO and views
//
// PAUSE stops a query's runner as a shutdown does and RESUME starts a new
// one as a start does (control.go), so its output neither loses nor
// repeats anything; the paused state is kept in its definition. INSERT
// INTO writes an existing stream that others may write: its id is numbered
// (never reused) and the search for its progress in the stream stops at the
// stream's end when it was created, or when its last progress hint was
// written (the hint carries it); with late = TRUE its late records go to
// <id>_late, named once the id is known (newRunner). A view (view.go)
// writes nothing: its
// runner keeps its groups in memory, rebuilt from the source at start-up,
// and SQL reads them through query.ViewReader.
//
// DropStream (drop.go) deletes a stream for DROP STREAM and DELETE
// /v1/streams/{name}, and refuses while a query or view reads or writes
// it, naming them.
//
// # State limit
//
// Each runner keeps a running estimate of the memory of its groups, and
// a query whose estimate passes Options.MaxStateBytes is paused with an
// error, a view stopped (state.go).
//
// # Event time
//
// A window on an expression of the record (Continuous.EventTime) takes
// records in any time order. The watermark (clock, eventtime.go) is the
// newest event time less GRACE, or the newest record's append time less
// the idle timeout, or now less it at the input's end; read off the
// records, the idle term makes whether a record is late a function of the
// records alone. Progress is then carried by input offsets: each output
// request carries the watermark, the offset of the first record of the
// oldest open window or session, the watermark before that record, and
// the next input offset. A restart replays from that record with that
// watermark: the same decisions, the open windows rebuilt exactly, the
// closed ones not output again (windower.closedTo, sessioner.quietTo).
// Windows close as soon as the watermark passes them, before the next
// record is added (a hopping window's pane is shared with open windows),
// so closed windows never depend on when closeDue runs. With WITH (late
// = TRUE), late records are appended to <query>_late before the output
// request of their batch, each carrying its input offset; a restart
// skips those the late stream holds (intake.lateFrom).
//
// # Joins
//
// An interval join of two streams (join.go) processes the records of both
// in one order, by (_timestamp, input, offset), each once the other input
// shows a later record or, read to its end, once the record is older than
// now - IdleTimeout: the order, and so the pairs, are a function of the
// records. It keeps the records of the interval, by key, and drops them
// once the records processed have left the interval behind (with LEFT
// JOIN, a record of the first input that nothing joined is then output
// alone; RIGHT JOIN the same for the second, FULL JOIN for both). Its output carries both inputs' next offsets and that frontier;
// a restart reads each input again from
// the first record it may still need, rebuilds the kept records from
// those it had processed, without output, and goes on. A lookup of a view
// (query.JoinLookup) is a query without state that emits changes: each
// record is joined with the view's current rows for its key
// (viewState.Lookup), so its output depends on when it runs. A push
// query joins with the same code (Manager.joinLoop, changer.lookup), from
// the ends of its inputs, without output stream or progress.
//
// Limits: a query runs on the node where it
// was created (in cluster mode its output goes through
// the shards like any write, and is published to subscribers on every
// node, but the query does not move on failover).
package cq

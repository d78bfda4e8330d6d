// Package query is mqstream's SQL engine: SQL over the records of streams
// and over live statistics tables, and the compiler of continuous queries
// (CREATE STREAM ... AS SELECT, INSERT INTO ... SELECT, CREATE VIEW ... AS
// SELECT, which package cq runs). `mqstream sql` and
// POST /v1/query (Handler) use it; docs/sql.md is the user's reference.
//
// # Front end
//
// Statements are parsed by Vitess's MySQL-dialect parser
// (vitess.io/vitess/go/vt/sqlparser) and converted at once into a small AST
// of our own (ast.go, convert.go), so the parser's types never leave
// parse.go and convert.go. The parser's tree has no positions; lex.go
// tokenizes the text with the parser's own tokenizer and finds where names
// and literals appear, so errors carry a line and column. SHOW STREAMS,
// SHOW QUERIES, SHOW VIEWS, TERMINATE, PAUSE and RESUME QUERY, DROP
// VIEW and DROP STREAM are not MySQL and are recognised from their
// tokens; DROP STREAM goes to Queries.DropStream, which refuses while
// queries use the stream. peel.go takes
// the continuous-query additions off the text before Vitess sees it
// (CREATE STREAM name [WITH (...)] AS, INSERT INTO name, CREATE VIEW name
// AS, a trailing EMIT, INTERVAL n UNIT inside window calls), blanking them
// in place so every offset still points into the user's text; EXPLAIN is
// blanked the same way and the rest parsed as a statement (explain.go
// answers its plan as rows).
//
// # Continuous queries
//
// CompileContinuous binds the SELECT of a CREATE STREAM statement like an
// ad-hoc one (selectPlan.bind), but against one stream whose every unknown
// name is a payload field (no sampling: the stream may be empty) plus the
// window_start and window_end columns, and returns a Continuous that
// evaluates one record at a time: Eval (WHERE and the group key), NewGroup
// and Add (the aggregates' accumulators), Combine (the accumulators of
// two panes of a hopping window), Result (HAVING, the output record's
// JSON and its topic, cqoutput.go). window.go reads the window calls; a
// window whose time is not _timestamp makes the query run on event time
// (Time, evaluated per record). hints.go reads the query's options from
// /*+ GRACE('5s') IDLE_TIMEOUT('30s') START('latest') */ comments. A
// persistent query may join two inputs (join.go): two streams within a
// time interval read off ON, or a stream and a view (CompileContinuousIn
// resolves which); JoinInput and Pair evaluate it one record and one
// pair at a time. The engine hands the persistent queries' statements to
// Options.Queries, and reads a view (ViewReader) as a table whose rows
// the view's query keeps.
//
// # Tables
//
// A stream is a table: one row per record, with metadata columns (_offset,
// _timestamp, _topic, ...) and, for JSON-object payloads, one column per
// top-level field. Streams have no schema, so the fields are discovered by
// sampling the oldest and newest records (only when a query names a
// non-metadata column or uses *); a field not seen there is still readable
// with _payload->>'$.name'. Payload fields have no static type: a value
// that does not fit an operation (text in arithmetic, text compared with a
// number) makes it NULL, whereas mismatches between columns of known type
// or constants are errors before any row is read.
//
// The statistics tables (streams, append_throughput, read_throughput,
// groups, consumers, sessions, queries, nodes, shards, append_latency) are
// computed when a query reads them, through small interfaces (Store,
// Groups, Stats, Sessions, QueryTable, Nodes, Shards) that the node
// implements over the whole cluster. A source that answers with part of
// its rows (a node that did not answer) says so with Warn: the result's
// Warnings (warnings.go).
//
// # Execution
//
// A SELECT is bound (select.go, expr.go) into closures over a row layout:
// all tables of the FROM clause side by side, each stream with a hidden
// slot for its decoded payload. Execution (exec.go) is a push pipeline:
//
//  1. every joined table (all but the first) is read once, filtered by
//     the ON and WHERE conjuncts that concern it alone, and indexed by its
//     equi-join keys (hash join; nested loops otherwise);
//  2. the first table is scanned lazily; WHERE conjuncts on it alone are
//     checked before joining; each row is extended by the joins (LEFT JOIN
//     fills NULLs) and checked against the rest of WHERE;
//  3. the sink groups rows (GROUP BY and aggregates, in a hash map), or
//     buffers them for ORDER BY, or appends them to the result and stops
//     the scan as soon as OFFSET + LIMIT rows are out.
//
// Predicates on a stream's _offset and _timestamp with constant bounds
// (now() is constant within a statement) narrow its scan: offsets directly,
// timestamps through the store's OffsetAt bisection (timestamps never
// decrease within a stream). ORDER BY _offset or _timestamp on the first
// table needs no sort: ascending follows the scan, descending scans
// backwards in growing chunks, so "ORDER BY _offset DESC LIMIT 10" reads
// about 64 records whatever the stream's size.
//
// # Budgets
//
// Every row read from a table counts against a row budget
// (Options.MaxRowsScanned) and the whole statement runs under a time budget
// (Options.Timeout). Either stops the query with a CodeBudget error; a
// partial answer is never returned. Sorting and grouping hold at most the
// rows read, so the row budget also bounds memory.
package query

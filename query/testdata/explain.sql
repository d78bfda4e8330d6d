# EXPLAIN answers a query's plan as rows (step, detail) without running it.
> EXPLAIN SELECT sensor, avg(temp) AS mean FROM temperatures WHERE temp > 20 AND _offset < 5 GROUP BY sensor HAVING mean > 25 ORDER BY mean DESC LIMIT 2
step:text | detail:text
statement | ad-hoc query: reads what the tables hold now and answers once
source | stream temperatures: scans offsets [0, 5), 5 records of 8 kept (_offset bounded by WHERE)
filter | temp > 20 and _offset < 5
grouping | sensor
having | mean > 25
projection | sensor, avg(temp) AS mean
order | mean desc (sorted in memory)
limit | 2 (offset 0)
output | rows to the caller, at once

> EXPLAIN SELECT _offset FROM temperatures ORDER BY _offset DESC LIMIT 3
step:text | detail:text
statement | ad-hoc query: reads what the tables hold now and answers once
source | stream temperatures: scans offsets [0, 8), 8 records of 8 kept, newest first
projection | _offset
order | _offset desc (in scan order: no sort)
limit | 3 (offset 0)
output | rows to the caller, at once

> EXPLAIN SELECT t.sensor, d.site FROM temperatures t LEFT JOIN devices d ON d.id = t.sensor
step:text | detail:text
statement | ad-hoc query: reads what the tables hold now and answers once
source | stream temperatures: scans offsets [0, 8), 8 records of 8 kept (as t)
join | left join of stream devices: scans offsets [0, 4), 4 records of 4 kept (as d), hashed on 1 equality key(s)
projection | sensor, site
output | rows to the caller, at once

> EXPLAIN SELECT name FROM streams
step:text | detail:text
statement | ad-hoc query: reads what the tables hold now and answers once
source | statistics table streams: computed when read
projection | name
output | rows to the caller, at once

> EXPLAIN SELECT 1 + 1
step:text | detail:text
statement | ad-hoc query: reads what the tables hold now and answers once
source | none: the select list is evaluated once
projection | 1 + 1
output | rows to the caller, at once

> EXPLAIN CREATE STREAM hot WITH (topic = 'alerts/{sensor}', qos = 1) AS SELECT sensor, count(*) AS n, max(temp) AS hi FROM temperatures WHERE temp IS NOT NULL GROUP BY sensor, TUMBLING(INTERVAL 10 SECOND) HAVING hi > 30
step:text | detail:text
statement | persistent query hot (CREATE STREAM): runs across restarts until TERMINATE QUERY hot
source | stream temperatures, from its first record kept, one record at a time
filter | temp is not null
grouping | sensor
having | hi > 30
window | tumbling: 10s long, half-open [start, end), aligned to the epoch
time | _timestamp, the append time: never decreases within a stream, so no record is late and a replay gives the same windows
state | one accumulator set per key and open window (never the records)
projection | sensor, count(*) AS n, max(temp) AS hi
columns | window_start, window_end, sensor, n, hi
emit | final: one row per key when its window closes (the watermark passes its end, or the idle timeout when input stops)
output | new stream hot, exactly once; published on MQTT topic alerts/{sensor} (QoS 1, retain false), at least once

> EXPLAIN CREATE STREAM ch AS SELECT sensor, count(*) AS n FROM temperatures GROUP BY sensor, HOP(_timestamp, INTERVAL 1 MINUTE, INTERVAL 10 SECOND) EMIT CHANGES
step:text | detail:text
statement | persistent query ch (CREATE STREAM): runs across restarts until TERMINATE QUERY ch
source | stream temperatures, from its first record kept, one record at a time
grouping | sensor
window | hopping: 1m0s long, starting every 10s, half-open [start, end), aligned to the epoch
time | _timestamp, the append time: never decreases within a stream, so no record is late and a replay gives the same windows
state | one accumulator set per key and open window (never the records)
projection | sensor, count(*) AS n
columns | window_start, window_end, sensor, n
emit | changes: the updated row of each window holding a record, for each record
output | new stream ch, exactly once (topic ch)

> EXPLAIN INSERT INTO jobs SELECT sensor, temp FROM temperatures WHERE temp > 30
step:text | detail:text
statement | persistent query (INSERT INTO jobs): runs across restarts until TERMINATE QUERY
source | stream temperatures, from its first record kept, one record at a time
filter | temp > 30
window | none
state | none: each record makes its own row
projection | sensor, temp
columns | sensor, temp
emit | changes: one row per record that passes the filter
output | existing stream jobs, exactly once (topic jobs, QoS 1)

> EXPLAIN CREATE VIEW per_sensor AS SELECT sensor, count(*) AS n FROM temperatures GROUP BY sensor
step:text | detail:text
statement | view per_sensor: a table kept up to date by a persistent query, until DROP VIEW per_sensor
source | stream temperatures, from its first record kept (again at every start: the view is rebuilt), one record at a time
grouping | sensor
window | none
state | one accumulator set per key (never the records)
projection | sensor, count(*) AS n
columns | sensor, n
emit | none: the view's rows are updated with each record and read with SELECT ... FROM per_sensor
output | view per_sensor, in memory

> EXPLAIN SELECT sensor, count(*) FROM temperatures GROUP BY sensor, SESSION(INTERVAL 30 SECOND) EMIT FINAL LIMIT 5
step:text | detail:text
statement | push query: streams its rows to the caller until cancelled or its LIMIT; never kept
source | stream temperatures, from its end: records appended after the query starts, one record at a time
grouping | sensor
window | session: a key's records less than 30s apart; [first record, last record + 30s)
time | _timestamp, the append time: never decreases within a stream, so no record is late and a replay gives the same windows
state | one accumulator set per key and open session (never the records)
projection | sensor, count(*)
columns | window_start, window_end, sensor, count(*)
emit | final: one row per session when it closes (the watermark passes its end, or the idle timeout when input stops)
output | rows to the caller as they come (NDJSON or Server-Sent Events over HTTP)
limit | 5 rows, then the push query ends

> EXPLAIN CREATE STREAM visits AS SELECT sensor, count(*) AS n FROM temperatures GROUP BY sensor, SESSION(_timestamp, INTERVAL 30 SECOND, INTERVAL 1 HOUR)
step:text | detail:text
statement | persistent query visits (CREATE STREAM): runs across restarts until TERMINATE QUERY visits
source | stream temperatures, from its first record kept, one record at a time
grouping | sensor
window | session: a key's records less than 30s apart; [first record, last record + 30s), cut at every multiple of 1h0m0s on the epoch's grid (at most that long)
time | _timestamp, the append time: never decreases within a stream, so no record is late and a replay gives the same windows
state | one accumulator set per key and open session (never the records); a restart reads the input again from the start of the oldest open session
projection | sensor, count(*) AS n
columns | window_start, window_end, sensor, n
emit | final: one row per session when it closes (the watermark passes its end, or the idle timeout when input stops)
output | new stream visits, exactly once (topic visits)

> EXPLAIN CREATE STREAM per10s AS SELECT /*+ GRACE('5s') IDLE_TIMEOUT('1m') START('latest') */ sensor, count(*) AS n FROM temperatures GROUP BY sensor, TUMBLE(at, INTERVAL 10 SECOND)
step:text | detail:text
statement | persistent query per10s (CREATE STREAM): runs across restarts until TERMINATE QUERY per10s
source | stream temperatures, from its end when the query is created (START('latest')), one record at a time
grouping | sensor
window | tumbling: 10s long, half-open [start, end), aligned to the epoch
time | event time, the window's first argument, per record: the watermark is the newest event time less GRACE (5s), or the newest record's append time less IDLE_TIMEOUT (1m0s); records for closed windows are late (counted, not added)
state | one accumulator set per key and open window (never the records)
projection | sensor, count(*) AS n
columns | window_start, window_end, sensor, n
emit | final: one row per key when its window closes (the watermark passes its end, or the idle timeout when input stops)
output | new stream per10s, exactly once (topic per10s)

> EXPLAIN CREATE STREAM running WITH (late = TRUE) AS SELECT /*+ GRACE('5s') EMIT_INTERVAL('1s') */ sensor, count(*) AS n FROM temperatures GROUP BY sensor, HOP(at, INTERVAL 10 SECOND, INTERVAL 5 SECOND) EMIT CHANGES
step:text | detail:text
statement | persistent query running (CREATE STREAM): runs across restarts until TERMINATE QUERY running
source | stream temperatures, from its first record kept, one record at a time
grouping | sensor
window | hopping: 10s long, starting every 5s, half-open [start, end), aligned to the epoch
time | event time, the window's first argument, per record: the watermark is the newest event time less GRACE (5s), or the newest record's append time less the node's idle timeout; records for closed windows are late (counted, not added)
state | one accumulator set per key and open window (never the records)
projection | sensor, count(*) AS n
columns | window_start, window_end, sensor, n
emit | changes: the updated row of each open window holding a record not late (a record within the grace of an older window corrects it), each group (key, window) at most once per 1s of append time (EMIT_INTERVAL), the latest held back output when due or when its window closes
output | new stream running, exactly once (topic running)

> EXPLAIN SELECT /*+ GRACE('5s') */ sensor, count(*) AS n FROM temperatures GROUP BY sensor, TUMBLE(at, INTERVAL 10 SECOND) EMIT CHANGES
step:text | detail:text
statement | push query: streams its rows to the caller until cancelled or its LIMIT; never kept
source | stream temperatures, from its end: records appended after the query starts, one record at a time
grouping | sensor
window | tumbling: 10s long, half-open [start, end), aligned to the epoch
time | event time, the window's first argument, per record: the watermark is the newest event time less GRACE (5s), or the newest record's append time less the node's idle timeout; records for closed windows are late (counted, not added)
state | one accumulator set per key and open window (never the records)
projection | sensor, count(*) AS n
columns | window_start, window_end, sensor, n
emit | changes: the updated row of each open window holding a record not late; a record within the grace of an older window corrects it
output | rows to the caller as they come (NDJSON or Server-Sent Events over HTTP)

# Errors point into the statement as written.
> EXPLAIN SELECT tmp FROM temperatures
error sql_error 1:16: unknown column "tmp" (did you mean temp?); stream temperatures has the columns _offset, _timestamp, _topic, _client_id, _qos, _retain, _payload, _content_type, _user_properties, sensor, temp, unit, tags (payload fields as seen in 8 sampled records); to read a payload field not seen there, use _payload->>'$.tmp'

> EXPLAIN
>   CREATE STREAM x AS SELECT count(*) FROM tmps GROUP BY TUMBLING(INTERVAL 1 SECOND)
error sql_error 2:43: unknown stream "tmps": a continuous query reads an existing stream (SHOW STREAMS lists them)

> EXPLAIN INSERT INTO nope SELECT sensor FROM temperatures
error sql_error 1:21: unknown stream "nope": INSERT INTO writes an existing stream (CREATE STREAM nope AS SELECT ... creates one)

> EXPLAIN
error sql_syntax 1:1: syntax error: write EXPLAIN <statement>: EXPLAIN SELECT ..., EXPLAIN CREATE STREAM ..., EXPLAIN INSERT INTO ... or EXPLAIN CREATE VIEW ...

> EXPLAIN EXPLAIN SELECT 1
error sql_syntax 1:9: syntax error: write EXPLAIN <statement>: EXPLAIN SELECT ..., EXPLAIN CREATE STREAM ..., EXPLAIN INSERT INTO ... or EXPLAIN CREATE VIEW ...

> EXPLAIN SHOW TABLES
error sql_error 1:9: EXPLAIN explains queries: SELECT ..., CREATE STREAM ... AS SELECT ..., INSERT INTO ... SELECT ... or CREATE VIEW ... AS SELECT ...

> EXPLAIN SELECT FROM temperatures
error sql_syntax 1:16: syntax error at "FROM"

> EXPLAIN SELECT /*+ EMIT_INTERVAL('1s') */ sensor, count(*) AS n FROM temperatures GROUP BY sensor, TUMBLING(INTERVAL 1 MINUTE) EMIT CHANGES
step:text | detail:text
statement | push query: streams its rows to the caller until cancelled or its LIMIT; never kept
source | stream temperatures, from its end: records appended after the query starts, one record at a time
grouping | sensor
window | tumbling: 1m0s long, half-open [start, end), aligned to the epoch
time | _timestamp, the append time: never decreases within a stream, so no record is late and a replay gives the same windows
state | one accumulator set per key and open window (never the records)
projection | sensor, count(*) AS n
columns | window_start, window_end, sensor, n
emit | changes: the updated row of each group (key, window) at most once per 1s of record time (EMIT_INTERVAL), the latest held back output when due or when its window ends
output | rows to the caller as they come (NDJSON or Server-Sent Events over HTTP)

# A join of two streams within a time interval.
> EXPLAIN SELECT t.sensor, d.site FROM temperatures t LEFT JOIN devices d ON t.sensor = d.id AND d._timestamp BETWEEN t._timestamp AND t._timestamp + INTERVAL 10 SECOND EMIT CHANGES LIMIT 5
step:text | detail:text
statement | push query: streams its rows to the caller until cancelled or its LIMIT; never kept
source | stream temperatures, from its end: records appended after the query starts, one record at a time
join | interval join with stream devices on 1 key(s): pairs with d._timestamp - t._timestamp within [0s, 10s], output when the later record of the pair is processed; both streams are read in _timestamp order; left: a record of temperatures that nothing joined is output alone (NULL columns) once the interval has passed
window | none
state | the records of both streams within the interval, by key: a record of temperatures is kept until the records processed are 10s past it, one of devices until they are 0s past it
projection | sensor, site
columns | sensor, site
emit | changes: one row per joined pair that passes the filter
output | rows to the caller as they come (NDJSON or Server-Sent Events over HTTP)
limit | 5 rows, then the push query ends

> EXPLAIN CREATE STREAM paired AS SELECT t.sensor, t.temp, d.site FROM temperatures t JOIN devices d ON t.sensor = d.id AND d._timestamp BETWEEN t._timestamp - INTERVAL 1 MINUTE AND t._timestamp + INTERVAL 10 SECOND
step:text | detail:text
statement | persistent query paired (CREATE STREAM): runs across restarts until TERMINATE QUERY paired
source | stream temperatures, from its first record kept, one record at a time
join | interval join with stream devices on 1 key(s): pairs with d._timestamp - t._timestamp within [-1m0s, 10s], output when the later record of the pair is processed; both streams are read in _timestamp order
window | none
state | the records of both streams within the interval, by key: a record of temperatures is kept until the records processed are 10s past it, one of devices until they are 1m0s past it
projection | sensor, temp, site
columns | sensor, temp, site
emit | changes: one row per joined pair that passes the filter
output | new stream paired, exactly once (topic paired)

> EXPLAIN CREATE STREAM paired AS SELECT t.sensor, d.site FROM temperatures t FULL JOIN devices d ON t.sensor = d.id AND d._timestamp BETWEEN t._timestamp AND t._timestamp + INTERVAL 10 SECOND
step:text | detail:text
statement | persistent query paired (CREATE STREAM): runs across restarts until TERMINATE QUERY paired
source | stream temperatures, from its first record kept, one record at a time
join | interval join with stream devices on 1 key(s): pairs with d._timestamp - t._timestamp within [0s, 10s], output when the later record of the pair is processed; both streams are read in _timestamp order; full: a record of temperatures or devices that nothing joined is output alone (NULL columns) once the interval has passed
window | none
state | the records of both streams within the interval, by key: a record of temperatures is kept until the records processed are 10s past it, one of devices until they are 0s past it
projection | sensor, site
columns | sensor, site
emit | changes: one row per joined pair that passes the filter
output | new stream paired, exactly once (topic paired)

> EXPLAIN SELECT t.sensor, d.site FROM temperatures t RIGHT JOIN devices d ON t.sensor = d.id AND d._timestamp BETWEEN t._timestamp AND t._timestamp + INTERVAL 10 SECOND EMIT CHANGES
step:text | detail:text
statement | push query: streams its rows to the caller until cancelled or its LIMIT; never kept
source | stream temperatures, from its end: records appended after the query starts, one record at a time
join | interval join with stream devices on 1 key(s): pairs with d._timestamp - t._timestamp within [0s, 10s], output when the later record of the pair is processed; both streams are read in _timestamp order; right: a record of devices that nothing joined is output alone (NULL columns) once the interval has passed
window | none
state | the records of both streams within the interval, by key: a record of temperatures is kept until the records processed are 10s past it, one of devices until they are 0s past it
projection | sensor, site
columns | sensor, site
emit | changes: one row per joined pair that passes the filter
output | rows to the caller as they come (NDJSON or Server-Sent Events over HTTP)

> EXPLAIN CREATE STREAM paired AS SELECT t.sensor, d.site FROM temperatures t LEFT JOIN devices d ON t.sensor = d.id AND d._timestamp BETWEEN t._timestamp AND t._timestamp + INTERVAL 10 SECOND
step:text | detail:text
statement | persistent query paired (CREATE STREAM): runs across restarts until TERMINATE QUERY paired
source | stream temperatures, from its first record kept, one record at a time
join | interval join with stream devices on 1 key(s): pairs with d._timestamp - t._timestamp within [0s, 10s], output when the later record of the pair is processed; both streams are read in _timestamp order; left: a record of temperatures that nothing joined is output alone (NULL columns) once the interval has passed
window | none
state | the records of both streams within the interval, by key: a record of temperatures is kept until the records processed are 10s past it, one of devices until they are 0s past it
projection | sensor, site
columns | sensor, site
emit | changes: one row per joined pair that passes the filter
output | new stream paired, exactly once (topic paired)

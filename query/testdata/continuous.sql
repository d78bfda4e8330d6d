# Continuous queries: this node runs none, so a statement that compiles
# says so; a bad one gets its positioned error first.
> CREATE STREAM hot WITH (topic = 'alerts/{sensor}', qos = 2, retain = true) AS SELECT sensor, max(temp) AS hi FROM temperatures GROUP BY sensor, TUMBLING(INTERVAL 10 SECOND)
error sql_error 0:0: continuous queries are not available on this node

> CREATE STREAM hot WITH (topic = 'alerts/{sensr}') AS SELECT sensor, max(temp) AS hi FROM temperatures GROUP BY sensor, TUMBLING(INTERVAL 10 SECOND)
error sql_error 1:33: topic "alerts/{sensr}": {sensr} is not an output column (the columns are window_start, window_end, sensor, hi)

> CREATE STREAM hot WITH (topic = 'alerts/#') AS SELECT sensor FROM temperatures GROUP BY sensor, TUMBLING(INTERVAL 10 SECOND)
error sql_error 1:33: topic "alerts/#": invalid topic name: "alerts/#" contains a wildcard

> CREATE STREAM hot WITH (topic = 'alerts/{sensor') AS SELECT sensor FROM temperatures GROUP BY sensor, TUMBLING(INTERVAL 10 SECOND)
error sql_error 1:33: topic "alerts/{sensor": a { without }: templates are written {column}

> CREATE STREAM hot WITH (topic = 'alerts/hot', qos = 3) AS SELECT sensor FROM temperatures GROUP BY sensor, TUMBLING(INTERVAL 10 SECOND)
error sql_error 1:53: qos is 0, 1 or 2

> CREATE STREAM hot WITH (retain = true) AS SELECT sensor FROM temperatures GROUP BY sensor, TUMBLING(INTERVAL 10 SECOND)
error sql_error 1:25: qos and retain apply to the MQTT publication of the output: give a topic too, e.g. WITH (topic = 'alerts/hot', qos = 1)

> CREATE STREAM hot WITH (topic = 'alerts/hot', retain = 'yes') AS SELECT sensor FROM temperatures GROUP BY sensor, TUMBLING(INTERVAL 10 SECOND)
error sql_error 1:56: retain is TRUE or FALSE

> CREATE STREAM hot WITH (partitions = 3) AS SELECT sensor FROM temperatures GROUP BY sensor, TUMBLING(INTERVAL 10 SECOND)
error sql_error 1:25: unknown option partitions in WITH (...): the options are topic, qos, retain and late

# Hopping windows: size, then slide.
> CREATE STREAM hop AS SELECT sensor, avg(temp) AS mean FROM temperatures GROUP BY sensor, HOPPING(INTERVAL 10 SECOND, INTERVAL 5 SECOND)
error sql_error 0:0: continuous queries are not available on this node

> CREATE STREAM hop AS SELECT sensor, avg(temp) AS mean FROM temperatures GROUP BY sensor, HOP(_timestamp, INTERVAL 5 SECOND, INTERVAL 10 SECOND)
error sql_error 1:125: the slide (10s) is longer than the window (5s): records between windows would be in none; HOP and HOPPING take the size first, then the slide

> CREATE STREAM hop AS SELECT sensor, avg(temp) AS mean FROM temperatures GROUP BY sensor, HOPPINGWINDOW(ss, 10)
error sql_error 1:90: HOPPINGWINDOW takes a unit (ms, ss, mi, hh, dd), the window size and the slide: HOPPINGWINDOW(ss, 10, 5)

> CREATE STREAM hop AS SELECT sensor, avg(temp) AS mean FROM temperatures WHERE window_start > '2026-01-01' GROUP BY sensor, HOPPINGWINDOW(ss, 10, 5)
error sql_error 1:79: window_start cannot be used in WHERE or GROUP BY with hopping or session windows: a record is in several windows, or its session's bounds are not known yet (use it in the select list or HAVING)

> CREATE STREAM hop AS SELECT sensor, avg(temp) AS mean FROM temperatures GROUP BY sensor, HOPPING(INTERVAL 1 DAY, INTERVAL 7 SECOND)
error sql_error 1:114: a window of 24h0m0s sliding by 7s is made of 86400 panes of 1s (gcd of the two): at most 10000; choose a slide that divides the size

> CREATE STREAM s AS SELECT sensor, count(*) FROM temperatures GROUP BY sensor, SESSION(INTERVAL 30 SECOND)
error sql_error 0:0: continuous queries are not available on this node

> CREATE STREAM s AS SELECT sensor, count(*) FROM temperatures GROUP BY sensor, SESSION(INTERVAL 30 SECOND) EMIT CHANGES
error sql_error 0:0: continuous queries are not available on this node

> CREATE VIEW s AS SELECT sensor, count(*) FROM temperatures GROUP BY sensor, SESSIONWINDOW(mi, 60, 5)
error sql_error 1:77: a view cannot use SESSION windows: it keeps tumbling or hopping windows (or none); CREATE STREAM ... AS SELECT ... GROUP BY ..., SESSION(...) outputs each session once it closes

# Push queries and EMIT CHANGES.
> SELECT sensor, count(*) AS n FROM temperatures GROUP BY sensor EMIT CHANGES
error sql_error 0:0: push queries are not available on this node

> SELECT sensor, count(*) AS n FROM temperatures GROUP BY sensor EMIT FINAL
error sql_error 1:64: EMIT FINAL needs a window: a final row per key comes when its window closes (GROUP BY <keys>, TUMBLING(INTERVAL 10 SECOND))

> SELECT sensor FROM temperatures EMIT SOON
error sql_error 1:38: EMIT must be followed by CHANGES or FINAL, not "SOON"

> SELECT sensor FROM temperatures LIMIT 3 OFFSET 1 EMIT CHANGES
error sql_error 1:48: OFFSET is not supported in push queries

> CREATE STREAM counts AS SELECT sensor, count(*) AS n FROM temperatures GROUP BY sensor EMIT CHANGES
error sql_error 1:72: a continuous query that aggregates needs a window: GROUP BY <keys>, TUMBLING(INTERVAL 10 SECOND) (a push query, SELECT ... EMIT CHANGES, aggregates without one)

> CREATE STREAM hot AS SELECT sensor, temp FROM temperatures WHERE temp > 30 EMIT FINAL
error sql_error 1:76: EMIT FINAL needs a window: a final row per key comes when its window closes (GROUP BY <keys>, TUMBLING(INTERVAL 10 SECOND))

# The table queries: SHOW QUERIES as a table.
> SELECT id, lag_seconds FROM queries WHERE status = 'error'
error sql_error 0:0: table queries is not available: this node runs no continuous queries

# Joins: of two streams within a time interval, or of a stream with a
# view (none here). Bad joins get positioned errors.
> CREATE STREAM paired AS SELECT t.sensor, t.temp, d.site FROM temperatures t JOIN devices d ON t.sensor = d.id AND d._timestamp BETWEEN t._timestamp - INTERVAL 5 SECOND AND t._timestamp + INTERVAL 5 SECOND
error sql_error 0:0: continuous queries are not available on this node

> CREATE STREAM paired AS SELECT t.sensor, d.site FROM temperatures t JOIN devices d ON d.id = t.sensor AND t._timestamp >= d._timestamp - INTERVAL 1 MINUTE AND t._timestamp < d._timestamp
error sql_error 0:0: continuous queries are not available on this node

> CREATE STREAM paired AS SELECT t.sensor, d.site FROM temperatures t JOIN devices d ON t.sensor = d.id
error sql_error 1:87: a join of two streams needs time bounds in ON, which bound its state: AND d._timestamp BETWEEN t._timestamp - INTERVAL 5 SECOND AND t._timestamp + INTERVAL 5 SECOND (to look rows up instead, join a view)

> CREATE STREAM paired AS SELECT t.sensor, d.site FROM temperatures t JOIN devices d ON d._timestamp BETWEEN t._timestamp - INTERVAL 5 SECOND AND t._timestamp + INTERVAL 5 SECOND
error sql_error 1:87: a join needs a key equality in ON, between an expression of t and one of d: ON t.k = d.k

> CREATE STREAM paired AS SELECT t.sensor, d.site FROM temperatures t JOIN nowhere d ON t.sensor = d.id AND d._timestamp BETWEEN t._timestamp AND t._timestamp + INTERVAL 5 SECOND
error sql_error 1:74: unknown stream or view "nowhere": a join reads an existing stream (SHOW STREAMS lists them) or view (SHOW VIEWS)

> CREATE STREAM paired AS SELECT t.sensor FROM temperatures t JOIN devices d ON t.sensor = d.id JOIN jobs j ON j._payload = t.sensor
error sql_error 1:100: a continuous query joins two inputs, not 3: join two of them into a stream with one query, then join that stream with the next

> CREATE STREAM paired AS SELECT t.sensor, site FROM temperatures t JOIN devices d ON t.sensor = d.id AND d._timestamp BETWEEN t._timestamp AND t._timestamp + INTERVAL 5 SECOND
error sql_error 1:42: qualify site in a join of two streams: t.site or d.site (streams have no schema, so an unqualified payload field could be in either)

> CREATE STREAM paired AS SELECT t.sensor FROM temperatures t LEFT JOIN devices d ON t.sensor = d.id AND d._timestamp BETWEEN t._timestamp AND t._timestamp + INTERVAL 5 SECOND
error sql_error 0:0: continuous queries are not available on this node

# RIGHT and FULL [OUTER] JOIN of two streams (MySQL has no FULL JOIN:
# it is read at the token level).
> CREATE STREAM paired AS SELECT t.sensor FROM temperatures t RIGHT JOIN devices d ON t.sensor = d.id AND d._timestamp BETWEEN t._timestamp AND t._timestamp + INTERVAL 5 SECOND
error sql_error 0:0: continuous queries are not available on this node

> CREATE STREAM paired AS SELECT t.sensor, d.id FROM temperatures t FULL OUTER JOIN devices d ON t.sensor = d.id AND d._timestamp BETWEEN t._timestamp AND t._timestamp + INTERVAL 5 SECOND
error sql_error 0:0: continuous queries are not available on this node

> CREATE STREAM paired AS SELECT t.sensor, d.id FROM temperatures t FULL JOIN devices d ON t.sensor = d.id
error sql_error 1:90: a join of two streams needs time bounds in ON, which bound its state: AND d._timestamp BETWEEN t._timestamp - INTERVAL 5 SECOND AND t._timestamp + INTERVAL 5 SECOND (to look rows up instead, join a view)

> SELECT t.sensor, d.id FROM temperatures t FULL JOIN devices d ON t.sensor = d.id
error sql_error 1:43: FULL JOIN is not supported in ad-hoc queries (interval joins of continuous queries take it)

> SELECT t.sensor, d.id FROM temperatures t RIGHT OUTER JOIN devices d ON t.sensor = d.id
error sql_error 1:43: RIGHT JOIN is not supported: swap the tables and use LEFT JOIN

> CREATE STREAM paired AS SELECT t.sensor FROM temperatures t JOIN devices d ON t.sensor = d.id AND d._timestamp BETWEEN t._timestamp + INTERVAL 5 SECOND AND t._timestamp
error sql_error 1:79: the time bounds of the join are empty: d._timestamp - t._timestamp between 5s and 0s

> CREATE STREAM paired AS SELECT t.sensor, count(*) FROM temperatures t JOIN devices d ON t.sensor = d.id AND d._timestamp BETWEEN t._timestamp AND t._timestamp + INTERVAL 5 SECOND GROUP BY t.sensor, TUMBLING(INTERVAL 10 SECOND)
error sql_error 1:180: a join query outputs one row per joined pair: no GROUP BY, HAVING or window (aggregate its output stream with another query)

# Push queries join too; a bad join gets the same positioned errors.
> SELECT t.sensor FROM temperatures t JOIN devices d ON t.sensor = d.id EMIT CHANGES
error sql_error 1:55: a join of two streams needs time bounds in ON, which bound its state: AND d._timestamp BETWEEN t._timestamp - INTERVAL 5 SECOND AND t._timestamp + INTERVAL 5 SECOND (to look rows up instead, join a view)

> SELECT t.sensor, site FROM temperatures t JOIN devices d ON t.sensor = d.id AND d._timestamp BETWEEN t._timestamp AND t._timestamp + INTERVAL 5 SECOND EMIT CHANGES
error sql_error 1:18: qualify site in a join of two streams: t.site or d.site (streams have no schema, so an unqualified payload field could be in either)

> SELECT t.sensor FROM temperatures t JOIN devices d ON t.sensor = d.id AND d._timestamp BETWEEN t._timestamp AND t._timestamp + INTERVAL 5 SECOND EMIT FINAL
error sql_error 1:146: EMIT FINAL needs a window; a join query emits each joined pair (EMIT CHANGES, the default)

> SELECT t.sensor FROM temperatures t JOIN devices d ON t.sensor = d.id AND d._timestamp BETWEEN t._timestamp AND t._timestamp + INTERVAL 5 SECOND LIMIT 2 OFFSET 1 EMIT CHANGES
error sql_error 1:161: OFFSET is not supported in push queries

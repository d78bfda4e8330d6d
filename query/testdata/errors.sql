# Syntax errors point at the offending token.
> SELECT temp FORM temperatures
error sql_syntax 1:18: syntax error at "temperatures"

> SELECT temp,
> FROM temperatures
error sql_syntax 2:1: syntax error at "FROM"

> SELECT * FROM temperatures WHERE
error sql_syntax 1:33: syntax error: unexpected end of statement

> SELECT 'unterminated
error sql_syntax 1:8: syntax error: cannot read an unterminated string: 'unterminated

> SELECT `lag` FROM groups WHERE group = 'x'
error sql_syntax 1:32: syntax error at "group": group is a reserved word in SQL; quote it with backquotes: `group`

> SELECT lag FROM `groups`
error sql_syntax 1:12: syntax error at "FROM": lag is a reserved word in SQL; quote it with backquotes: `lag`

> SELECT 1; SELECT 2
error sql_syntax 1:11: only one statement can be run at a time

> ;
error sql_syntax 0:0: empty statement: nothing to run

> -- only a comment
error sql_syntax 0:0: empty statement: nothing to run

# Unknown tables and columns.
> SELECT * FROM temperature
error sql_error 1:15: unknown table "temperature": no statistics table or stream has this name (did you mean temperatures?); SHOW TABLES lists them

> SELECT tmp FROM temperatures
error sql_error 1:8: unknown column "tmp" (did you mean temp?); stream temperatures has the columns _offset, _timestamp, _topic, _client_id, _qos, _retain, _payload, _content_type, _user_properties, sensor, temp, unit, tags (payload fields as seen in 8 sampled records); to read a payload field not seen there, use _payload->>'$.tmp'

> SELECT t.site FROM temperatures t
error sql_error 1:8: unknown column "t.site"; stream t has the columns _offset, _timestamp, _topic, _client_id, _qos, _retain, _payload, _content_type, _user_properties, sensor, temp, unit, tags (payload fields as seen in 8 sampled records); to read a payload field not seen there, use _payload->>'$.site'

> SELECT x.temp FROM temperatures t
error sql_error 1:8: unknown table "x" in x.temp: the tables of this query are t

> SELECT _offset FROM temperatures JOIN devices ON id = sensor
error sql_error 1:8: column "_offset" is ambiguous: it is in temperatures and devices; qualify it, e.g. devices._offset

> SELECT * FROM stats.nope
error sql_error 1:15: unknown statistics table "nope": SHOW TABLES lists them

> SELECT * FROM nope.streams
error sql_error 1:15: unknown schema "nope" in nope.streams: use stats.<table> or stream.<name>

# Type mismatches found before reading any row.
> SELECT 'abc' * 2
error sql_error 1:8: type mismatch: * needs numbers, not text

> SELECT * FROM temperatures WHERE _timestamp > 'yesterday'
error sql_error 1:47: "yesterday" is not a timestamp (use RFC 3339, e.g. '2026-01-02T15:04:05Z', or '2026-01-02 15:04:05')

> SELECT _offset + _topic FROM temperatures
error sql_error 1:8: type mismatch: + needs numbers, not text

> SELECT 1 FROM temperatures WHERE _offset = 'x'
error sql_error 1:34: type mismatch: cannot compare int with text (_offset = "x")

> SELECT sum(_topic) FROM temperatures
error sql_error 1:8: type mismatch: sum() needs numbers, not text

> SELECT upper(3)
error sql_error 1:8: type mismatch in upper(): argument 1 is int, not text; usage: upper(s)

> SELECT _timestamp - _timestamp FROM jobs
error sql_error 1:8: type mismatch: - needs numbers, not timestamp (add or subtract INTERVAL n unit; use timestampdiff(unit, a, b) for differences)

# A payload value that does not fit the operation counts as NULL.
> SELECT temp > 25 FROM temperatures
temp > 25:bool
false
true
false
true
true
NULL
true
NULL

> SELECT sum(temp) FROM temperatures
sum(temp):float
170

> SELECT temp + 1 FROM temperatures WHERE _offset >= 5
temp + 1:float
NULL
31.5
NULL

# Misuse of aggregates, LIMIT, ORDER BY, GROUP BY.
> SELECT * FROM temperatures WHERE count(*) > 1
error sql_error 1:34: aggregate function count() is not allowed in WHERE (filter groups with HAVING)

> SELECT sensor FROM temperatures GROUP BY count(*)
error sql_error 1:42: GROUP BY cannot use an aggregate function

> SELECT count(sum(temp)) FROM temperatures
error sql_error 1:14: aggregate function sum() is not allowed inside another aggregate

> SELECT _offset FROM temperatures LIMIT -1
error sql_error 1:41: LIMIT must be a non-negative integer, not -1

> SELECT _offset FROM temperatures LIMIT _offset
error sql_error 1:40: LIMIT must be a constant number

> SELECT _offset FROM temperatures ORDER BY 5
error sql_error 1:43: ORDER BY 5: a number must name a select-list column (1 to 1)

> SELECT sensor, count(*) FROM temperatures GROUP BY 3
error sql_error 1:52: GROUP BY 3: a number must name a select-list expression (1 to 2)

> SELECT nofunc(1)
error sql_error 1:8: unknown function nofunc(); docs/sql.md lists the functions

> SELECT lower()
error sql_error 1:8: wrong number of arguments to lower(): 0 given; usage: lower(s)

> SELECT json_extract(_payload, 'a') FROM jobs
error sql_error 1:31: JSON path "a" must start with $

> SELECT date_trunc('week', now())
error sql_error 1:8: date_trunc unit "week" is not supported (use second, minute, hour, day, month or year)

# Unsupported SQL.
> SELECT a FROM (SELECT 1 AS a) AS s
error sql_error 1:15: subqueries are not supported

> SELECT (SELECT count(*) FROM jobs)
error sql_error 1:9: subqueries are not supported

> SELECT * FROM jobs WHERE EXISTS (SELECT _offset FROM devices)
error sql_error 1:34: subqueries are not supported

> SELECT * FROM jobs WHERE _offset = (SELECT max(_offset) FROM devices)
error sql_error 1:37: subqueries are not supported

> SELECT _offset FROM jobs UNION SELECT _offset FROM devices
error sql_error 1:26: UNION is not supported: run the queries one at a time

> SELECT * FROM jobs WHERE _offset IN (SELECT _offset FROM devices)
error sql_error 1:34: IN takes a list of values (subqueries are not supported)

> SELECT * FROM jobs j RIGHT JOIN devices d ON j._offset = d._offset
error sql_error 1:22: RIGHT JOIN is not supported: swap the tables and use LEFT JOIN

> SELECT * FROM jobs a JOIN devices b USING (_offset)
error sql_error 1:37: JOIN ... USING is not supported: write ON a.column = b.column

> SELECT row_number() OVER () FROM jobs
error sql_error 1:8: row_number() over () is not supported

> INSERT INTO jobs VALUES (1)
error sql_error 1:1: only SELECT, SHOW STREAMS, SHOW TABLES and DESCRIBE <table> are supported: SQL here is read-only

> DELETE FROM jobs
error sql_error 1:1: only SELECT, SHOW STREAMS, SHOW TABLES and DESCRIBE <table> are supported: SQL here is read-only

> SELECT * FROM jobs, jobs
error sql_error 1:21: table jobs appears twice in FROM: give each an alias (FROM jobs a JOIN jobs b ...)

> SHOW DATABASES
error sql_error 1:1: only SHOW TABLES and SHOW STREAMS are supported

> SELECT @x
error sql_error 0:0: variables and placeholders are not supported: @x

# Run-time errors that are not about types name the record.
> SELECT _offset FROM temperatures WHERE _topic REGEXP concat('(', sensor)
error sql_error 1:40: bad regular expression "(s1": error parsing regexp: missing closing ): `(s1` (stream temperatures, offset 0)

> SELECT count(*) FROM temperatures GROUP BY TUMBLING(INTERVAL 10 SECOND)
error sql_error 1:44: tumbling() is a window: it goes in the GROUP BY of a continuous query (CREATE STREAM <name> AS SELECT ... GROUP BY <keys>, TUMBLING(INTERVAL 10 SECOND))

> SELECT count(*) FROM temperatures EMIT CHANGES
error sql_error 0:0: push queries are not available on this node

> SHOW QUERIES
error sql_error 0:0: continuous queries are not available on this node

> TERMINATE QUERY
error sql_syntax 1:1: syntax error: write TERMINATE QUERY <id> (SHOW QUERIES lists them)

> CREATE STREAM hot AS SELECT sensor, count(*) FROM temperatures GROUP BY sensor, TUMBLING(INTERVAL 10 SECOND)
error sql_error 0:0: continuous queries are not available on this node

> PAUSE QUERY
error sql_syntax 1:1: syntax error: write PAUSE QUERY <id> (SHOW QUERIES lists them)

> RESUME QUERY hot now
error sql_syntax 1:18: syntax error: write RESUME QUERY <id> (SHOW QUERIES lists them)

> PAUSE QUERY hot
error sql_error 0:0: continuous queries are not available on this node

> INSERT INTO jobs VALUES (1)
error sql_error 1:1: only SELECT, SHOW STREAMS, SHOW TABLES and DESCRIBE <table> are supported: SQL here is read-only

> INSERT INTO jobs (a) SELECT sensor FROM temperatures
error sql_error 1:18: INSERT INTO <stream> SELECT ... takes no column list: the output records' fields are the select list's names (use AS to rename)

> INSERT INTO
error sql_syntax 1:12: syntax error: unexpected end of statement

> INSERT INTO jobs SELECT count(*) FROM temperatures
error sql_error 1:25: a continuous query that aggregates needs a window: GROUP BY <keys>, TUMBLING(INTERVAL 10 SECOND) (a push query, SELECT ... EMIT CHANGES, aggregates without one)

> INSERT INTO jobs SELECT sensor FROM temperatures
error sql_error 0:0: continuous queries are not available on this node

> DROP VIEW
error sql_syntax 1:10: syntax error: write DROP VIEW [IF EXISTS] <name> (SHOW VIEWS lists them)

> DROP VIEW a b
error sql_syntax 1:13: syntax error: write DROP VIEW [IF EXISTS] <name> (SHOW VIEWS lists them)

> SHOW VIEWS
error sql_error 0:0: continuous queries are not available on this node

> CREATE VIEW v AS SELECT sensor, count(*) FROM temperatures GROUP BY sensor
error sql_error 0:0: continuous queries are not available on this node

> CREATE VIEW v AS SELECT sensor FROM temperatures
error sql_error 1:18: a view aggregates: CREATE VIEW <name> AS SELECT <keys>, count(*) ... GROUP BY <keys>[, <window>] (a filter writes a stream: CREATE STREAM <name> AS SELECT ...)

> CREATE VIEW v AS INSERT INTO x VALUES (1)
error sql_error 1:18: only SELECT, SHOW STREAMS, SHOW TABLES and DESCRIBE <table> are supported: SQL here is read-only

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
error sql_error 1:25: unknown option partitions in WITH (...): the options are topic, qos and retain

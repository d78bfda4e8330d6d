> SELECT count(*), count(temp), count(unit), count(DISTINCT sensor) FROM temperatures
count(*):int | count(temp):int | count(unit):int | count(distinct sensor):int
8 | 7 | 4 | 4

> SELECT sensor, count(*) AS n, sum(temp) AS total, avg(temp) AS mean, min(temp) AS lo, max(temp) AS hi FROM temperatures WHERE typeof(temp) <> 'text' GROUP BY sensor ORDER BY sensor
sensor:text | n:int | total:float | mean:float | lo:float | hi:float
NULL | 1 | NULL | NULL | NULL | NULL
s1 | 3 | 74.5 | 24.833333333333332 | 21.5 | 30.5
s2 | 2 | 60 | 30 | 29 | 31
s3 | 1 | 35.5 | 35.5 | 35.5 | 35.5

# GROUP BY a NULL-able value: NULLs form one group (sorted first).
> SELECT unit, count(*) FROM temperatures GROUP BY unit ORDER BY unit
unit:text | count(*):int
NULL | 4
C | 4

> SELECT sensor, count(*) AS n FROM temperatures GROUP BY sensor HAVING n > 1 ORDER BY n DESC, sensor
sensor:text | n:int
s1 | 3
s2 | 2

> SELECT sensor, max(temp) FROM temperatures WHERE sensor IN ('s1', 's2') GROUP BY 1 HAVING max(temp) > 30 ORDER BY 1
sensor:text | max(temp):float
s1 | 30.5
s2 | 31

# Aggregates over no rows.
> SELECT count(*), sum(temp), avg(temp), min(temp) FROM temperatures WHERE _offset > 100
count(*):int | sum(temp):any | avg(temp):float | min(temp):any
0 | NULL | NULL | NULL

> SELECT sensor, count(*) FROM temperatures WHERE _offset > 100 GROUP BY sensor
sensor:any | count(*):int

# A column outside GROUP BY takes the value of the group's first row.
> SELECT site, id, count(*) FROM devices GROUP BY site ORDER BY site
site:text | id:text | count(*):int
east | s5 | 1
north | s1 | 2
south | s2 | 1

> SELECT _qos, count(*) FROM temperatures GROUP BY _qos ORDER BY _qos
_qos:int | count(*):int
0 | 1
1 | 7

> SELECT count(*) AS records, sum(length(_payload)) AS payload_bytes FROM jobs
records:int | payload_bytes:int
3 | 15

> SELECT sum(floor) + 0.5, avg(floor) FROM devices
sum(floor) + 0.5:float | avg(floor):float
6.5 | 2

# GROUP BY an expression, ORDER BY an aggregate not in the select list.
> SELECT substring(_topic, 1, 10) AS prefix FROM temperatures GROUP BY prefix ORDER BY count(*) DESC
prefix:text
sensors/s1
sensors/s2
sensors/s3
sensors/s4
sensors/s9

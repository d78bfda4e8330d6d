# Streams as tables: metadata columns and top-level JSON fields.
> SELECT _offset, _topic, _client_id, _qos, sensor, temp, unit FROM temperatures
_offset:int | _topic:text | _client_id:text | _qos:int | sensor:text | temp:any | unit:text
0 | sensors/s1/temperature | s1 | 1 | s1 | 21.5 | C
1 | sensors/s2/temperature | s2 | 1 | s2 | 31 | NULL
2 | sensors/s1/temperature | s1 | 1 | s1 | 22.5 | C
3 | sensors/s3/temperature | s3 | 1 | s3 | 35.5 | C
4 | sensors/s2/temperature | s2 | 1 | s2 | 29 | NULL
5 | sensors/s4/temperature | s4 | 1 | s4 | n/a | NULL
6 | sensors/s1/temperature | s1 | 1 | s1 | 30.5 | C
7 | sensors/s9/temperature | s9 | 0 | NULL | NULL | NULL

# The issue's example.
> SELECT temp FROM temperatures WHERE temp > 30
temp:float
31
35.5
30.5

> SELECT _offset, temp FROM temperatures WHERE temp >= 30 AND sensor = 's1'
_offset:int | temp:float
6 | 30.5

# Non-JSON payloads work through _payload; their fields are NULL.
> SELECT _offset, _payload, length(_payload) AS len FROM temperatures WHERE sensor IS NULL
_offset:int | _payload:text | len:int
7 | not json | 8

> SELECT _payload, _topic FROM jobs WHERE _topic = 'jobs/resize'
_payload:text | _topic:text
job 1 | jobs/resize
job 3 | jobs/resize

> SELECT _offset, _topic, _client_id, _retain, _payload, _content_type, _user_properties, id, site, floor FROM devices WHERE _offset = 3
_offset:int | _topic:text | _client_id:text | _retain:bool | _payload:text | _content_type:text | _user_properties:json | id:text | site:text | floor:any
3 | devices/s5 | registry | false | {"id":"s5","site":"east"} | NULL | NULL | s5 | east | NULL

> SELECT devices._offset, d.id FROM devices d WHERE d.site = 'north'
error sql_error 1:8: unknown table "devices" in devices._offset: the tables of this query are d

# JSON extraction: -> keeps the value, ->> gives text for objects/arrays.
> SELECT sensor, tags, tags->'$[1]', _payload->'$.tags', _payload->>'$.tags', _payload->>'$.tags[0]' FROM temperatures WHERE _offset = 3
sensor:text | tags:json | json_extract(tags, '$[1]'):text | json_extract(_payload, '$.tags'):json | json_unquote(json_extract(_payload, '$.tags')):text | json_unquote(json_extract(_payload, '$.tags[0]')):text
s3 | ["roof","south"] | south | ["roof","south"] | ["roof","south"] | roof

> SELECT json_extract(_payload, '$.temp') + 1 AS t1 FROM temperatures WHERE _offset < 2
t1:float
22.5
32

# Arithmetic, comparison and logic without FROM.
> SELECT 1 + 2 * 3, 7 / 2, 7 DIV 2, 7 % 3, -5 + 2.5, 10 / 0, 1 = 1.0, 'a' < 'b', NULL = NULL, NULL IS NULL, NOT (1 > 2)
1 + 2 * 3:int | 7 / 2:float | 7 div 2:int | 7 % 3:int | -5 + 2.5:float | 10 / 0:float | 1 = 1.0:bool | 'a' < 'b':bool | null = null:bool | null is null:bool | not 1 > 2:bool
7 | 3.5 | 3 | 1 | -2.5 | NULL | true | true | NULL | true | true

> SELECT 9223372036854775807 + 1, 2 * 3 - 4
9223372036854775807 + 1:float | 2 * 3 - 4:int
9223372036854776000 | 2

# Three-valued logic.
> SELECT NULL AND FALSE, NULL AND TRUE, NULL OR TRUE, NULL OR FALSE, TRUE XOR FALSE
null and false:bool | null and true:bool | null or true:bool | null or false:bool | true xor false:bool
false | NULL | true | NULL | true

> SELECT _offset FROM temperatures WHERE temp BETWEEN 22 AND 31
_offset:int
1
2
4
6

> SELECT _offset FROM temperatures WHERE temp NOT BETWEEN 22 AND 31
_offset:int
0
3

> SELECT _offset, sensor FROM temperatures WHERE sensor IN ('s2', 's3')
_offset:int | sensor:text
1 | s2
3 | s3
4 | s2

> SELECT _offset, sensor FROM temperatures WHERE sensor NOT IN ('s1', 's2') OR sensor IS NULL
_offset:int | sensor:text
3 | s3
5 | s4
7 | NULL

> SELECT _offset, _topic FROM temperatures WHERE _topic LIKE 'sensors/s_/%' AND _topic NOT LIKE '%s1%'
_offset:int | _topic:text
1 | sensors/s2/temperature
3 | sensors/s3/temperature
4 | sensors/s2/temperature
5 | sensors/s4/temperature
7 | sensors/s9/temperature

> SELECT _offset FROM temperatures WHERE _topic REGEXP 's[34]/'
_offset:int
3
5

# Mixed types in one field: '=' across types is false, typeof() tells them apart.
> SELECT _offset, temp, typeof(temp) FROM temperatures WHERE temp = 'n/a' OR typeof(temp) = 'float'
_offset:int | temp:any | typeof(temp):text
0 | 21.5 | float
2 | 22.5 | float
3 | 35.5 | float
5 | n/a | text
6 | 30.5 | float

> SELECT CASE WHEN temp > 30 THEN 'hot' WHEN temp > 25 THEN 'warm' ELSE 'cool' END AS feel, count(*) AS n FROM temperatures WHERE typeof(temp) IN ('int', 'float') GROUP BY feel ORDER BY feel
feel:text | n:int
cool | 2
hot | 3
warm | 1

> SELECT DISTINCT sensor FROM temperatures ORDER BY sensor
sensor:text
NULL
s1
s2
s3
s4

> SELECT DISTINCT _topic FROM jobs
_topic:text
jobs/resize
jobs/thumb

# _timestamp predicates: everything here was published within the last hour.
> SELECT count(*) FROM temperatures WHERE _timestamp > now() - INTERVAL 1 HOUR
count(*):int
8

> SELECT count(*) FROM temperatures WHERE _timestamp > now() + INTERVAL 1 MINUTE
count(*):int
0

> SELECT count(*) FROM temperatures WHERE _timestamp < '2020-01-01T00:00:00Z'
count(*):int
0

> SELECT count(*) FROM temperatures WHERE _timestamp BETWEEN date_sub(now(), INTERVAL 1 DAY) AND now()
count(*):int
8

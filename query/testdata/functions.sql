> SELECT lower('AbC'), upper('abc'), length('héllo'), char_length('héllo'), concat('a', 1, 2.5, true), concat('a', NULL), concat_ws('-', 'a', NULL, 'b')
lower('AbC'):text | upper('abc'):text | length('héllo'):int | char_length('héllo'):int | concat('a', 1, 2.5, true):text | concat('a', null):text | concat_ws('-', 'a', null, 'b'):text
abc | ABC | 6 | 5 | a12.5true | NULL | a-b

> SELECT substring('mqstream', 3), substring('mqstream', 3, 3), substring('mqstream', -6, 2), left('mqstream', 2), right('mqstream', 6), replace('a.b.c', '.', '/'), trim('  x  '), hex('AB'), hex(255)
substr('mqstream', 3):text | substr('mqstream', 3, 3):text | substr('mqstream', -6, 2):text | left('mqstream', 2):text | right('mqstream', 6):text | replace('a.b.c', '.', '/'):text | trim('  x  '):text | hex('AB'):text | hex(255):text
stream | str | st | mq | stream | a/b/c | x | 4142 | FF

> SELECT abs(-3), abs(-2.5), round(2.567, 2), round(2.5), floor(2.7), ceil(2.1), sqrt(16), pow(2, 10), mod(10, 3), greatest(1, 5, 3), least(2.5, 1)
abs(-3):int | abs(-2.5):float | round(2.567, 2):float | round(2.5):int | floor(2.7):int | ceil(2.1):int | sqrt(16):float | pow(2, 10):float | mod(10, 3):int | greatest(1, 5, 3):int | least(2.5, 1):int
3 | 2.5 | 2.57 | 3 | 2 | 3 | 4 | 1024 | 1 | 5 | 1

> SELECT coalesce(NULL, NULL, 'x'), ifnull(NULL, 2), nullif(1, 1), nullif(1, 2), if(1 > 2, 'yes', 'no'), typeof(NULL), typeof(1), typeof(1.5), typeof('a'), typeof(now())
coalesce(null, null, 'x'):text | ifnull(null, 2):int | nullif(1, 1):int | nullif(1, 2):int | if(1 > 2, 'yes', 'no'):text | typeof(null):text | typeof(1):text | typeof(1.5):text | typeof('a'):text | typeof(now()):text
x | 2 | NULL | 1 | no | null | int | float | text | timestamp

> SELECT CAST('42' AS SIGNED), CAST(2.6 AS SIGNED), CAST('2.5' AS DOUBLE), CAST(7 AS CHAR), CAST('2026-01-02T03:04:05Z' AS DATETIME), CAST('{"a":[1,2]}' AS JSON)
cast('42' as SIGNED):int | cast(2.6 as SIGNED):int | cast('2.5' as DOUBLE):float | cast(7 as CHAR):text | cast('2026-01-02T03:04:05Z' as DATETIME):timestamp | cast('{"a":[1,2]}' as JSON):json
42 | 3 | 2.5 | 7 | 2026-01-02T03:04:05Z | {"a":[1,2]}

> SELECT unix_timestamp('2026-01-02T03:04:05Z'), unix_millis('2026-01-02T03:04:05.5Z'), from_unixtime(1767323045), date_trunc('hour', '2026-01-02T03:04:05Z'), date_trunc('month', '2026-01-02T03:04:05Z')
unix_timestamp('2026-01-02T03:04:05Z'):float | unix_millis('2026-01-02T03:04:05.5Z'):int | from_unixtime(1767323045):timestamp | date_trunc('hour', '2026-01-02T03:04:05Z'):timestamp | date_trunc('month', '2026-01-02T03:04:05Z'):timestamp
1767323045 | 1767323045500 | 2026-01-02T03:04:05Z | 2026-01-02T03:00:00Z | 2026-01-01T00:00:00Z

> SELECT year('2026-01-02T03:04:05Z'), month('2026-01-02T03:04:05Z'), EXTRACT(minute FROM '2026-01-02T03:04:05Z'), TIMESTAMPDIFF(SECOND, '2026-01-02T03:04:05Z', '2026-01-02T03:05:00Z'), '2026-01-02T03:04:05Z' + INTERVAL 2 HOUR, DATE_ADD('2026-01-02T03:04:05Z', INTERVAL 1 DAY)
year('2026-01-02T03:04:05Z'):int | month('2026-01-02T03:04:05Z'):int | extract(minute from '2026-01-02T03:04:05Z'):int | timestampdiff(second, '2026-01-02T03:04:05Z', '2026-01-02T03:05:00Z'):int | '2026-01-02T03:04:05Z' + interval 2 hour:timestamp | date_add('2026-01-02T03:04:05Z', interval 1 day):timestamp
2026 | 1 | 4 | 55 | 2026-01-02T05:04:05Z | 2026-01-03T03:04:05Z

> SELECT json_extract('{"a":{"b":[10,20]}}', '$.a.b[1]'), json_unquote(json_extract('{"a":"x"}', '$.a')), json_valid('{"a":1}'), json_valid('{a:1}'), json_extract('[1,2]', '$[5]'), json_extract('not json', '$.a'), json_type('{"a":1}'), json_type('[1]'), json_type('"x"'), json_type('2.5')
json_extract('{"a":{"b":[10,20]}}', '$.a.b[1]'):int | json_unquote(json_extract('{"a":"x"}', '$.a')):text | json_valid('{"a":1}'):bool | json_valid('{a:1}'):bool | json_extract('[1,2]', '$[5]'):null | json_extract('not json', '$.a'):null | json_type('{"a":1}'):text | json_type('[1]'):text | json_type('"x"'):text | json_type('2.5'):text
20 | x | true | false | NULL | NULL | OBJECT | ARRAY | STRING | DOUBLE

> SELECT _payload->>'$."sensor"', _payload->'$.temp' * 2 FROM temperatures WHERE _offset = 1
json_unquote(json_extract(_payload, '$."sensor"')):text | json_extract(_payload, '$.temp') * 2:int
s2 | 62

> SELECT upper(_client_id) AS who, count(*) FROM temperatures GROUP BY who ORDER BY who
who:text | count(*):int
S1 | 3
S2 | 2
S3 | 1
S4 | 1
S9 | 1

> SELECT date_trunc('day', _timestamp) = date_trunc('day', now()) AS today, count(*) FROM jobs GROUP BY today
today:bool | count(*):int
true | 3

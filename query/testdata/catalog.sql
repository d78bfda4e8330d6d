> SHOW TABLES
name:text | kind:text | description:text
streams | statistics | one row per stream: size, offsets, retention
append_throughput | statistics | records and bytes appended per second, per stream (each record counted once across the cluster)
read_throughput | statistics | records and bytes read per second, per stream, on every node (consumer groups, REST, SQL)
groups | statistics | one row per consumer group ($share/<group>/<filter>)
consumers | statistics | one row per connected member of a consumer group
nodes | statistics | one row per member of the cluster (this node alone when standalone)
shards | statistics | one row per shard of the cluster, as this node sees it (none when standalone)
sessions | statistics | one row per MQTT session: connected clients and sessions kept for absent ones
queries | statistics | one row per continuous query of every node (SHOW QUERIES: this node's)
append_latency | statistics | latency of appends (submit to durable) over the last minute, one row per node
devices | stream | stream: 4 records, offsets 0..4
jobs | stream | stream: 3 records, offsets 0..3
temperatures | stream | stream: 8 records, offsets 0..8

> SELECT name, records, first_offset, last_offset, next_offset, retention, retention_max_age_s FROM streams ORDER BY name
name:text | records:int | first_offset:int | last_offset:int | next_offset:int | retention:text | retention_max_age_s:float
devices | 4 | 0 | 3 | 4 | unlimited | NULL
jobs | 3 | 0 | 2 | 3 | unlimited | NULL
temperatures | 8 | 0 | 7 | 8 | unlimited | NULL

> DESCRIBE temperatures
column:text | type:text | description:text
_offset | int | record offset in the stream (dense, from 0)
_timestamp | timestamp | server time the record was appended (never decreases within a stream)
_topic | text | MQTT topic the record was published on
_client_id | text | publisher's MQTT client id (empty for REST writes)
_qos | int | publish QoS (0, 1, 2)
_retain | bool | publish retain flag
_payload | text | the payload as text (binary payloads: use hex(_payload) or length(_payload))
_content_type | text | MQTT 5 content type (NULL if none)
_user_properties | json | MQTT 5 user properties as [{"key":..,"value":..}] (NULL if none)
sensor | text | payload field, in 7 of 8 sampled records
temp | number 6, text 1 | payload field, in 7 of 8 sampled records
unit | text | payload field, in 4 of 8 sampled records
tags | json | payload field, in 1 of 8 sampled records

> DESC devices
column:text | type:text | description:text
_offset | int | record offset in the stream (dense, from 0)
_timestamp | timestamp | server time the record was appended (never decreases within a stream)
_topic | text | MQTT topic the record was published on
_client_id | text | publisher's MQTT client id (empty for REST writes)
_qos | int | publish QoS (0, 1, 2)
_retain | bool | publish retain flag
_payload | text | the payload as text (binary payloads: use hex(_payload) or length(_payload))
_content_type | text | MQTT 5 content type (NULL if none)
_user_properties | json | MQTT 5 user properties as [{"key":..,"value":..}] (NULL if none)
id | text | payload field, in 4 of 4 sampled records
site | text | payload field, in 4 of 4 sampled records
floor | number | payload field, in 3 of 4 sampled records

> DESCRIBE stats.streams
column:text | type:text | description:text
name | text | stream name
records | int | records kept (next_offset - first_offset)
bytes | int | encoded size of the records kept, in bytes
first_offset | int | offset of the oldest record kept
last_offset | int | offset of the newest record (NULL if the stream is empty)
next_offset | int | offset the next record will get
created_at | timestamp | when the stream was created
last_append | timestamp | timestamp of the newest record (NULL if none)
retention | text | retention limits in words ('unlimited' if none)
retention_max_age_s | float | records older than this many seconds are deleted (NULL: no age limit)
retention_max_bytes | int | the oldest records are deleted beyond this many bytes (NULL: no limit)
retention_max_records | int | the oldest records are deleted beyond this many records (NULL: no limit)

> DESCRIBE groups
column:text | type:text | description:text
group | text | group name (a reserved word: write `group`)
filter | text | topic filter of the group
strategy | text | dispatch strategy
members | int | members connected now
lag | int | matching records not yet done (a reserved word: write `lag`)
in_flight | int | deliveries awaiting an acknowledgement
delivered | int | deliveries since the node started (redeliveries included)
acked | int | acknowledgements since the node started
redelivered | int | redeliveries since the node started (ack timeout or member gone)
dead_lettered | int | records moved to the dead-letter stream since the node started
oldest_unacked_age | float | seconds the oldest unacknowledged delivery has waited (0 if none)
dead_letter_stream | text | stream receiving dead letters
created_at | timestamp | when the group was created
node | text | node running the group (in a cluster every node runs its own)

> SELECT stream_name, throughput_1min, bytes_10min FROM append_throughput ORDER BY stream_name
stream_name:text | throughput_1min:float | bytes_10min:float
devices | 0 | 0
jobs | 0 | 0
temperatures | 0 | 0

> SELECT * FROM stats.groups
group:text | filter:text | strategy:text | members:int | lag:int | in_flight:int | delivered:int | acked:int | redelivered:int | dead_lettered:int | oldest_unacked_age:float | dead_letter_stream:text | created_at:timestamp | node:text

> SELECT * FROM consumers
group:text | filter:text | client_id:text | in_flight:int | window:int | delivered:int | acked:int | qos:int | connected_at:timestamp | node:text

> SELECT count(*) FROM stream.jobs
count(*):int
3

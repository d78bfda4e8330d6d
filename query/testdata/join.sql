# Inner join: only temperatures with a known device.
> SELECT t._offset, t.sensor, d.site FROM temperatures t JOIN devices d ON d.id = t.sensor ORDER BY t._offset
_offset:int | sensor:text | site:text
0 | s1 | north
1 | s2 | south
2 | s1 | north
3 | s3 | north
4 | s2 | south
6 | s1 | north

# Left join: NULLs where no device matches (s4, and the non-JSON record).
> SELECT t._offset, t.sensor, d.site, d.floor FROM temperatures t LEFT JOIN devices d ON d.id = t.sensor ORDER BY t._offset
_offset:int | sensor:text | site:text | floor:int
0 | s1 | north | 1
1 | s2 | south | 2
2 | s1 | north | 1
3 | s3 | north | 3
4 | s2 | south | 2
5 | s4 | NULL | NULL
6 | s1 | north | 1
7 | NULL | NULL | NULL

> SELECT d.id, count(t._offset) AS readings, avg(t.temp) AS mean FROM devices d LEFT JOIN temperatures t ON t.sensor = d.id GROUP BY d.id ORDER BY d.id
id:text | readings:int | mean:float
s1 | 3 | 24.833333333333332
s2 | 2 | 30
s3 | 1 | 35.5
s5 | 0 | NULL

# Conditions on the right table in ON keep unmatched left rows; in WHERE they drop them.
> SELECT d.id, t._offset FROM devices d LEFT JOIN temperatures t ON t.sensor = d.id AND t.temp > 30 ORDER BY d.id, t._offset
id:text | _offset:int
s1 | 6
s2 | 1
s3 | 3
s5 | NULL

> SELECT d.id, t._offset FROM devices d LEFT JOIN temperatures t ON t.sensor = d.id WHERE t.temp > 30 ORDER BY d.id
id:text | _offset:int
s1 | 6
s2 | 1
s3 | 3

> SELECT d.id, t._offset FROM devices d LEFT JOIN temperatures t ON t.sensor = d.id WHERE t._offset IS NULL
id:text | _offset:int
s5 | NULL

# Non-equi and cross joins.
> SELECT a.id, b.id FROM devices a JOIN devices b ON a.floor < b.floor ORDER BY a.id, b.id
id:text | id:text
s1 | s2
s1 | s3
s2 | s3

> SELECT count(*) FROM devices, jobs
count(*):int
12

> SELECT d.site, j._payload FROM devices d CROSS JOIN jobs j WHERE d.id = 's5' ORDER BY j._offset
site:text | _payload:text
east | job 1
east | job 2
east | job 3

# Three tables.
> SELECT t._offset, d.site, s.records FROM temperatures t JOIN devices d ON d.id = t.sensor LEFT JOIN streams s ON s.name = 'devices' WHERE t.temp > 30 ORDER BY t._offset
_offset:int | site:text | records:int
1 | south | 4
3 | north | 4
6 | north | 4

# Statistics tables join streams.
> SELECT s.name, s.records, a.throughput_1min FROM streams s JOIN append_throughput a ON a.stream_name = s.name ORDER BY s.records DESC
name:text | records:int | throughput_1min:float
temperatures | 8 | 0
devices | 4 | 0
jobs | 3 | 0

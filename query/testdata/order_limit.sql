> SELECT _offset FROM temperatures ORDER BY _offset DESC LIMIT 3
_offset:int
7
6
5

> SELECT _offset FROM temperatures ORDER BY _offset LIMIT 2 OFFSET 5
_offset:int
5
6

> SELECT _offset FROM temperatures LIMIT 5, 2
_offset:int
5
6

> SELECT _offset FROM temperatures LIMIT 0
_offset:int

> SELECT _offset, temp FROM temperatures WHERE typeof(temp) = 'float' ORDER BY temp DESC LIMIT 2
_offset:int | temp:float
3 | 35.5
6 | 30.5

# NULLs sort first ascending, last descending.
> SELECT _offset, unit FROM temperatures ORDER BY unit, _offset
_offset:int | unit:text
1 | NULL
4 | NULL
5 | NULL
7 | NULL
0 | C
2 | C
3 | C
6 | C

> SELECT _offset, unit FROM temperatures ORDER BY unit DESC, _offset DESC
_offset:int | unit:text
6 | C
3 | C
2 | C
0 | C
7 | NULL
5 | NULL
4 | NULL
1 | NULL

# Mixed types sort by type class: NULL, bool, numbers, text.
> SELECT _offset, temp FROM temperatures ORDER BY temp
_offset:int | temp:any
7 | NULL
0 | 21.5
2 | 22.5
4 | 29
6 | 30.5
1 | 31
3 | 35.5
5 | n/a

> SELECT sensor AS s, _offset FROM temperatures WHERE _offset < 4 ORDER BY s DESC, 2
s:text | _offset:int
s3 | 3
s2 | 1
s1 | 0
s1 | 2

> SELECT _offset AS o FROM temperatures ORDER BY o DESC LIMIT 1
o:int
7

> SELECT _offset FROM temperatures WHERE sensor = 's1' ORDER BY _timestamp DESC LIMIT 2
_offset:int
6
2

> SELECT name FROM streams ORDER BY name LIMIT 1, 1
name:text
jobs

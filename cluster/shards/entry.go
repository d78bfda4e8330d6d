package shards

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/mqstream/mqstream/streams"
)

// Encodings of a Raft entry (version byte first): version 1 holds
// appends, creations and deletions of streams; version 2 may also hold
// key/value writes (kindKV); version 3 may also hold appends fenced by a
// term (SubmitFenced); version 4 may also hold creations and deletions
// with an id (kindCreateID, kindDeleteID); version 5 holds what 4 does,
// and tells the state machine to refuse a retry older than its window
// (dedupe.go: the floors). An entry is encoded in the lowest version that
// holds it, byte for byte as before the higher versions existed, or in
// version 5 once every member knows it (Options.DedupeFloors). A node that only knows a lower version cannot decode
// the entry (it logs and skips it), so every node must run a version
// that knows it before the shards' key/value namespaces are written, or
// queries run (fenced appends), or streams are created and deleted with
// ids (Options.AdminIDs says when every member announces that it can).
const (
	entryVersion1 = 1
	entryVersion2 = 2
	entryVersion3 = 3
	entryVersion4 = 4
	entryVersion5 = 5
)

// Command kinds.
const (
	kindAppend = 1 // records for a stream
	kindCreate = 2 // create a stream with a retention
	kindDelete = 3 // delete a stream and its records
	kindKV     = 4 // writes to the shard's key/value namespace (version 2)
	// The encoding of a kindCreate or kindDelete with an id (version 4);
	// decoded, the command's kind is kindCreate or kindDelete.
	kindCreateID = 5
	kindDeleteID = 6
)

// Append flags of the encoding.
const (
	appendNoSync = 1
	appendFenced = 2 // a term follows the producer and sequence (version 3)
)

// KV write flags of the encoding.
const (
	kvPut          = 0
	kvDelete       = 1
	kvDeletePrefix = 2
)

// ErrBadEntry: a Raft entry or forward request could not be decoded.
var ErrBadEntry = errors.New("shards: malformed entry")

// appendCmd is one command of an entry: an append of records to one
// stream (the common case, hence the name), or the creation or deletion
// of a stream.
type appendCmd struct {
	kind    byte
	stream  string
	noSync  bool
	records [][]byte // kindAppend: each encoded by streams.AppendEncoded, timestamp 0
	// id names a kindAppend across retries: the proposing node's
	// producer (a random number drawn when its shards start) and a
	// sequence number.
	// A retried forward carries the same id, and the state machine
	// answers it with the first append's result instead of storing the
	// records again (dedupe.go). A kindCreate or kindDelete may carry
	// one too (version 4), for the same reason: a retried creation is
	// answered as the first one was, and a retried deletion does not
	// delete the stream created anew since.
	id        appendID
	retention streams.Retention // kindCreate
	// kindKV: the writes, and the term of the leadership that proposed
	// them; the state machine applies them only in an entry of that
	// term (kv.go). The command's stream is empty. A kindAppend with a
	// term is fenced the same way (SubmitFenced); 0 is not fenced.
	kv   []streams.KVWrite
	term uint64
}

// retriable reports whether c may be proposed again after an attempt
// whose outcome is unknown (errOutcomeUnknown): an unfenced append, a
// creation or a deletion with an id, which the state machine applies at
// most once.
func (c *appendCmd) retriable() bool {
	return (c.kind == kindAppend || admin(*c)) && c.id.producer != 0 && c.term == 0
}

// encodeRecords encodes records for an entry or a forward request.
func encodeRecords(recs []streams.Record) [][]byte {
	out := make([][]byte, len(recs))
	for i := range recs {
		out[i] = streams.AppendEncoded(nil, &recs[i], 0)
	}
	return out
}

// encodeEntry encodes the appends of one proposal, stamped ts.
func encodeEntry(ts time.Time, cmds []appendCmd) []byte {
	return encodeEntryAs(ts, cmds, entryVersion1)
}

// encodeEntryAs is encodeEntry in at least version least.
func encodeEntryAs(ts time.Time, cmds []appendCmd, least byte) []byte {
	n := 16
	version := least
	for _, c := range cmds {
		n += len(c.stream) + 16
		for _, r := range c.records {
			n += len(r) + binary.MaxVarintLen32
		}
		if c.kind == kindAppend && c.term != 0 {
			version = max(version, entryVersion3)
		}
		if admin(c) && c.id.producer != 0 {
			version = max(version, entryVersion4)
		}
		if c.kind == kindKV {
			version = max(version, entryVersion2)
			for _, w := range c.kv {
				n += len(w.Key) + len(w.Value) + 1 + 2*binary.MaxVarintLen32
			}
		}
	}
	b := make([]byte, 0, n)
	b = append(b, version)
	b = binary.AppendVarint(b, ts.UnixNano())
	b = binary.AppendUvarint(b, uint64(len(cmds)))
	for _, c := range cmds {
		b = appendCmdTo(b, c)
	}
	return b
}

func appendCmdTo(b []byte, c appendCmd) []byte {
	withID := admin(c) && c.id.producer != 0
	switch {
	case withID && c.kind == kindCreate:
		b = append(b, kindCreateID)
	case withID:
		b = append(b, kindDeleteID)
	default:
		b = append(b, c.kind)
	}
	b = appendBytes(b, []byte(c.stream))
	if withID {
		b = binary.AppendUvarint(b, c.id.producer)
		b = binary.AppendUvarint(b, c.id.seq)
	}
	switch c.kind {
	case kindCreate:
		b = binary.AppendVarint(b, int64(c.retention.MaxAge))
		b = binary.AppendVarint(b, c.retention.MaxBytes)
		return binary.AppendVarint(b, c.retention.MaxRecords)
	case kindDelete:
		return b
	case kindKV:
		b = binary.AppendUvarint(b, c.term)
		b = binary.AppendUvarint(b, uint64(len(c.kv)))
		for _, w := range c.kv {
			flag := byte(kvPut)
			switch {
			case w.DeletePrefix:
				flag = kvDeletePrefix
			case w.Delete:
				flag = kvDelete
			}
			b = append(b, flag)
			b = appendBytes(b, w.Key)
			if flag == kvPut {
				b = appendBytes(b, w.Value)
			}
		}
		return b
	}
	flags := byte(0)
	if c.noSync {
		flags |= appendNoSync
	}
	if c.term != 0 {
		flags |= appendFenced
	}
	b = append(b, flags)
	b = binary.AppendUvarint(b, c.id.producer)
	b = binary.AppendUvarint(b, c.id.seq)
	if c.term != 0 {
		b = binary.AppendUvarint(b, c.term)
	}
	b = binary.AppendUvarint(b, uint64(len(c.records)))
	for _, r := range c.records {
		b = appendBytes(b, r)
	}
	return b
}

func appendBytes(b, v []byte) []byte {
	b = binary.AppendUvarint(b, uint64(len(v)))
	return append(b, v...)
}

// decodeEntry decodes an entry encoded by encodeEntry; the records alias b.
func decodeEntry(b []byte) (time.Time, []appendCmd, error) {
	_, ts, cmds, err := decodeEntryVersion(b)
	return ts, cmds, err
}

// decodeEntryVersion is decodeEntry that also returns the entry's
// encoding version.
func decodeEntryVersion(b []byte) (byte, time.Time, []appendCmd, error) {
	d := decoder{b: b}
	v := d.byte()
	if d.err == nil && (v < entryVersion1 || v > entryVersion5) {
		return 0, time.Time{}, nil, fmt.Errorf("%w: version %d", ErrBadEntry, v)
	}
	ts := time.Unix(0, d.varint())
	n := d.count()
	cmds := make([]appendCmd, 0, n)
	for i := 0; i < n && d.err == nil; i++ {
		c := d.appendCmd()
		if c.kind == kindKV && v < entryVersion2 && d.err == nil {
			d.err = fmt.Errorf("key/value writes in an entry of version %d", v)
		}
		if c.kind == kindAppend && c.term != 0 && v < entryVersion3 && d.err == nil {
			d.err = fmt.Errorf("a fenced append in an entry of version %d", v)
		}
		if admin(c) && c.id.producer != 0 && v < entryVersion4 && d.err == nil {
			d.err = fmt.Errorf("a creation or deletion with an id in an entry of version %d", v)
		}
		cmds = append(cmds, c)
	}
	if d.err == nil && len(d.b) != 0 {
		d.err = fmt.Errorf("%d trailing bytes", len(d.b))
	}
	if d.err != nil {
		return 0, time.Time{}, nil, fmt.Errorf("%w: %v", ErrBadEntry, d.err)
	}
	return v, ts, cmds, nil
}

// decoder reads the entry encoding; the first error sticks.
type decoder struct {
	b   []byte
	err error
}

var errShort = errors.New("truncated")

func (d *decoder) byte() byte {
	if d.err != nil {
		return 0
	}
	if len(d.b) == 0 {
		d.err = errShort
		return 0
	}
	v := d.b[0]
	d.b = d.b[1:]
	return v
}

func (d *decoder) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.err = errShort
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) varint() int64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.err = errShort
		return 0
	}
	d.b = d.b[n:]
	return v
}

// count reads a number of items, each at least one byte long.
// shard reads a shard index: a uvarint that must fit an int32, so that
// no request names a shard that turns negative as an int.
func (d *decoder) shard() int {
	v := d.uvarint()
	if d.err == nil && v > math.MaxInt32 {
		d.err = fmt.Errorf("shard %d out of range", v)
		return 0
	}
	return int(v)
}

func (d *decoder) count() int {
	n := d.uvarint()
	if d.err == nil && n > uint64(len(d.b)) {
		d.err = errShort
		return 0
	}
	return int(n)
}

func (d *decoder) bytes() []byte {
	n := d.count()
	if d.err != nil {
		return nil
	}
	v := d.b[:n:n]
	d.b = d.b[n:]
	return v
}

func (d *decoder) appendCmd() appendCmd {
	c := appendCmd{kind: d.byte()}
	c.stream = string(d.bytes())
	if c.kind == kindCreateID || c.kind == kindDeleteID {
		c.kind -= kindCreateID - kindCreate
		c.id.producer = d.uvarint()
		c.id.seq = d.uvarint()
		if c.id.producer == 0 && d.err == nil {
			d.err = errors.New("a creation or deletion with producer 0")
		}
	}
	switch c.kind {
	case kindCreate:
		c.retention = streams.Retention{MaxAge: time.Duration(d.varint()), MaxBytes: d.varint(), MaxRecords: d.varint()}
		return c
	case kindDelete:
		return c
	case kindKV:
		c.term = d.uvarint()
		n := d.count()
		c.kv = make([]streams.KVWrite, 0, n)
		for i := 0; i < n && d.err == nil; i++ {
			var w streams.KVWrite
			switch flag := d.byte(); flag {
			case kvPut:
				w.Key, w.Value = d.bytes(), d.bytes()
			case kvDelete:
				w.Key, w.Delete = d.bytes(), true
			case kvDeletePrefix:
				w.Key, w.DeletePrefix = d.bytes(), true
			default:
				if d.err == nil {
					d.err = fmt.Errorf("key/value write flag %d", flag)
				}
			}
			c.kv = append(c.kv, w)
		}
		return c
	case kindAppend:
	default:
		if d.err == nil {
			d.err = fmt.Errorf("command kind %d", c.kind)
		}
		return c
	}
	flags := d.byte()
	c.noSync = flags&appendNoSync != 0
	c.id.producer = d.uvarint()
	c.id.seq = d.uvarint()
	if flags&appendFenced != 0 {
		if c.term = d.uvarint(); c.term == 0 && d.err == nil {
			d.err = errors.New("a fenced append with term 0")
		}
	}
	n := d.count()
	c.records = make([][]byte, 0, n)
	for i := 0; i < n && d.err == nil; i++ {
		c.records = append(c.records, d.bytes())
	}
	return c
}

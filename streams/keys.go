package streams

import (
	"encoding/binary"
	"fmt"
	"time"
)

// Key tags; see the package documentation for the layout.
const (
	tagNextID  = 'x'
	tagMeta    = 'm'
	tagState   = 's'
	tagRecord  = 'r'
	tagApplied = 'a'
	tagKV      = 'k'
)

func nextIDKey() []byte { return []byte{tagNextID} }

// appliedKey is the applied-index marker of replicated log name ("" for
// the store's unnamed log, whose key is the tag alone).
func appliedKey(name string) []byte { return append([]byte{tagApplied}, name...) }

func metaKey(name string) []byte {
	return append([]byte{tagMeta}, name...)
}

func stateKey(id uint64) []byte {
	return binary.BigEndian.AppendUint64([]byte{tagState}, id)
}

func recordKey(id, offset uint64) []byte {
	return appendRecordKey(make([]byte, 0, 17), id, offset)
}

func appendRecordKey(dst []byte, id, offset uint64) []byte {
	dst = append(dst, tagRecord)
	dst = binary.BigEndian.AppendUint64(dst, id)
	return binary.BigEndian.AppendUint64(dst, offset)
}

// streamRecordsEnd is the exclusive upper bound of every record key of stream id.
func streamRecordsEnd(id uint64) []byte {
	return binary.BigEndian.AppendUint64([]byte{tagRecord}, id+1)
}

func offsetFromKey(k []byte) uint64 {
	return binary.BigEndian.Uint64(k[9:17])
}

// streamMeta is the durable description of a stream.
type streamMeta struct {
	id        uint64
	created   time.Time
	retention Retention
}

const metaVersion1 = 1

func encodeMeta(m streamMeta) []byte {
	b := []byte{metaVersion1}
	b = binary.AppendUvarint(b, m.id)
	b = binary.AppendVarint(b, m.created.UnixNano())
	b = binary.AppendVarint(b, int64(m.retention.MaxAge))
	b = binary.AppendVarint(b, m.retention.MaxBytes)
	b = binary.AppendVarint(b, m.retention.MaxRecords)
	return b
}

func decodeMeta(b []byte) (streamMeta, error) {
	d := decoder{b: b}
	if v := d.byte(); d.err == nil && v != metaVersion1 {
		return streamMeta{}, fmt.Errorf("%w: unknown stream metadata version %d", ErrCorrupt, v)
	}
	m := streamMeta{id: d.uvarint()}
	m.created = time.Unix(0, d.varint())
	m.retention.MaxAge = time.Duration(d.varint())
	m.retention.MaxBytes = d.varint()
	m.retention.MaxRecords = d.varint()
	if d.err != nil {
		return streamMeta{}, fmt.Errorf("%w: stream metadata: %v", ErrCorrupt, d.err)
	}
	return m, nil
}

// streamState is the durable position of a stream, rewritten in the same batch
// as every change to its records.
type streamState struct {
	first  uint64 // offset of the oldest record kept
	next   uint64 // offset the next record gets
	bytes  int64  // total encoded size of the records kept
	lastTS int64  // timestamp (unix ns) of the newest record ever appended
}

const stateVersion1 = 1

func encodeState(s streamState) []byte {
	b := []byte{stateVersion1}
	b = binary.AppendUvarint(b, s.first)
	b = binary.AppendUvarint(b, s.next)
	b = binary.AppendVarint(b, s.bytes)
	b = binary.AppendVarint(b, s.lastTS)
	return b
}

func decodeState(b []byte) (streamState, error) {
	d := decoder{b: b}
	if v := d.byte(); d.err == nil && v != stateVersion1 {
		return streamState{}, fmt.Errorf("%w: unknown stream state version %d", ErrCorrupt, v)
	}
	s := streamState{first: d.uvarint(), next: d.uvarint(), bytes: d.varint(), lastTS: d.varint()}
	if d.err != nil {
		return streamState{}, fmt.Errorf("%w: stream state: %v", ErrCorrupt, d.err)
	}
	return s, nil
}

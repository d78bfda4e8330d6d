package raftlog

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/hashicorp/raft"
)

// ErrCorrupt is wrapped by the errors for stored values that cannot be
// decoded.
var ErrCorrupt = errors.New("raftlog: corrupt value")

// logVersion1 leads every encoded log entry:
//
//	0x01 uvarint(Index) uvarint(Term) byte(Type)
//	     uvarint(len(Data)) Data uvarint(len(Extensions)) Extensions
//	     byte(hasTime) [varint(unix seconds) uvarint(nanoseconds)]
//
// A zero AppendedAt is stored as hasTime 0 and read back as the zero time.
const logVersion1 = 1

// appendLog appends the encoding of l to dst.
func appendLog(dst []byte, l *raft.Log) []byte {
	dst = append(dst, logVersion1)
	dst = binary.AppendUvarint(dst, l.Index)
	dst = binary.AppendUvarint(dst, l.Term)
	dst = append(dst, byte(l.Type))
	dst = binary.AppendUvarint(dst, uint64(len(l.Data)))
	dst = append(dst, l.Data...)
	dst = binary.AppendUvarint(dst, uint64(len(l.Extensions)))
	dst = append(dst, l.Extensions...)
	if l.AppendedAt.IsZero() {
		return append(dst, 0)
	}
	dst = append(dst, 1)
	dst = binary.AppendVarint(dst, l.AppendedAt.Unix())
	return binary.AppendUvarint(dst, uint64(l.AppendedAt.Nanosecond()))
}

// decodeLog decodes b into l. Data and Extensions share one copy of b, so
// l does not alias b.
func decodeLog(b []byte, l *raft.Log) error {
	d := decoder{b: b}
	if v := d.byte(); d.err == nil && v != logVersion1 {
		return fmt.Errorf("%w: unknown log entry version %d", ErrCorrupt, v)
	}
	index := d.uvarint()
	term := d.uvarint()
	typ := raft.LogType(d.byte())
	data := d.bytes()
	ext := d.bytes()
	var at time.Time
	switch d.byte() {
	case 0:
	case 1:
		sec := d.varint()
		nsec := d.uvarint()
		if nsec >= uint64(time.Second) {
			d.fail("nanoseconds out of range")
		}
		at = time.Unix(sec, int64(nsec))
	default:
		d.fail("bad time flag")
	}
	if d.err == nil && len(d.b) > 0 {
		d.fail("trailing bytes")
	}
	if d.err != nil {
		return d.err
	}
	// One allocation for both byte fields; empty fields stay nil.
	buf := make([]byte, 0, len(data)+len(ext))
	*l = raft.Log{Index: index, Term: term, Type: typ, AppendedAt: at}
	if len(data) > 0 {
		buf = append(buf, data...)
		l.Data = buf[:len(data):len(data)]
	}
	if len(ext) > 0 {
		l.Extensions = append(buf[len(buf):], ext...)
	}
	return nil
}

// decoder reads from b until the first error, which it keeps; later reads
// return zero values.
type decoder struct {
	b   []byte
	err error
}

func (d *decoder) fail(what string) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: log entry: %s", ErrCorrupt, what)
	}
	d.b = nil
}

func (d *decoder) byte() byte {
	if len(d.b) == 0 {
		d.fail("truncated")
		return 0
	}
	v := d.b[0]
	d.b = d.b[1:]
	return v
}

func (d *decoder) uvarint() uint64 {
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail("truncated or overlong varint")
		return 0
	}
	d.b = d.b[n:]
	return v
}

// varint reads a zigzag-encoded signed varint, as binary.AppendVarint
// writes it.
func (d *decoder) varint() int64 {
	u := d.uvarint()
	return int64(u>>1) ^ -int64(u&1)
}

// bytes reads a length-prefixed field; the result aliases the input.
func (d *decoder) bytes() []byte {
	n := d.uvarint()
	if n > uint64(len(d.b)) {
		d.fail("truncated field")
		return nil
	}
	v := d.b[:n]
	d.b = d.b[n:]
	return v
}

// Package bincode reads the small binary encodings of the cluster's
// frames and entries: bytes, varints and length-prefixed byte strings.
// A Reader keeps the first error and returns zero values after it, so a
// decoder reads every field and checks Err once.
package bincode

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"slices"
)

// ErrShort: the input ended inside a field.
var ErrShort = errors.New("truncated")

// Reader consumes B from the front.
type Reader struct {
	B   []byte
	Err error // the first error
}

// Byte reads one byte.
func (d *Reader) Byte() byte {
	if d.Err != nil {
		return 0
	}
	if len(d.B) == 0 {
		d.Err = ErrShort
		return 0
	}
	v := d.B[0]
	d.B = d.B[1:]
	return v
}

// Uvarint reads an unsigned varint.
func (d *Reader) Uvarint() uint64 {
	if d.Err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.B)
	if n <= 0 {
		d.Err = ErrShort
		return 0
	}
	d.B = d.B[n:]
	return v
}

// Varint reads a signed varint.
func (d *Reader) Varint() int64 {
	if d.Err != nil {
		return 0
	}
	v, n := binary.Varint(d.B)
	if n <= 0 {
		d.Err = ErrShort
		return 0
	}
	d.B = d.B[n:]
	return v
}

// Bytes reads a uvarint length and that many bytes; the result aliases
// the input.
func (d *Reader) Bytes() []byte {
	n := d.Uvarint()
	if d.Err != nil {
		return nil
	}
	if n > uint64(len(d.B)) {
		d.Err = ErrShort
		return nil
	}
	v := d.B[:n]
	d.B = d.B[n:]
	return v
}

// End sets Err if input is left over.
func (d *Reader) End() {
	if d.Err == nil && len(d.B) > 0 {
		d.Err = fmt.Errorf("%d trailing bytes", len(d.B))
	}
}

// AppendBytes appends b with its uvarint length (what Bytes reads).
func AppendBytes(dst, b []byte) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(b)))
	return append(dst, b...)
}

// AppendString appends s with its uvarint length.
func AppendString(dst []byte, s string) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(s)))
	return append(dst, s...)
}

// BodyStep is how much of a frame ReadBody allocates before any of it
// came.
const BodyStep = 1 << 20

// ReadBody reads the size bytes of a frame's body from r, into a buffer
// that grows as they come (at most BodyStep ahead of them): a length
// field alone, from a peer that then sends nothing, pins no more than
// that.
func ReadBody(r io.Reader, size int) ([]byte, error) {
	b := make([]byte, 0, min(size, BodyStep))
	for len(b) < size {
		if len(b) == cap(b) {
			b = slices.Grow(b, min(size-len(b), cap(b)))
		}
		got, err := io.ReadFull(r, b[len(b):min(cap(b), size)])
		b = b[:len(b)+got]
		if err != nil {
			return nil, err
		}
	}
	return b, nil
}

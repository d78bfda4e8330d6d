package shared

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sort"
	"sync/atomic"
	"time"
)

// cursor is a group's progress through one source stream. Offsets below
// floor are done (acknowledged, skipped because their topic does not match
// the filter, or dead-lettered); done holds the done offsets above floor
// (acknowledged out of order); counts holds how often each delivered but not
// yet done offset was delivered. All three are persisted, so a restart
// redelivers only records never acknowledged, with their delivery counts.
// readPos (memory only) is the next offset to read.
type cursor struct {
	stream  string
	floor   uint64
	done    map[uint64]struct{}
	counts  map[uint64]uint16
	readPos uint64
	// next is the stream's committed next offset as last seen by the group;
	// nextSeen is where the stream's watcher puts it.
	next     uint64
	nextSeen atomic.Uint64
	// dirty marks a change not yet persisted.
	dirty bool
	// gone is set when the stream was deleted.
	gone bool
	// created is the stream's creation time when the group started
	// reading it (zero if unknown): a stream of the same name created
	// later is another stream (group.watch).
	created time.Time
}

func newCursor(stream string, start uint64) *cursor {
	return &cursor{stream: stream, floor: start, readPos: start, next: start,
		done: map[uint64]struct{}{}, counts: map[uint64]uint16{}}
}

// markDone records that off needs no more delivery and advances the floor
// over the contiguous done prefix.
func (c *cursor) markDone(off uint64) {
	c.dirty = true
	delete(c.counts, off)
	switch {
	case off < c.floor:
		return
	case off == c.floor:
		c.floor++
		for {
			if _, ok := c.done[c.floor]; !ok {
				return
			}
			delete(c.done, c.floor)
			c.floor++
		}
	default:
		c.done[off] = struct{}{}
	}
}

// skipTo moves the floor to off (records below it no longer exist).
func (c *cursor) skipTo(off uint64) {
	if off <= c.floor {
		return
	}
	for o := range c.done {
		if o < off {
			delete(c.done, o)
		}
	}
	for o := range c.counts {
		if o < off {
			delete(c.counts, o)
		}
	}
	c.floor = off
	c.readPos = max(c.readPos, off)
	c.dirty = true
	for {
		if _, ok := c.done[c.floor]; !ok {
			return
		}
		delete(c.done, c.floor)
		c.floor++
	}
}

func (c *cursor) isDone(off uint64) bool {
	if off < c.floor {
		return true
	}
	_, ok := c.done[off]
	return ok
}

// span is how far reading has run ahead of the oldest record not done.
func (c *cursor) span() uint64 { return c.readPos - c.floor }

// lag is the number of records in the stream not yet done.
func (c *cursor) lag() uint64 {
	if c.next <= c.floor {
		return 0
	}
	return c.next - c.floor - uint64(len(c.done))
}

// seek moves the cursor to start, forgetting everything after the old floor.
func (c *cursor) seek(start uint64) {
	c.floor, c.readPos = start, start
	c.done = map[uint64]struct{}{}
	c.counts = map[uint64]uint16{}
	c.dirty = true
}

const cursorVersion1 = 1

// encode serialises floor, done ranges and delivery counts.
//
// Layout: version, floor, n ranges (start-floor, length), n counts
// (offset-floor, count); all uvarints.
func (c *cursor) encode() []byte {
	b := []byte{cursorVersion1}
	b = binary.AppendUvarint(b, c.floor)
	offs := make([]uint64, 0, len(c.done))
	for off := range c.done {
		offs = append(offs, off)
	}
	sort.Slice(offs, func(i, j int) bool { return offs[i] < offs[j] })
	type rng struct{ start, n uint64 }
	var ranges []rng
	for _, off := range offs {
		if k := len(ranges); k > 0 && ranges[k-1].start+ranges[k-1].n == off {
			ranges[k-1].n++
		} else {
			ranges = append(ranges, rng{off, 1})
		}
	}
	b = binary.AppendUvarint(b, uint64(len(ranges)))
	for _, r := range ranges {
		b = binary.AppendUvarint(b, r.start-c.floor)
		b = binary.AppendUvarint(b, r.n)
	}
	b = binary.AppendUvarint(b, uint64(len(c.counts)))
	for off, n := range c.counts {
		b = binary.AppendUvarint(b, off-c.floor)
		b = binary.AppendUvarint(b, uint64(n))
	}
	return b
}

var errCorruptCursor = errors.New("corrupt group progress")

// maxDecodedDone bounds what a corrupt value can make decode allocate.
const maxDecodedDone = 10_000_000

func decodeCursor(stream string, b []byte) (*cursor, error) {
	return decodeCursorUpTo(stream, b, maxDecodedDone)
}

// decodeCursorUpTo decodes a cursor whose done offsets and delivery
// counts number at most limit (a smaller limit keeps fuzzing fast: a
// value at the real bound takes seconds to decode).
func decodeCursorUpTo(stream string, b []byte, limit uint64) (*cursor, error) {
	r := reader{b: b}
	if v := r.uvarint(); r.err == nil && v != cursorVersion1 {
		return nil, fmt.Errorf("%w: version %d", errCorruptCursor, v)
	}
	c := newCursor(stream, r.uvarint())
	n := r.uvarint()
	var total uint64
	for i := uint64(0); i < n && r.err == nil; i++ {
		start, length := c.floor+r.uvarint(), r.uvarint()
		if total += length; total > limit || start <= c.floor && length > 0 {
			return nil, fmt.Errorf("%w: bad done range", errCorruptCursor)
		}
		for off := start; off < start+length; off++ {
			c.done[off] = struct{}{}
		}
	}
	n = r.uvarint()
	for i := uint64(0); i < n && r.err == nil; i++ {
		off, cnt := c.floor+r.uvarint(), r.uvarint()
		if cnt > 0xffff || i > limit {
			return nil, fmt.Errorf("%w: bad delivery count", errCorruptCursor)
		}
		c.counts[off] = uint16(cnt)
	}
	if r.err != nil {
		return nil, fmt.Errorf("%w: %v", errCorruptCursor, r.err)
	}
	c.readPos = c.floor
	return c, nil
}

type reader struct {
	b   []byte
	err error
}

func (r *reader) uvarint() uint64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Uvarint(r.b)
	if n <= 0 {
		r.err = errors.New("truncated")
		return 0
	}
	r.b = r.b[n:]
	return v
}

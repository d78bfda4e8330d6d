package streams

import (
	"encoding/binary"
	"fmt"

	"github.com/cockroachdb/pebble/v2"
)

// Records appended to one stream in one commit group are stored under one
// key, the offset of the first of them, as a block:
//
//	blockVersion1, then per record its encoded length (uvarint) and its
//	encoding (record.go).
//
// A block of one record is stored as the record alone, the layout of every
// record before blocks existed, so both are read alike (eachInBlock). A
// block is cut at maxBlockBytes.
const blockVersion1 = 0xB1

// maxBlockBytes bounds a block's size, and so what a read of one record
// decodes.
const maxBlockBytes = 32 << 10

// addToBlock appends rec, the encoding of st's next record, to st's block
// of this group, writing the block first when rec would take it past
// maxBlockBytes.
func (g *group) addToBlock(st *stream, rec []byte) {
	if st.blkCount > 0 && len(st.blk)+len(rec)+binary.MaxVarintLen32 > maxBlockBytes {
		g.writeBlock(st)
	}
	if st.blkCount == 0 {
		if n := len(g.spareBlks); n > 0 && st.blk == nil {
			st.blk, g.spareBlks = g.spareBlks[n-1], g.spareBlks[:n-1]
		}
		st.blk = append(st.blk[:0], blockVersion1)
		st.blkFirst = st.work.next
		g.blocks = append(g.blocks, st)
	}
	st.blk = binary.AppendUvarint(st.blk, uint64(len(rec)))
	st.blk = append(st.blk, rec...)
	st.blkCount++
	g.keybuf = appendRecordKey(g.keybuf[:0], st.meta.id, st.work.next) // put counts a key's bytes per record
	g.put(st, len(rec))
}

// writeBlock writes st's pending block to the group's batch.
func (g *group) writeBlock(st *stream) {
	if st.blkCount == 0 {
		return
	}
	v := st.blk
	if st.blkCount == 1 {
		_, n := binary.Uvarint(v[1:])
		v = v[1+n:]
	}
	g.keybuf = appendRecordKey(g.keybuf[:0], st.meta.id, st.blkFirst)
	_ = g.batch.Set(g.keybuf, v, nil)
	st.blkCount = 0
	// The batch copied it: the buffer serves the next block of any
	// stream, so a stream appended to once holds none.
	if cap(st.blk) <= 2*maxBlockBytes {
		g.spareBlks = append(g.spareBlks, st.blk[:0])
	}
	st.blk = nil
}

// writeBlocks writes every pending block to the group's batch: at the end
// of the group, and before an operation that may change records already
// in the batch.
func (g *group) writeBlocks() {
	for _, st := range g.blocks {
		g.writeBlock(st)
	}
	clear(g.blocks)
	g.blocks = g.blocks[:0]
}

// dropBlocks forgets the pending blocks (a group rolled back).
func (g *group) dropBlocks() {
	for _, st := range g.blocks {
		st.blkCount, st.blk = 0, nil
	}
	clear(g.blocks)
	g.blocks = g.blocks[:0]
}

// eachInBlock calls fn with the offset and encoding of each record of a
// stored value whose key holds offset first, in offset order, until fn
// returns false or an error. The encodings alias v.
func eachInBlock(v []byte, first uint64, fn func(off uint64, rec []byte) (bool, error)) error {
	if len(v) == 0 {
		return fmt.Errorf("%w: offset %d: empty record value", ErrCorrupt, first)
	}
	switch v[0] {
	case recordVersion1:
		_, err := fn(first, v)
		return err
	case blockVersion1:
		if len(v) == 1 {
			return fmt.Errorf("%w: offset %d: empty block", ErrCorrupt, first)
		}
	default:
		return fmt.Errorf("%w: offset %d: unknown record version %d", ErrCorrupt, first, v[0])
	}
	rest := v[1:]
	for off := first; len(rest) > 0; off++ {
		n, w := binary.Uvarint(rest)
		if w <= 0 || n > uint64(len(rest)-w) || n == 0 {
			return fmt.Errorf("%w: block at offset %d: record %d truncated", ErrCorrupt, first, off)
		}
		more, err := fn(off, rest[w:w+int(n)])
		if err != nil || !more {
			return err
		}
		rest = rest[w+int(n):]
	}
	return nil
}

// blockIter walks the records of one stream in offset order, block by
// block, from any offset: the block holding it may begin before it.
type blockIter struct {
	iter *pebble.Iterator
	id   uint64
}

// newBlockIter opens an iterator over the blocks of stream id that begin
// before offset to.
func newBlockIter(db *pebble.DB, id, to uint64) (*blockIter, error) {
	iter, err := db.NewIter(&pebble.IterOptions{LowerBound: recordKey(id, 0), UpperBound: recordKey(id, to)})
	if err != nil {
		return nil, err
	}
	return &blockIter{iter: iter, id: id}, nil
}

func (b *blockIter) Close() error { return b.iter.Close() }

// each calls fn for every record at offset from or later, in offset
// order, until fn returns false or an error.
func (b *blockIter) each(from uint64, fn func(off uint64, rec []byte) (bool, error)) error {
	valid := b.iter.SeekLT(recordKey(b.id, from+1))
	if !valid {
		valid = b.iter.First()
	}
	stop := false
	for ; valid && !stop; valid = b.iter.Next() {
		v, err := b.iter.ValueAndErr()
		if err != nil {
			return err
		}
		err = eachInBlock(v, offsetFromKey(b.iter.Key()), func(off uint64, rec []byte) (bool, error) {
			if off < from {
				return true, nil
			}
			more, err := fn(off, rec)
			stop = !more
			return more, err
		})
		if err != nil {
			return err
		}
	}
	return b.iter.Error()
}

// blockStart returns the offset of the block that holds offset off of
// stream id (off itself if no block before it holds it).
func blockStart(db *pebble.DB, id, off uint64) (uint64, error) {
	iter, err := db.NewIter(&pebble.IterOptions{LowerBound: recordKey(id, 0), UpperBound: recordKey(id, off+1)})
	if err != nil {
		return 0, err
	}
	defer iter.Close()
	if !iter.Last() {
		return off, iter.Error()
	}
	start := offsetFromKey(iter.Key())
	if start == off {
		return off, nil
	}
	v, err := iter.ValueAndErr()
	if err != nil {
		return 0, err
	}
	holds := false
	err = eachInBlock(v, start, func(o uint64, _ []byte) (bool, error) {
		holds = o == off
		return o < off, nil
	})
	if err != nil {
		return 0, err
	}
	if holds {
		return start, nil
	}
	return off, nil
}

// timestampAt returns the timestamp of the record at offset off of the
// iterator's stream; found is false if the stream holds no record there.
func (b *blockIter) timestampAt(off uint64) (ts int64, found bool, err error) {
	err = b.each(off, func(o uint64, rec []byte) (bool, error) {
		if o == off {
			ts, err = recordTimestamp(rec)
			found = err == nil
		}
		return false, err
	})
	return ts, found, err
}

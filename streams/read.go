package streams

import (
	"context"
	"fmt"
	"time"
)

// ReadOptions bound one read.
type ReadOptions struct {
	// MaxRecords caps the number of records returned; 0 means 1000.
	MaxRecords int
	// MaxBytes caps the total payload bytes returned (at least one record is
	// always returned when one is available); 0 means 4 MiB.
	MaxBytes int
}

func (o ReadOptions) withDefaults() ReadOptions {
	if o.MaxRecords <= 0 {
		o.MaxRecords = 1000
	}
	if o.MaxBytes <= 0 {
		o.MaxBytes = 4 << 20
	}
	return o
}

// position returns the id and durable bounds of a stream, and its counters.
func (s *Store) position(name string) (id, first, next uint64, c *counters, err error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.mu.closed {
		return 0, 0, 0, nil, ErrClosed
	}
	st, ok := s.mu.streams[name]
	if !ok {
		return 0, 0, 0, nil, fmt.Errorf("%w: %q", ErrStreamNotFound, name)
	}
	return st.meta.id, st.durable.first, st.durable.next, &st.counters, nil
}

// Read returns committed records of a stream starting at offset from (or at
// the oldest record kept, if from is older), in offset order. It returns an
// empty slice when no record at or after from exists yet.
func (s *Store) Read(name string, from uint64, opts ReadOptions) ([]Record, error) {
	opts = opts.withDefaults()
	id, first, next, ctr, err := s.position(name)
	if err != nil {
		return nil, err
	}
	if from < first {
		from = first
	}
	if from >= next {
		return nil, nil
	}
	db, unlock, err := s.reader()
	if err != nil {
		return nil, err
	}
	defer unlock()
	iter, err := newBlockIter(db, id, next)
	if err != nil {
		return nil, fmt.Errorf("stream %q: %w", name, err)
	}
	defer iter.Close()
	var out []Record
	bytes := 0
	err = iter.each(from, func(off uint64, v []byte) (bool, error) {
		r, err := decodeRecord(v, off)
		if err != nil {
			return false, err
		}
		out = append(out, r)
		bytes += len(r.Payload)
		return len(out) < opts.MaxRecords && bytes < opts.MaxBytes, nil
	})
	ctr.readRecords.Add(int64(len(out)))
	ctr.readBytes.Add(int64(bytes))
	if err != nil {
		return out, fmt.Errorf("stream %q: %w", name, err)
	}
	return out, nil
}

// Scan calls fn for each committed record in [from, to) of a stream, in offset
// order, until fn returns false or an error. to == 0 means up to the newest
// record at the time of the call. It reads the records lazily, in chunks, so
// a scan can stop early without touching the rest of the stream; fn runs
// without any lock held and may call the store.
func (s *Store) Scan(ctx context.Context, name string, from, to uint64, fn func(Record) (bool, error)) error {
	_, first, next, _, err := s.position(name)
	if err != nil {
		return err
	}
	if from < first {
		from = first
	}
	if to == 0 || to > next {
		to = next
	}
	for from < to {
		if err := ctx.Err(); err != nil {
			return err
		}
		recs, err := s.Read(name, from, ReadOptions{MaxRecords: int(min(to-from, scanChunk)), MaxBytes: scanChunkBytes})
		if err != nil {
			return err
		}
		if len(recs) == 0 {
			return nil
		}
		for _, r := range recs {
			if r.Offset >= to {
				return nil
			}
			more, err := fn(r)
			if err != nil || !more {
				return err
			}
			from = r.Offset + 1
		}
	}
	return nil
}

// Scan reads this many records (or bytes) at a time.
const (
	scanChunk      = 512
	scanChunkBytes = 8 << 20
)

// OffsetAt returns the offset of the first record kept whose timestamp is at
// or after t; if there is none, it returns the stream's next offset. It
// bisects over offsets (timestamps never decrease within a stream).
func (s *Store) OffsetAt(name string, t time.Time) (uint64, error) {
	id, first, next, _, err := s.position(name)
	if err != nil {
		return 0, err
	}
	return s.offsetAt(id, first, next, t.UnixNano())
}

func (s *Store) offsetAt(id, lo, hi uint64, ts int64) (uint64, error) {
	if lo >= hi {
		return lo, nil // no record to search
	}
	db, unlock, err := s.reader()
	if err != nil {
		return 0, err
	}
	defer unlock()
	iter, err := newBlockIter(db, id, hi)
	if err != nil {
		return 0, err
	}
	defer iter.Close()
	// Invariant: records before lo are older than ts; records at hi and later are not.
	for lo < hi {
		mid := lo + (hi-lo)/2
		rts, found, err := iter.timestampAt(mid)
		if err != nil {
			return 0, fmt.Errorf("offset %d: %w", mid, err)
		}
		if !found {
			// A concurrent trim removed it: everything up to mid is gone, search above.
			lo = mid + 1
			continue
		}
		if rts < ts {
			lo = mid + 1
		} else {
			hi = mid
		}
	}
	return lo, nil
}

// Notify returns a channel that is closed when records after the current
// committed ones are committed to the stream, or when the stream is deleted,
// together with the stream's next offset at the time of the call. Check the
// offset first, then wait on the channel, so no commit is missed.
func (s *Store) Notify(name string) (<-chan struct{}, uint64, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	st, ok := s.mu.streams[name]
	if !ok {
		return nil, 0, fmt.Errorf("%w: %q", ErrStreamNotFound, name)
	}
	return st.notify, st.durable.next, nil
}

// WaitFor blocks until the stream holds a committed record at offset, the
// context ends, the stream is deleted or the store closes.
func (s *Store) WaitFor(ctx context.Context, name string, offset uint64) error {
	for {
		ch, next, err := s.Notify(name)
		if err != nil {
			return err
		}
		if next > offset {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		case <-s.done:
			return ErrClosed
		}
	}
}

// ReadWait reads like Read but, if no record at or after from exists yet,
// first waits for one (tail reading).
func (s *Store) ReadWait(ctx context.Context, name string, from uint64, opts ReadOptions) ([]Record, error) {
	if err := s.WaitFor(ctx, name, from); err != nil {
		return nil, err
	}
	return s.Read(name, from, opts)
}

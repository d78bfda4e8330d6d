package streams

import (
	"context"
	"errors"
	"fmt"
)

// trimCmd removes the records [from, to) of a stream, whose encoded size is
// bytes. keyTo is where the block holding offset to begins (block.go): the
// keys before it go, and the records of that block before to stay on disk
// until a later trim, never read again.
type trimCmd struct {
	id       uint64
	from, to uint64
	keyTo    uint64
	bytes    int64
}

// errTrimStale: the stream changed since the trim was computed; the next
// retention pass computes it again.
var errTrimStale = errors.New("trim is stale")

func (g *group) trim(t trimCmd) error {
	var st *stream
	for _, cand := range g.s.work {
		if cand.meta.id == t.id {
			st = cand
			break
		}
	}
	if st == nil || st.work.first != t.from || t.to > st.work.next || t.to <= t.from {
		return errTrimStale
	}
	if t.keyTo > t.to {
		return fmt.Errorf("%w: trim to %d would delete a block beginning at %d", ErrCorrupt, t.to, t.keyTo)
	}
	_ = g.batch.DeleteRange(recordKey(t.id, 0), recordKey(t.id, t.keyTo), nil)
	st.work.first = t.to
	st.mustCheckpoint = true
	st.work.bytes -= t.bytes
	if st.work.bytes < 0 {
		st.work.bytes = 0
	}
	g.touch(st)
	return nil
}

func (s *Store) runRetention() {
	defer s.wg.Done()
	t := s.newTicker(s.opts.RetentionInterval)
	defer t.Stop()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		<-s.done
		cancel()
	}()
	for {
		select {
		case <-s.done:
			return
		case <-t.C:
			if _, err := s.EnforceRetention(ctx); err != nil && !errors.Is(err, context.Canceled) && !errors.Is(err, ErrClosed) {
				s.log.Error("retention failed", "error", err)
			}
		}
	}
}

// EnforceRetention trims every stream to its retention limits now and waits
// for the trims to commit. It returns the number of records removed. The
// store also runs it every Options.RetentionInterval.
func (s *Store) EnforceRetention(ctx context.Context) (int64, error) {
	var removed int64
	for _, info := range s.ListStreams() {
		if info.Retention.IsZero() || info.Records == 0 {
			continue
		}
		cmd, err := s.computeTrim(info)
		if err != nil {
			return removed, fmt.Errorf("stream %q: %w", info.Name, err)
		}
		if cmd.to <= cmd.from {
			continue
		}
		err = s.runCommand(ctx, &op{kind: opTrim, stream: info.Name, trim: cmd})
		if errors.Is(err, errTrimStale) {
			continue
		}
		if err != nil {
			return removed, fmt.Errorf("stream %q: trim: %w", info.Name, err)
		}
		removed += int64(cmd.to - cmd.from)
		s.log.Debug("retention trimmed stream", "stream", info.Name, "records", cmd.to-cmd.from, "bytes", cmd.bytes)
	}
	return removed, nil
}

// computeTrim finds the first offset to keep under the stream's retention and
// the encoded size of the records before it.
func (s *Store) computeTrim(info StreamInfo) (trimCmd, error) {
	r := info.Retention
	cmd := trimCmd{id: info.ID, from: info.FirstOffset, to: info.FirstOffset}
	if r.MaxRecords > 0 && info.Records > r.MaxRecords {
		cmd.to = info.NextOffset - uint64(r.MaxRecords)
	}
	if r.MaxAge > 0 {
		cut, err := s.offsetAt(info.ID, info.FirstOffset, info.NextOffset, s.opts.Now().Add(-r.MaxAge).UnixNano())
		if err != nil {
			return cmd, err
		}
		cmd.to = max(cmd.to, cut)
	}
	// One scan from the head sums the sizes of the records to remove and, for
	// a byte limit, extends the cut until the rest fits.
	needBytes := r.MaxBytes > 0 && info.Bytes > r.MaxBytes
	if cmd.to == cmd.from && !needBytes {
		return cmd, nil
	}
	db, unlock, err := s.reader()
	if err != nil {
		return cmd, err
	}
	defer unlock()
	iter, err := newBlockIter(db, info.ID, info.NextOffset)
	if err != nil {
		return cmd, err
	}
	defer iter.Close()
	err = iter.each(info.FirstOffset, func(off uint64, v []byte) (bool, error) {
		if off >= cmd.to && !(needBytes && info.Bytes-cmd.bytes > r.MaxBytes) {
			return false, nil
		}
		cmd.bytes += int64(len(v))
		cmd.to = max(cmd.to, off+1)
		return true, nil
	})
	if err != nil {
		return cmd, err
	}
	cmd.keyTo, err = blockStart(db, info.ID, cmd.to)
	return cmd, err
}

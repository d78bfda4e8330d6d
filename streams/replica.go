package streams

import (
	"context"
	"fmt"
	"time"
)

// What a replicated log in front of the store needs beyond appends: a
// replica that fell behind its peers copies their records as they are
// stored (ReadStored on the peer, Install here), so that both hold the
// same bytes at the same offsets with the same timestamps, and creates
// streams at the time its leader chose (CreateStreamAt).

// CreateStreamAt creates a stream like CreateStream, with created as its
// creation time instead of the store's clock (when not zero): every replica of a stream
// then describes it alike, and a replica tells two streams of one name
// apart (one deleted, the other created later) by it.
func (s *Store) CreateStreamAt(ctx context.Context, name string, retention Retention, created time.Time) (StreamInfo, error) {
	return s.CreateStreamApplied(ctx, name, retention, created, "", 0)
}

// CreateStreamApplied creates a stream like CreateStreamAt and, when it
// creates it and index is not zero, sets the applied-index marker of log
// (AppliedIndexOf) to index in the same synced batch: a replicated log's
// entry that created a stream then tells, after a crash that came before
// the rest of its entry was stored, that it did.
func (s *Store) CreateStreamApplied(ctx context.Context, name string, retention Retention, created time.Time, log string, index uint64) (StreamInfo, error) {
	if err := ValidateName(name); err != nil {
		return StreamInfo{}, err
	}
	if err := retention.Validate(); err != nil {
		return StreamInfo{}, fmt.Errorf("stream %q: %w", name, err)
	}
	if retention.IsZero() {
		retention = s.opts.DefaultRetention
	}
	o := &op{kind: opCreate, stream: name, retention: retention, req: AppendRequest{AppliedLog: log, AppliedIndex: index}}
	if !created.IsZero() {
		o.created = created.UnixNano()
	}
	if err := s.runCommand(ctx, o); err != nil {
		return StreamInfo{}, err
	}
	return s.DescribeStream(name)
}

// DeleteStreamApplied deletes a stream like DeleteStream and, when it
// deletes it and index is not zero, sets the applied-index marker of log
// to index in the same synced batch (CreateStreamApplied).
func (s *Store) DeleteStreamApplied(ctx context.Context, name, log string, index uint64) error {
	return s.runCommand(ctx, &op{kind: opDelete, stream: name, req: AppendRequest{AppliedLog: log, AppliedIndex: index}})
}

// StoredPage is a run of a stream's records in their stored encoding.
type StoredPage struct {
	// Stream is the stream as it was when read.
	Stream StreamInfo
	// From is the offset of Records[0] (when the records asked for were
	// trimmed already, the first offset kept).
	From uint64
	// Records are the stored encodings (DecodeRecord decodes one), the
	// timestamp included; they do not alias the store's memory.
	Records [][]byte
}

// ReadStored returns the stored encodings of a stream's committed records
// in [from, to) (to == 0: up to the newest), starting at the oldest kept
// if from is older, at most maxRecords of them and about maxBytes (at
// least one record when one is available).
func (s *Store) ReadStored(name string, from, to uint64, maxRecords, maxBytes int) (StoredPage, error) {
	s.mu.RLock()
	if s.mu.closed {
		s.mu.RUnlock()
		return StoredPage{}, ErrClosed
	}
	st, ok := s.mu.streams[name]
	if !ok {
		s.mu.RUnlock()
		return StoredPage{}, fmt.Errorf("%w: %q", ErrStreamNotFound, name)
	}
	info := st.infoLocked()
	s.mu.RUnlock()
	page := StoredPage{Stream: info, From: max(from, info.FirstOffset)}
	if to == 0 || to > info.NextOffset {
		to = info.NextOffset
	}
	if page.From >= to {
		return page, nil
	}
	db, unlock, err := s.reader()
	if err != nil {
		return page, err
	}
	defer unlock()
	iter, err := newBlockIter(db, info.ID, to)
	if err != nil {
		return page, fmt.Errorf("stream %q: %w", name, err)
	}
	defer iter.Close()
	bytes := 0
	err = iter.each(page.From, func(off uint64, v []byte) (bool, error) {
		if off >= to {
			return false, nil
		}
		if len(page.Records) == 0 {
			page.From = off // a trim since the stream was described
		} else if off != page.From+uint64(len(page.Records)) {
			return false, fmt.Errorf("%w: offset %d after %d", ErrCorrupt, off, page.From+uint64(len(page.Records))-1)
		}
		page.Records = append(page.Records, append([]byte(nil), v...))
		bytes += len(v)
		return len(page.Records) < maxRecords && bytes < maxBytes, nil
	})
	if err != nil {
		return page, fmt.Errorf("stream %q: %w", name, err)
	}
	return page, nil
}

// InstallRequest writes records a replica copied from a peer.
type InstallRequest struct {
	Stream string
	// At is the offset of Records[0]: the stream's next offset, or, with
	// Skip, beyond it.
	At uint64
	// Skip: the records from the stream's next offset up to At are gone
	// from every peer (trimmed by retention); the stream drops the
	// records it holds and goes on at At. Without it, an At past the next
	// offset is refused (ErrOffsetMismatch): the caller installed records
	// the store no longer holds (lost in a recovery from a failed write),
	// and going on would leave a hole.
	Skip bool
	// Records are stored encodings as ReadStored returns them: they are
	// stored as they are, timestamps included.
	Records [][]byte
	// LastTimestamp, if not zero, raises the stream's newest timestamp
	// (to which the timestamps of later appends are raised) to it.
	LastTimestamp time.Time
	// AppliedLog and AppliedIndex, if AppliedIndex is not zero, set the
	// applied-index marker of a replicated log in the same batch.
	AppliedLog   string
	AppliedIndex uint64
}

// Install writes records copied from a peer, without syncing, and waits
// until they are committed. Nothing of the request is written when it
// fails: ErrStreamNotFound, ErrOffsetMismatch (At is before the stream's
// next offset, or past it without Skip), ErrCorrupt (a record is not a
// stored encoding).
func (s *Store) Install(ctx context.Context, req InstallRequest) error {
	return s.runCommand(ctx, &op{kind: opInstall, stream: req.Stream, install: &req, noSync: true})
}

// install applies an InstallRequest to the group's batch.
func (g *group) install(req *InstallRequest) error {
	st, ok := g.s.work[req.Stream]
	if !ok {
		return fmt.Errorf("%w: %q", ErrStreamNotFound, req.Stream)
	}
	if req.At < st.work.next || (req.At > st.work.next && !req.Skip) {
		return fmt.Errorf("%w: stream %q: records from %d, its next offset is %d", ErrOffsetMismatch, req.Stream, req.At, st.work.next)
	}
	lastTS := req.LastTimestamp.UnixNano()
	if req.LastTimestamp.IsZero() {
		lastTS = 0
	}
	for i, b := range req.Records {
		ts, err := recordTimestamp(b)
		if err != nil {
			return fmt.Errorf("stream %q: offset %d: %w", req.Stream, req.At+uint64(i), err)
		}
		lastTS = max(lastTS, ts)
	}
	g.touch(st)
	if req.At > st.work.next {
		// The records in between are gone everywhere: the stream
		// starts again at At. The state is checkpointed in this batch,
		// as recovery rolls it forward only over dense offsets.
		if st.work.next > st.work.first {
			// From 0: a block begun before the first record kept goes too.
			_ = g.batch.DeleteRange(recordKey(st.meta.id, 0), recordKey(st.meta.id, st.work.next), nil)
		}
		st.work.first, st.work.next, st.work.bytes = req.At, req.At, 0
		st.mustCheckpoint = true
	}
	for _, b := range req.Records {
		g.addToBlock(st, b)
	}
	st.work.lastTS = max(st.work.lastTS, lastTS)
	g.markApplied(req.AppliedLog, req.AppliedIndex)
	return nil
}

// ForgetApplied deletes the applied-index markers of the replicated logs
// named (AppendRequest.AppliedLog), synced: a replica dropped from this
// node starts from nothing if it comes back. A marker set later in the
// same batch is kept.
func (s *Store) ForgetApplied(ctx context.Context, logs ...string) error {
	return s.runCommand(ctx, &op{kind: opForget, forget: logs})
}

// forget deletes the markers of logs in the group's batch.
func (g *group) forget(logs []string) {
	for _, log := range logs {
		delete(g.applied, log)
		_ = g.batch.Delete(appliedKey(log), nil)
	}
}

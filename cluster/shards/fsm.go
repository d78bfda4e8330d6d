package shards

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"

	"github.com/mqstream/mqstream/streams"
)

// Store is what a shard's replica applies committed entries to: the
// node's stream store.
type Store interface {
	Submit(req streams.AppendRequest) error
	CreateStream(ctx context.Context, name string, r streams.Retention) (streams.StreamInfo, error)
	DeleteStream(ctx context.Context, name string) error
	DescribeStream(name string) (streams.StreamInfo, error)
	AppliedIndexOf(log string) (uint64, error)
	Sync(ctx context.Context) error
	Healthy() error
}

// appendResult is the outcome of one append of an entry, as the leader's
// state machine returns it to the proposer.
type appendResult struct {
	first uint64
	err   error
}

// fsm is one replica's state machine: it applies a shard's committed
// entries to the store. Raft calls Apply, Snapshot and Restore from one
// goroutine; applied is also read by others (status).
type fsm struct {
	log     string // the shard's log name, the store's applied-index key
	store   Store
	logger  *slog.Logger
	applied atomic.Uint64 // the last index applied (or found in the store)
	dd      *dedupe       // recent append ids (dedupe.go); Raft's goroutine only
	// retry is the wait between attempts while the store cannot write.
	retry time.Duration
	// stop is closed when the replica shuts down: a blocked apply gives up.
	stop <-chan struct{}
}

func newFSM(log string, store Store, logger *slog.Logger, stop <-chan struct{}) (*fsm, error) {
	f := &fsm{log: log, store: store, logger: logger, retry: 100 * time.Millisecond, stop: stop, dd: newDedupe()}
	idx, err := store.AppliedIndexOf(log)
	if err != nil {
		return nil, fmt.Errorf("shards: applied index of %s: %w", log, err)
	}
	f.applied.Store(idx)
	return f, nil
}

// Apply applies one entry.
func (f *fsm) Apply(l *raft.Log) interface{} { return f.ApplyBatch([]*raft.Log{l})[0] }

// ApplyBatch applies committed entries in order (raft.BatchingFSM). Runs
// of appends are submitted to the store at once and awaited together;
// creating or deleting a stream waits for the appends before it. Each
// entry's response is its commands' results.
func (f *fsm) ApplyBatch(logs []*raft.Log) []interface{} {
	out := make([]interface{}, len(logs))
	var run []pending // appends submitted together
	for i, l := range logs {
		if l.Type != raft.LogCommand {
			continue
		}
		ts, cmds, err := decodeEntry(l.Data)
		if err != nil {
			// Every replica decodes the same bytes the same way.
			f.logger.Error("undecodable shard entry skipped", "shard", f.log, "index", l.Index, "error", err)
			continue
		}
		if l.Index <= f.applied.Load() {
			// Already in the store (a replay after a restart): only
			// its append ids are remembered again.
			for _, c := range cmds {
				if c.kind == kindAppend {
					if _, dup := f.dd.lookup(c.id); !dup {
						f.dd.add(c.id, nil)
					}
				}
			}
			continue
		}
		results := make([]appendResult, len(cmds))
		out[i] = results
		for j, c := range cmds {
			if c.kind != kindAppend {
				f.applyRun(run)
				run = run[:0]
				results[j].err = f.admin(c)
				continue
			}
			if e, dup := f.dd.lookup(c.id); dup {
				// A retry of an append applied before: its result.
				f.applyRun(run)
				run = run[:0]
				if e.result != nil {
					results[j] = *e.result
				}
				continue
			}
			f.dd.add(c.id, &results[j])
			// The leader's encoding is stored as it is (with the
			// entry's timestamp): no decoding, no second encoding.
			run = append(run, pending{result: &results[j], req: streams.AppendRequest{
				Stream: c.stream, Encoded: c.records, NoSync: true, Timestamp: ts,
				AppliedLog: f.log, AppliedIndex: l.Index,
			}})
		}
	}
	if n := len(logs); n > 0 && logs[n-1].Index > f.applied.Load() {
		last := logs[n-1].Index
		if len(run) == 0 || run[len(run)-1].req.AppliedIndex != last {
			// The store's marker covers every entry, also those that
			// stored nothing (a retry, a stream created, an error), so
			// that it never lags behind a snapshot of this replica.
			run = append(run, pending{result: &appendResult{}, req: streams.AppendRequest{
				NoSync: true, AppliedLog: f.log, AppliedIndex: last}})
		}
		f.applyRun(run)
		f.applied.Store(last)
	}
	return out
}

// pending is an append of an entry being applied, and where its result goes.
type pending struct {
	result *appendResult
	req    streams.AppendRequest
}

// applyRun submits a run of appends and waits for them. Validation errors
// (a name, a size, a missing stream) are the same on every replica and
// answer the appender. A store that cannot write must not skip an entry,
// or this replica would diverge: the failed appends (a suffix of the run,
// as the store refuses everything once a write failed) are retried until
// they succeed or the replica stops.
func (f *fsm) applyRun(run []pending) {
	for len(run) > 0 {
		errs := f.submitAll(run)
		var again []pending
		for i, err := range errs {
			if retryable(err) {
				again = append(again, run[i])
			}
		}
		if len(again) == 0 || !f.pause(again[0].result.err) {
			return
		}
		run = again
	}
}

// admin creates or deletes a stream, retrying while the store cannot
// write. Its errors (a stream that exists, or does not) are the same on
// every replica.
func (f *fsm) admin(c appendCmd) error {
	for {
		ctx, cancel := context.WithCancel(context.Background())
		go func() { // the replica stopping abandons the call
			select {
			case <-f.stop:
				cancel()
			case <-ctx.Done():
			}
		}()
		var err error
		if c.kind == kindCreate {
			_, err = f.store.CreateStream(ctx, c.stream, c.retention)
		} else {
			err = f.store.DeleteStream(ctx, c.stream)
		}
		cancel()
		if !retryable(err) || !f.pause(err) {
			return err
		}
	}
}

// pause waits before a retry; false once the replica stops.
func (f *fsm) pause(err error) bool {
	f.logger.Warn("store cannot apply shard entries; retrying", "shard", f.log, "error", err)
	select {
	case <-f.stop:
		return false
	case <-time.After(f.retry):
		return true
	}
}

// retryable reports a store failure that says nothing about the entry.
func retryable(err error) bool {
	return errors.Is(err, streams.ErrWrite) || errors.Is(err, streams.ErrUnavailable)
}

// submitAll submits a run's appends, waits for all of them and records
// their results. It returns the errors by append.
func (f *fsm) submitAll(run []pending) []error {
	errs := make([]error, len(run))
	done := make(chan struct{}, len(run))
	for i := range run {
		p := &run[i]
		req := p.req
		req.Done = func(first uint64, err error) {
			*p.result = appendResult{first, err}
			errs[i] = err
			done <- struct{}{}
		}
		if err := f.store.Submit(req); err != nil {
			*p.result = appendResult{0, err}
			errs[i] = err
			done <- struct{}{}
		}
	}
	for range run {
		<-done
	}
	return errs
}

// Snapshot captures the applied index and the window of recent append
// ids. Its Persist syncs the store first: Raft forgets the log up to a
// persisted snapshot, so what the store applied up to there must be on
// disk.
func (f *fsm) Snapshot() (raft.FSMSnapshot, error) {
	return &snapshot{index: f.applied.Load(), ids: f.dd.ids(), store: f.store}, nil
}

// Restore installs a snapshot: the index up to which the shard's records
// must be in the store, and the append ids to remember. A store behind it
// (a replica that was away while the others forgot the log it missed)
// cannot catch up from the log.
func (f *fsm) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		return fmt.Errorf("shards: %s: read snapshot: %w", f.log, err)
	}
	index, ids, err := decodeSnapshot(b)
	if err != nil {
		return fmt.Errorf("shards: %s: %w", f.log, err)
	}
	if have := f.applied.Load(); have < index {
		return fmt.Errorf("%w: %s: the store has applied up to %d, the snapshot needs %d", ErrBehind, f.log, have, index)
	}
	f.dd = newDedupe()
	for _, id := range ids {
		f.dd.add(id, nil)
	}
	return nil
}

func encodeSnapshot(index uint64, ids []appendID) []byte {
	b := []byte{entryVersion1}
	b = binary.BigEndian.AppendUint64(b, index)
	b = binary.AppendUvarint(b, uint64(len(ids)))
	for _, id := range ids {
		b = binary.AppendUvarint(b, id.producer)
		b = binary.AppendUvarint(b, id.seq)
	}
	return b
}

func decodeSnapshot(b []byte) (uint64, []appendID, error) {
	if len(b) < 9 || b[0] != entryVersion1 {
		return 0, nil, fmt.Errorf("%w: snapshot header", ErrBadEntry)
	}
	index := binary.BigEndian.Uint64(b[1:9])
	d := decoder{b: b[9:]}
	n := d.count()
	ids := make([]appendID, 0, n)
	for i := 0; i < n && d.err == nil; i++ {
		ids = append(ids, appendID{producer: d.uvarint(), seq: d.uvarint()})
	}
	if d.err != nil {
		return 0, nil, fmt.Errorf("%w: snapshot: %v", ErrBadEntry, d.err)
	}
	return index, ids, nil
}

// ErrBehind: a replica's store is behind a snapshot it was sent.
var ErrBehind = errors.New("shards: replica behind the snapshot")

type snapshot struct {
	index uint64
	ids   []appendID
	store Store
}

func (s *snapshot) Persist(sink raft.SnapshotSink) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := s.store.Sync(ctx); err != nil {
		_ = sink.Cancel()
		return fmt.Errorf("shards: sync before snapshot: %w", err)
	}
	if _, err := sink.Write(encodeSnapshot(s.index, s.ids)); err != nil {
		_ = sink.Cancel()
		return err
	}
	return sink.Close()
}

func (s *snapshot) Release() {}

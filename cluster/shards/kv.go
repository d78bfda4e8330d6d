package shards

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/hashicorp/raft"

	"github.com/mqstream/mqstream/streams"
)

// A shard's key/value namespace.
//
// Every shard has a small replicated key/value namespace next to its
// streams, for state that must move with the shard's leadership (the
// progress of the consumer groups its leader dispatches). Its writes go
// through the shard's Raft log like appends, as commands of their own
// kind, and every replica applies them to the namespace "shardkv/<shard>"
// of its store, in log order with the appends, the entry's index as the
// applied-index marker in the same batch: a replay after a crash applies
// again exactly the writes the store lost. (Applying again any suffix of
// the writes over the state they made would leave it unchanged anyway:
// each key ends with the last write of the suffix that touches it.)
//
// Writes are fenced by term: a leader writes with the term of its
// leadership (Lead), and the state machine applies a write only in an
// entry of that term. A write proposed by a leader that was deposed (and
// perhaps elected again, in a later term) before its entry reached the
// log is then applied nowhere, so a deposed leader cannot overwrite what
// its successor wrote. Lead reports a leadership only once the leader has
// applied every entry of the terms before it (a barrier), so its
// namespace holds everything its predecessors wrote.

// ErrFenced: a key/value write carries a term that is not the shard's
// leadership term it was committed in (the writer's leadership is over);
// it was applied nowhere, and no write with that term ever will be.
var ErrFenced = errors.New("shards: the leadership term of the write is over")

// ErrInvalidKV: key/value writes that cannot be applied (an empty key, a
// value on a delete, too many bytes, no such shard).
var ErrInvalidKV = errors.New("shards: invalid key/value write")

// maxKVBytes bounds the keys and values of one WriteKV: they go into one
// Raft entry.
const maxKVBytes = maxEntryBytes / 2

// kvNamespace names shard's key/value namespace in the store.
func kvNamespace(shard int) string { return "shardkv/" + strconv.Itoa(shard) }

// Lead reports whether this node leads shard now and, if so, the Raft
// term of that leadership. A leader is reported once it has applied
// every entry committed before its term, so ScanKV shows all that the
// shard's earlier leaders wrote.
func (s *Set) Lead(shard int) (term uint64, ok bool) {
	if shard < 0 || shard >= len(s.replicas) {
		return 0, false
	}
	r := s.replica(shard)
	if r == nil {
		return 0, false
	}
	return r.lead()
}

// LeadershipChanged returns a channel closed at the next change of
// leadership of any local shard (gained, as Lead reports it; lost; or
// another node became leader), and when the shards close; call again for
// the next change.
func (s *Set) LeadershipChanged() <-chan struct{} { return s.changes.Wait() }

// WriteKV replicates writes to the shard's key/value namespace on every
// replica, through the shard's Raft log, atomically. It is proposed only
// on this node (never forwarded) and only if this node leads shard in
// term; the state machine applies it only in an entry of that term,
// otherwise it applies nothing and WriteKV returns an error wrapping
// ErrFenced. Not leading the shard: an error wrapping ErrNoLeader (and
// ErrFenced too when term is over). It returns once the writes are
// committed and applied on this node: durable as appends are, in the
// Raft log of a majority of the replicas. Writes with no keys replicate
// nothing but are fenced all the same (a barrier of the term). When ctx
// ends first, WriteKV returns its error and the writes may still be
// applied.
//
// Each write needs a key (a DeletePrefix deletes the keys starting with
// it); the writes of one call are at most 512 KiB of keys and values.
// Calls are applied in the order they are proposed: the writes of one
// caller, each call waiting for the one before, keep their order.
func (s *Set) WriteKV(ctx context.Context, shard int, term uint64, writes []streams.KVWrite) error {
	if shard < 0 || shard >= len(s.replicas) {
		return fmt.Errorf("%w: shard %d of %d", ErrInvalidKV, shard, len(s.replicas))
	}
	if err := validateKV(writes); err != nil {
		return err
	}
	select {
	case <-s.done:
		return streams.ErrClosed
	default:
	}
	r, err := s.leading(shard, term)
	if err != nil {
		return err
	}
	cmd := appendCmd{kind: kindKV, term: term, kv: cloneKV(writes)}
	errc := make(chan error, 1)
	r.propose(cmd, func(_ uint64, err error) { errc <- err })
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// SubmitFenced appends like Submit, fenced as WriteKV is: proposed only
// on this node (never forwarded), only if this node leads the stream's
// shard in term, and applied only in an entry of that term. An append of
// a leadership that ended before its entry reached the log is applied
// nowhere, and req.Done gets an error wrapping ErrFenced (and
// ErrNoLeader when this node no longer leads). For writers whose work
// moves with a shard's leadership: the continuous queries, whose
// successor must not see an append of its predecessor land after it
// took over. Term 0 is refused.
func (s *Set) SubmitFenced(req streams.AppendRequest, term uint64) error {
	if req.Done == nil {
		return errors.New("shards: AppendRequest.Done is nil")
	}
	if term == 0 {
		return errors.New("shards: a fenced append needs a term")
	}
	select {
	case <-s.done:
		return streams.ErrClosed
	default:
	}
	shard := ShardOf(req.Stream, s.opts.Shards)
	r, err := s.leading(shard, term)
	if err != nil {
		return err
	}
	cmd := appendCmd{kind: kindAppend, stream: req.Stream, noSync: req.NoSync, records: encodeRecords(req.Records),
		id: appendID{producer: s.producer, seq: s.seq.Add(1)}, term: term}
	if err := checkAppendSize(cmd); err != nil {
		return err
	}
	recs, done := req.Records, req.Done
	r.propose(cmd, func(first uint64, err error) {
		switch {
		case errors.Is(err, errNotProposed):
			err = fmt.Errorf("%w: %w: shard %d: the leadership of term %d ended before the append was proposed", ErrNoLeader, ErrFenced, shard, term)
		case err == nil:
			for i := range recs {
				recs[i].Offset = first + uint64(i)
			}
		}
		done(first, err)
	})
	return nil
}

// leading returns this node's replica of shard if it leads the shard in
// term, or why not: ErrNoLeader (with ErrFenced when term is over), or
// ErrFenced when it leads in another term.
func (s *Set) leading(shard int, term uint64) (*replica, error) {
	r := s.replica(shard)
	if r == nil {
		return nil, fmt.Errorf("%w: this node holds no replica of shard %d", ErrNoLeader, shard)
	}
	switch now, ok := r.lead(); {
	case !ok && term < r.raft.CurrentTerm():
		return nil, fmt.Errorf("%w: %w: shard %d: not led by this node, term %d is over", ErrNoLeader, ErrFenced, shard, term)
	case !ok:
		return nil, fmt.Errorf("%w: shard %d: not led by this node", ErrNoLeader, shard)
	case now != term:
		return nil, fmt.Errorf("%w: shard %d is led by this node in term %d, not %d", ErrFenced, shard, now, term)
	}
	return r, nil
}

// ScanKV reads this node's replica of the shard's namespace: fn is called
// for every key starting with prefix, in key order, without locks held.
func (s *Set) ScanKV(shard int, prefix []byte, fn func(key, value []byte) error) error {
	if shard < 0 || shard >= len(s.replicas) {
		return fmt.Errorf("%w: shard %d of %d", ErrInvalidKV, shard, len(s.replicas))
	}
	r := s.replica(shard)
	if r == nil {
		return fmt.Errorf("%w: shard %d", ErrNotHeld, shard)
	}
	return r.fsm.kv.Scan(prefix, fn)
}

// ErrNotHeld: this node holds no replica of the shard (ScanKV), as when a
// layout change has just moved it away.
var ErrNotHeld = errors.New("shards: this node holds no replica of the shard")

// validateKV checks writes for WriteKV.
func validateKV(writes []streams.KVWrite) error {
	size := 0
	for i, w := range writes {
		switch {
		case len(w.Key) == 0:
			return fmt.Errorf("%w: write %d has an empty key", ErrInvalidKV, i)
		case (w.Delete || w.DeletePrefix) && w.Value != nil:
			return fmt.Errorf("%w: write %d deletes %q and has a value", ErrInvalidKV, i, w.Key)
		}
		size += len(w.Key) + len(w.Value)
	}
	if size > maxKVBytes {
		return fmt.Errorf("%w: %d bytes of keys and values, at most %d", ErrInvalidKV, size, maxKVBytes)
	}
	return nil
}

// cloneKV copies writes: they are encoded after WriteKV may have
// returned (its context done), when the caller may reuse its buffers.
func cloneKV(writes []streams.KVWrite) []streams.KVWrite {
	out := make([]streams.KVWrite, len(writes))
	for i, w := range writes {
		w.Key, w.Value = bytes.Clone(w.Key), bytes.Clone(w.Value)
		out[i] = w
	}
	return out
}

// replaceKV makes the namespace hold pairs only (a replica catching up
// to a snapshot), in one batch.
func (f *fsm) replaceKV(pairs []kvPair) error { return replaceNamespace(f.kv, pairs) }

// replaceNamespace makes kv hold pairs only, in one batch.
func replaceNamespace(kv *streams.KV, pairs []kvPair) error {
	writes := make([]streams.KVWrite, 0, len(pairs)+1)
	writes = append(writes, streams.KVWrite{DeletePrefix: true}) // every key
	for _, p := range pairs {
		writes = append(writes, streams.KVWrite{Key: p.key, Value: p.value})
	}
	errc := make(chan error, 1)
	if err := kv.SubmitRequest(streams.KVRequest{Writes: writes, NoSync: true, Done: func(err error) { errc <- err }}); err != nil {
		return err
	}
	return <-errc
}

// lead reports whether this replica leads its shard now, and in which
// term, once it has applied the entries of the terms before (led).
func (r *replica) lead() (uint64, bool) {
	// Terms only grow: the state read between two equal readings of the
	// term is a state of that term.
	term := r.raft.CurrentTerm()
	leader := r.raft.State() == raft.Leader
	if !leader || r.raft.CurrentTerm() != term || r.led.Load() != term {
		return 0, false
	}
	return term, true
}

// watchLeadership follows the shard's leadership: when this replica
// becomes leader, it waits until it has applied every entry before its
// term (a barrier) and records the term (led); it calls changed when the
// leader, or whether this replica leads, changes, with whether it leads.
func (r *replica) watchLeadership(changed func(leading bool)) {
	defer r.wg.Done()
	// Raft drops observations a full channel cannot take; the state is
	// read again after each one taken, so a dropped one is covered by
	// those still queued before it.
	obs := make(chan raft.Observation, 16)
	o := raft.NewObserver(obs, false, func(o *raft.Observation) bool {
		switch o.Data.(type) {
		case raft.LeaderObservation, raft.RaftState:
			return true
		}
		return false
	})
	r.raft.RegisterObserver(o)
	defer r.raft.DeregisterObserver(o)
	type view struct {
		leader raft.ServerID
		term   uint64 // this replica leads in term (0: it does not)
	}
	var last view
	for {
		if term := r.raft.CurrentTerm(); r.raft.State() == raft.Leader && r.led.Load() != term {
			r.awaitPredecessors(term)
		}
		_, id := r.raft.LeaderWithID()
		now := view{leader: id}
		now.term, _ = r.lead()
		if now != last {
			last = now
			changed(now.term != 0)
		}
		select {
		case <-r.stop:
			return
		case <-obs:
		}
	}
}

// awaitPredecessors waits until this replica, leading in term, has
// applied every entry before its term, and records term in led; it gives
// up when the replica stops leading in term.
func (r *replica) awaitPredecessors(term uint64) {
	for r.raft.State() == raft.Leader && r.raft.CurrentTerm() == term {
		err := r.wait(r.raft.Barrier(r.timeout))
		if err == nil {
			if r.raft.CurrentTerm() == term {
				r.led.Store(term)
			}
			// The followers learn that the entries before the
			// term (and its own first one) are committed.
			r.settle()
			return
		}
		if errors.Is(err, raft.ErrRaftShutdown) || errors.Is(err, streams.ErrClosed) {
			return
		}
		r.log.Warn("a new shard leader cannot apply the entries before its term yet; retrying", "term", term, "error", err)
		select {
		case <-r.stop:
			return
		case <-time.After(50 * time.Millisecond):
		}
	}
}

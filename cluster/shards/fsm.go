package shards

import (
	"context"
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
	CreateStreamAt(ctx context.Context, name string, r streams.Retention, created time.Time) (streams.StreamInfo, error)
	DeleteStream(ctx context.Context, name string) error
	// CreateStreamApplied and DeleteStreamApplied set an applied-index
	// marker with the change (admin).
	CreateStreamApplied(ctx context.Context, name string, r streams.Retention, created time.Time, log string, index uint64) (streams.StreamInfo, error)
	DeleteStreamApplied(ctx context.Context, name, log string, index uint64) error
	DescribeStream(name string) (streams.StreamInfo, error)
	ListStreams() []streams.StreamInfo
	AppliedIndexOf(log string) (uint64, error)
	Sync(ctx context.Context) error
	Healthy() error
	// ReadStored and Install copy records between replicas (catchup.go).
	ReadStored(name string, from, to uint64, maxRecords, maxBytes int) (streams.StoredPage, error)
	Install(ctx context.Context, req streams.InstallRequest) error
	// KV holds each shard's replicated key/value namespace (kv.go).
	KV(ns string) *streams.KV
	// NewUnit gathers one entry's writes into one store batch.
	NewUnit() *streams.Unit
	// ForgetApplied deletes applied-index markers (a replica dropped
	// from this node, reconfigure.go).
	ForgetApplied(ctx context.Context, logs ...string) error
	// Recoveries counts the store's recoveries from a failed write
	// (lostApplied).
	Recoveries() uint64
}

// appendResult is the outcome of one append of an entry, as the leader's
// state machine returns it to the proposer.
type appendResult struct {
	first uint64
	err   error
}

// fsm is one replica's state machine: it applies a shard's committed
// entries to the store. Raft calls Apply, Snapshot and Restore from one
// goroutine (Restore also from the one that opens the group, before that
// goroutine starts); applied is also read by others (status).
type fsm struct {
	log    string // the shard's log name, the store's applied-index key
	shard  int
	shards int // the cluster's shard count (which streams are the shard's)
	store  Store
	logger *slog.Logger
	// src reaches the peers a replica behind a snapshot catches up from
	// (nil: none; such a replica cannot catch up).
	src *peerSource
	// kv is the shard's key/value namespace in the store (kv.go).
	kv      *streams.KV
	applied atomic.Uint64 // the last index applied (or found in the store)
	dd      *dedupe       // recent append ids (dedupe.go); Raft's goroutine only
	// floorsOn: the last command entry applied was of version 5, whose
	// retries past the window are refused (noteVersion); Raft's
	// goroutine only.
	floorsOn bool
	// replay derives the results of the entries replayed from the store
	// (replay.go); nil when none is under way. Raft's goroutine only.
	replay *replayTally
	// run is ApplyBatch's buffer of appends submitted together, kept
	// between calls (its entries are large). Raft's goroutine only.
	run []pending
	// restoring is the index of the last catch-up started (its marker in
	// the store); while above applied, the store is between two states
	// of the log and pending, when known, is the snapshot to finish
	// (catchup.go). Written by Raft's goroutine only; read also by
	// replica.serves.
	restoring atomic.Uint64
	pending   *shardState
	// opening is set while Raft starts the group: a restore that fails
	// then is finished before the next entry, as Raft cannot retry it.
	opening atomic.Bool
	// retry is the wait between attempts while the store cannot write.
	retry time.Duration
	// pageRecords is how many records a catch-up asks a peer for at once.
	pageRecords int
	// stop is closed when the replica shuts down: a blocked apply gives up.
	stop <-chan struct{}
	// lost is set once the store is found to have lost applied entries
	// (lostApplied), and onLost called then: the replica must be opened
	// again, which replays them from the Raft log.
	lost   atomic.Bool
	onLost func()
	// onCatchUp is fsmConfig.onCatchUp.
	onCatchUp func()
	// stored is the highest applied index this state machine committed
	// to the store (or found there), and recoveries the store's count of
	// recoveries it last checked that against (lostApplied). Raft's
	// goroutine only.
	stored, recoveries uint64
}

// fsmConfig is what a replica's state machine works with.
type fsmConfig struct {
	shard, shards int
	store         Store
	logger        *slog.Logger
	src           *peerSource // nil: no catch-up from peers
	stop          <-chan struct{}
	onLost        func() // see fsm.onLost; nil: none
	// onCatchUp is called (on Raft's goroutine) as a catch-up from peers
	// to a snapshot begins; nil: none.
	onCatchUp func()
}

func newFSM(c fsmConfig) (*fsm, error) {
	f := &fsm{log: groupName(c.shard), shard: c.shard, shards: c.shards, store: c.store, logger: c.logger, src: c.src,
		retry: 100 * time.Millisecond, pageRecords: maxFetchRecords, stop: c.stop, onLost: c.onLost, onCatchUp: c.onCatchUp, dd: newDedupe(),
		kv: c.store.KV(kvNamespace(c.shard)), recoveries: c.store.Recoveries()}
	idx, err := c.store.AppliedIndexOf(f.log)
	if err != nil {
		return nil, fmt.Errorf("shards: applied index of %s: %w", f.log, err)
	}
	f.applied.Store(idx)
	f.stored = idx
	if idx > 0 {
		// Raft replays its log from the start unless it restores a
		// snapshot first (Restore then starts from that).
		f.replay = newReplayTally(0, idx, nil)
	}
	restoring, err := c.store.AppliedIndexOf(f.log + restoreSuffix)
	if err != nil {
		return nil, fmt.Errorf("shards: restore target of %s: %w", f.log, err)
	}
	f.restoring.Store(restoring)
	if restoring > idx {
		f.logger.Warn("a catch-up from peers was interrupted; it resumes before anything else is applied",
			"applied", idx, "target", restoring)
	}
	return f, nil
}

// behind reports whether a catch-up from peers has started and not
// finished: the store is between two states of the log.
func (f *fsm) behind() bool { return f.restoring.Load() > f.applied.Load() }

// Apply applies one entry.
func (f *fsm) Apply(l *raft.Log) interface{} { return f.ApplyBatch([]*raft.Log{l})[0] }

// ApplyBatch applies committed entries in order (raft.BatchingFSM). Runs
// of appends and key/value writes are submitted to the store at once and
// awaited together (the store commits them in the order submitted);
// creating or deleting a stream waits for the appends before it. Each
// entry's response is its commands' results.
func (f *fsm) ApplyBatch(logs []*raft.Log) []interface{} {
	out := make([]interface{}, len(logs))
	if f.behind() && !f.finishRestore() {
		return out // stopping
	}
	if f.lostApplied() {
		return out // stopping
	}
	run := f.run[:0] // appends submitted together
	// The retries of appends applied before, answered once every run is
	// committed: the first copy may be in the run still (the same batch),
	// its result not known yet. Committing the run then, as was done,
	// split an entry into two units: its marker in the first, its later
	// appends in the second, which a crash between them lost for good
	// (the replay skips an entry under the marker).
	var repeats []repeat
	for i, l := range logs {
		// Already in the store (a replay after a restart): only its
		// append ids are remembered again, and their results derived.
		replayed := l.Index <= f.applied.Load()
		if !replayed && f.replay != nil {
			f.finishReplay() // the store's last entry was not a command
		}
		if l.Type != raft.LogCommand {
			if replayed {
				f.replayed(l, 0, nil)
			}
			continue
		}
		version, ts, cmds, err := decodeEntryVersion(l.Data)
		if err != nil {
			// Every replica decodes the same bytes the same way.
			f.logger.Error("undecodable shard entry skipped", "index", l.Index, "error", err)
			cmds = nil
		} else {
			f.noteVersion(version)
		}
		if replayed {
			f.replayed(l, version, cmds)
			continue
		}
		if err != nil {
			continue
		}
		results := make([]appendResult, len(cmds))
		out[i] = results
		for j, c := range cmds {
			if c.kind == kindKV {
				// Fenced: applied only in an entry of the term that
				// wrote it, the same decision on every replica.
				if l.Term != c.term {
					results[j].err = fmt.Errorf("%w: shard %d: written in term %d, committed in term %d", ErrFenced, f.shard, c.term, l.Term)
					continue
				}
				if len(c.kv) == 0 {
					continue // a fenced barrier: nothing to write
				}
				run = append(run, pending{result: &results[j], kv: c.kv, req: streams.AppendRequest{
					NoSync: true, AppliedLog: f.log, AppliedIndex: l.Index}})
				continue
			}
			if c.kind != kindAppend {
				// What came before is committed first. A creation or
				// deletion is only ever the first command of its
				// entry (entryLength), so that is earlier entries
				// only: no entry is split. (Leaders built before
				// ba68056 could put one after appends in an entry;
				// such an entry is still split here.)
				f.applyRun(run)
				run = run[:0]
				if e, dup := f.dd.lookup(c.id); dup {
					// A retry of a creation or deletion applied
					// before: its result, and nothing done again (a
					// deletion would delete the stream created since).
					if e.result != nil {
						results[j] = *e.result
					}
					continue
				}
				if version >= entryVersion5 && f.dd.tooLate(c.id) {
					results[j].err = f.tooLate(c)
					continue
				}
				results[j].err = f.admin(c, ts, l.Index)
				f.dd.add(c.id, &results[j])
				continue
			}
			if fenced(c, l) {
				// Not remembered in the window either: the same on a
				// replica that replays the entry (above).
				results[j].err = fmt.Errorf("%w: shard %d: append written in term %d, committed in term %d", ErrFenced, f.shard, c.term, l.Term)
				continue
			}
			if e, dup := f.dd.lookup(c.id); dup {
				// A retry of an append applied before: its result.
				if e.result != nil {
					repeats = append(repeats, repeat{to: &results[j], from: e.result})
				}
				continue
			}
			if version >= entryVersion5 && f.dd.tooLate(c.id) {
				// Perhaps applied before the window's start: not
				// stored again, nor remembered (the same on a replica
				// that replays the entry).
				results[j].err = f.tooLate(c)
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
	for _, r := range repeats {
		*r.to = *r.from
	}
	clear(run) // let go of the records
	f.run = run[:0]
	return out
}

// repeat is a retried append's result, copied from its first copy's.
type repeat struct{ to, from *appendResult }

// fenced reports whether c is an append fenced by a term (SubmitFenced)
// that entry l, of another term, must not apply.
func fenced(c appendCmd, l *raft.Log) bool { return c.term != 0 && l.Term != c.term }

// pending is an append of an entry being applied, or its key/value
// writes, and where its result goes.
type pending struct {
	result *appendResult
	req    streams.AppendRequest
	// kv, if not empty, are key/value writes: req holds only their
	// applied-index marker.
	kv []streams.KVWrite
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
			} else if err == nil {
				f.stored = max(f.stored, run[i].req.AppliedIndex)
			}
		}
		if len(again) == 0 {
			return
		}
		if !f.pause(again[0].result.err) || f.lostApplied() {
			for _, p := range again {
				p.result.err = errStoppedApplying
			}
			return
		}
		run = again
	}
}

// lostApplied checks, once the store has recovered from a failed write,
// that it still holds what this state machine committed to it: the
// recovery reopened it from what had reached the disk, and entries
// applied without fsync may be gone. If some are, nothing more may be
// applied on top (this replica's copy of the shard would lack them for
// good): it logs why, says so (lost, onLost) and waits until the replica
// stops. The Set's manager then opens the replica again (a node's restart
// does the same), and Raft replays the lost entries from its log, which
// is truncated only after the store was synced. True when it stopped.
func (f *fsm) lostApplied() bool {
	n := f.store.Recoveries()
	if n == f.recoveries {
		return false
	}
	marker, err := f.store.AppliedIndexOf(f.log)
	if err != nil {
		return false // asked again at the next entry
	}
	if marker >= f.stored {
		f.recoveries = n
		return false
	}
	f.logger.Error("the store lost shard entries in its recovery from a failed write; the replica is opened again, to replay them from the Raft log",
		"applied", f.stored, "store", marker)
	if !f.lost.Swap(true) && f.onLost != nil {
		f.onLost()
	}
	<-f.stop
	return true
}

// admin creates or deletes a stream as entry index says, retrying while
// the store cannot write. Its errors (a stream that exists, or does not)
// are the same on every replica.
//
// A change that succeeds sets the shard's admin marker (adminSuffix) to
// index with it, synced, while the store's applied-index marker covers
// the entry only once the rest of it is stored: after a crash in between,
// the entry is applied again, and the marker tells that the change was
// made (its result then is success, not "exists" or "not found", which a
// retry of the change would be answered with).
func (f *fsm) admin(c appendCmd, ts time.Time, index uint64) error {
	if done, err := f.store.AppliedIndexOf(f.log + adminSuffix); err == nil && done >= index {
		return nil
	}
	for {
		ctx, cancel := f.stopContext()
		var err error
		if c.kind == kindCreate {
			// At the leader's time, the same on every replica.
			_, err = f.store.CreateStreamApplied(ctx, c.stream, c.retention, ts, f.log+adminSuffix, index)
		} else {
			err = f.store.DeleteStreamApplied(ctx, c.stream, f.log+adminSuffix, index)
		}
		cancel()
		if !retryable(err) {
			return err
		}
		if !f.pause(err) {
			return errStoppedApplying
		}
	}
}

// stopContext returns a context cancelled when the replica stops.
func (f *fsm) stopContext() (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		select {
		case <-f.stop:
			cancel()
		case <-ctx.Done():
		}
	}()
	return ctx, cancel
}

// pause waits before a retry; false once the replica stops.
func (f *fsm) pause(err error) bool {
	// The store's recovery reopens it from what reached the disk, and
	// entries applied without fsync just before the failure may be gone
	// from it: lostApplied finds out, and the replica is opened again to
	// replay them from the Raft log (docs/operations.md, "Disk faults").
	f.logger.Warn("store cannot apply shard entries; retrying", "error", err)
	select {
	case <-f.stop:
		return false
	case <-time.After(f.retry):
		return true
	}
}

// errStoppedApplying answers the commands of an entry the replica stopped
// retrying (it closes): the entry is committed, and the other replicas,
// and this one once opened again, apply it. On the leader that outcome
// is unknown to the appender, who sends it again with its id (a refusal
// would be wrong: the records are stored).
var errStoppedApplying = fmt.Errorf("%w: %w", streams.ErrClosed, errOutcomeUnknown)

// retryable reports a store failure that says nothing about the entry.
func retryable(err error) bool {
	return errors.Is(err, streams.ErrWrite) || errors.Is(err, streams.ErrUnavailable)
}

// submitAll submits a run's appends and key/value writes, waits for all
// of them and records their results. It returns the errors by part. The
// parts of one entry (the same applied index) go to the store as one
// unit, committed in one batch: a crash never leaves an entry half
// applied under its marker.
func (f *fsm) submitAll(run []pending) []error {
	errs := make([]error, len(run))
	done := make(chan struct{}, len(run))
	fail := func(i int, err error) {
		*run[i].result = appendResult{0, err}
		errs[i] = err
		done <- struct{}{}
	}
	var unit *streams.Unit
	var parts []int // indexes of run in unit
	submit := func() {
		if unit == nil {
			return
		}
		// Committed here when the store's committer is idle (most of
		// the time on a follower): no hand-off to it and back.
		if err := unit.Commit(); err != nil {
			for _, i := range parts {
				fail(i, err)
			}
		}
		unit, parts = nil, parts[:0]
	}
	for i := range run {
		p := &run[i]
		if unit != nil && p.req.AppliedIndex != run[i-1].req.AppliedIndex {
			submit() // the next entry
		}
		if unit == nil {
			unit = f.store.NewUnit()
			// Not over what a recovery since lostApplied last looked
			// may have lost: refused then (retryable), and looked at.
			unit.RequireRecoveries(f.recoveries)
		}
		req := p.req
		req.Done = func(first uint64, err error) {
			*p.result = appendResult{first, err}
			errs[i] = err
			done <- struct{}{}
		}
		if len(p.kv) > 0 {
			unit.KV(f.kv, streams.KVRequest{Writes: p.kv, NoSync: req.NoSync,
				AppliedLog: req.AppliedLog, AppliedIndex: req.AppliedIndex, Done: func(err error) { req.Done(0, err) }})
		} else if err := unit.Append(req); err != nil {
			fail(i, err)
			continue
		}
		parts = append(parts, i)
	}
	submit()
	for range run {
		<-done
	}
	return errs
}

// errRestoring: the store is midway through a catch-up, between two
// states of the log, and no snapshot can describe it.
var errRestoring = errors.New("shards: a catch-up from peers is under way")

// Snapshot captures the shard's state: the applied index, the window of
// recent append ids, the shard's streams and its key/value namespace
// (snapshot.go). Raft calls it
// between applies, so the store holds exactly what the log made up to
// the applied index; its Persist syncs the store first.
func (f *fsm) Snapshot() (raft.FSMSnapshot, error) {
	if f.behind() {
		return nil, fmt.Errorf("%w: %s", errRestoring, f.log)
	}
	st := shardState{index: f.applied.Load(), ids: f.dd.ids(), complete: true,
		streams: shardStreams(f.store, f.shard, f.shards)}
	// The results are never written again once their entry is applied.
	st.results = f.dd.results(st.ids)
	if st.floorsOn = f.floorsOn; st.floorsOn {
		st.floors = f.dd.floorList()
	}
	// The namespace is small state, read here because the store holds
	// the applied index's state only until the next apply.
	err := f.kv.Scan(nil, func(k, v []byte) error {
		st.kv = append(st.kv, kvPair{key: k, value: v})
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("shards: %s: read the key/value namespace: %w", f.log, err)
	}
	return &snapshot{state: st, store: f.store}, nil
}

// Restore installs a snapshot. A store that holds the snapshot's index
// already (Raft restarting) only takes its append ids. A store behind it
// (a replica that was away while the others forgot the log it missed)
// catches up from its peers (catchup.go); if that fails, Raft sends the
// snapshot again later, and the replica finishes the catch-up before it
// applies another entry.
func (f *fsm) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		return fmt.Errorf("shards: %s: read snapshot: %w", f.log, err)
	}
	snap, err := decodeSnapshot(b)
	if err != nil {
		return fmt.Errorf("shards: %s: %w", f.log, err)
	}
	if have := f.applied.Load(); have >= snap.index {
		f.setWindow(snap)
		f.replay = nil
		if have > snap.index && snap.complete {
			f.replay = newReplayTally(snap.index, have, snap.streams)
		}
		return nil
	}
	if !snap.complete {
		return fmt.Errorf("%w: %s: the store has applied up to %d, the snapshot needs %d and does not list the streams",
			ErrBehind, f.log, f.applied.Load(), snap.index)
	}
	f.pending = &snap
	f.logger.Info("replica behind a snapshot; catching up from its peers",
		"applied", f.applied.Load(), "index", snap.index, "streams", len(snap.streams))
	if f.onCatchUp != nil && f.src != nil {
		f.onCatchUp()
	}
	ctx, cancel := f.stopContext()
	defer cancel()
	if err := f.restore(ctx, snap); err != nil {
		if f.opening.Load() {
			f.logger.Warn("catching up failed while the shard starts; it is retried before the next entry", "error", err)
			return nil
		}
		return err
	}
	return nil
}

// restore catches up to snap and takes its state.
func (f *fsm) restore(ctx context.Context, snap shardState) error {
	if err := f.catchUp(ctx, snap); err != nil {
		return err
	}
	f.applied.Store(snap.index)
	f.stored = snap.index // synced: lostApplied compares with it
	f.setWindow(snap)
	f.replay = nil
	f.pending = nil
	return nil
}

// finishRestore finishes an interrupted catch-up before an entry is
// applied over it, retrying until it succeeds; false if the replica
// stops first.
func (f *fsm) finishRestore() bool {
	if f.pending == nil {
		// Raft restores the newest snapshot when it starts, so this
		// one is known unless the snapshot store lost it.
		f.logger.Error("a catch-up from peers was interrupted and its snapshot is gone; entries are applied over it",
			"applied", f.applied.Load(), "target", f.restoring.Load())
		f.restoring.Store(0)
		return true
	}
	for {
		ctx, cancel := f.stopContext()
		err := f.restore(ctx, *f.pending)
		cancel()
		if err == nil {
			return true
		}
		f.logger.Warn("cannot finish catching up from peers; retrying", "error", err)
		select {
		case <-f.stop:
			return false
		case <-time.After(10 * f.retry):
		}
	}
}

// ErrRetryTooLate: a retried append or stream change came after its id
// left the shard's window of recent ids (dedupe.go). It may have been
// applied already, so it is not applied again; its outcome is unknown.
var ErrRetryTooLate = fmt.Errorf("%w: a retry came after the shard forgot the ids of its first copies, which may have been stored: it is not stored again", streams.ErrUnavailable)

// tooLate is the result of c, a retry past the window.
func (f *fsm) tooLate(c appendCmd) error {
	f.logger.Warn("retry past the window of recent appends refused", "stream", c.stream, "producer", c.id.producer, "seq", c.id.seq)
	return fmt.Errorf("shard %d: %w", f.shard, ErrRetryTooLate)
}

// setWindow replaces the window with a snapshot's ids, their results
// (nil, or one per id, nil where not known) and its floors.
func (f *fsm) setWindow(snap shardState) {
	f.dd = newDedupe()
	for i, id := range snap.ids {
		var r *appendResult
		if snap.results != nil {
			r = snap.results[i]
		}
		f.dd.add(id, r)
	}
	f.dd.setFloors(snap.floors)
	f.floorsOn = snap.floorsOn
}

// noteVersion follows the versions of the command entries applied or
// replayed. The window's floors count from the first entry of version 5
// after entries of others, the same log index on every replica: a
// replica's floors from before depended on which snapshot it last
// restored (those of an earlier encoding carry none), and a retry would
// be refused on one replica and stored on another.
func (f *fsm) noteVersion(v byte) {
	on := v >= entryVersion5
	if on && !f.floorsOn {
		f.dd.clearFloors()
	}
	f.floorsOn = on
}

// ErrBehind: a replica's store is behind a snapshot it was sent and
// cannot catch up from it (a snapshot of the first encoding).
var ErrBehind = errors.New("shards: replica behind the snapshot")

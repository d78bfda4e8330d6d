package streams

import (
	"context"
	"encoding/binary"
	"fmt"
	"sync"
	"time"

	"github.com/cockroachdb/pebble/v2"
)

// AppendRequest asks the store to append records to one stream.
type AppendRequest struct {
	// Stream names the target stream; it is created if missing and the
	// store's AutoCreate option is set.
	Stream string
	// Records are appended in order and get consecutive offsets. The store
	// assigns Offset and Timestamp; the slice is not retained after Done.
	Records []Record
	// NoSync says the caller does not need this request synced before Done
	// (QoS 0). A group holding any request that needs a sync is synced as a
	// whole under SyncAlways.
	NoSync bool
	// AppliedIndex, if non-zero, is recorded as the applied-index marker
	// of the replicated log AppliedLog ("" names the store's one unnamed
	// log) in the same batch as the records (for a replicated log in front
	// of the store: after a crash, the log is applied again from there).
	// A request with no Stream, no Records and an AppliedIndex sets the
	// marker alone (for log entries that stored nothing). A refused
	// append (a name, a size, a missing stream) sets its marker too: the
	// refusal is the entry's result.
	AppliedIndex uint64
	AppliedLog   string
	// Encoded, if set instead of Records, holds records encoded by
	// AppendEncoded with timestamp 0 (as a replica receives them from its
	// leader): they are stored as they are, with the request's timestamp,
	// without being decoded and encoded again.
	Encoded [][]byte
	// Timestamp, if not zero, is the records' timestamp instead of the
	// store's clock (a replica applies the timestamp its leader chose);
	// like the clock's, it is raised to the stream's newest timestamp if
	// older, so timestamps never decrease within a stream.
	Timestamp time.Time
	// Done is called once, by the committer (Store.writer), after the records are
	// durable under the sync policy (err == nil, first = offset of the first
	// record) or failed (err != nil: nothing of the request was stored). It
	// must not block.
	Done func(first uint64, err error)
}

type opKind uint8

const (
	opAppend opKind = iota
	opCreate
	opDelete
	opTrim
	opKV
	opRecover // try to reopen the database after a write failure
	opSync    // make everything committed before it durable
	opInstall // records a replica fetched from a peer (replica.go)
	opForget  // delete applied-index markers (replica.go)
)

// op is one entry of the committer's queue.
type op struct {
	kind      opKind
	stream    string
	req       AppendRequest // opAppend; opKV, opCreate, opDelete: its applied-index marker
	retention Retention     // opCreate
	created   int64         // opCreate: the creation time (unix ns); 0: the store's clock
	install   *InstallRequest
	forget    []string  // opForget: the logs whose markers go
	trim      trimCmd   // opTrim
	kv        []KVWrite // opKV
	noSync    bool
	submitted time.Time // for the append latency
	done      func(first uint64, err error)
	// linked: the op is committed in the same group (one Pebble batch)
	// as the op after it: a Unit's ops but the last.
	linked bool
	// guarded: the op is refused (ErrRecovered) unless the store's
	// recovery count is recoveries (Unit.RequireRecoveries).
	guarded    bool
	recoveries uint64
}

// opQueue is the committer's inbox: producers append under mu and wake the
// committer; the committer takes everything at once.
type opQueue struct {
	mu     sync.Mutex // guards ops and closed
	ops    []*op
	closed bool
	wake   chan struct{} // capacity 1: a pending wake-up
}

func (q *opQueue) push(o *op) error {
	q.mu.Lock()
	if q.closed {
		q.mu.Unlock()
		return ErrClosed
	}
	q.ops = append(q.ops, o)
	q.mu.Unlock()
	select {
	case q.wake <- struct{}{}:
	default:
	}
	return nil
}

// pushAll queues ops at once: the committer takes all or none of them.
func (q *opQueue) pushAll(ops []*op) error {
	q.mu.Lock()
	if q.closed {
		q.mu.Unlock()
		return ErrClosed
	}
	q.ops = append(q.ops, ops...)
	q.mu.Unlock()
	select {
	case q.wake <- struct{}{}:
	default:
	}
	return nil
}

func (q *opQueue) close() {
	q.mu.Lock()
	q.closed = true
	q.mu.Unlock()
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

// pending reports whether ops are queued.
func (q *opQueue) pending() bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.ops) > 0
}

// wait waits until ops are queued or the queue is closed.
func (q *opQueue) wait() {
	for {
		q.mu.Lock()
		ready := len(q.ops) > 0 || q.closed
		q.mu.Unlock()
		if ready {
			return
		}
		<-q.wake
	}
}

// take swaps the queued ops out for spare (which must be empty and held by
// no one else) without waiting. closed reports a closed, drained queue.
// Only the writer role takes (Store.writer), so that what is taken is
// committed before anything queued after it.
func (q *opQueue) take(spare []*op) (ops []*op, closed bool) {
	q.mu.Lock()
	ops, q.ops = q.ops, spare
	closed = q.closed && len(ops) == 0
	q.mu.Unlock()
	return ops, closed
}

// Submit queues an append and returns at once; req.Done reports the outcome.
func (s *Store) Submit(req AppendRequest) error {
	if req.Done == nil {
		return fmt.Errorf("streams: AppendRequest.Done is nil")
	}
	return s.queue.push(&op{kind: opAppend, stream: req.Stream, req: req, noSync: req.NoSync, done: req.Done, submitted: time.Now()})
}

// A Unit gathers appends and key/value writes that are committed in one
// batch: after a crash either all of them are in the store or none. A
// replicated log applies each of its entries as one, since every part
// carries the entry's index as the applied marker: were an entry split
// over two batches, a crash between them (the first made durable by
// someone's sync) would leave the rest of the entry unapplied for good.
// A unit is not split when it exceeds MaxGroupBytes; the log bounds it.
type Unit struct {
	s   *Store
	ops []*op
	// guarded, recoveries: RequireRecoveries.
	guarded    bool
	recoveries uint64
}

// RequireRecoveries makes the unit refused, each part with ErrRecovered
// and nothing written, unless the store's recovery count (Recoveries) is
// still n when it is committed. A caller with a redo log of its own (a
// shard's state machine) thus never applies over writes a recovery lost
// before it has checked for them: checking Recoveries before committing
// would race with a recovery in between.
func (u *Unit) RequireRecoveries(n uint64) { u.guarded, u.recoveries = true, n }

// NewUnit starts an empty unit.
func (s *Store) NewUnit() *Unit { return &Unit{s: s} }

// Append adds an append (as Submit would queue it) to the unit.
func (u *Unit) Append(req AppendRequest) error {
	if req.Done == nil {
		return fmt.Errorf("streams: AppendRequest.Done is nil")
	}
	u.ops = append(u.ops, &op{kind: opAppend, stream: req.Stream, req: req, noSync: req.NoSync, done: req.Done, submitted: time.Now()})
	return nil
}

// KV adds key/value writes to namespace kv (as kv.SubmitRequest would
// queue them) to the unit.
func (u *Unit) KV(kv *KV, req KVRequest) {
	u.ops = append(u.ops, kv.op(req))
}

// Commit commits the unit on the calling goroutine when no commit is under
// way, together with whatever is queued before it, calling their Done
// before it returns; otherwise it queues the unit for the committer, and
// each part reports its outcome through its own Done. A caller
// that waits for each unit (a replicated log's state machine applying
// entries) so spares two wake-ups: the committer's, and its own when the
// committer is done. Either way nothing queued before the unit is
// committed after it. Commit does not wait out Options.CommitDelay: it is
// meant for unsynced writes (NoSync), whose commit costs no fsync.
func (u *Unit) Commit() error {
	if len(u.ops) == 0 {
		return nil
	}
	for _, o := range u.ops[:len(u.ops)-1] {
		o.linked = true // committed in one group with the next
	}
	if u.guarded {
		for _, o := range u.ops {
			o.guarded, o.recoveries = true, u.recoveries
		}
	}
	s := u.s
	if !s.writer.TryLock() {
		return s.queue.pushAll(u.ops)
	}
	defer s.writer.Unlock()
	if s.writer.closed {
		return ErrClosed
	}
	ops, _ := s.queue.take(s.writer.spare)
	ops = append(ops, u.ops...)
	s.commitAll(s.writer.g, ops)
	clear(ops)
	s.writer.spare = ops[:0]
	return nil
}

// Append appends records to a stream and waits until they are durable. It
// returns the offset of the first record.
func (s *Store) Append(ctx context.Context, stream string, records ...Record) (uint64, error) {
	type result struct {
		first uint64
		err   error
	}
	resc := make(chan result, 1)
	err := s.Submit(AppendRequest{Stream: stream, Records: records, Done: func(first uint64, err error) {
		resc <- result{first, err}
	}})
	if err != nil {
		return 0, err
	}
	select {
	case r := <-resc:
		return r.first, r.err
	case <-ctx.Done():
		return 0, ctx.Err()
	}
}

// Sync waits until everything committed before it is durable, whatever
// the sync policy (a replicated log calls it before it may forget entries
// the store applied without syncing).
func (s *Store) Sync(ctx context.Context) error {
	resc := make(chan error, 1)
	if err := s.queue.push(&op{kind: opSync, done: func(_ uint64, err error) { resc <- err }}); err != nil {
		return err
	}
	select {
	case err := <-resc:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// syncWAL forces the write-ahead log to disk.
func syncWAL(db *pebble.DB) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%v", r)
		}
	}()
	return db.LogData(nil, pebble.Sync)
}

// checkpointInterval bounds how often a busy stream's state key is
// rewritten. Writing it with every commit would put one hot key in every
// flushed table, so that tables overlap and Pebble must compact them;
// recovery rolls the state forward over the records after the checkpoint.
const checkpointInterval = time.Second

// runCommitter is the single writer: it commits queued ops in groups.
// It takes the writer role (Store.writer) for each group; a caller that
// commits a Unit itself (Unit.Commit) holds it in between.
func (s *Store) runCommitter() {
	defer s.wg.Done()
	var spare []*op
	g := s.writer.g // set by Open; used only with the writer role held
	for {
		slept := false
		s.writer.Lock()
		d := s.opts.CommitDelay
		if g.auto != nil {
			d = g.auto.current()
			held := g.auto.at(g.auto.level)
			s.stats.delayOn.Store(held > 0)
			s.stats.delay.Store(int64(held))
		}
		var wait time.Duration
		if d > 0 && !g.lastSync.IsZero() {
			// Gather what arrives until d after the last synced commit
			// began (Options.CommitDelay).
			wait = d - time.Since(g.lastSync)
			g.lastSync = time.Time{}
		}
		s.writer.Unlock()
		if wait > 0 {
			time.Sleep(wait)
			slept = true
		}
		if slept && s.queue.pending() {
			s.stats.delays.Add(1) // what is queued by now waited
		}
		s.queue.wait()
		// Taken with the writer role held: a Unit.Commit in between
		// commits what is queued before its own ops, never after.
		s.writer.Lock()
		batch, closed := s.queue.take(spare)
		if closed {
			g.checkpointAll()
			s.writer.closed = true
			s.writer.Unlock()
			return
		}
		s.commitAll(g, batch)
		s.writer.Unlock()
		// All completed (or none was left: a Unit.Commit took them):
		// reuse the array, without keeping the ops (and what their done
		// callbacks reference) alive.
		clear(batch)
		spare = batch[:0]
	}
}

// commitAll commits ops in groups, or refuses them while the store
// cannot write. The caller holds the writer role.
func (s *Store) commitAll(g *group, ops []*op) {
	for len(ops) > 0 {
		if s.Healthy() != nil {
			ops = s.refuse(ops)
			continue
		}
		n := g.commit(ops)
		ops = ops[n:]
	}
}

// newGroup returns the committer's scratch state.
func newGroup(s *Store) *group {
	g := &group{s: s, scratch: make([]byte, 0, 4096)}
	if s.opts.CommitDelayAuto && s.opts.Sync == SyncAlways {
		g.auto = newAutoDelay(s.opts.CommitDelay, time.Now())
	}
	return g
}

// group is the committer's scratch state for one commit group.
type group struct {
	s         *Store
	gen       uint64 // increments per group; marks streams touched in it
	batch     *pebble.Batch
	ops       []*op
	results   []opResult
	touched   []*stream
	created   []*stream
	deleted   []*stream
	sync      bool
	forceSync bool
	// lastSync is when the last synced commit began, while
	// Options.CommitDelay may hold the next one back (runCommitter).
	lastSync time.Time
	// auto decides whether to hold commits back (Options.CommitDelayAuto;
	// nil otherwise).
	auto    *autoDelay
	applied map[string]uint64 // applied-index markers set in this group, by log
	nextID  uint64            // s.nextID before the group, for rollback
	bytes   int
	records int
	now     int64
	scratch []byte
	keybuf  []byte
	// blocks are the streams with records pending in a block, spareBlks
	// buffers for the next blocks (block.go).
	blocks    []*stream
	spareBlks [][]byte
}

type opResult struct {
	first uint64
	err   error // a validation error: the op was not part of the batch
}

// commit applies a prefix of ops as one batch and returns its length.
func (g *group) commit(ops []*op) int {
	s := g.s
	g.gen++
	g.batch = s.db.NewBatch()
	g.ops, g.results = g.ops[:0], g.results[:0]
	g.touched, g.created, g.deleted = g.touched[:0], g.created[:0], g.deleted[:0]
	g.sync, g.forceSync, g.bytes, g.records = false, false, 0, 0
	clear(g.applied)
	g.nextID = s.nextID
	g.now = s.opts.Now().UnixNano()

	n := 0
	for _, o := range ops {
		if n > 0 && g.bytes >= s.opts.MaxGroupBytes && !ops[n-1].linked {
			break
		}
		n++
		g.ops = append(g.ops, o)
		var r opResult
		if o.guarded && o.recoveries != s.recoveries.Load() {
			// Recoveries run in the committer's role too: none comes
			// between this check and the batch's commit.
			r.err = ErrRecovered
			g.results = append(g.results, r)
			continue
		}
		if o.kind != opAppend && o.kind != opKV && o.kind != opSync && o.kind != opRecover {
			g.writeBlocks()
		}
		switch o.kind {
		case opAppend:
			r.first, r.err = g.append(o)
		case opCreate:
			if _, r.err = g.create(o.stream, o.retention, o.created); r.err == nil {
				g.markApplied(o.req.AppliedLog, o.req.AppliedIndex)
			}
		case opDelete:
			if r.err = g.delete(o.stream); r.err == nil {
				g.markApplied(o.req.AppliedLog, o.req.AppliedIndex)
			}
		case opTrim:
			r.err = g.trim(o.trim)
		case opKV:
			if r.err = g.writeKV(o.kv); r.err == nil {
				g.markApplied(o.req.AppliedLog, o.req.AppliedIndex)
			}
		case opRecover:
			// Healthy already: nothing to do.
		case opSync:
			g.forceSync = true
		case opInstall:
			r.err = g.install(o.install)
		case opForget:
			g.forget(o.forget)
		}
		if r.err == nil && !o.noSync {
			g.sync = true
		}
		if r.err == nil && (o.kind == opCreate || o.kind == opDelete || o.kind == opForget) {
			// Creating and deleting streams is rare and must survive a
			// crash whatever the sync policy.
			g.forceSync = true
		}
		g.results = append(g.results, r)
	}

	g.writeBlocks()
	for _, st := range g.touched {
		if !st.isDeletedIn(g) && (st.mustCheckpoint || g.now-st.checkpointAt >= int64(checkpointInterval)) {
			_ = g.batch.Set(stateKey(st.meta.id), encodeState(st.work), nil)
			st.checkpointAt, st.mustCheckpoint = g.now, false
		}
	}
	if s.nextID != g.nextID {
		_ = g.batch.Set(nextIDKey(), binary.AppendUvarint(nil, s.nextID), nil)
	}
	for log, index := range g.applied {
		_ = g.batch.Set(appliedKey(log), binary.BigEndian.AppendUint64(nil, index), nil)
	}

	var err error
	if !g.batch.Empty() {
		wo := pebble.NoSync
		if g.forceSync || (g.sync && s.opts.Sync == SyncAlways) {
			wo = pebble.Sync
			if len(g.ops) > 1 {
				// Appends from more than one producer share this sync:
				// the next may gather more if it waits a little. A lone
				// append (one producer waiting for each ack) never waits.
				g.lastSync = time.Now()
			}
		}
		err = commitBatch(g.batch, wo)
		if err == nil {
			s.stats.commits.Add(1)
			s.stats.records.Add(int64(g.records))
			if wo.Sync {
				s.stats.syncs.Add(1)
				if g.auto != nil {
					g.auto.committed(len(g.ops), time.Now())
					s.stats.delaySwitches.Store(g.auto.switches)
				}
			}
		}
	} else if g.forceSync {
		if err = syncWAL(s.db); err == nil {
			s.stats.syncs.Add(1)
		}
	}
	func() {
		defer func() { _ = recover() }() // a batch of a failed database may panic on close
		_ = g.batch.Close()
	}()
	g.batch = nil
	if err != nil {
		s.stats.commitErrors.Add(1)
		g.rollback()
		s.fail(err)
		err = fmt.Errorf("%w: %w", ErrWrite, err)
	} else {
		g.publish()
	}
	completed := time.Now()
	for i, o := range g.ops {
		if o.kind == opAppend && !o.submitted.IsZero() {
			s.stats.appendLatency.observe(completed.Sub(o.submitted))
		}
		r := g.results[i]
		if r.err == nil && err != nil {
			r = opResult{err: err}
		}
		if o.done != nil {
			o.done(r.first, r.err)
		}
		g.ops[i] = nil
	}
	return n
}

// refuse handles ops while the store cannot write: a recover op tries to
// reopen the database; every other op fails at once. It returns the ops
// left once the store is healthy again.
func (s *Store) refuse(ops []*op) []*op {
	for i, o := range ops {
		if o.kind == opRecover {
			s.tryRecover()
			if s.Healthy() == nil {
				return ops[i+1:]
			}
			continue
		}
		if o.done != nil {
			o.done(0, s.Healthy())
		}
		ops[i] = nil
	}
	return nil
}

// checkpointAll writes the state of every stream that changed since its
// last checkpoint (on close, so a clean restart has nothing to roll forward).
func (g *group) checkpointAll() {
	b := g.s.db.NewBatch()
	defer b.Close()
	for _, st := range g.s.work {
		_ = b.Set(stateKey(st.meta.id), encodeState(st.durable), nil)
	}
	if g.s.Healthy() != nil {
		return // recovery rolls the state forward on the next open
	}
	if err := commitBatch(b, pebble.Sync); err != nil {
		g.s.log.Error("final checkpoint failed", "error", err)
	}
}

// stream returns the committer's view of a stream, creating it if allowed
// (at time created, unix ns; 0: the store's clock).
func (g *group) stream(name string, autoCreate bool, created int64) (*stream, error) {
	if st, ok := g.s.work[name]; ok {
		return st, nil
	}
	if !autoCreate {
		return nil, fmt.Errorf("%w: %q", ErrStreamNotFound, name)
	}
	if err := ValidateName(name); err != nil {
		return nil, err
	}
	return g.create(name, g.s.opts.DefaultRetention, created)
}

func (g *group) touch(st *stream) {
	if st.touchedGen != g.gen {
		st.touchedGen = g.gen
		g.touched = append(g.touched, st)
	}
}

// append adds o's records to the batch and sets its applied-index
// marker, also when it refuses them: a refusal (a name, a size, a missing
// stream) is the entry's result, the same on every replica of a
// replicated log, and the entry is applied all the same.
func (g *group) append(o *op) (uint64, error) {
	first, err := g.appendRecords(o)
	g.markApplied(o.req.AppliedLog, o.req.AppliedIndex)
	return first, err
}

func (g *group) appendRecords(o *op) (uint64, error) {
	s := g.s
	if o.req.Stream == "" && len(o.req.Records) == 0 && len(o.req.Encoded) == 0 && o.req.AppliedIndex != 0 {
		return 0, nil // a marker alone
	}
	for i := range o.req.Records {
		if n := encodedSize(&o.req.Records[i]); n > s.opts.MaxRecordBytes {
			return 0, fmt.Errorf("%w: %d bytes, limit %d", ErrRecordTooLarge, n, s.opts.MaxRecordBytes)
		}
	}
	for _, b := range o.req.Encoded {
		if len(b) > s.opts.MaxRecordBytes {
			return 0, fmt.Errorf("%w: %d bytes, limit %d", ErrRecordTooLarge, len(b), s.opts.MaxRecordBytes)
		}
		if len(b) < 3 || b[0] != recordVersion1 || b[2] != 0 {
			return 0, fmt.Errorf("%w: an encoded record to append has no zero timestamp", ErrCorrupt)
		}
	}
	ts := g.now
	if !o.req.Timestamp.IsZero() {
		ts = o.req.Timestamp.UnixNano()
	}
	// A stream created by a replica's append is created at its leader's
	// time, like its records.
	st, err := g.stream(o.stream, s.opts.AutoCreate, ts)
	if err != nil {
		return 0, err
	}
	g.touch(st)
	first := st.work.next
	if ts < st.work.lastTS {
		ts = st.work.lastTS // timestamps never decrease within a stream
	}
	for i := range o.req.Records {
		r := &o.req.Records[i]
		g.scratch = appendRecord(g.scratch[:0], r, ts)
		r.Offset = st.work.next
		r.Timestamp = time.Unix(0, ts)
		g.addToBlock(st, g.scratch)
	}
	for _, b := range o.req.Encoded {
		// The encoding up to the timestamp, the timestamp, the rest.
		g.scratch = append(g.scratch[:0], b[:2]...)
		g.scratch = binary.AppendVarint(g.scratch, ts)
		g.scratch = append(g.scratch, b[3:]...)
		g.addToBlock(st, g.scratch)
	}
	st.work.lastTS = ts
	return first, nil
}

// put accounts for the record just written to the batch (a value of n
// bytes under g.keybuf) as st's next.
func (g *group) put(st *stream, n int) {
	st.work.next++
	st.work.bytes += int64(n)
	st.groupBytes += int64(n)
	g.bytes += n + len(g.keybuf)
	g.records++
}

// markApplied sets log's applied-index marker in this group.
func (g *group) markApplied(log string, index uint64) {
	if index > g.applied[log] {
		if g.applied == nil {
			g.applied = make(map[string]uint64)
		}
		g.applied[log] = index
	}
}

func (g *group) create(name string, retention Retention, created int64) (*stream, error) {
	s := g.s
	if created == 0 {
		created = g.now
	}
	if err := ValidateName(name); err != nil {
		return nil, err
	}
	if _, ok := s.work[name]; ok {
		return nil, fmt.Errorf("%w: %q", ErrStreamExists, name)
	}
	st := &stream{
		name:   name,
		meta:   streamMeta{id: s.nextID, created: time.Unix(0, created), retention: retention},
		notify: make(chan struct{}),
	}
	st.mustCheckpoint = true
	s.nextID++
	s.work[name] = st
	g.created = append(g.created, st)
	g.touch(st)
	_ = g.batch.Set(metaKey(name), encodeMeta(st.meta), nil)
	return st, nil
}

func (g *group) delete(name string) error {
	s := g.s
	st, ok := s.work[name]
	if !ok {
		return fmt.Errorf("%w: %q", ErrStreamNotFound, name)
	}
	delete(s.work, name)
	g.deleted = append(g.deleted, st)
	_ = g.batch.DeleteRange(recordKey(st.meta.id, 0), streamRecordsEnd(st.meta.id), nil)
	_ = g.batch.Delete(metaKey(name), nil)
	_ = g.batch.Delete(stateKey(st.meta.id), nil)
	return nil
}

func (st *stream) isDeletedIn(g *group) bool {
	for _, d := range g.deleted {
		if d == st {
			return true
		}
	}
	return false
}

// rollback restores the committer's view after a failed commit.
func (g *group) rollback() {
	s := g.s
	g.dropBlocks()
	for _, st := range g.touched {
		st.work = st.durable
		st.groupBytes = 0
		st.mustCheckpoint = true
	}
	for _, st := range g.created {
		if s.work[st.name] == st {
			delete(s.work, st.name)
		}
	}
	for _, st := range g.deleted {
		if !st.isCreatedIn(g) {
			s.work[st.name] = st
		}
	}
	s.nextID = g.nextID
}

func (st *stream) isCreatedIn(g *group) bool {
	for _, c := range g.created {
		if c == st {
			return true
		}
	}
	return false
}

// publish makes a committed group visible to readers and wakes tail readers.
func (g *group) publish() {
	s := g.s
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, st := range g.deleted {
		if s.mu.streams[st.name] == st {
			delete(s.mu.streams, st.name)
		}
		st.deleted = true
		close(st.notify)
		st.notify = make(chan struct{})
	}
	for _, st := range g.created {
		if !st.isDeletedIn(g) {
			s.mu.streams[st.name] = st
		}
	}
	for _, st := range g.touched {
		if st.durable.next != st.work.next {
			close(st.notify)
			st.notify = make(chan struct{})
			st.counters.appendedRecords.Add(int64(st.work.next - st.durable.next))
			st.counters.appendedBytes.Add(st.groupBytes)
		}
		st.groupBytes = 0
		st.durable = st.work
	}
	if len(g.created) > 0 || len(g.deleted) > 0 {
		close(s.mu.changed)
		s.mu.changed = make(chan struct{})
	}
}

// runIntervalSync syncs the WAL periodically under SyncInterval.
func (s *Store) runIntervalSync() {
	defer s.wg.Done()
	t := time.NewTicker(s.opts.SyncInterval)
	defer t.Stop()
	for {
		select {
		case <-s.done:
			return
		case <-t.C:
			if s.Healthy() != nil {
				continue
			}
			db, unlock, err := s.reader()
			if err == nil {
				err = syncWAL(db)
				unlock()
			}
			if err != nil {
				s.fail(fmt.Errorf("interval sync: %w", err))
			}
		}
	}
}

package mqtt

import (
	"context"
	"encoding/binary"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"

	mochi "github.com/mochi-mqtt/server/v2"

	"github.com/mqstream/mqstream/streams"
)

// Broker state across restarts.
//
// Retained messages and persistent sessions (MQTT 3.1.1 clean session 0,
// MQTT 5 session expiry > 0) are kept in a key/value namespace of the
// node's store (Options.State), written through its group commit, so they
// follow the configured sync policy and share fsyncs with the records.
// Sessions that end with their connection are never written. The keys,
// with cid = uvarint(len(client id)) + client id:
//
//	'r' topic            a retained message
//	'c' cid              a session: the client's properties, will, when it left
//	's' cid filter       one subscription of a session
//	'q' cid seq(8)       one queued QoS 1/2 delivery (sessionstore.go)
//	'i' cid seq(8)       packet id of a delivery sent and not acknowledged
//
// What must be durable before the client (or the publisher) is told
// something is written synchronously or waited for: a session before its
// CONNACK, a subscription before its SUBACK, a queued delivery and a
// retained message before the publisher's PUBACK (ingest waits for
// stateStore.durable). What may be lost in a crash is written in the
// background, batched (the persister below): deletions of acknowledged
// deliveries (they may be sent again after a crash), the packet ids of
// deliveries in flight, and when a client left.

// StateKV is where the broker keeps state across restarts: a key/value
// namespace written through the store's group commit (*streams.KV).
type StateKV interface {
	// Scan calls fn for every key starting with prefix, in key order.
	Scan(prefix []byte, fn func(key, value []byte) error) error
	// Submit queues writes to be committed atomically, in submission
	// order; done (on the committer goroutine, must not block) reports the
	// outcome.
	Submit(writes []streams.KVWrite, noSync bool, done func(error)) error
}

// Key kinds.
const (
	keyRetained = 'r'
	// keyRetainedVersion: a retained topic's version in a cluster
	// (retainsync.go).
	keyRetainedVersion = 'v'
	keySession         = 'c'
	keySubscription    = 's'
	keyQueue           = 'q'
	keySent            = 'i'
)

// clientKey returns kind + uvarint(len(id)) + id, with room for more.
func clientKey(kind byte, id string, extra int) []byte {
	k := make([]byte, 0, 1+binary.MaxVarintLen32+len(id)+extra)
	k = append(k, kind)
	k = binary.AppendUvarint(k, uint64(len(id)))
	return append(k, id...)
}

func seqKey(kind byte, id string, seq uint64) []byte {
	return binary.BigEndian.AppendUint64(clientKey(kind, id, 8), seq)
}

func subscriptionKey(id, filter string) []byte {
	return append(clientKey(keySubscription, id, len(filter)), filter...)
}

func retainedKey(topic string) []byte {
	return append([]byte{keyRetained}, topic...)
}

// splitClientKey parses a key written by clientKey: the client id and
// what follows it.
func splitClientKey(k []byte) (id string, rest []byte, ok bool) {
	if len(k) < 2 {
		return "", nil, false
	}
	n, w := binary.Uvarint(k[1:])
	if w <= 0 || uint64(len(k)-1-w) < n {
		return "", nil, false
	}
	start := 1 + w
	return string(k[start : start+int(n)]), k[start+int(n):], true
}

// splitSeqKey parses a key written by seqKey.
func splitSeqKey(k []byte) (id string, seq uint64, ok bool) {
	id, rest, ok := splitClientKey(k)
	if !ok || len(rest) != 8 {
		return "", 0, false
	}
	return id, binary.BigEndian.Uint64(rest), true
}

// stateStore writes the broker's state.
type stateStore struct {
	kv  StateKV
	log *slog.Logger
	p   persister

	mu struct {
		sync.Mutex
		// submitted numbers the submissions (in store order); synced is
		// the number of the latest one that asked for a sync.
		submitted, synced uint64
		// owners maps the id of each client with a session on disk to the
		// connection that owns it (the latest to establish it, or the
		// client restored at start): only the owner's departure may
		// rewrite or end it, not an older connection's that was taken over.
		owners map[string]*mochi.Client
		// stamps holds the claim stamp of each session on disk whose
		// connection had one (cluster mode; sessionRecord.Stamp).
		stamps map[string]rversion
		// restoredLeft holds when the client of each session restored
		// from disk left (its record's DisconnectedAt): mochi's stop
		// time of a restored client is the restart's.
		restoredLeft map[*mochi.Client]int64
	}
	// done guards committed (the number of the latest completed
	// submission) and failed (the number of the latest that failed).
	done struct {
		sync.Mutex
		committed, failed uint64
		cond              sync.Cond
	}
	errLogged atomic.Bool
}

func newStateStore(kv StateKV, log *slog.Logger) *stateStore {
	st := &stateStore{kv: kv, log: log}
	st.mu.owners = map[string]*mochi.Client{}
	st.mu.stamps = map[string]rversion{}
	st.mu.restoredLeft = map[*mochi.Client]int64{}
	st.done.cond.L = &st.done.Mutex
	st.p.st = st
	return st
}

// submit queues writes in order and returns their submission number; done
// (may be nil; runs on the committer, must not block) gets the outcome.
func (st *stateStore) submit(writes []streams.KVWrite, noSync bool, done func(error)) uint64 {
	st.mu.Lock()
	st.mu.submitted++
	seq := st.mu.submitted
	if !noSync {
		st.mu.synced = seq
	}
	err := st.kv.Submit(writes, noSync, func(err error) { st.completed(seq, err, done) })
	st.mu.Unlock()
	if err != nil {
		st.completed(seq, err, done)
	}
	return seq
}

func (st *stateStore) completed(seq uint64, err error, done func(error)) {
	if err != nil {
		st.logError("writing broker state failed", err)
	}
	if done != nil {
		done(err)
	}
	st.done.Lock()
	st.done.committed = max(st.done.committed, seq)
	if err != nil {
		st.done.failed = max(st.done.failed, seq)
	}
	st.done.cond.Broadcast()
	st.done.Unlock()
}

// syncedMark returns the number of the latest submission that asked for a
// sync: once it completes, everything submitted before it is durable.
func (st *stateStore) syncedMark() uint64 {
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.mu.synced
}

// errStateWrite: a write of broker state failed (the store reports why).
var errStateWrite = errors.New("mqtt: writing broker state failed")

// durable waits until submission seq (and every one before it) completed.
// It fails if seq or a later submission failed (conservative: the store is
// failing writes).
func (st *stateStore) durable(seq uint64) error {
	return st.durableRange(seq, seq)
}

// durableRange waits until submission to (and every one before it)
// completed; it fails if any submission from from on failed.
func (st *stateStore) durableRange(from, to uint64) error {
	if to == 0 {
		return nil // nothing was submitted
	}
	st.done.Lock()
	defer st.done.Unlock()
	for st.done.committed < to {
		st.done.cond.Wait()
	}
	if st.done.failed >= max(from, 1) {
		return errStateWrite
	}
	return nil
}

// write submits writes and waits until they are durable.
func (st *stateStore) write(writes ...streams.KVWrite) error {
	errc := make(chan error, 1)
	st.submit(writes, false, func(err error) { errc <- err })
	return <-errc
}

// barrier waits until every write submitted before it has completed.
func (st *stateStore) barrier() {
	_ = st.durable(st.submit(nil, true, nil))
}

// logError logs the first failure at error level, the rest at debug (the
// store reports its own health).
func (st *stateStore) logError(msg string, err error) {
	level := slog.LevelDebug
	if st.errLogged.CompareAndSwap(false, true) {
		level = slog.LevelError
	}
	st.log.Log(context.Background(), level, msg, "error", err)
}

// own records that connection cl owns client id's session on disk.
func (st *stateStore) own(id string, cl *mochi.Client) {
	st.mu.Lock()
	defer st.mu.Unlock()
	if old := st.mu.owners[id]; old != nil && old != cl {
		delete(st.mu.restoredLeft, old)
	}
	st.mu.owners[id] = cl
}

// restored records when the client of a session restored from disk left
// (unix seconds; cl is the restored client).
func (st *stateStore) restored(cl *mochi.Client, left int64) {
	st.mu.Lock()
	defer st.mu.Unlock()
	st.mu.restoredLeft[cl] = left
}

// leftAt returns when cl, a disconnected client, left (unix seconds):
// for a client restored from disk, when it left before the restart.
func (st *stateStore) leftAt(cl *mochi.Client) int64 {
	st.mu.Lock()
	left, ok := st.mu.restoredLeft[cl]
	st.mu.Unlock()
	if ok {
		return left
	}
	return cl.StopTime()
}

// owner returns the connection owning client id's session on disk (nil:
// none is kept).
func (st *stateStore) owner(id string) *mochi.Client {
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.mu.owners[id]
}

// disown forgets client id's session on disk if cl owns it (cl nil: whoever
// does); it reports whether it did.
func (st *stateStore) disown(id string, cl *mochi.Client) bool {
	st.mu.Lock()
	defer st.mu.Unlock()
	owner, ok := st.mu.owners[id]
	if !ok || (cl != nil && owner != cl) {
		return false
	}
	delete(st.mu.owners, id)
	delete(st.mu.stamps, id)
	delete(st.mu.restoredLeft, owner)
	return true
}

// setStamp records the claim stamp of client id's session: the stamp of
// the connection that holds it now, or of the copy restored from disk.
func (st *stateStore) setStamp(id string, v rversion) {
	st.mu.Lock()
	defer st.mu.Unlock()
	if v == (rversion{}) {
		delete(st.mu.stamps, id)
		return
	}
	st.mu.stamps[id] = v
}

// stamp returns the claim stamp of client id's session (zero: none).
func (st *stateStore) stamp(id string) rversion {
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.mu.stamps[id]
}

// record is what is kept of cl's session, with its stamp; left is when
// it disconnected (unix seconds, 0 while connected).
func (st *stateStore) record(cl *mochi.Client, left int64) *sessionRecord {
	r := sessionOf(cl, left)
	r.Stamp = st.stamp(cl.ID)
	return r
}

// persistedCount returns the number of sessions on disk.
func (st *stateStore) persistedCount() int {
	st.mu.Lock()
	defer st.mu.Unlock()
	return len(st.mu.owners)
}

// endWrites returns the writes that delete everything kept for client id.
func endWrites(id string) []streams.KVWrite {
	return []streams.KVWrite{
		{Key: clientKey(keySession, id, 0), Delete: true},
		{Key: clientKey(keySubscription, id, 0), DeletePrefix: true},
		{Key: clientKey(keyQueue, id, 0), DeletePrefix: true},
		{Key: clientKey(keySent, id, 0), DeletePrefix: true},
	}
}

// endSession deletes everything kept for client id if connection cl owns
// it (nil: whoever does). Background writes of its queue must have been
// purged first (persister.purge), so that none is committed after the
// deletion.
func (st *stateStore) endSession(id string, cl *mochi.Client) {
	if st.disown(id, cl) {
		st.submit(endWrites(id), false, nil)
	}
}

// wait blocks until every write submitted so far (and what the persister
// holds) has completed. Safe while others submit (a barrier, not a wait
// for the count of pending writes to reach zero).
func (st *stateStore) wait() {
	st.p.flush() // ends with a barrier
}

// persister writes what may be lost in a crash in the background, in
// batches: while one batch commits, the next accumulates, so a busy broker
// writes them with about one operation per commit of the store.
type persister struct {
	st *stateStore
	mu struct {
		sync.Mutex
		writes []pendingWrite
		busy   bool // a batch is being committed
	}
}

// pendingWrite is a background write and the session it belongs to (so
// that the writes of a session that ended can be purged).
type pendingWrite struct {
	owner any
	w     streams.KVWrite
}

// add queues background writes for owner.
func (p *persister) add(owner any, writes ...streams.KVWrite) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, w := range writes {
		p.mu.writes = append(p.mu.writes, pendingWrite{owner, w})
	}
	p.submitLocked()
}

// purge forgets the pending writes of an owner that ended. A batch
// already submitted is committed before anything submitted after purge.
func (p *persister) purge(owner any) {
	p.mu.Lock()
	defer p.mu.Unlock()
	kept := p.mu.writes[:0]
	for _, w := range p.mu.writes {
		if w.owner != owner {
			kept = append(kept, w)
		}
	}
	clear(p.mu.writes[len(kept):])
	p.mu.writes = kept
}

// submitLocked submits everything pending as one batch unless a batch is
// being committed (its completion submits the next).
func (p *persister) submitLocked() {
	if p.mu.busy || len(p.mu.writes) == 0 {
		return
	}
	p.mu.busy = true
	p.st.submit(p.takeLocked(), true, p.done)
}

// takeLocked returns the pending writes and forgets them.
func (p *persister) takeLocked() []streams.KVWrite {
	ws := make([]streams.KVWrite, len(p.mu.writes))
	for i, w := range p.mu.writes {
		ws[i] = w.w
	}
	clear(p.mu.writes)
	p.mu.writes = p.mu.writes[:0]
	return ws
}

// done runs on the store's committer goroutine when a batch completes
// (or at once, from submitLocked, if the store refused it).
func (p *persister) done(error) {
	go func() {
		p.mu.Lock()
		p.mu.busy = false
		p.submitLocked()
		p.mu.Unlock()
	}()
}

// flush submits what is pending at once (a batch may be committing: the
// store keeps submission order) and waits until it and everything
// submitted before it have completed. It does not wait for writes added
// later, so steady traffic cannot hold it up.
func (p *persister) flush() {
	p.mu.Lock()
	if len(p.mu.writes) > 0 {
		p.st.submit(p.takeLocked(), true, nil)
	}
	p.mu.Unlock()
	p.st.barrier()
}

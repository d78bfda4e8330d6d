package streams

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/cockroachdb/pebble/v2"
)

// Store is a set of named streams kept in one Pebble database. All methods
// are safe for concurrent use.
type Store struct {
	opts Options
	log  *slog.Logger

	// dbMu guards db: readers hold it shared while they use the database;
	// the committer swaps db under the exclusive lock when it reopens the
	// database after a write failure. The committer itself, the only
	// goroutine that swaps it, reads db without the lock.
	dbMu sync.RWMutex
	db   *pebble.DB

	// health is nil while the store accepts writes; otherwise why not.
	health atomic.Pointer[error]
	// recoveries counts the reopenings after a failed write (Recoveries).
	recoveries atomic.Uint64

	queue opQueue // appends and commands waiting for the committer
	stats storeCounters

	// writer is the committer role. Whoever holds it (the committer
	// goroutine, or a caller committing a Unit itself: Unit.Commit) owns
	// work, nextID, g and the committer-only fields of every stream. It
	// is the single writer's turn, held across a commit's disk write by
	// design; readers never take it.
	writer struct {
		sync.Mutex
		g      *group // the committer's scratch state (set by Open)
		spare  []*op  // Unit.Commit's array to swap with the queue's (opQueue.take)
		closed bool   // the committer has stopped: nothing more is committed
	}
	// committer-owned state (the writer role's).
	work   map[string]*stream // the committer's view of the registry, ahead of mu.streams during a group
	nextID uint64             // next stream id to assign

	mu struct {
		sync.RWMutex
		// streams is the published registry: streams whose creation is durable.
		// Each stream's durable state and notify channel are guarded by this lock too.
		streams map[string]*stream
		closed  bool
		// changed is closed and replaced whenever a stream is created or deleted.
		changed chan struct{}
	}

	done chan struct{} // closed by Close to stop the background loops
	wg   sync.WaitGroup
	// closeOnce makes Close idempotent.
	closeOnce sync.Once
	closeErr  error
}

// stream is the in-memory state of one stream.
type stream struct {
	name string
	meta streamMeta // immutable after creation

	// work is the committer's tentative state and touchedGen the last commit
	// group that changed it (the committer only: Store.writer).
	work       streamState
	touchedGen uint64
	// checkpointAt is when the state key was last written (unix ns) and
	// mustCheckpoint asks the next commit to write it (committer only).
	checkpointAt   int64
	mustCheckpoint bool
	// groupBytes is the encoded size appended in the current commit group.
	groupBytes int64
	// blk gathers the records appended in the current commit group, from
	// offset blkFirst, into one value (block.go; committer only; nil
	// between groups).
	blk      []byte
	blkFirst uint64
	blkCount int

	// Guarded by Store.mu.
	durable streamState
	notify  chan struct{} // closed and replaced when records are committed or the stream is deleted
	deleted bool

	counters counters // process-lifetime counts (atomics)
}

// StreamInfo describes a stream.
type StreamInfo struct {
	Name string `json:"name"`
	// ID is the internal, never reused stream id.
	ID        uint64    `json:"id"`
	CreatedAt time.Time `json:"created_at"`
	Retention Retention `json:"retention"`
	// FirstOffset is the offset of the oldest record kept; NextOffset the
	// offset the next record gets. Records = NextOffset - FirstOffset.
	FirstOffset uint64 `json:"first_offset"`
	NextOffset  uint64 `json:"next_offset"`
	Records     int64  `json:"records"`
	// Bytes is the total encoded size of the records kept.
	Bytes int64 `json:"bytes"`
	// LastAppend is the timestamp of the newest record (zero if none yet).
	LastAppend time.Time `json:"last_append"`
}

func (st *stream) infoLocked() StreamInfo {
	info := StreamInfo{
		Name:        st.name,
		ID:          st.meta.id,
		CreatedAt:   st.meta.created,
		Retention:   st.meta.retention,
		FirstOffset: st.durable.first,
		NextOffset:  st.durable.next,
		Records:     int64(st.durable.next - st.durable.first),
		Bytes:       st.durable.bytes,
	}
	if st.durable.lastTS != 0 {
		info.LastAppend = time.Unix(0, st.durable.lastTS)
	}
	return info
}

// MaxNameLen is the longest stream name in bytes.
const MaxNameLen = 255

// ValidateName checks a stream name: 1 to 255 bytes of UTF-8 without control
// characters, spaces or the MQTT special characters '/', '+' and '#'. Names
// starting with '$' are reserved for streams the system creates (dead letters).
func ValidateName(name string) error {
	switch {
	case name == "":
		return fmt.Errorf("%w: empty", ErrInvalidName)
	case len(name) > MaxNameLen:
		return fmt.Errorf("%w: %d bytes, at most %d", ErrInvalidName, len(name), MaxNameLen)
	case !utf8.ValidString(name):
		return fmt.Errorf("%w: %q is not UTF-8", ErrInvalidName, name)
	}
	if i := strings.IndexFunc(name, func(r rune) bool {
		return r == '/' || r == '+' || r == '#' || unicode.IsSpace(r) || unicode.IsControl(r)
	}); i >= 0 {
		return fmt.Errorf("%w: %q has a forbidden character at byte %d ('/', '+', '#', spaces and control characters are not allowed)", ErrInvalidName, name, i)
	}
	return nil
}

// IsReserved reports names starting with '$': streams the system creates
// (dead letters). Mapping rules and users cannot name them.
func IsReserved(name string) bool { return strings.HasPrefix(name, "$") }

// Open opens (or creates) the store in opts.Dir and recovers every stream's
// offsets and counters.
func Open(opts Options) (*Store, error) {
	opts.EnsureDefaults()
	if err := opts.Validate(); err != nil {
		return nil, fmt.Errorf("streams: invalid options: %w", err)
	}
	db, err := openPebble(opts)
	if errors.Is(err, syscall.EAGAIN) {
		// flock(2) refused: the directory's LOCK file is held.
		return nil, fmt.Errorf("streams: open %s: the data directory is in use by another process (is another mqstream running with this node.data_dir?): %w", opts.Dir, err)
	}
	if err != nil {
		return nil, fmt.Errorf("streams: open %s: %w", opts.Dir, err)
	}
	s := &Store{
		opts: opts,
		db:   db,
		log:  opts.Logger,
		work: map[string]*stream{},
		done: make(chan struct{}),
	}
	s.queue.wake = make(chan struct{}, 1)
	s.mu.streams = map[string]*stream{}
	s.mu.changed = make(chan struct{})
	if err := s.recover(); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("streams: recover %s: %w", opts.Dir, err)
	}
	s.writer.g = newGroup(s)
	s.wg.Add(3)
	go s.runCommitter()
	go s.runRetention()
	go s.runHealth()
	if opts.Sync == SyncInterval {
		s.wg.Add(1)
		go s.runIntervalSync()
	}
	return s, nil
}

func openPebble(opts Options) (*pebble.DB, error) {
	cache := pebble.NewCache(opts.CacheBytes)
	defer cache.Unref()
	popts := &pebble.Options{
		FS:     opts.FS,
		Cache:  cache,
		Logger: pebbleLogger{opts.Logger},
		// Records are appended in key order per stream; bigger memtables mean
		// fewer flushes under sustained ingest.
		MemTableSize: 64 << 20,
	}
	if opts.CompactionScheduler != nil {
		popts.Experimental.CompactionScheduler = opts.CompactionScheduler
	}
	if opts.EngineEvents != nil {
		events := *opts.EngineEvents // Pebble fills in the defaults of its copy
		popts.EventListener = &events
	}
	return pebble.Open(opts.Dir, popts)
}

// reader returns the database for reading and the function that releases
// it, or ErrUnavailable while a failed database is being reopened.
func (s *Store) reader() (*pebble.DB, func(), error) {
	s.dbMu.RLock()
	if s.db == nil {
		s.dbMu.RUnlock()
		return nil, nil, fmt.Errorf("%w: the database is being reopened", ErrUnavailable)
	}
	return s.db, s.dbMu.RUnlock, nil
}

// Healthy returns nil while the store accepts writes, else the reason it
// does not (a failed write or sync it has not recovered from yet, or a disk
// with too little free space).
func (s *Store) Healthy() error {
	if p := s.health.Load(); p != nil {
		return *p
	}
	return nil
}

// recover loads every stream's metadata and state.
func (s *Store) recover() error {
	if v, closer, err := s.db.Get(nextIDKey()); err == nil {
		d := decoder{b: v}
		s.nextID = d.uvarint()
		closer.Close()
		if d.err != nil {
			return fmt.Errorf("%w: next stream id", ErrCorrupt)
		}
	} else if !errors.Is(err, pebble.ErrNotFound) {
		return err
	}
	if s.nextID == 0 {
		s.nextID = 1
	}
	iter, err := s.db.NewIter(&pebble.IterOptions{LowerBound: []byte{tagMeta}, UpperBound: []byte{tagMeta + 1}})
	if err != nil {
		return err
	}
	defer iter.Close()
	for iter.First(); iter.Valid(); iter.Next() {
		name := string(iter.Key()[1:])
		meta, err := decodeMeta(iter.Value())
		if err != nil {
			return fmt.Errorf("stream %q: %w", name, err)
		}
		st := &stream{name: name, meta: meta, notify: make(chan struct{})}
		v, closer, err := s.db.Get(stateKey(meta.id))
		if err != nil {
			return fmt.Errorf("stream %q state: %w", name, err)
		}
		st.durable, err = decodeState(v)
		closer.Close()
		if err != nil {
			return fmt.Errorf("stream %q: %w", name, err)
		}
		if err := s.recoverTail(st); err != nil {
			return fmt.Errorf("stream %q: %w", name, err)
		}
		st.work = st.durable
		s.mu.streams[name] = st
		s.work[name] = st
		if meta.id >= s.nextID {
			s.nextID = meta.id + 1
		}
		s.log.Debug("recovered stream", "stream", name, "first", st.durable.first, "next", st.durable.next)
	}
	return iter.Error()
}

// recoverTail rolls a stream's checkpointed state forward over the records
// appended after the checkpoint (the state key is written at most every
// checkpointInterval, not with every append).
func (s *Store) recoverTail(st *stream) error {
	lo, hi := recordKey(st.meta.id, st.durable.next), streamRecordsEnd(st.meta.id)
	iter, err := s.db.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: hi})
	if err != nil {
		return err
	}
	defer iter.Close()
	n := 0
	for iter.First(); iter.Valid(); iter.Next() {
		// A commit group's blocks begin where the checkpoint of the
		// group before it ends.
		if off := offsetFromKey(iter.Key()); off != st.durable.next {
			return fmt.Errorf("%w: record offset %d after checkpointed next offset %d", ErrCorrupt, off, st.durable.next)
		}
		v, err := iter.ValueAndErr()
		if err != nil {
			return err
		}
		err = eachInBlock(v, st.durable.next, func(off uint64, rec []byte) (bool, error) {
			ts, err := recordTimestamp(rec)
			if err != nil {
				return false, fmt.Errorf("offset %d: %w", off, err)
			}
			st.durable.next++
			st.durable.bytes += int64(len(rec))
			st.durable.lastTS = max(st.durable.lastTS, ts)
			n++
			return true, nil
		})
		if err != nil {
			return err
		}
	}
	if n > 0 {
		st.mustCheckpoint = true
		s.log.Debug("rolled stream state forward", "stream", st.name, "records", n)
	}
	return iter.Error()
}

// Close stops the background loops, commits everything already queued and
// closes the database. It is idempotent.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		s.mu.Lock()
		s.mu.closed = true
		s.mu.Unlock()
		s.queue.close()
		close(s.done)
		s.wg.Wait()
		s.dbMu.Lock()
		defer s.dbMu.Unlock()
		if s.Healthy() == nil {
			if err := s.db.LogData(nil, pebble.Sync); err != nil {
				s.closeErr = fmt.Errorf("streams: final sync: %w", err)
			}
		}
		if err := closePebble(s.db); err != nil && s.closeErr == nil {
			s.closeErr = fmt.Errorf("streams: close: %w", err)
		}
	})
	return s.closeErr
}

// Options returns the options the store runs with (defaults filled in).
func (s *Store) Options() Options { return s.opts }

// CreateStream creates a stream. A zero retention takes the default retention.
func (s *Store) CreateStream(ctx context.Context, name string, retention Retention) (StreamInfo, error) {
	return s.CreateStreamAt(ctx, name, retention, time.Time{})
}

// DeleteStream deletes a stream and all its records.
func (s *Store) DeleteStream(ctx context.Context, name string) error {
	return s.runCommand(ctx, &op{kind: opDelete, stream: name})
}

// DescribeStream returns the current state of one stream.
func (s *Store) DescribeStream(name string) (StreamInfo, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	st, ok := s.mu.streams[name]
	if !ok {
		return StreamInfo{}, fmt.Errorf("%w: %q", ErrStreamNotFound, name)
	}
	return st.infoLocked(), nil
}

// StreamsChanged returns a channel that is closed the next time a stream is
// created or deleted.
func (s *Store) StreamsChanged() <-chan struct{} {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.mu.changed
}

// ListStreams returns every stream, sorted by name.
func (s *Store) ListStreams() []StreamInfo {
	s.mu.RLock()
	out := make([]StreamInfo, 0, len(s.mu.streams))
	for _, st := range s.mu.streams {
		out = append(out, st.infoLocked())
	}
	s.mu.RUnlock()
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// runCommand queues a command and waits for it to be committed.
func (s *Store) runCommand(ctx context.Context, o *op) error {
	errc := make(chan error, 1)
	o.done = func(_ uint64, err error) { errc <- err }
	if err := s.queue.push(o); err != nil {
		return err
	}
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
		// The command may still be applied; the caller only stops waiting.
		return ctx.Err()
	}
}

// pebbleLogger routes Pebble's logs to slog.
type pebbleLogger struct{ l *slog.Logger }

func (p pebbleLogger) Infof(format string, args ...any) {
	p.l.Debug(fmt.Sprintf(format, args...), "component", "pebble")
}
func (p pebbleLogger) Errorf(format string, args ...any) {
	p.l.Error(fmt.Sprintf(format, args...), "component", "pebble")
}
func (p pebbleLogger) Fatalf(format string, args ...any) {
	// Pebble calls Fatalf on unrecoverable corruption; it expects no return.
	panic(fmt.Sprintf("pebble: "+format, args...))
}

// newTicker returns a ticker for d; a non-positive d never ticks.
func (s *Store) newTicker(d time.Duration) *time.Ticker {
	if d <= 0 {
		t := time.NewTicker(time.Hour)
		t.Stop()
		return t
	}
	return time.NewTicker(d)
}

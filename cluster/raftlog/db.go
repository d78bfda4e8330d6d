package raftlog

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"

	"github.com/cockroachdb/pebble/v2"

	"github.com/mqstream/mqstream/internal/pebblesched"
	"github.com/mqstream/mqstream/internal/pebblestats"
)

// ErrClosed is returned by every operation on a closed DB.
var ErrClosed = errors.New("raftlog: database closed")

// Options configure a DB.
type Options struct {
	// Logger receives Pebble's logs; nil means slog.Default().
	Logger *slog.Logger
	// NoSync commits writes without syncing the WAL. For tests only: a
	// machine crash can lose acknowledged entries, which Raft must never do.
	NoSync bool
}

// DB is one Pebble database holding the Raft logs and stable stores of
// many groups. It is safe for concurrent use.
type DB struct {
	pdb *pebble.DB
	// stalls counts the database's write stalls.
	stalls *pebblestats.Stalls
	// write syncs unless Options.NoSync.
	write *pebble.WriteOptions
	// closed mirrors mu.closed for the paths that do not touch pdb.
	closed atomic.Bool

	mu struct {
		sync.Mutex
		// closed is set by Close; no operation starts after it.
		closed bool
		// inflight counts operations using pdb; Close waits for zero.
		inflight int
		// drained is closed when inflight reaches zero after closed is set.
		drained chan struct{}
		// groups holds one Store per group id, so that all users of a
		// group share its cached indexes.
		groups map[string]*Store
	}
	// closeErr is the result of closing pdb, set before done is closed.
	closeErr error
	// done is closed when the first Close has closed pdb.
	done chan struct{}
}

// Open opens (creating dir if needed) the database in dir.
func Open(dir string, opts Options) (*DB, error) {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("raftlog: create %s: %w", dir, err)
	}
	stalls := pebblestats.NewStalls(opts.Logger, "raftlog")
	popts := &pebble.Options{
		Logger:        pebbleLogger{opts.Logger},
		EventListener: stalls.Listener(),
		// Entries are deleted once a snapshot covers them: with a large
		// memtable most are deleted before they are ever flushed.
		MemTableSize: 64 << 20,
	}
	// Quiet while no compaction waits (an idle node wakes less).
	popts.Experimental.CompactionScheduler = pebblesched.New()
	pdb, err := pebble.Open(dir, popts)
	if err != nil {
		return nil, fmt.Errorf("raftlog: open %s: %w", dir, err)
	}
	d := &DB{pdb: pdb, stalls: stalls, write: pebble.Sync, done: make(chan struct{})}
	if opts.NoSync {
		d.write = pebble.NoSync
	}
	d.mu.groups = map[string]*Store{}
	d.mu.drained = make(chan struct{})
	return d, nil
}

// Group returns the Store of the group id, creating nothing on disk until
// it is written. Every call with the same id returns the same Store. Group
// panics if id is empty: group ids are chosen by code ("meta", "shard-7").
func (d *DB) Group(id string) *Store {
	if id == "" {
		panic("raftlog: empty group id")
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	s, ok := d.mu.groups[id]
	if !ok {
		s = newStore(d, id)
		d.mu.groups[id] = s
	}
	return s
}

// DeleteGroup removes every key of the group id, synced. The group's Raft
// must be shut down first; its Store stays usable and is then empty.
func (d *DB) DeleteGroup(id string) error {
	if id == "" {
		return errors.New("raftlog: delete group: empty group id")
	}
	s := d.Group(id)
	if err := d.acquire(); err != nil {
		return fmt.Errorf("raftlog: delete group %q: %w", id, err)
	}
	defer d.release()
	s.beginWrite()
	if err := d.pdb.DeleteRange(s.prefix, withKind(s.prefix, kindEnd), d.write); err != nil {
		s.endWrite(nil)
		return fmt.Errorf("raftlog: delete group %q: %w", id, err)
	}
	s.endWrite(s.emptiedLocked)
	return nil
}

// Close waits for the operations in progress, then closes the database.
// Later operations return ErrClosed. Close is idempotent: later calls
// wait for the first and return its result.
func (d *DB) Close() error {
	d.mu.Lock()
	if d.mu.closed {
		d.mu.Unlock()
		<-d.done
		return d.closeErr
	}
	d.mu.closed = true
	d.closed.Store(true)
	if d.mu.inflight == 0 {
		close(d.mu.drained)
	}
	d.mu.Unlock()
	<-d.mu.drained
	if err := d.pdb.Close(); err != nil {
		d.closeErr = fmt.Errorf("raftlog: close: %w", err)
	}
	close(d.done)
	return d.closeErr
}

// acquire registers an operation on pdb, or returns ErrClosed. Every
// successful acquire is paired with a release.
// EngineStats returns the figures of the database (flushes, compactions,
// WAL, L0, memtables, disk space, block cache, write stalls); ok is false
// once it is closed.
func (d *DB) EngineStats() (stats pebblestats.Stats, ok bool) {
	if err := d.acquire(); err != nil {
		return pebblestats.Stats{}, false
	}
	m := d.pdb.Metrics()
	d.release()
	return pebblestats.From(m, d.stalls), true
}

func (d *DB) acquire() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.mu.closed {
		return ErrClosed
	}
	d.mu.inflight++
	return nil
}

func (d *DB) release() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.mu.inflight--
	if d.mu.closed && d.mu.inflight == 0 {
		close(d.mu.drained)
	}
}

// pebbleLogger routes Pebble's logs to slog.
type pebbleLogger struct{ l *slog.Logger }

func (p pebbleLogger) Infof(format string, args ...any) {
	p.l.Debug(fmt.Sprintf(format, args...), "component", "raftlog")
}

func (p pebbleLogger) Errorf(format string, args ...any) {
	p.l.Error(fmt.Sprintf(format, args...), "component", "raftlog")
}

// Fatalf panics: Pebble calls it on unrecoverable corruption and expects
// no return.
func (p pebbleLogger) Fatalf(format string, args ...any) {
	panic(fmt.Sprintf("raftlog: pebble: "+format, args...))
}

package streams

import (
	"errors"
	"fmt"
	"syscall"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
)

// ErrUnavailable: the store refuses writes until it recovers from a failed
// write or sync, or until the disk has free space again.
var ErrUnavailable = errors.New("store unavailable")

// ErrRecovered refuses a unit whose caller required a recovery count the
// store has left (Unit.RequireRecoveries): the store recovered from a
// failed write since, and may have lost writes committed without a sync.
var ErrRecovered = fmt.Errorf("%w: the store recovered from a failed write since the caller looked", ErrUnavailable)

// ErrDiskFull: free space on the data directory's disk is below
// Options.MinFreeBytes. It wraps syscall.ENOSPC.
var ErrDiskFull = fmt.Errorf("%w: disk almost full (%w)", ErrUnavailable, syscall.ENOSPC)

// A failed write or sync is fatal to a Pebble database: it calls
// Logger.Fatalf, which our logger turns into a panic, and its commit
// pipeline is unusable afterwards. After an fsync error the page cache may
// also hold data that never reached the disk. So the store does what
// databases do after a failed fsync, without restarting the process: it
// refuses writes (nothing is acknowledged), keeps serving reads, and, once a
// probe write and sync succeed, closes the database and opens it again,
// which replays the write-ahead log from disk; a flush then makes
// everything visible durable before writes resume. Everything acknowledged
// before the failure was synced, so it survives.

// recoverInterval is how often a failed store tries to recover.
const recoverInterval = time.Second

// commitBatch commits b, turning Pebble's fatal-error panic into an error.
func commitBatch(b *pebble.Batch, wo *pebble.WriteOptions) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%v", r)
		}
	}()
	return b.Commit(wo)
}

// closePebble closes a database that may be in a failed state.
func closePebble(db *pebble.DB) (err error) {
	if db == nil {
		return nil
	}
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%v", r)
		}
	}()
	return db.Close()
}

// fail marks the store unable to write.
func (s *Store) fail(err error) {
	if s.Healthy() == nil {
		s.log.Error("store write failed: refusing writes until a write and sync succeed again; reads continue",
			"error", err, "dir", s.opts.Dir)
	}
	wrapped := fmt.Errorf("%w: %w", ErrUnavailable, err)
	s.health.Store(&wrapped)
}

// tryRecover reopens the database after a write failure (committer only).
func (s *Store) tryRecover() {
	err := s.Healthy()
	if err == nil || errors.Is(err, ErrDiskFull) {
		return
	}
	if err := s.probeDisk(); err != nil {
		s.log.Debug("store still cannot write", "error", err)
		return
	}
	s.dbMu.Lock()
	defer s.dbMu.Unlock()
	_ = closePebble(s.db)
	s.db = nil
	db, err := openPebble(s.opts)
	if err != nil {
		s.log.Warn("reopening the store failed; will retry", "error", err)
		return
	}
	if err := db.Flush(); err != nil {
		s.log.Warn("flushing the reopened store failed; will retry", "error", err)
		_ = closePebble(db)
		return
	}
	s.db = db
	if err := s.reload(); err != nil {
		s.log.Error("reloading stream state failed; will retry", "error", err)
		_ = closePebble(db)
		s.db = nil
		return
	}
	s.recoveries.Add(1)
	s.health.Store(nil)
	s.log.Info("store recovered: writes accepted again", "dir", s.opts.Dir)
}

// Recoveries counts the store's recoveries from a failed write. Each one
// reopened the database from what had reached the disk: writes committed
// without fsync before the failure may be gone (a caller that keeps its
// own redo log, as a shard's state machine has the Raft log, checks its
// markers when this changes).
func (s *Store) Recoveries() uint64 { return s.recoveries.Load() }

// probeDisk writes and syncs a small file in the data directory.
func (s *Store) probeDisk() error {
	fs := s.opts.FS
	if fs == nil {
		fs = vfs.Default
	}
	name := fs.PathJoin(s.opts.Dir, "probe.tmp")
	f, err := fs.Create(name, vfs.WriteCategoryUnspecified)
	if err != nil {
		return err
	}
	_, werr := f.Write(make([]byte, 4096))
	serr := f.Sync()
	cerr := f.Close()
	_ = fs.Remove(name)
	return errors.Join(werr, serr, cerr)
}

// reload rebuilds the in-memory state of every stream from the reopened
// database, keeping the stream objects (their notify channels and
// counters) of streams that still exist.
func (s *Store) reload() error {
	fresh := &Store{opts: s.opts, log: s.log, db: s.db, work: map[string]*stream{}}
	fresh.mu.streams = map[string]*stream{}
	if err := fresh.recover(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for name, st := range fresh.work {
		if old, ok := s.work[name]; ok && old.meta.id == st.meta.id {
			old.durable, old.work = st.durable, st.durable
			old.mustCheckpoint = true
			old.groupBytes = 0
			if s.mu.streams[name] != old {
				s.mu.streams[name] = old
			}
			continue
		}
		s.work[name] = st
		s.mu.streams[name] = st
	}
	for name, st := range s.work {
		if fresh.work[name] == nil {
			delete(s.work, name)
			if s.mu.streams[name] == st {
				delete(s.mu.streams, name)
			}
		}
	}
	s.nextID = max(s.nextID, fresh.nextID)
	close(s.mu.changed)
	s.mu.changed = make(chan struct{})
	return nil
}

// runHealth asks the committer to try to recover while the store is
// failed, and watches the free disk space.
func (s *Store) runHealth() {
	defer s.wg.Done()
	t := time.NewTicker(recoverInterval)
	defer t.Stop()
	for {
		select {
		case <-s.done:
			return
		case <-t.C:
		}
		s.checkDiskSpace()
		if err := s.Healthy(); err != nil && !errors.Is(err, ErrDiskFull) {
			_ = s.queue.push(&op{kind: opRecover})
		}
	}
}

// checkDiskSpace refuses writes while the disk has less than MinFreeBytes
// free, and accepts them again above 1.25 times that.
func (s *Store) checkDiskSpace() {
	if s.opts.MinFreeBytes <= 0 {
		return
	}
	u, err := s.DiskUsage()
	if err != nil {
		return // not every filesystem reports usage
	}
	free := u.FreeBytes
	cur := s.Healthy()
	switch {
	case cur == nil && free < s.opts.MinFreeBytes:
		s.log.Error("disk almost full: refusing writes", "dir", s.opts.Dir, "free_bytes", free, "min_free_bytes", s.opts.MinFreeBytes)
		e := ErrDiskFull
		s.health.Store(&e)
	case errors.Is(cur, ErrDiskFull) && free > s.opts.MinFreeBytes*5/4:
		s.log.Info("disk space available again: accepting writes", "dir", s.opts.Dir, "free_bytes", free)
		s.health.Store(nil)
	}
}

// DiskUsage is the space of the filesystem holding the store's directory.
type DiskUsage struct {
	// FreeBytes is the space the store may still use (what df shows as
	// available: statfs f_bavail, without the blocks reserved for root).
	FreeBytes  int64
	TotalBytes int64
}

// DiskUsage reports the space of the filesystem holding the store's
// directory, through the store's filesystem (Options.FS): statfs on Unix,
// GetDiskFreeSpaceEx on Windows. It fails where the filesystem reports no
// usage (in-memory filesystems, some platforms).
func (s *Store) DiskUsage() (DiskUsage, error) {
	fs := s.opts.FS
	if fs == nil {
		fs = vfs.Default
	}
	u, err := fs.GetDiskUsage(s.opts.Dir)
	if err != nil {
		return DiskUsage{}, fmt.Errorf("disk usage of %s: %w", s.opts.Dir, err)
	}
	return DiskUsage{FreeBytes: int64(u.AvailBytes), TotalBytes: int64(u.TotalBytes)}, nil
}

package raftlog

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"sync"

	"github.com/cockroachdb/pebble/v2"
	"github.com/hashicorp/raft"
)

// ErrKeyNotFound is returned, unwrapped, by Store.Get and Store.GetUint64
// for a key never set. Raft recognises a missing key by the message
// "not found" (raft.NewRaft, raft.HasExistingState and the vote handler
// compare err.Error() with it), as raft-boltdb does; wrapping it would
// change the message.
var ErrKeyNotFound = errors.New("not found")

// Store is the raft.LogStore and raft.StableStore of one group in a DB.
// Obtain it with DB.Group; it is safe for concurrent use.
type Store struct {
	db *DB
	id string
	// prefix starts every key of the group; logLo (prefix+kindLog) and
	// logHi (prefix+kindLog+1) bound its log entries.
	prefix, logLo, logHi []byte

	mu struct {
		sync.Mutex
		// gen counts the changes to the log, each after its commit: bounds
		// read from Pebble are cached only if none happened meanwhile.
		gen uint64
		// writing counts the log writes in progress. A write that ends
		// while another is in progress drops the cache: the two may have
		// committed in either order.
		writing int
		// valid says first and last hold the log's bounds (0, 0: empty).
		valid       bool
		first, last uint64
	}
}

var (
	_ raft.LogStore    = (*Store)(nil)
	_ raft.StableStore = (*Store)(nil)
)

func newStore(d *DB, id string) *Store {
	p := groupPrefix(id)
	return &Store{db: d, id: id, prefix: p, logLo: withKind(p, kindLog), logHi: withKind(p, kindLog+1)}
}

// FirstIndex returns the first index in the log, 0 if it is empty.
func (s *Store) FirstIndex() (uint64, error) {
	first, _, err := s.bounds()
	return first, err
}

// LastIndex returns the last index in the log, 0 if it is empty.
func (s *Store) LastIndex() (uint64, error) {
	_, last, err := s.bounds()
	return last, err
}

// GetLog reads the entry at index into l, or returns raft.ErrLogNotFound
// (unwrapped: Raft compares with ==).
func (s *Store) GetLog(index uint64, l *raft.Log) error {
	if err := s.db.acquire(); err != nil {
		return s.errorf("get log %d: %w", index, err)
	}
	defer s.db.release()
	v, closer, err := s.db.pdb.Get(s.logKey(index))
	if errors.Is(err, pebble.ErrNotFound) {
		return raft.ErrLogNotFound
	}
	if err != nil {
		return s.errorf("get log %d: %w", index, err)
	}
	defer closer.Close()
	if err := decodeLog(v, l); err != nil {
		return s.errorf("get log %d: %w", index, err)
	}
	if l.Index != index {
		return s.errorf("get log %d: %w: the entry says index %d", index, ErrCorrupt, l.Index)
	}
	return nil
}

// StoreLog stores one entry.
func (s *Store) StoreLog(l *raft.Log) error {
	return s.StoreLogs([]*raft.Log{l})
}

// StoreLogs stores the entries in one batch, synced, replacing any
// entries at the same indexes.
func (s *Store) StoreLogs(logs []*raft.Log) error {
	if len(logs) == 0 {
		return nil
	}
	if err := s.db.acquire(); err != nil {
		return s.errorf("store logs: %w", err)
	}
	defer s.db.release()
	b := s.db.pdb.NewBatch()
	defer b.Close()
	key := s.logKey(0)
	var val []byte
	lo, hi := logs[0].Index, logs[0].Index
	for _, l := range logs {
		key = appendIndex(key[:len(s.logLo)], l.Index)
		val = appendLog(val[:0], l)
		if err := b.Set(key, val, nil); err != nil {
			return s.errorf("store log %d: %w", l.Index, err)
		}
		lo, hi = min(lo, l.Index), max(hi, l.Index)
	}
	s.beginWrite()
	if err := b.Commit(s.db.write); err != nil {
		s.endWrite(nil)
		return s.errorf("store logs %d-%d: %w", lo, hi, err)
	}
	s.endWrite(func() { s.storedLocked(lo, hi) })
	return nil
}

// DeleteRange deletes the entries from lo to hi inclusive with one range
// deletion, synced.
func (s *Store) DeleteRange(lo, hi uint64) error {
	if lo > hi {
		return nil
	}
	if err := s.db.acquire(); err != nil {
		return s.errorf("delete logs %d-%d: %w", lo, hi, err)
	}
	defer s.db.release()
	end := s.logHi
	if hi < math.MaxUint64 {
		end = s.logKey(hi + 1)
	}
	s.beginWrite()
	if err := s.db.pdb.DeleteRange(s.logKey(lo), end, s.db.write); err != nil {
		s.endWrite(nil)
		return s.errorf("delete logs %d-%d: %w", lo, hi, err)
	}
	s.endWrite(func() { s.deletedLocked(lo, hi) })
	return nil
}

// Set stores val under key, synced.
func (s *Store) Set(key, val []byte) error {
	if err := s.db.acquire(); err != nil {
		return s.errorf("set %q: %w", key, err)
	}
	defer s.db.release()
	if err := s.db.pdb.Set(s.stableKey(key), val, s.db.write); err != nil {
		return s.errorf("set %q: %w", key, err)
	}
	return nil
}

// Get returns a copy of the value of key, or nil and ErrKeyNotFound.
func (s *Store) Get(key []byte) ([]byte, error) {
	if err := s.db.acquire(); err != nil {
		return nil, s.errorf("get %q: %w", key, err)
	}
	defer s.db.release()
	v, closer, err := s.db.pdb.Get(s.stableKey(key))
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, ErrKeyNotFound
	}
	if err != nil {
		return nil, s.errorf("get %q: %w", key, err)
	}
	defer closer.Close()
	return append([]byte{}, v...), nil
}

// SetUint64 stores val under key as 8 bytes big-endian, synced.
func (s *Store) SetUint64(key []byte, val uint64) error {
	return s.Set(key, binary.BigEndian.AppendUint64(nil, val))
}

// GetUint64 returns the value of key set by SetUint64, or 0 and
// ErrKeyNotFound.
func (s *Store) GetUint64(key []byte) (uint64, error) {
	v, err := s.Get(key)
	if err != nil {
		return 0, err
	}
	if len(v) != 8 {
		return 0, s.errorf("get %q: %w: %d bytes, want 8", key, ErrCorrupt, len(v))
	}
	return binary.BigEndian.Uint64(v), nil
}

// bounds returns the log's first and last index, from the cache or, the
// first time and after a truncation moved a bound, from Pebble.
func (s *Store) bounds() (first, last uint64, err error) {
	if s.db.closed.Load() {
		return 0, 0, s.errorf("read log bounds: %w", ErrClosed)
	}
	s.mu.Lock()
	if s.mu.valid {
		first, last = s.mu.first, s.mu.last
		s.mu.Unlock()
		return first, last, nil
	}
	gen := s.mu.gen
	s.mu.Unlock()

	first, last, err = s.readBounds()
	if err != nil {
		return 0, 0, err
	}
	s.mu.Lock()
	if s.mu.gen == gen {
		s.mu.valid, s.mu.first, s.mu.last = true, first, last
	}
	s.mu.Unlock()
	return first, last, nil
}

// readBounds seeks to the group's first and last log keys.
func (s *Store) readBounds() (first, last uint64, err error) {
	if err := s.db.acquire(); err != nil {
		return 0, 0, s.errorf("read log bounds: %w", err)
	}
	defer s.db.release()
	it, err := s.db.pdb.NewIter(&pebble.IterOptions{LowerBound: s.logLo, UpperBound: s.logHi})
	if err != nil {
		return 0, 0, s.errorf("read log bounds: %w", err)
	}
	if it.SeekGE(s.logLo) {
		first, err = s.indexOf(it.Key())
	}
	if err == nil && it.SeekLT(s.logHi) {
		last, err = s.indexOf(it.Key())
	}
	if cerr := it.Close(); err == nil && cerr != nil {
		err = s.errorf("read log bounds: %w", cerr)
	}
	if err != nil {
		return 0, 0, err
	}
	return first, last, nil
}

// indexOf returns the index of a log key of this group.
func (s *Store) indexOf(key []byte) (uint64, error) {
	if len(key) != len(s.logLo)+8 {
		return 0, s.errorf("%w: log key %x has %d bytes", ErrCorrupt, key, len(key))
	}
	return binary.BigEndian.Uint64(key[len(s.logLo):]), nil
}

// beginWrite counts a log write in progress; endWrite must follow.
func (s *Store) beginWrite() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.mu.writing++
}

// endWrite ends a log write, committed or failed. If it was the only
// write in progress, update (nil after a failure) brings the cached
// bounds up to date; else the cache is dropped and read again on next use.
func (s *Store) endWrite(update func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.mu.writing--
	s.mu.gen++
	if update == nil || s.mu.writing > 0 {
		s.mu.valid = false
		return
	}
	update()
}

// storedLocked updates the cached bounds for entries lo..hi stored.
func (s *Store) storedLocked(lo, hi uint64) {
	switch {
	case !s.mu.valid:
	case s.mu.last == 0:
		s.mu.first, s.mu.last = lo, hi
	default:
		s.mu.first, s.mu.last = min(s.mu.first, lo), max(s.mu.last, hi)
	}
}

// deletedLocked updates the cached bounds for entries lo..hi deleted.
// When a bound moves to an entry only Pebble knows (Raft logs may have
// gaps), the cache is dropped.
func (s *Store) deletedLocked(lo, hi uint64) {
	first, last := s.mu.first, s.mu.last
	switch {
	case !s.mu.valid, last == 0, hi < first, lo > last:
	case lo <= first && hi >= last:
		s.mu.first, s.mu.last = 0, 0
	case lo > first && hi < last:
	default:
		s.mu.valid = false
	}
}

// emptiedLocked sets the cached bounds of a deleted group.
func (s *Store) emptiedLocked() {
	s.mu.valid, s.mu.first, s.mu.last = true, 0, 0
}

func (s *Store) logKey(index uint64) []byte {
	return appendIndex(append(make([]byte, 0, len(s.logLo)+8), s.logLo...), index)
}

func (s *Store) stableKey(key []byte) []byte {
	return append(withKind(s.prefix, kindStable), key...)
}

// errorf returns an error naming the group.
func (s *Store) errorf(format string, args ...any) error {
	return fmt.Errorf("raftlog: group %q: "+format, append([]any{s.id}, args...)...)
}

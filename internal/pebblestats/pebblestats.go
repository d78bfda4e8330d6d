// Package pebblestats turns a Pebble database's metrics into the plain
// figures mqstream exports (flushes, compactions, WAL, L0, memtables,
// disk space, block cache, write stalls), so that the stream store's and
// the Raft log's are reported the same way (the node converts the store's:
// the streams package imports nothing of ours) and the API need not import
// Pebble.
//
// Write stalls are not in Pebble's metrics: Stalls counts them through
// the database's event listener and logs each one, since a stall holds
// every write of the node back.
package pebblestats

import (
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble/v2"
)

// Stats are one database's figures. Counters are cumulative since the
// database was opened (or, for the stalls, since its owner started).
type Stats struct {
	// Flushes of memtables to L0, and the bytes of the tables written.
	Flushes      int64
	FlushedBytes uint64
	// Compactions finished, the table bytes they wrote and read, those
	// running now, and Pebble's estimate of the bytes still to compact
	// (compaction debt).
	Compactions           int64
	CompactedBytes        uint64
	CompactionReadBytes   uint64
	CompactionsInProgress int64
	CompactionDebtBytes   uint64
	// WALBytes are the bytes written to the write-ahead log; WALFiles the
	// live log files.
	WALBytes uint64
	WALFiles int64
	// L0Files and L0Sublevels: tables in level 0 and how many of them a
	// read may have to look at; ReadAmplification over all levels.
	L0Files           int64
	L0Sublevels       int32
	ReadAmplification int
	// Memtables and their bytes (the mutable one and those awaiting a
	// flush).
	Memtables     int64
	MemtableBytes uint64
	// DiskBytes is the space the database uses on disk.
	DiskBytes uint64
	// Block cache: bytes held, hits and misses.
	CacheBytes  int64
	CacheHits   int64
	CacheMisses int64
	// WriteStalls counts the times Pebble held writes back (too many L0
	// tables or memtables); StallTime is how long they lasted in all.
	WriteStalls int64
	StallTime   time.Duration
}

// From reads a database's figures; stalls may be nil.
func From(m *pebble.Metrics, stalls *Stalls) Stats {
	s := Stats{
		Flushes:               m.Flush.Count,
		Compactions:           m.Compact.Count,
		CompactionsInProgress: m.Compact.NumInProgress,
		CompactionDebtBytes:   m.Compact.EstimatedDebt,
		WALBytes:              m.WAL.BytesWritten,
		WALFiles:              m.WAL.Files,
		L0Files:               m.Levels[0].TablesCount,
		L0Sublevels:           m.Levels[0].Sublevels,
		ReadAmplification:     m.ReadAmp(),
		Memtables:             m.MemTable.Count,
		MemtableBytes:         m.MemTable.Size,
		DiskBytes:             m.DiskSpaceUsage(),
		CacheBytes:            m.BlockCache.Size,
		CacheHits:             m.BlockCache.Hits,
		CacheMisses:           m.BlockCache.Misses,
	}
	for _, l := range m.Levels {
		s.FlushedBytes += l.TableBytesFlushed
		s.CompactedBytes += l.TableBytesCompacted
		s.CompactionReadBytes += l.TableBytesRead
	}
	if stalls != nil {
		s.WriteStalls, s.StallTime = stalls.Figures()
	}
	return s
}

// Stalls counts a database's write stalls and logs them. The zero value
// is not usable: use NewStalls. Its listener may be given to several
// databases opened one after the other (a store reopened after a
// failure); the counts go on.
type Stalls struct {
	log *slog.Logger
	db  string // the database's name in the log
	now func() time.Time
	n   atomic.Int64
	mu  sync.Mutex // guards since and total
	// since is when the stall under way began (zero: none); total the
	// time of the stalls that ended.
	since time.Time
	total time.Duration
}

// NewStalls returns a counter for the database named db (for the log:
// "store", "raftlog").
func NewStalls(log *slog.Logger, db string) *Stalls {
	if log == nil {
		log = slog.Default()
	}
	return &Stalls{log: log, db: db, now: time.Now}
}

// Listener returns the event listener to set in the database's options.
func (s *Stalls) Listener() *pebble.EventListener {
	return &pebble.EventListener{
		WriteStallBegin: func(info pebble.WriteStallBeginInfo) { s.begin(info.Reason) },
		WriteStallEnd:   s.end,
	}
}

func (s *Stalls) begin(reason string) {
	s.mu.Lock()
	if !s.since.IsZero() {
		s.mu.Unlock()
		return // Pebble reports one stall at a time; be safe anyway
	}
	s.since = s.now()
	s.mu.Unlock()
	s.n.Add(1)
	s.log.Warn("the storage engine holds writes back until it catches up", "db", s.db, "reason", reason)
}

func (s *Stalls) end() {
	s.mu.Lock()
	since := s.since
	var d time.Duration
	if !since.IsZero() {
		d = s.now().Sub(since)
		s.total += d
		s.since = time.Time{}
	}
	s.mu.Unlock()
	if since.IsZero() {
		return
	}
	s.log.Info("the storage engine takes writes again", "db", s.db, "stalled", d)
}

// Figures returns the stalls so far and their total duration, the one
// under way included up to now.
func (s *Stalls) Figures() (int64, time.Duration) {
	s.mu.Lock()
	t := s.total
	if !s.since.IsZero() {
		t += s.now().Sub(s.since)
	}
	s.mu.Unlock()
	return s.n.Load(), t
}

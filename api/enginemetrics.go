package api

import (
	"sort"

	"github.com/prometheus/client_golang/prometheus"
)

// The storage engines' figures (Pebble: the stream store and, in cluster
// mode, the Raft log), labelled by database. They tell an operator where
// the disk's work goes (flushes, compactions, the WAL) and warn before
// writes slow down (compaction debt, L0 tables, write stalls).
var (
	descEngFlushes        = desc("engine_flushes_total", "Memtables flushed to level 0.", "db")
	descEngFlushedBytes   = desc("engine_flushed_bytes_total", "Bytes of the tables written by flushes.", "db")
	descEngCompactions    = desc("engine_compactions_total", "Compactions finished.", "db")
	descEngCompactedBytes = desc("engine_compacted_bytes_total", "Bytes of the tables written by compactions.", "db")
	descEngCompactionRead = desc("engine_compaction_read_bytes_total", "Bytes of the tables read by compactions.", "db")
	descEngCompacting     = desc("engine_compactions_in_progress", "Compactions running now.", "db")
	descEngDebt           = desc("engine_compaction_debt_bytes", "Bytes the engine estimates it must still compact to reach its level shape.", "db")
	descEngWALBytes       = desc("engine_wal_bytes_total", "Bytes written to the write-ahead log.", "db")
	descEngWALFiles       = desc("engine_wal_files", "Live write-ahead log files.", "db")
	descEngL0Files        = desc("engine_l0_files", "Tables in level 0 (many of them lead to write stalls).", "db")
	descEngL0Sublevels    = desc("engine_l0_sublevels", "Sublevels of level 0: how many level-0 tables a read may look at.", "db")
	descEngReadAmp        = desc("engine_read_amplification", "Tables a point read may have to look at, all levels.", "db")
	descEngMemtables      = desc("engine_memtables", "Memtables, the mutable one and those awaiting a flush.", "db")
	descEngMemtableBytes  = desc("engine_memtable_bytes", "Bytes allocated to memtables.", "db")
	descEngDiskBytes      = desc("engine_disk_bytes", "Space the database uses on disk.", "db")
	descEngCacheBytes     = desc("engine_block_cache_bytes", "Bytes held in the block cache.", "db")
	descEngCacheHits      = desc("engine_block_cache_hits_total", "Block cache hits.", "db")
	descEngCacheMisses    = desc("engine_block_cache_misses_total", "Block cache misses.", "db")
	descEngStalls         = desc("engine_write_stalls_total", "Times the engine held writes back until its flushes and compactions caught up.", "db")
	descEngStallSeconds   = desc("engine_write_stall_seconds_total", "Time writes were held back by write stalls.", "db")
)

// engineCollector exports Engines' figures at scrape time.
type engineCollector struct{ engines Engines }

func (c engineCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descEngFlushes, descEngFlushedBytes, descEngCompactions, descEngCompactedBytes,
		descEngCompactionRead, descEngCompacting, descEngDebt, descEngWALBytes, descEngWALFiles, descEngL0Files,
		descEngL0Sublevels, descEngReadAmp, descEngMemtables, descEngMemtableBytes, descEngDiskBytes, descEngCacheBytes,
		descEngCacheHits, descEngCacheMisses, descEngStalls, descEngStallSeconds} {
		ch <- d
	}
}

func (c engineCollector) Collect(ch chan<- prometheus.Metric) {
	if c.engines == nil {
		return
	}
	stats := c.engines.EngineStats()
	names := make([]string, 0, len(stats))
	for name := range stats {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, db := range names {
		s := stats[db]
		gauge := func(d *prometheus.Desc, v float64) {
			ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, db)
		}
		counter := func(d *prometheus.Desc, v float64) {
			ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v, db)
		}
		counter(descEngFlushes, float64(s.Flushes))
		counter(descEngFlushedBytes, float64(s.FlushedBytes))
		counter(descEngCompactions, float64(s.Compactions))
		counter(descEngCompactedBytes, float64(s.CompactedBytes))
		counter(descEngCompactionRead, float64(s.CompactionReadBytes))
		gauge(descEngCompacting, float64(s.CompactionsInProgress))
		gauge(descEngDebt, float64(s.CompactionDebtBytes))
		counter(descEngWALBytes, float64(s.WALBytes))
		gauge(descEngWALFiles, float64(s.WALFiles))
		gauge(descEngL0Files, float64(s.L0Files))
		gauge(descEngL0Sublevels, float64(s.L0Sublevels))
		gauge(descEngReadAmp, float64(s.ReadAmplification))
		gauge(descEngMemtables, float64(s.Memtables))
		gauge(descEngMemtableBytes, float64(s.MemtableBytes))
		gauge(descEngDiskBytes, float64(s.DiskBytes))
		gauge(descEngCacheBytes, float64(s.CacheBytes))
		counter(descEngCacheHits, float64(s.CacheHits))
		counter(descEngCacheMisses, float64(s.CacheMisses))
		counter(descEngStalls, float64(s.WriteStalls))
		counter(descEngStallSeconds, s.StallTime.Seconds())
	}
}

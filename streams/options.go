package streams

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
)

// SyncPolicy says when appended records are forced to disk.
type SyncPolicy int

const (
	// SyncAlways syncs the WAL before any record of a commit group is
	// acknowledged or becomes visible (the default).
	SyncAlways SyncPolicy = iota
	// SyncInterval acknowledges after the write and syncs the WAL every
	// Options.SyncInterval: a machine crash can lose up to one interval.
	SyncInterval
	// SyncNone never forces a sync; the operating system decides.
	SyncNone
)

// String returns the configuration name of the policy.
func (p SyncPolicy) String() string {
	switch p {
	case SyncAlways:
		return "always"
	case SyncInterval:
		return "interval"
	case SyncNone:
		return "none"
	}
	return fmt.Sprintf("SyncPolicy(%d)", int(p))
}

// ParseSyncPolicy parses "always", "interval" or "none".
func ParseSyncPolicy(s string) (SyncPolicy, error) {
	switch s {
	case "always", "":
		return SyncAlways, nil
	case "interval":
		return SyncInterval, nil
	case "none":
		return SyncNone, nil
	}
	return 0, fmt.Errorf("unknown sync policy %q (want always, interval or none)", s)
}

// Retention limits how much of a stream is kept. Zero fields mean no limit.
type Retention struct {
	MaxAge     time.Duration `json:"max_age"`
	MaxBytes   int64         `json:"max_bytes"`
	MaxRecords int64         `json:"max_records"`
}

// IsZero reports whether r sets no limit.
func (r Retention) IsZero() bool { return r == Retention{} }

// Validate reports negative limits.
func (r Retention) Validate() error {
	var errs []error
	if r.MaxAge < 0 {
		errs = append(errs, fmt.Errorf("max_age %s is negative", r.MaxAge))
	}
	if r.MaxBytes < 0 {
		errs = append(errs, fmt.Errorf("max_bytes %d is negative", r.MaxBytes))
	}
	if r.MaxRecords < 0 {
		errs = append(errs, fmt.Errorf("max_records %d is negative", r.MaxRecords))
	}
	return errors.Join(errs...)
}

// Options configure a Store.
type Options struct {
	// Dir is the directory of the Pebble database.
	Dir string
	// FS overrides the filesystem (tests use vfs.NewMem or errorfs); nil means the OS.
	FS vfs.FS
	// Sync is the durability policy of appends.
	Sync SyncPolicy
	// SyncInterval is the WAL sync period under SyncInterval.
	SyncInterval time.Duration
	// CommitDelay, under SyncAlways, is the least time from the start of
	// one synced commit to the start of the next: appends that arrive in
	// between wait (at most that long) and share the next sync. At
	// moderate rates this makes fewer, larger commit groups, each paying
	// one WAL sync; under full load a commit takes longer than the delay
	// and nothing waits. Only a commit that carried more than one request
	// holds the next back: one producer waiting for each acknowledgement
	// in turn is never slowed. 0: a commit starts as soon as the previous
	// one ended.
	CommitDelay time.Duration
	// CommitDelayAuto (under SyncAlways) lets the store decide when to
	// apply CommitDelay: it tries with and without it now and then, and
	// keeps it while producers arrive as fast with it and each fsync
	// carries clearly more (autodelay.go). CommitDelay must then be
	// positive: the delay applied while on.
	CommitDelayAuto bool
	// AutoCreate creates a stream on its first append.
	AutoCreate bool
	// DefaultRetention applies to auto-created streams and to CreateStream
	// calls that give no retention.
	DefaultRetention Retention
	// RetentionInterval is how often retention limits are enforced.
	RetentionInterval time.Duration
	// MaxRecordBytes bounds one encoded record; 0 means 64 MiB.
	MaxRecordBytes int
	// MaxGroupBytes bounds the encoded size of one commit group; 0 means 16 MiB.
	MaxGroupBytes int
	// CacheBytes is Pebble's block cache size; 0 means 64 MiB.
	CacheBytes int64
	// CompactionScheduler, if set, schedules Pebble's compactions instead
	// of Pebble's own scheduler (which wakes ten times a second, forever).
	// Cluster nodes give one that wakes only while a compaction waits
	// (internal/pebblesched), so an idle node wakes less; the store itself
	// depends on nothing of ours.
	CompactionScheduler pebble.CompactionScheduler
	// EngineEvents, if set, receives the Pebble database's events (the
	// node counts write stalls with it); it is given to every database
	// the store opens, a reopened one included.
	EngineEvents *pebble.EventListener
	// MinFreeBytes refuses appends (ErrDiskFull) while the data directory's
	// disk has less free space, so the store never runs out mid-write;
	// 0 disables the check.
	MinFreeBytes int64
	// Logger receives the store's logs; nil means slog.Default().
	Logger *slog.Logger
	// Now returns the current time (tests); nil means time.Now.
	Now func() time.Time
}

// EnsureDefaults fills zero fields with their defaults.
func (o *Options) EnsureDefaults() {
	if o.SyncInterval == 0 {
		o.SyncInterval = 5 * time.Millisecond // bounded loss window, still few syncs
	}
	if o.RetentionInterval == 0 {
		o.RetentionInterval = time.Minute // retention is coarse; a minute keeps the cost negligible
	}
	if o.MaxRecordBytes == 0 {
		o.MaxRecordBytes = 64 << 20
	}
	if o.MaxGroupBytes == 0 {
		o.MaxGroupBytes = 16 << 20 // bounds batch memory; far above what one fsync needs
	}
	if o.CacheBytes == 0 {
		o.CacheBytes = 64 << 20
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
}

// Validate reports every problem with the options at once.
func (o *Options) Validate() error {
	var errs []error
	if o.Dir == "" {
		errs = append(errs, errors.New("dir is empty"))
	}
	if o.Sync < SyncAlways || o.Sync > SyncNone {
		errs = append(errs, fmt.Errorf("sync policy %d is unknown", int(o.Sync)))
	}
	if o.CommitDelayAuto && o.CommitDelay <= 0 {
		errs = append(errs, fmt.Errorf("automatic commit delay needs a positive delay, not %s", o.CommitDelay))
	}
	if o.CommitDelay < 0 {
		errs = append(errs, fmt.Errorf("commit delay %s is negative", o.CommitDelay))
	}
	if o.SyncInterval < 0 {
		errs = append(errs, fmt.Errorf("sync interval %s is negative", o.SyncInterval))
	}
	if o.RetentionInterval < 0 {
		errs = append(errs, fmt.Errorf("retention interval %s is negative", o.RetentionInterval))
	}
	if o.MaxRecordBytes < 0 || o.MaxGroupBytes < 0 {
		errs = append(errs, errors.New("size limits must not be negative"))
	}
	if err := o.DefaultRetention.Validate(); err != nil {
		errs = append(errs, fmt.Errorf("default retention: %w", err))
	}
	return errors.Join(errs...)
}
